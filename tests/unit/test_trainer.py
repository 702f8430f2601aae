"""The training loop's contracts: accumulation = one big batch, exact resume, early stopping."""

import dataclasses
import math

import pytest
import torch

from tformer import Transformer, TransformerConfig
from tformer.tasks.translation import ParallelData, TranslationTask
from tformer.training.config import RunConfig, TrainConfig
from tformer.training.trainer import Trainer


def _pairs(n, length, seed=0):
    g = torch.Generator().manual_seed(seed)
    def ids():
        return torch.randint(4, 40, (length,), generator=g).tolist()

    return [(ids(), ids()) for _ in range(n)]


def _trainer(tmp_path, train_pairs, valid_pairs=(), dropout=0.0, layers=2, **train):
    train = {"max_steps": 4, "warmup_steps": 2, "log_every": 1, "device": "cpu", **train}
    cfg = RunConfig(run_dir=str(tmp_path), seed=3, model={"preset": "tiny"}, train=TrainConfig(**train))
    torch.manual_seed(3)
    model = Transformer(TransformerConfig.tiny(vocab_size=40, dropout=dropout, num_encoder_layers=layers,
                                               num_decoder_layers=layers))
    task = TranslationTask(ParallelData(None, list(train_pairs), list(valid_pairs)))  # no text: no BLEU
    return Trainer(cfg, model, task, show_progress=False)


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


def test_the_time_budget_also_ends_on_a_skipped_update(tmp_path, monkeypatch):
    _fault_at_calls(monkeypatch, {1})  # the first update's loss is NaN: skipped, as the budget runs out
    t = _trainer(tmp_path, _pairs(30, 4), max_tokens=50, max_steps=1000, max_minutes=1e-6, nonfinite_limit=0)
    summary = t.train()
    assert summary["out_of_time"] and summary["steps"] == 0 and summary["skipped_updates"] == 1
    assert (tmp_path / "checkpoints" / "last.pt").is_file()


# ---- exact resume after a stop at any update ---------------------------------------------------
TIMING = ("tokens_per_s", "tgt_tokens_per_s")


def _metrics(run_dir):
    import json

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def _assert_same_run(a, b):
    """Bit-identical weights, Adam state, schedule, counters and metrics (timings aside)."""
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    oa, ob = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert oa["param_groups"] == ob["param_groups"]
    for i, sa in oa["state"].items():
        for k, v in sa.items():
            assert torch.equal(v, ob["state"][i][k]), (i, k)
    assert a.scheduler.state_dict() == b.scheduler.state_dict()
    assert vars(a.state) == vars(b.state)
    assert _metrics(a.run_dir) == _metrics(b.run_dir)


RESUME_RUN = dict(dropout=0.2, max_tokens=60, accumulate=2, max_steps=10, eval_every=4, log_every=3)


def _resume_pairs():
    return _pairs(40, 6, seed=1) + _pairs(20, 3, seed=2), _pairs(6, 4, seed=9)


def _stop_at_call(monkeypatch, trainer, call):
    """Make ``trainer`` request a stop during its ``call``-th micro-batch (counting from 1)."""
    import tformer.tasks.translation as tr

    calls = {"n": 0}
    real = tr.sequence_loss

    def counting(*args, **kw):
        calls["n"] += 1
        if calls["n"] == call:
            trainer.request_stop("test stop")
        return real(*args, **kw)

    monkeypatch.setattr(tr, "sequence_loss", counting)


# 7 batches an epoch with accumulate=2: updates of 2, 2, 2, 1 batches. Calls of sequence_loss -> the update
# they belong to: 1-2 -> 1, 3-4 -> 2, 5-6 -> 3, 7 -> 4 (the epoch's lone last batch), 8 is the validation
# at step 4, then 9-10 -> 5 (epoch 2), ..., 15 -> 8 (where a validation and checkpoint also fall).
# So call 4 stops during accumulation and call 10 mid-epoch.
@pytest.mark.parametrize("call, stop_step", [(1, 1), (3, 2), (4, 2), (7, 4), (10, 5), (15, 8)])
def test_a_stop_at_any_update_resumes_bit_identically(tmp_path, monkeypatch, call, stop_step):
    pairs, valid = _resume_pairs()
    straight = _trainer(tmp_path / "straight", pairs, valid, **RESUME_RUN)
    assert len(straight.sampler.batches_for_epoch(0)) == 7
    straight.train()
    first = _trainer(tmp_path / "resumed", pairs, valid, **RESUME_RUN)
    _stop_at_call(monkeypatch, first, call)
    summary = first.train()
    assert summary["interrupted"] == "test stop" and summary["steps"] == stop_step
    monkeypatch.undo()
    second = _trainer(tmp_path / "resumed", pairs, valid, **RESUME_RUN)
    torch.manual_seed(12345)  # whatever the process did since: the checkpoint's RNG state wins
    assert second.resume() and second.state.step == first.state.step
    second.train()
    assert second.state.step == 10
    _assert_same_run(second, straight)


