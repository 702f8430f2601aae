"""Tests of token-budget batching and collation: budget, coverage, seeding, resumption, shapes."""

import random

import pytest
import torch
from torch.utils.data import DataLoader

from tformer.data.batching import Batch, TokenBatchSampler, collate
from tformer.data.tokenizer import BOS_ID, EOS_ID, PAD_ID


def random_lengths(n, seed=0, max_len=60):
    """Correlated source/target lengths, like real sentence pairs."""
    rng = random.Random(seed)
    src = [rng.randint(0, max_len) for _ in range(n)]
    tgt = [max(0, s + rng.randint(-5, 5)) for s in src]
    return src, tgt


def cost(batch, src, tgt):
    """The padded cost, written out: pairs times the longest side, counting one EOS/BOS."""
    return len(batch) * max(max(src[i] + 1, tgt[i] + 1) for i in batch)


def epoch_batches(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("bucket_size", [None, 97])
@pytest.mark.parametrize("shuffle", [True, False])
def test_every_pair_once_per_epoch_within_budget(shuffle, bucket_size):
    src, tgt = random_lengths(1000)
    sampler = TokenBatchSampler(src, tgt, max_tokens=300, shuffle=shuffle, bucket_size=bucket_size)
    for epoch in range(3):
        batches = epoch_batches(sampler, epoch)
        assert sorted(i for batch in batches for i in batch) == list(range(1000))
        assert all(cost(batch, src, tgt) <= 300 for batch in batches)


def test_batches_are_full_when_lengths_are_equal():
    sampler = TokenBatchSampler([9] * 100, [4] * 100, max_tokens=100, shuffle=False)
    assert [len(batch) for batch in sampler] == [10] * 10  # 10 pairs * (9 + 1) = 100 tokens


def test_batches_stay_within_a_bucket():
    sampler = TokenBatchSampler([3] * 100, [3] * 100, max_tokens=1000, bucket_size=8)
    batches = list(sampler)
    assert [len(batch) for batch in batches].count(8) == 12
    assert sorted(len(batch) for batch in batches) == [4] + [8] * 12


def test_over_long_pair_forms_its_own_batch():
    src, tgt = [3, 3, 50, 3, 3], [3, 3, 2, 3, 3]
    sampler = TokenBatchSampler(src, tgt, max_tokens=40, seed=1)
    batches = list(sampler)
    assert [2] in batches
    assert sorted(i for batch in batches for i in batch) == [0, 1, 2, 3, 4]
    assert all(cost(b, src, tgt) <= 40 for b in batches if b != [2])


def test_same_seed_same_order_other_epoch_or_seed_other_order():
    src, tgt = random_lengths(500)
    first = TokenBatchSampler(src, tgt, max_tokens=200, seed=5)
    again = TokenBatchSampler(src, tgt, max_tokens=200, seed=5)
    other_seed = TokenBatchSampler(src, tgt, max_tokens=200, seed=6)
    assert epoch_batches(first, 0) == epoch_batches(again, 0)
    assert epoch_batches(first, 3) == epoch_batches(again, 3)
    assert epoch_batches(first, 0) != epoch_batches(first, 1)
    assert epoch_batches(first, 0) != epoch_batches(other_seed, 0)


def test_without_shuffle_batches_grow_in_length_and_repeat():
    src, tgt = random_lengths(300)
    sampler = TokenBatchSampler(src, tgt, max_tokens=150, shuffle=False)
    batches = epoch_batches(sampler, 0)
    longest = [max(max(src[i], tgt[i]) for i in batch) for batch in batches]
    assert longest == sorted(longest)
    assert epoch_batches(sampler, 1) == batches


def test_iteration_moves_to_the_next_epoch():
    src, tgt = random_lengths(200)
    sampler = TokenBatchSampler(src, tgt, max_tokens=150, seed=2)
    first = list(sampler)
    assert sampler.epoch == 1 and len(sampler) == len(sampler.batches_for_epoch(1))
    second = list(sampler)
    assert first != second
    assert second == TokenBatchSampler(src, tgt, max_tokens=150, seed=2).batches_for_epoch(1)


def test_resume_mid_epoch_gives_exactly_the_remaining_batches():
    src, tgt = random_lengths(400)
    full = TokenBatchSampler(src, tgt, max_tokens=200, seed=9).batches_for_epoch(2)

    interrupted = TokenBatchSampler(src, tgt, max_tokens=200, seed=9)
    interrupted.set_epoch(2)
    iterator = iter(interrupted)
    served = [next(iterator) for _ in range(7)]
    state = interrupted.state_dict()
    assert state["epoch"] == 2 and state["batches_consumed"] == 7

    resumed = TokenBatchSampler(src, tgt, max_tokens=200, seed=9)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # a training loop re-selecting the current epoch keeps the position
    assert len(resumed) == len(full) - 7
    rest = list(resumed)
    assert served + rest == full
    assert resumed.epoch == 3
    assert list(resumed) == TokenBatchSampler(src, tgt, max_tokens=200, seed=9).batches_for_epoch(3)


def test_set_epoch_to_a_new_epoch_starts_it_from_the_first_batch():
    src, tgt = random_lengths(300)
    sampler = TokenBatchSampler(src, tgt, max_tokens=200, seed=4)
    iterator = iter(sampler)
    next(iterator), next(iterator)
    sampler.set_epoch(5)
    assert list(sampler) == TokenBatchSampler(src, tgt, max_tokens=200, seed=4).batches_for_epoch(5)


def test_resume_rejects_a_state_from_another_setup():
    src, tgt = random_lengths(50)
    state = TokenBatchSampler(src, tgt, max_tokens=100, seed=1).state_dict()
    with pytest.raises(ValueError, match="seed"):
        TokenBatchSampler(src, tgt, max_tokens=100, seed=2).load_state_dict(state)
    with pytest.raises(ValueError, match="num_pairs"):
        TokenBatchSampler(src[:-1], tgt[:-1], max_tokens=100, seed=1).load_state_dict(state)


def test_padding_ratio_by_hand():
    # One batch: src lengths 1 and 3 -> tensor 2 x 4 = 8 slots holding 2 + 4 tokens (2 pads);
    # tgt lengths 1 and 1 -> tensor 2 x 2 = 4 slots holding 4 tokens. 2 pads of 12 slots.
    sampler = TokenBatchSampler([1, 3], [1, 1], max_tokens=100, shuffle=False)
    assert sampler.padding_ratio() == pytest.approx(2 / 12)
    assert TokenBatchSampler([4] * 10, [4] * 10, max_tokens=20).padding_ratio() == 0.0


def test_sorting_by_length_keeps_padding_low():
    src, tgt = random_lengths(2000)
    sorted_batches = TokenBatchSampler(src, tgt, max_tokens=400, seed=0)
    assert sorted_batches.padding_ratio() < 0.15
    # The same pairs in unsorted batches of 10 pad far more (the ratio written out by hand).
    pad = total = 0
    for start in range(0, 2000, 10):
        for lengths in (src[start : start + 10], tgt[start : start + 10]):
            total += 10 * (max(lengths) + 1)
            pad += sum(max(lengths) - n for n in lengths)
    assert pad / total > 0.3


def test_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="lengths"):
        TokenBatchSampler([1, 2], [1], max_tokens=10)
    with pytest.raises(ValueError, match="max_tokens"):
        TokenBatchSampler([1], [1], max_tokens=0)
    with pytest.raises(ValueError, match="negative"):
        TokenBatchSampler([1, -1], [1, 1], max_tokens=10)


