"""The guided attention loss (Tachibana et al., 2017): the formula, padding, its extremes, where its gradient goes,
the side path that gives the weights, its settings, and a training run through run_training that lowers it."""

import json
import math

import pytest
import torch

from tformer import Transformer, TransformerConfig
from tformer.config import ConfigError
from tformer.nn.attention import AttentionProbe
from tformer.tasks import parse_run_config, run_training
from tformer.training.config import GuidedAttentionConfig
from tformer.training.guided_attention import TERM, guide_matrix, guided_attention_loss, with_guided_attention
from tformer.training.label_smoothing import LossOutput


def formula(a, t_len, n_len, g):
    """L_att of one sentence, written out cell by cell: a (H, >=T, >=N) -> mean of A_nt W_nt over its real cells."""
    total = 0.0
    for h in range(a.shape[0]):
        for t in range(t_len):
            for n in range(n_len):
                w = 1.0 - math.exp(-((n / n_len - t / t_len) ** 2) / (2 * g * g))
                total += float(a[h, t, n]) * w
    return total / (a.shape[0] * t_len * n_len)


def softmax_rows(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).softmax(-1)


def test_the_loss_is_the_formula_on_hand_made_matrices():
    a = softmax_rows((1, 2, 4, 6), 0)  # (B, H, T, N)
    got = guided_attention_loss(a, torch.ones(1, 6, dtype=torch.bool), torch.ones(1, 4, dtype=torch.bool), 0.3)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(formula(a[0], 4, 6, 0.3), abs=1e-12)
    w = guide_matrix(torch.tensor([4.0], dtype=torch.float64), torch.tensor([6.0], dtype=torch.float64), 4, 6, 0.3,
                     torch.float64)[0]
    assert float(w[2, 3]) == pytest.approx(1 - math.exp(-((3 / 6 - 2 / 4) ** 2) / (2 * 0.09)))


def test_padding_is_ignored_on_both_sides():
    a = softmax_rows((2, 3, 5, 7), 1)
    src_mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    tgt_mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    got = guided_attention_loss(a, src_mask, tgt_mask, 0.2)
    cells = (3 * 5 * 7, 3 * 3 * 4)
    expected = (formula(a[0], 5, 7, 0.2) * cells[0] + formula(a[1], 3, 4, 0.2) * cells[1]) / sum(cells)
    assert float(got) == pytest.approx(expected, abs=1e-12)
    garbage = a.clone()
    garbage[1, :, 3:] = 5.0  # padded target rows
    garbage[1, :, :, 4:] = 7.0  # padded source columns
    assert torch.equal(guided_attention_loss(garbage, src_mask, tgt_mask, 0.2), got)
    alone = guided_attention_loss(a[1:, :, :3, :4], src_mask[1:, :4], tgt_mask[1:, :3], 0.2)
    assert float(alone) == pytest.approx(formula(a[1], 3, 4, 0.2), abs=1e-12)


def test_diagonal_costs_nothing_and_anti_diagonal_the_most():
    n = 8
    ones = torch.ones(1, n, dtype=torch.bool)

    def cost(a):
        return float(guided_attention_loss(a[None, None], ones, ones, 0.2))

    eye = torch.eye(n, dtype=torch.float64)
    anti = eye.flip(-1)
    uniform = torch.full((n, n), 1 / n, dtype=torch.float64)
    shifted = torch.roll(eye, 1, dims=1)
    assert cost(eye) == pytest.approx(0.0, abs=1e-15)
    assert cost(eye) < cost(shifted) < cost(uniform) < cost(anti)
    for seed in range(10):
        assert cost(softmax_rows((n, n), seed)) < cost(anti)
    # a mean over the N x T cells of rows that sum to 1: at most 1 / N, which the anti-diagonal nearly reaches
    assert 0.7 / n < cost(anti) < 1 / n


def tiny_model(layers=3, heads=4):
    torch.manual_seed(0)
    cfg = TransformerConfig.tiny(vocab_size=30, num_decoder_layers=layers, num_heads=heads, dropout=0.0)
    return Transformer(cfg).double()