@pytest.mark.parametrize("accumulate_after", [2, 3])
def test_max_epochs_counts_batches_when_a_resume_changes_the_batches_per_update(tmp_path, monkeypatch,
                                                                               accumulate_after):
    """train.accumulate (or the number of processes) may change on resume: the run still ends after exactly
    max_epochs epochs of batches, every batch trained on once per epoch."""
    pairs, valid = _resume_pairs()
    run = dict(max_tokens=60, max_steps=0, max_epochs=2, eval_every=0, log_every=3)
    first = _trainer(tmp_path, pairs, valid, accumulate=1, **run)
    n = len(first.sampler.batches_for_epoch(0))
    _stop_at_call(monkeypatch, first, 3)  # during update 3 (validation comes only at epoch ends)
    assert first.train()["steps"] == 3
    monkeypatch.undo()
    second = _trainer(tmp_path, pairs, valid, accumulate=accumulate_after, **run)
    assert second.resume()
    summary = second.train()
    per_update = -(-n // accumulate_after)
    left_in_epoch = -(-(n - 3) // accumulate_after)
    assert summary["steps"] == 3 + left_in_epoch + per_update
    assert (second.state.epoch, second.state.batch_in_epoch) == (2, 0)


def test_a_cosine_run_resumed_with_other_batches_per_update_goes_on_at_the_lr_of_its_new_horizon(tmp_path,
                                                                                              monkeypatch):
    from tformer.training.schedule import cosine_lr

    pairs, valid = _resume_pairs()
    run = dict(max_tokens=60, max_steps=0, max_epochs=2, eval_every=0, log_every=3, schedule="cosine", lr=1e-2,
               warmup_steps=2)
    first = _trainer(tmp_path, pairs, valid, accumulate=1, **run)
    _stop_at_call(monkeypatch, first, 3)
    assert first.train()["steps"] == 3
    monkeypatch.undo()
    second = _trainer(tmp_path, pairs, valid, accumulate=2, **run)
    assert second.resume() and second.total_steps != first.total_steps
    # update 4 runs on the cosine down to the new last update (not at the lr of a schedule's first update)
    assert second.optimizer.param_groups[0]["lr"] == pytest.approx(cosine_lr(4, 2, second.total_steps, 1e-2))


# ---- numerical faults -----------------------------------------------------------------------------
def _fault_at_calls(monkeypatch, calls, value=float("nan"), on_call=None):
    """Multiply the loss of the given sequence_loss calls (1-based) by ``value``; ``on_call(n)`` runs first."""
    import tformer.tasks.translation as tr

    count = {"n": 0}
    real = tr.sequence_loss

    def faulty(*args, **kw):
        count["n"] += 1
        if on_call is not None:
            on_call(count["n"])
        out = real(*args, **kw)
        return dataclasses.replace(out, loss=out.loss * value) if count["n"] in calls else out

    monkeypatch.setattr(tr, "sequence_loss", faulty)


def _snapshot(t):
    return ({k: v.clone() for k, v in t.model.state_dict().items()},
            {i: {k: v.clone() for k, v in s.items()} for i, s in t.optimizer.state_dict()["state"].items()},
            t.scheduler.get_last_lr())


def _assert_snapshot_equal(a, b):
    for k in a[0]:
        assert torch.equal(a[0][k], b[0][k]), k
    for i in a[1]:
        for k in a[1][i]:
            assert torch.equal(a[1][i][k], b[1][i][k]), (i, k)
    assert a[2] == b[2]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "grad"])
def test_a_nonfinite_update_is_skipped_counted_and_never_reaches_the_weights(tmp_path, monkeypatch, value):
    t = _trainer(tmp_path, _pairs(30, 4), max_tokens=50, max_steps=6, log_every=1)
    snaps = {}

    def on_call(n):  # snapshot before the faulty update (call 3) and when the next one starts (call 4)
        if n in (3, 4):
            snaps[n] = _snapshot(t)
        if n == 3 and value == "grad":  # a finite loss whose gradient is NaN
            w = t.model.encoder.layers[0].self_attn.q_proj.weight
            handle = w.register_hook(lambda g: (handle.remove(), g * float("nan"))[1])

    _fault_at_calls(monkeypatch, {3} if value != "grad" else set(), 1.0 if value == "grad" else value, on_call)
    summary = t.train()
    _assert_snapshot_equal(snaps[3], snaps[4])  # the skipped update changed nothing
    assert summary["skipped_updates"] == 1 and summary["steps"] == 6  # the run went on to its 6 updates
    records = _metrics(tmp_path)
    skips = [r for r in records if r["kind"] == "skip"]
    assert len(skips) == 1 and skips[0]["step"] == 3  # the update it would have been
    assert ("gradient norm" if value == "grad" else "loss") in skips[0]["reason"]
    assert all(math.isfinite(r["loss"]) for r in records if r["kind"] == "train")
    assert all(torch.isfinite(p).all() for p in t.model.parameters())


