"""The training loop's contracts: accumulation = one big batch, exact resume, early stopping."""

import torch

from tformer import Transformer, TransformerConfig
from tformer.config import RunConfig, TrainConfig
from tformer.training.trainer import ParallelData, Trainer


def _pairs(n, length, seed=0):
    g = torch.Generator().manual_seed(seed)
    def ids():
        return torch.randint(4, 40, (length,), generator=g).tolist()

    return [(ids(), ids()) for _ in range(n)]


def _trainer(tmp_path, train_pairs, valid_pairs=(), dropout=0.0, **train):
    train = {"max_steps": 4, "warmup_steps": 2, "log_every": 1, "bleu_samples": 0, "device": "cpu", **train}
    cfg = RunConfig(run_dir=str(tmp_path), seed=3, model={"preset": "tiny"}, train=TrainConfig(**train))
    torch.manual_seed(3)
    model = Transformer(TransformerConfig.tiny(vocab_size=40, dropout=dropout))
    return Trainer(cfg, model, ParallelData(None, list(train_pairs), list(valid_pairs)), show_progress=False)


def test_accumulating_two_batches_equals_one_batch_of_the_same_pairs(tmp_path):
    pairs = _pairs(4, 5)  # equal lengths: batches of 2 (cost 2*6) or one batch of 4 (cost 4*6)
    small = _trainer(tmp_path / "a", pairs, max_tokens=12, accumulate=2, max_steps=1)
    big = _trainer(tmp_path / "b", pairs, max_tokens=24, accumulate=1, max_steps=1)
    assert len(small.sampler.batches_for_epoch(0)) == 2 and len(big.sampler.batches_for_epoch(0)) == 1
    small.train()
    big.train()
    for (name, a), (_, b) in zip(small.model.named_parameters(), big.model.named_parameters(), strict=True):
        if name.endswith("k_proj.bias"):
            continue  # its gradient is 0 up to rounding (softmax ignores a shift), which Adam scales to +-lr
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


def test_resume_gives_bit_identical_parameters(tmp_path):
    pairs = _pairs(40, 6, seed=1) + _pairs(20, 3, seed=2)
    valid = _pairs(6, 4, seed=9)
    straight = _trainer(tmp_path / "straight", pairs, valid, dropout=0.2, max_tokens=60, max_steps=9, eval_every=3)
    straight.train()
    first = _trainer(tmp_path / "resumed", pairs, valid, dropout=0.2, max_tokens=60, max_steps=6, eval_every=3)
    assert len(first.sampler.batches_for_epoch(0)) == 7
    first.train()  # stops mid-epoch at step 6 (of 7) and checkpoints there
    second = _trainer(tmp_path / "resumed", pairs, valid, dropout=0.2, max_tokens=60, max_steps=9, eval_every=3)
    torch.manual_seed(12345)  # whatever the process did since: the checkpoint's RNG state wins
    assert second.resume() and second.state.step == 6
    second.train()
    assert second.state.step == straight.state.step == 9
    for (name, a), (_, b) in zip(second.model.state_dict().items(), straight.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert second.scheduler.get_last_lr() == straight.scheduler.get_last_lr()
    assert second.state.best_valid_loss == straight.state.best_valid_loss


def test_resume_refuses_changed_batches(tmp_path):
    import pytest

    from tformer.errors import TformerError

    pairs = _pairs(30, 5)
    _trainer(tmp_path, pairs, max_tokens=60, max_steps=2).train()
    changed = _trainer(tmp_path, pairs, max_tokens=90, max_steps=4)
    with pytest.raises(TformerError, match="max_tokens"):
        changed.resume()


def test_early_stopping_after_patience_validations_without_improvement(tmp_path, monkeypatch):
    pairs = _pairs(30, 4)
    t = _trainer(tmp_path, pairs, valid_pairs=pairs[:5], max_tokens=50, max_steps=100, eval_every=2, patience=2)
    losses = iter([3.0, 2.0, 2.5, 2.1, 1.0])
    monkeypatch.setattr(t, "validate", lambda: {"kind": "valid", "step": t.state.step, "loss": next(losses),
                                                "ppl": 1.0})
    summary = t.train()
    # Validations at steps 2, 4, 6, 8: best at 4, no better at 6 and 8 -> stop at step 8.
    assert summary["stopped_early"] and summary["steps"] == 8 and t.state.best_valid_loss == 2.0
    assert (tmp_path / "checkpoints" / "best.pt").is_file()


def test_time_budget_stops_and_saves(tmp_path):
    t = _trainer(tmp_path, _pairs(30, 4), max_tokens=50, max_steps=1000, max_minutes=1e-6)
    summary = t.train()
    assert summary["out_of_time"] and summary["steps"] == 1
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