def batch(model):
    pad = model.cfg.pad_id
    src = torch.randint(4, 30, (2, 6), generator=torch.Generator().manual_seed(2))
    tgt = torch.randint(4, 30, (2, 5), generator=torch.Generator().manual_seed(3))
    src[1, 4:] = pad
    tgt[1, 3:] = pad
    return src, tgt


def test_the_side_path_gives_the_reference_weights_of_the_asked_heads():
    model = tiny_model().eval()
    src, tgt = batch(model)
    _, weights = model.decoder_states(src, tgt, cross_attention=AttentionProbe(layers=(0, -1), heads=(1, 3)))
    _, maps = model(src, tgt, need_weights=True)
    assert len(weights) == 2
    torch.testing.assert_close(weights[0], maps.decoder_cross[0][:, [1, 3]])
    torch.testing.assert_close(weights[1], maps.decoder_cross[2][:, [1, 3]])
    hidden = model.decoder_states(src, tgt)
    torch.testing.assert_close(model.decoder_states(src, tgt, cross_attention=AttentionProbe())[0], hidden)


def test_gradients_reach_only_the_chosen_layer_and_heads():
    model = tiny_model(layers=3, heads=4).train()
    src, tgt = batch(model)
    _, weights = model.decoder_states(src, tgt, cross_attention=AttentionProbe(layers=(1,), heads=(2,)))
    pad = model.cfg.pad_id
    guided_attention_loss(weights, src != pad, tgt != pad, 0.2).backward()
    d_head = model.cfg.d_model // 4

    def grad(p):
        return torch.zeros_like(p) if p.grad is None else p.grad

    chosen = model.decoder.layers[1].cross_attn
    for proj in (chosen.q_proj, chosen.k_proj):
        g = grad(proj.weight).view(4, d_head, -1)  # rows by head
        assert g[2].abs().sum() > 0
        assert torch.equal(g[[0, 1, 3]], torch.zeros_like(g[[0, 1, 3]]))
    untouched = {"v_proj": chosen.v_proj, "out_proj": chosen.out_proj, "ffn": model.decoder.layers[1].ffn,
                 "layer 2": model.decoder.layers[2]}  # (the output layer is tied to the embedding, which feeds it)
    for name, module in untouched.items():
        for p in module.parameters():
            assert torch.equal(grad(p), torch.zeros_like(p)), name
    assert grad(model.decoder.layers[0].self_attn.q_proj.weight).abs().sum() > 0  # (the layers below feed it)


def test_with_guided_attention_adds_the_weighted_term_per_token_and_records_it():
    a = softmax_rows((1, 1, 3, 3), 4)
    mask = torch.ones(1, 3, dtype=torch.bool)
    base = LossOutput(torch.tensor(6.0, dtype=torch.float64), torch.tensor(5.0), 3)
    out = with_guided_attention(base, [a], mask, mask, GuidedAttentionConfig(weight=0.5, sigma=0.2))
    g = float(guided_attention_loss(a, mask, mask, 0.2))
    assert float(out.loss) == pytest.approx(6.0 + 0.5 * 3 * g)
    assert float(out.terms[TERM]) == pytest.approx(3 * g) and out.num_tokens == 3 and float(out.nll) == 5.0