def test_repeated_nonfinite_updates_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path, monkeypatch):
    import hashlib

    from tformer.io.checkpoints import load_checkpoint
    from tformer.training.faults import NonFiniteLoss

    t = _trainer(tmp_path, _pairs(30, 4), max_tokens=50, max_steps=20, save_every=2, nonfinite_limit=3)
    ckpts = tmp_path / "checkpoints"
    seen = {}

    def on_call(n):
        if n == 5:  # the first faulty call: the checkpoints of step 4 are the last good ones
            seen["files"] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in ckpts.iterdir()}
            seen["state"] = _snapshot(t)

    _fault_at_calls(monkeypatch, set(range(5, 100)), on_call=on_call)
    with pytest.raises(NonFiniteLoss, match="3 updates in a row") as e:
        t.train()
    assert "\n" not in str(e.value) and str(ckpts) in str(e.value)
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in ckpts.iterdir()} == seen["files"]
    _assert_snapshot_equal(seen["state"], _snapshot(t))
    last = load_checkpoint(ckpts / "last.pt")
    assert last["train_state"]["step"] == 4
    for k, v in last["model"].items():
        assert torch.equal(v, seen["state"][0][k]), k


# ---- crash safety of the writes -----------------------------------------------------------------
def test_a_full_disk_stops_with_one_line_and_leaves_the_checkpoints_intact(tmp_path, monkeypatch):
    import hashlib
    import resource
    import signal

    from tformer.io.checkpoints import CheckpointError

    t = _trainer(tmp_path, _pairs(30, 4), max_tokens=50, max_steps=20, save_every=2)
    ckpts = tmp_path / "checkpoints"
    seen = {}
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG

    def on_call(n):
        if n == 5:  # after the step-4 checkpoints: no file may grow past 20 kB (a checkpoint is ~200 kB)
            seen["files"] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in ckpts.iterdir()}
            resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))

    _fault_at_calls(monkeypatch, set(), on_call=on_call)
    try:
        with pytest.raises(CheckpointError, match="cannot write checkpoint .*: File too large") as e:
            t.train()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert "\n" not in str(e.value)
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in ckpts.iterdir()} == seen["files"]
    resumed = _trainer(tmp_path, _pairs(30, 4), max_tokens=50, max_steps=20, save_every=2)
    assert resumed.resume() and resumed.state.step == 4


# ---- reproducibility ------------------------------------------------------------------------------
def _write_corpus(d):
    from tformer.data.synthetic import make_number_task, write_parallel

    task = make_number_task(60, 10, 1, max_number=99, seed=5)
    write_parallel(task["train"], d / "train.src", d / "train.tgt")
    write_parallel(task["valid"], d / "valid.src", d / "valid.tgt")


def _run_config(d, run_dir, seed):
    from tformer.training.config import DataConfig

    data = DataConfig(train_src=str(d / "train.src"), train_tgt=str(d / "train.tgt"), valid_src=str(d / "valid.src"),
                      valid_tgt=str(d / "valid.tgt"), vocab_size=40)
    train = TrainConfig(max_steps=5, warmup_steps=2, max_tokens=200, log_every=1, device="cpu")
    return RunConfig(run_dir=str(run_dir), seed=seed, data=data, model={"preset": "tiny"}, train=train,
                     task_settings={"bleu_samples": 2})


def test_the_same_config_and_seed_give_the_same_parameters(tmp_path):
    from tformer.tasks import run_training

    _write_corpus(tmp_path)
    weights = {}
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        torch.manual_seed(len(name) * 1000 + ord(name))  # what happened before the run must not matter
        summary = run_training(_run_config(tmp_path, tmp_path / name, seed), show_progress=False)
        assert summary["seed"] == seed and summary["steps"] == 5
        weights[name] = (tmp_path / name / "model" / "model.safetensors").read_bytes()
    assert weights["a"] == weights["b"]
    assert weights["a"] != weights["c"]


def test_a_drawn_seed_is_reported_recorded_and_reused_on_resume(tmp_path):
    from tformer.tasks import load_run_config, run_training

    _write_corpus(tmp_path)
    cfg = _run_config(tmp_path, tmp_path / "run", None)
    summary = run_training(cfg, show_progress=False)
    seed = summary["seed"]
    assert isinstance(seed, int) and load_run_config(tmp_path / "run" / "config.yaml").seed == seed
    import dataclasses

    more = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=7))
    assert run_training(more, resume=True, show_progress=False)["seed"] == seed


