"""tformer.viz.audio: the filterbank and the alignment pictures put time in seconds on one axis, rows where they belong,
and the head chosen is the one drawn."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("matplotlib")

from tformer.errors import TformerError  # noqa: E402
from tformer.viz.audio import SPACE, plot_alignment, plot_filterbank, select_heads  # noqa: E402
from tformer.viz.figure import save_figure  # noqa: E402


def test_the_filterbank_spans_the_utterance_in_seconds_low_channels_at_the_bottom():
    features = torch.arange(50 * 8, dtype=torch.float64).reshape(50, 8)  # (T, M): channel m grows with m
    fig = plot_filterbank(features, 0.01, "an utterance")
    ax = fig.axes[0]
    assert ax.get_xlim() == pytest.approx((0.0, 0.5)) and ax.get_ylim() == pytest.approx((0.0, 8.0))
    image = ax.images[0]
    assert image.origin == "lower" and torch.equal(torch.as_tensor(image.get_array().data), features.T)
    assert ax.get_xlabel() == "time (s)"
    with pytest.raises(TformerError, match="expected features"):
        plot_filterbank(torch.zeros(3), 0.01, "x")


def test_the_alignment_shares_the_time_axis_with_one_row_per_token(tmp_path):
    features, weights = torch.rand(40, 16), torch.softmax(torch.randn(4, 10), dim=-1)  # 40 x 10 ms, 10 x 40 ms
    rows = ["a", " ", "b", "<eos>"]
    fig = plot_alignment(features, 0.01, weights, 0.04, rows, "title", details="transcript: 'a b'")
    top, bottom = fig.axes[:2]  # (then the colour bars)
    assert top.get_xlim() == bottom.get_xlim() == pytest.approx((0.0, 0.4))
    assert bottom.images[0].get_extent() == pytest.approx([0.0, 0.4, 3.5, -0.5])  # row 0 at the top
    assert [t.get_text() for t in bottom.get_yticklabels()] == ["a", SPACE, "b", "<eos>"]
    path = save_figure(fig, tmp_path / "alignment.svg")
    assert "transcript: &#39;a b&#39;" in path.read_text() or "transcript: 'a b'" in path.read_text()
    with pytest.raises(TformerError, match=r"expected weights \(4, T'\)"):
        plot_alignment(features, 0.01, weights[:3], 0.04, rows, "title")


def test_select_heads_takes_the_layer_and_head_asked_for():
    layers = [torch.rand(2, 3, 5, dtype=torch.float64) for _ in range(3)]  # 3 layers of (H, R, T')
    w, where = select_heads(layers)
    assert torch.equal(w, layers[-1].mean(dim=0)) and where == "layer 3 of 3, mean of 2 heads"
    w, where = select_heads(layers, layer=1, head=2)
    assert torch.equal(w, layers[0][1]) and where == "layer 1 of 3, head 2 of 2"
    for layer, head, words in ((4, "mean", "layer 4 does not exist"), (0, "mean", "layer 0"),
                               (1, 3, "head 3 does not exist"), (1, True, "head True")):
        with pytest.raises(TformerError, match=words):
            select_heads(layers, layer, head)
