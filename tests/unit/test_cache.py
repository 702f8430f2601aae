"""KVCache against a plain reference (concatenate, then index): appends, beam reorders with repeated rows,
dropped rows and growth past the initial capacity, in any order."""

import torch

from tformer.nn.cache import KVCache


def test_kv_cache_matches_concatenation_under_reorders_drops_and_growth():
    torch.manual_seed(0)
    cache, ref_k, ref_v = KVCache(), None, None
    rows = 6
    for step in range(40):  # past the first capacity (16) and its doubling
        k, v = torch.randn(rows, 2, 1, 3), torch.randn(rows, 2, 1, 3)
        got_k, got_v = cache.append(k, v)
        ref_k = k if ref_k is None else torch.cat([ref_k, k], dim=2)
        ref_v = v if ref_v is None else torch.cat([ref_v, v], dim=2)
        assert torch.equal(got_k, ref_k) and torch.equal(got_v, ref_v)
        assert cache.length == step + 1
        if step % 3 == 0:  # beams reorder: rows repeated and permuted, same count
            index = torch.randint(0, rows, (rows,))
        elif step % 7 == 0 and rows > 2:  # a sentence finishes: fewer rows
            index = torch.randperm(rows)[: rows - 2]
        else:
            continue
        cache.select(index)
        ref_k, ref_v, rows = ref_k[index], ref_v[index], index.numel()