def test_set_seed_reports_its_seed_and_repeats_the_draws():
    from tformer.training.seed import set_seed

    seed = set_seed(None)
    a = torch.rand(3)
    assert set_seed(seed) == seed and torch.equal(torch.rand(3), a)
    assert set_seed(5) == 5


def test_a_checkpoint_records_configs_and_versions(tmp_path):
    import subprocess

    import tformer
    from tformer.io.checkpoints import load_checkpoint

    t = _trainer(tmp_path, _pairs(10, 4), max_tokens=50, max_steps=1)
    t.train()
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt["run_config"] == t.cfg.to_dict() and ckpt["model_config"] == t.model.cfg.to_dict()
    assert ckpt["versions"]["tformer"] == tformer.__version__ and ckpt["versions"]["torch"] == torch.__version__
    src = __import__("pathlib").Path(tformer.__file__).parent
    git = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True)
    if git.returncode == 0:  # a git checkout: the commit is recorded; an installed package has none
        assert ckpt["versions"]["git"] == git.stdout.strip()
    else:
        assert "git" not in ckpt["versions"]


def test_an_unwritable_run_directory_fails_before_any_work(tmp_path):
    import os

    from tformer.errors import TformerError
    from tformer.tasks import run_training

    _write_corpus(tmp_path)
    (tmp_path / "locked").mkdir()
    os.chmod(tmp_path / "locked", 0o500)
    try:
        if os.access(tmp_path / "locked", os.W_OK):  # root writes anyway: prove the check with a file instead
            (tmp_path / "locked" / "x").write_text("")
            target = tmp_path / "locked" / "x" / "run"
            match = "is not a directory"
        else:
            target = tmp_path / "locked" / "run"
            match = "is not writable"
        with pytest.raises(TformerError, match=f"run directory {target}: .*{match}"):
            run_training(_run_config(tmp_path, target, 1), show_progress=False)
        assert not target.exists()
    finally:
        os.chmod(tmp_path / "locked", 0o700)


def test_adamw_decays_only_weight_matrices_and_cosine_ends_at_zero(tmp_path):
    from tformer.training.optimizer import decay_groups

    model = Transformer(TransformerConfig.tiny(vocab_size=40))
    decayed, plain = decay_groups(model, 0.05)
    linear = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear)}
    assert {id(p) for p in decayed["params"]} == linear and decayed["weight_decay"] == 0.05
    assert all(p.dim() == 1 for p in plain["params"] if id(p) not in linear) and plain["weight_decay"] == 0.0
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))
    t = _trainer(tmp_path, _pairs(20, 4), max_tokens=50, max_steps=3, optimizer="adamw", weight_decay=0.1,
                 schedule="cosine", lr=1e-3, warmup_steps=1)
    assert isinstance(t.optimizer, torch.optim.AdamW) and t.total_steps == 3
    t.train()
    assert t.scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)


def test_a_stop_during_the_last_update_is_a_finished_run(tmp_path, monkeypatch):
    t = _trainer(tmp_path, _pairs(30, 4), max_tokens=50, max_steps=2)
    _stop_at_call(monkeypatch, t, 2)  # during update 2 of 2
    summary = t.train()
    assert summary["steps"] == 2 and summary["interrupted"] is None


def test_a_stop_during_a_skipped_update_still_saves_and_stops(tmp_path, monkeypatch):
    t = _trainer(tmp_path, _pairs(30, 4), max_tokens=50, max_steps=20)
    _fault_at_calls(monkeypatch, {3}, on_call=lambda n: t.request_stop("test stop") if n == 3 else None)
    summary = t.train()
    assert summary["interrupted"] == "test stop" and summary["steps"] == 2 and summary["skipped_updates"] == 1
    resumed = _trainer(tmp_path, _pairs(30, 4), max_tokens=50, max_steps=20)
    assert resumed.resume() and resumed.state.skipped_updates == 1 and resumed.state.batch_in_epoch == 3


def test_keep_checkpoints_zero_leaves_no_older_step_file_to_outrank_last(tmp_path):
    from tformer.io.checkpoints import latest_valid_checkpoint, step_checkpoints

    _trainer(tmp_path, _pairs(30, 4), max_tokens=50, max_steps=2, save_every=1).train()
    assert step_checkpoints(tmp_path / "checkpoints")
    t = _trainer(tmp_path, _pairs(30, 4), max_tokens=50, max_steps=4, save_every=1, keep_checkpoints=0)
    assert t.resume()
    t.train()
    assert not step_checkpoints(tmp_path / "checkpoints")
    path, ckpt = latest_valid_checkpoint(tmp_path / "checkpoints", warn=print)
    assert path.name == "last.pt" and ckpt["train_state"]["step"] == 4