def test_collate_by_hand():
    batch = collate([([5, 6, 7], [8, 9]), ([10], [11, 12, 13])], pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID)
    p, s, e = PAD_ID, BOS_ID, EOS_ID
    assert batch.src.tolist() == [[5, 6, 7, e], [10, e, p, p]]
    assert batch.tgt_in.tolist() == [[s, 8, 9, p], [s, 11, 12, 13]]
    assert batch.tgt_out.tolist() == [[8, 9, e, p], [11, 12, 13, e]]
    assert (batch.num_src_tokens, batch.num_tgt_tokens) == (6, 7)
    assert batch.src.dtype == batch.tgt_in.dtype == batch.tgt_out.dtype == torch.int64
    assert len(batch) == 2


def test_collate_shapes_and_shift_by_one():
    rng = random.Random(0)
    pairs = [
        (
            [rng.randint(4, 99) for _ in range(rng.randint(0, 12))],
            [rng.randint(4, 99) for _ in range(rng.randint(0, 9))],
        )
        for _ in range(16)
    ]
    batch = collate(pairs, pad_id=99, bos_id=98, eos_id=97)
    B = len(pairs)
    S = max(len(s) for s, _ in pairs) + 1
    T = max(len(t) for _, t in pairs) + 1
    assert batch.src.shape == (B, S) and batch.tgt_in.shape == (B, T) and batch.tgt_out.shape == (B, T)
    for b, (src_ids, tgt_ids) in enumerate(pairs):
        n = len(tgt_ids) + 1
        assert batch.tgt_in[b, 0] == 98 and batch.tgt_out[b, n - 1] == 97
        assert batch.tgt_in[b, 1:n].tolist() == batch.tgt_out[b, : n - 1].tolist() == tgt_ids
        assert (batch.tgt_in[b, n:] == 99).all() and (batch.tgt_out[b, n:] == 99).all()
        assert batch.src[b, : len(src_ids) + 1].tolist() == [*src_ids, 97]
        assert (batch.src[b, len(src_ids) + 1 :] == 99).all()
    assert batch.num_tgt_tokens == int((batch.tgt_out != 99).sum())
    assert batch.num_src_tokens == int((batch.src != 99).sum())


