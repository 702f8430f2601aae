"""The pieces of data-parallel training that need no second process (the 2-process runs are in
tests/integration/test_distributed.py)."""

import pytest
import torch

from tformer.data.batching import TokenBatchSampler, rank_share
from tformer.errors import TformerError
from tformer.training.distributed import Distributed, rank_seed


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_the_ranks_share_each_global_batch_exactly_once(world):
    lengths = torch.randint(1, 30, (200,), generator=torch.Generator().manual_seed(0)).tolist()
    batches = TokenBatchSampler(lengths, lengths, 120, seed=1).batches_for_epoch(0)
    per_update = 2 * world  # accumulate 2
    for start in range(0, len(batches), per_update):
        group = batches[start:start + per_update]
        shares = [rank_share(group, r, world) for r in range(world)]
        assert sorted(b for s in shares for b in map(tuple, s)) == sorted(map(tuple, group))
        sizes = [len(s) for s in shares]
        assert max(sizes) - min(sizes) <= 1  # dealt in turn: the work is balanced


def test_rank_share_refuses_a_rank_outside_the_world():
    with pytest.raises(TformerError, match="outside"):
        rank_share([[0]], 2, 2)


def test_rank_seeds_differ_per_rank_and_step_and_repeat_per_seed():
    seeds = {rank_seed(7, r, s) for r in range(8) for s in (0, 100)}
    assert len(seeds) == 16 and all(0 <= x < 2**63 for x in seeds)
    assert rank_seed(7, 1) == rank_seed(7, 1) != rank_seed(8, 1)


def test_without_torchrun_there_is_one_process_and_collectives_are_identities(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    d = Distributed.from_env()
    assert (d.rank, d.world_size, d.enabled, d.is_main) == (0, 1, False, True)
    t = torch.tensor([1.0, 2.0])
    assert torch.equal(d.all_sum(t), torch.tensor([1.0, 2.0]))
    assert d.broadcast({"a": 1}) == {"a": 1} and d.gather(5) == [5]


def test_a_bad_torchrun_environment_is_one_line(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(TformerError, match="must be integers"):
        Distributed.from_env()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(TformerError, match="outside WORLD_SIZE"):
        Distributed.from_env()