@pytest.mark.parametrize(("train", "message"), [
    ({"guided_attention": {"weight": 1.0, "sigma": 0.0}}, "sigma must be positive"),
    ({"guided_attention": {"weight": -1.0}}, "weight must be >= 0"),
    ({"guided_attention": {"weight": 1.0, "layers": []}}, "list of distinct indices"),
    ({"guided_attention": {"weight": 1.0, "layers": [2]}}, "layers: 2 is out of range for a decoder with 2 layers"),
    ({"guided_attention": {"weight": 1.0, "heads": [-5]}}, "heads: -5 is out of range for a decoder with 4 heads"),
    ({"guided_attention": {"weight": 1.0, "heads": [-1, 3]}}, "heads: -1 and 3 name the same one of 4 heads"),
    ({"guided_attention": {"weight": 1.0, "layers": [0, 1, -2]}}, "layers: 0 and -2 name the same one of 2 layers"),
    ({"guided_attention": {"weight": 1.0, "sigmaa": 1}}, "unknown key(s) for GuidedAttentionConfig: sigmaa"),
])
def test_bad_settings_are_one_line_errors(train, message):
    d = {"model": {"preset": "tiny"}, "train": {"max_steps": 1, **train}}
    with pytest.raises(ConfigError) as e:
        parse_run_config(d)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_task_without_encoder_decoder_attention_refuses_it():
    with pytest.raises(ConfigError, match="task lm does not train with it"):
        parse_run_config({"task": "lm", "model": {"preset": "tiny"},
                          "train": {"max_steps": 1, "guided_attention": {"weight": 1.0}}})
    cfg = parse_run_config({"model": {"preset": "tiny"}, "train": {"max_steps": 1,
                                                                   "guided_attention": {"layers": [-1], "heads": [0]}}})
    assert cfg.train.guided_attention == GuidedAttentionConfig(layers=(-1,), heads=(0,))


def test_training_with_the_loss_lowers_it_and_logs_it(tmp_path):
    rng = torch.Generator().manual_seed(0)
    letters = "abcdefghij"
    lines = [" ".join(letters[int(i)] for i in torch.randint(0, 10, (int(n),), generator=rng))
             for n in torch.randint(3, 9, (300,), generator=rng)]
    for side in ("src", "tgt"):  # a copy task: the output follows the input in order
        (tmp_path / f"train.{side}").write_text("\n".join(lines) + "\n")
    cfg = parse_run_config({
        "run_dir": str(tmp_path / "run"), "seed": 1,
        "data": {"data_dir": str(tmp_path), "train_src": "train.src", "train_tgt": "train.tgt", "vocab_size": 30},
        "model": {"preset": "tiny", "dropout": 0.0},
        "train": {"max_steps": 48, "max_tokens": 400, "warmup_steps": 10, "schedule": "cosine", "lr": 0.01,
                  "log_every": 6, "device": "cpu",  # (6 steps an epoch: each record sums the same batches)
                  "guided_attention": {"weight": 10.0, "sigma": 0.2, "layers": [-1]}},
    })
    summary = run_training(cfg, show_progress=False)
    assert summary["steps"] == 48
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    guided = [r[TERM] for r in records if r["kind"] == "train"]
    assert len(guided) == 8 and all(0 <= g < 1 for g in guided)
    assert guided[-1] < 0.6 * guided[0], guided


@pytest.mark.parametrize("rows, columns, sigma", [(7, 11, 0.2), (12, 5, 0.1), (30, 90, 0.3)])
def test_the_pictures_band_is_where_the_loss_weight_is_one_half(rows, columns, sigma):
    pytest.importorskip("matplotlib")
    from tformer.viz.figure import guided_band

    band = guided_band(rows, columns, sigma, points=rows)  # t = -1/2 .. T - 1/2
    for edge in ("low", "high"):  # the closed form, W = 1/2 on the edges
        w = 1 - torch.exp(-torch.tensor((band[edge] / columns - band["t"] / rows) ** 2) / (2 * sigma**2))
        torch.testing.assert_close(w, torch.full_like(w, 0.5), rtol=0, atol=1e-12)
    # the loss's own matrix: a cell costs less than 1/2 exactly where it lies between the edges of its row
    grid = guided_band(rows, columns, sigma, points=2 * rows + 1)  # t = -1/2, 0, 1/2, ..., T - 1/2
    t = grid["t"][1::2]  # the rows' centres 0 .. T - 1
    w = guide_matrix(torch.tensor([rows]), torch.tensor([columns]), rows, columns, sigma, torch.float64)[0]
    n = torch.arange(columns, dtype=torch.float64)
    low, high = torch.tensor(grid["low"][1::2])[:, None], torch.tensor(grid["high"][1::2])[:, None]  # (T, 1)
    inside = (n[None] > low) & (n[None] < high)
    assert torch.equal(w < 0.5, inside) and len(t) == rows