def test_collate_rejects_an_empty_batch():
    with pytest.raises(ValueError, match="empty"):
        collate([])


def test_sampler_and_collate_in_a_dataloader():
    rng = random.Random(1)
    data = [([4] * rng.randint(1, 20), [5] * rng.randint(1, 20)) for _ in range(100)]
    sampler = TokenBatchSampler([len(s) for s, _ in data], [len(t) for _, t in data], max_tokens=64)
    loader = DataLoader(data, batch_sampler=sampler, collate_fn=collate)
    batches = list(loader)
    assert all(isinstance(b, Batch) for b in batches)
    assert sum(len(b) for b in batches) == 100
    assert all(len(b) * max(b.src.shape[1], b.tgt_in.shape[1]) <= 64 for b in batches)
    assert sum(b.num_tgt_tokens for b in batches) == sum(len(t) + 1 for _, t in data)


def greedy_by_hand(src, tgt, max_tokens, bucket_of, order):
    """The packing written out pair by pair: sort by (bucket, padded length, src, tgt) from ``order`` (stable),
    then extend each batch while it stays in its bucket and (pairs + 1) * longest <= max_tokens."""
    key = {i: (bucket_of[i], max(src[i], tgt[i]) + 1, src[i], tgt[i]) for i in order}
    batches, batch, longest = [], [], 0
    for i in sorted(order, key=lambda i: key[i]):
        new = max(longest, key[i][1])
        if batch and (key[i][0] != key[batch[0]][0] or (len(batch) + 1) * new > max_tokens):
            batches.append(batch)
            batch, new = [], key[i][1]
        batch.append(i)
        longest = new
    return batches + [batch] if batch else batches


@pytest.mark.parametrize("bucket_size", [None, 1, 7, 250])
@pytest.mark.parametrize("max_tokens", [1, 30, 300, 5000])
def test_packing_equals_the_pair_by_pair_loop(bucket_size, max_tokens):
    src, tgt = random_lengths(1000, seed=max_tokens)
    sampler = TokenBatchSampler(src, tgt, max_tokens=max_tokens, shuffle=False, bucket_size=bucket_size)
    order = list(range(1000))
    bucket_of = [i // bucket_size if bucket_size else 0 for i in order]
    assert sampler.batches_for_epoch(0) == greedy_by_hand(src, tgt, max_tokens, bucket_of, order)
    shuffled = TokenBatchSampler(src, tgt, max_tokens=max_tokens, seed=3, bucket_size=bucket_size)
    got = shuffled.batches_for_epoch(0)  # the same batches, served in a random order
    perm = torch.randperm(1000, generator=torch.Generator().manual_seed(3)).tolist()
    bucket_of = [0] * 1000
    for position, i in enumerate(perm):
        bucket_of[i] = position // bucket_size if bucket_size else 0
    assert sorted(got) == sorted(greedy_by_hand(src, tgt, max_tokens, bucket_of, perm))


def test_padding_ratio_equals_the_padded_tensors():
    src, tgt = random_lengths(500, seed=4)
    sampler = TokenBatchSampler(src, tgt, max_tokens=200, seed=1, bucket_size=64)
    data = [([5] * s, [6] * t) for s, t in zip(src, tgt, strict=True)]
    pad = total = 0
    for batch in sampler.batches_for_epoch(0):
        b = collate([data[i] for i in batch])
        for tensor in (b.src, b.tgt_out):
            total, pad = total + tensor.numel(), pad + int((tensor == PAD_ID).sum())
    assert sampler.padding_ratio(0) == pytest.approx(pad / total)


def test_packing_of_lengths_too_large_to_pack_into_one_sort_key():
    src, tgt = random_lengths(300, seed=8)
    src[5], tgt[7] = 3_000_000, 2_500_000  # (padded x src x tgt) sizes pass 2**62: one sort per key instead
    sampler = TokenBatchSampler(src, tgt, max_tokens=400, shuffle=False, bucket_size=50)
    bucket_of = [i // 50 for i in range(300)]
    assert sampler.batches_for_epoch(0) == greedy_by_hand(src, tgt, 400, bucket_of, list(range(300)))
