import pytest
import torch

from tformer.io.checkpoints import (
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


@pytest.mark.parametrize("where", [0.3, 0.5, 0.7])
def test_a_flipped_bit_inside_the_weights_is_detected_by_checksum(tmp_path, where):
    """torch.load alone would load the flipped weight without complaint; the CRC-32 check does not."""
    w = torch.randn(200, 100)
    save_checkpoint(tmp_path / "step-00000001.pt", {"w": w})
    path = tmp_path / "step-00000001.pt"
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x10  # inside the 80 kB tensor record
    path.write_bytes(bytes(data))
    assert not torch.equal(torch.load(path, weights_only=True)["w"], w)  # the silent failure being guarded
    with pytest.raises(CheckpointError, match=r"corrupt checkpoint .*step-00000001.pt: checksum mismatch") as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value)


def test_newest_step_file_wins_over_a_stale_last(tmp_path):
    """A kill between writing step-N.pt and copying it to last.pt leaves last.pt one checkpoint behind."""
    save_checkpoint(tmp_path / "last.pt", {"step": 1})
    save_checkpoint(tmp_path / "step-00000001.pt", {"step": 1})
    save_checkpoint(tmp_path / "step-00000002.pt", {"step": 2})
    path, state = latest_valid_checkpoint(tmp_path, warn=print)
    assert path.name == "step-00000002.pt" and state["step"] == 2


def test_unfinished_writes_are_removed(tmp_path):
    from tformer.io.checkpoints import remove_unfinished

    save_checkpoint(tmp_path / "step-00000001.pt", {"step": 1})
    (tmp_path / ".tmp-abc123").write_bytes(b"PK\x03\x04 half a checkpoint")
    assert [p.name for p in remove_unfinished(tmp_path)] == [".tmp-abc123"]
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000001.pt"]
