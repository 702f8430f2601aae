import pytest
import torch

from tformer.training.checkpoint import (
    CheckpointError,
    latest_valid_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    step_checkpoints,
)


def test_round_trip_and_pruning(tmp_path):
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path / f"step-{step:08d}.pt", {"step": step, "w": torch.full((2,), float(step))})
    prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in step_checkpoints(tmp_path)] == ["step-00000003.pt", "step-00000004.pt"]
    state = load_checkpoint(tmp_path / "step-00000004.pt")
    assert state["step"] == 4 and torch.equal(state["w"], torch.full((2,), 4.0))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_truncated_checkpoint_is_detected_and_skipped(tmp_path):
    save_checkpoint(tmp_path / "step-00000001.pt", {"step": 1})
    save_checkpoint(tmp_path / "step-00000002.pt", {"step": 2})
    bad = tmp_path / "step-00000002.pt"
    bad.write_bytes(bad.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="step-00000002.pt"):
        load_checkpoint(bad)
    warnings = []
    path, state = latest_valid_checkpoint(tmp_path, warn=warnings.append)
    assert path.name == "step-00000001.pt" and state["step"] == 1
    assert len(warnings) == 1 and "step-00000002.pt" in warnings[0]


def test_a_failed_write_leaves_the_old_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "last.pt", {"step": 1})

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_checkpoint(tmp_path / "last.pt", {"step": 2, "x": Boom()})
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
