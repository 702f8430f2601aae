"""What a run reports: TensorBoard events (train.tensorboard) read back by TensorBoard's own reader equal
metrics.jsonl, step for step, also across a resume after a kill; asking for them without tensorboard installed
stops the run before any work."""

import json
import sys
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from tformer import Transformer, TransformerConfig
from tformer.errors import ConfigError
from tformer.tasks.translation import ParallelData, TranslationTask
from tformer.training.config import RunConfig, TrainConfig
from tformer.training.metrics import check_tensorboard
from tformer.training.run import train_run
from tformer.training.trainer import Trainer


def _pairs(n, length, seed):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(4, 40, (length,), generator=g).tolist(),) * 2 for _ in range(n)]


def _trainer(run_dir, **train):
    train = {"max_steps": 4, "warmup_steps": 2, "log_every": 1, "eval_every": 2, "max_tokens": 60, "device": "cpu",
             **train}
    cfg = RunConfig(run_dir=str(run_dir), seed=3, model={"preset": "tiny"}, train=TrainConfig(**train))
    model = Transformer(TransformerConfig.tiny(vocab_size=40, dropout=0.0, num_encoder_layers=1, num_decoder_layers=1))
    task = TranslationTask(ParallelData(None, _pairs(30, 5, 1), _pairs(6, 4, 2)))  # no text: no BLEU
    return Trainer(cfg, model, task, show_progress=False)


def _events(run_dir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _logged(run_dir) -> dict[str, list[tuple[int, float]]]:
    """metrics.jsonl as TensorBoard should show it: KIND/NAME -> (step, value) for every number."""
    out: dict[str, list[tuple[int, float]]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        for k, v in rec.items():
            if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                out.setdefault(f"{rec['kind']}/{k}", []).append((rec["step"], v))
    return out


def _assert_same(events, logged):
    assert events.keys() == logged.keys()
    for tag, points in logged.items():
        assert [s for s, _ in events[tag]] == [s for s, _ in points], tag
        assert [v for _, v in events[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag  # float32


def _next_second():
    """Event files are named by the second they were opened in; a new one in the next second sorts after."""
    time.sleep(1.01 - time.time() % 1)


def test_events_are_the_metrics_file_step_for_step(tmp_path):
    _trainer(tmp_path, tensorboard=True).train()
    events = _events(tmp_path)
    assert {"train/loss", "train/ppl", "train/lr", "train/tokens_per_s", "train/tgt_tokens_per_s",
            "valid/loss", "valid/ppl", "valid/nll"} <= events.keys()
    assert [s for s, _ in events["train/loss"]] == [1, 2, 3, 4] and [s for s, _ in events["valid/loss"]] == [2, 4]
    _assert_same(events, _logged(tmp_path))


def test_tensorboard_is_off_unless_asked_for(tmp_path):
    _trainer(tmp_path, max_steps=1).train()
    assert (tmp_path / "metrics.jsonl").is_file() and not (tmp_path / "tensorboard").exists()


def test_a_resumed_run_shows_each_step_once_as_the_resumed_run_wrote_it(tmp_path):
    _trainer(tmp_path, tensorboard=True, max_steps=6, eval_every=3).train()  # checkpoints at steps 3 and 6
    _next_second()
    killed = SummaryWriter(str(tmp_path / "tensorboard"))  # what a run killed after step 6 had written
    for step in (7, 8):
        killed.add_scalar("train/loss", -1.0, step)
        killed.add_scalar("valid/loss", -1.0, step)
    killed.close()
    _next_second()
    resumed = _trainer(tmp_path, tensorboard=True, max_steps=9, eval_every=3)
    assert resumed.resume() and resumed.state.step == 6
    resumed.train()
    events = _events(tmp_path)
    assert [s for s, _ in events["train/loss"]] == list(range(1, 10))
    assert [s for s, _ in events["valid/loss"]] == [3, 6, 9]
    _assert_same(events, _logged(tmp_path))


def test_asking_for_tensorboard_without_it_is_a_one_line_error_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(ConfigError) as e:
        check_tensorboard()
    assert "pip install 'tformer[tensorboard]'" in str(e.value) and "\n" not in str(e.value)
    cfg = RunConfig(run_dir=str(tmp_path / "run"), train=TrainConfig(max_steps=1, device="cpu", tensorboard=True))

    def build(*_):
        raise AssertionError("built the task before checking for tensorboard")

    with pytest.raises(ConfigError, match="train.tensorboard is true"):
        train_run(cfg, build)
    assert not (tmp_path / "run").exists()
