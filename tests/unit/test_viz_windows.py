"""tformer plot windows: the shifted partition drawn is the paper's (Fig. 2, right), and the CLI draws a Swin run."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("matplotlib")

from tformer.cli.main import main  # noqa: E402
from tformer.models.swin.model import SwinClassifier, SwinConfig  # noqa: E402
from tformer.viz.windows import plot_windows, received_attention, shifted_groups, window_ids  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _same_group(labels: torch.Tensor) -> torch.Tensor:
    flat = labels.flatten()
    return flat[:, None] == flat[None, :]  # (R^2, R^2) pairs in one group


def _naive_shifted_windows(r: int, m: int, s: int) -> torch.Tensor:
    """Fig. 2 (right) without the cyclic shift: window borders at s, s + M, ... cut the map into (partial)
    windows; the label of a patch is its (row band, column band)."""
    borders = torch.arange(s, r, m)  # the shifted windows' first rows/columns
    band = torch.bucketize(torch.arange(r), borders, right=True)  # (R,) how many borders are at or before i
    return band[:, None] * (len(borders) + 1) + band[None, :]


@pytest.mark.parametrize("r, m", [(8, 4), (14, 7), (12, 4), (6, 2)])
def test_the_cyclic_shift_and_mask_group_patches_as_the_papers_shifted_windows(r, m):
    s = m // 2
    assert torch.equal(_same_group(shifted_groups(r, m, s)), _same_group(_naive_shifted_windows(r, m, s)))
    assert shifted_groups(r, m, s).unique().numel() == (r // m + 1) ** 2  # partial windows at the borders


def test_unshifted_windows_and_received_attention():
    assert torch.equal(_same_group(window_ids(8, 4)), _same_group(_naive_shifted_windows(8, 4, 0)))
    weights = torch.zeros(4, 2, 16, 16)
    weights[:, :, :, 5] = 1.0  # every query of every window attends to its window's token 5 only
    got = received_attention(weights, 8, 4, 0)  # (8, 8)
    expected = torch.zeros(8, 8)
    for wr in range(2):
        for wc in range(2):
            expected[wr * 4 + 1, wc * 4 + 1] = 1.0  # token 5 of a 4x4 window: row 1, column 1
    assert torch.equal(got, expected)


def test_the_pictures_are_written(tmp_path, capsys):
    fig = plot_windows(8, 4, 2, image=torch.rand(1, 16, 16), weights=torch.rand(4, 2, 16, 16), block_shift=2)
    assert len(fig.axes) >= 5
    out = tmp_path / "sizes.png"
    assert main(["plot", "windows", "--image-size", "32", "--patch-size", "2", "--window", "4", "-o", str(out)]) == 0
    assert out.read_bytes().startswith(PNG_SIGNATURE)

    torch.manual_seed(0)
    run = tmp_path / "run"
    SwinClassifier(SwinConfig.digits()).save_pretrained(run / "model")  # an untrained Swin run's model folder
    out = tmp_path / "run.svg"
    assert main(["plot", "windows", str(run), "--stage", "1", "--block", "2", "--image", "3", "-o", str(out)]) == 0
    assert "SW-MSA" in out.read_text()


@pytest.mark.parametrize("argv, words", [
    (["--stage", "3"], "--stage must be in [1, 2]"),
    (["--block", "9"], "--block must be in [1, 2]"),
])
def test_bad_choices_are_one_line_errors(tmp_path, capsys, argv, words):
    SwinClassifier(SwinConfig.digits()).save_pretrained(tmp_path / "run" / "model")
    code = main(["plot", "windows", str(tmp_path / "run"), *argv, "-o", str(tmp_path / "x.png")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and words in err and "\n" not in err
