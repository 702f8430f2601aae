"""Pictures draw the data they claim to: attention weights, Eq. 3, the §3.5 sinusoids, masks.py's masks,
metrics.jsonl's keys, and a beam-search trace that leaves the search unchanged."""

import html
import json
import math

import pytest
import torch

pytest.importorskip("matplotlib")

from tformer import TformerError, Transformer, TransformerConfig, Translator  # noqa: E402
from tformer.data.batching import collate  # noqa: E402
from tformer.data.synthetic import make_number_task  # noqa: E402
from tformer.data.vocabularies import Vocabularies  # noqa: E402
from tformer.generation.beam import beam_search, beam_search_nbest  # noqa: E402
from tformer.nn.masks import causal_mask, padding_mask  # noqa: E402
from tformer.nn.positional import sinusoidal_table  # noqa: E402
from tformer.viz import (
    batch_masks,
    beam_tree,
    logged_learning_rates,
    plot_attention,
    plot_beam_tree,
    plot_curves,
    plot_masks,
    plot_positional,
    plot_schedule,
    read_metrics,
    save_figure,
    sentence_batch,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def translator():
    """A seeded, untrained tiny model with a real tokenizer: enough to draw every picture.

    Its logits are spread and EOS is favoured, so that beam search sees hypotheses end with EOS, others
    cut at the length limit, and sentences stop before their limit."""
    pairs = make_number_task(300, 0, 0, max_number=999, seed=5)["train"]
    vocabs = Vocabularies.train([s for s, _ in pairs], [t for _, t in pairs], 60)
    torch.manual_seed(0)
    cfg = TransformerConfig.tiny(vocab_size=vocabs.src.vocab_size, max_len=64, output_bias=True)
    model = Transformer(cfg).eval()
    with torch.no_grad():
        model.output_projection.weight.mul_(1.5)
        model.output_projection.bias.zero_()
        model.output_projection.bias[cfg.eos_id] = 3.0
    return Translator(model, vocabs)


@pytest.fixture(scope="module")
def att(translator):
    return translator.attention("three hundred twenty-one", target="dreihunderteinundzwanzig")


def _tick_labels(axis):
    return [t.get_text() for t in axis.get_ticklabels()]


# ---- saving -----------------------------------------------------------------------------------------------


def test_png_is_a_valid_image_and_svg_keeps_the_tokens_as_text(tmp_path, att):
    fig = plot_attention(att, "cross", head=1)
    png = save_figure(fig, tmp_path / "cross.png")
    data = png.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 300 and height > 300
    svg = save_figure(fig, tmp_path / "cross.svg").read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for token in {*att.source_tokens, *att.target_output_tokens}:
        assert html.escape(token, quote=False) in svg, token
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cross.png", "cross.svg"]  # no temporary files left


@pytest.mark.parametrize("name,message", [("cross.gif", "use a .png, .svg or .pdf"), ("no/such/cross.png", "folder")])
def test_bad_output_names_are_one_line_errors(tmp_path, att, name, message):
    with pytest.raises(TformerError, match=message):
        save_figure(plot_attention(att, "cross", head="mean"), tmp_path / name)


# ---- attention --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,field,rows,cols", [
    ("encoder", "encoder", "source_tokens", "source_tokens"),
    ("decoder_self", "decoder_self", "target_input_tokens", "target_input_tokens"),
    ("cross", "decoder_cross", "target_output_tokens", "source_tokens"),
])
def test_attention_heatmap_is_the_weights_with_tokens_on_the_axes(att, kind, field, rows, cols):
    for layer in (1, 2):
        for head in (1, 4):
            fig = plot_attention(att, kind, layer=layer, head=head)
            (ax,) = [a for a in fig.axes if a.images]
            torch.testing.assert_close(torch.tensor(ax.images[0].get_array()),
                                       getattr(att, field)[layer - 1][head - 1].double())
            assert _tick_labels(ax.xaxis) == getattr(att, cols)
            assert _tick_labels(ax.yaxis) == getattr(att, rows)
            assert f"layer {layer} of 2: head {head} of 4" in fig.get_suptitle()


def test_attention_grid_shows_every_head_and_mean_averages_them(att):
    fig = plot_attention(att, "cross", head="grid")  # layer None = the last
    panels = [a for a in fig.axes if a.images]
    assert [a.get_title() for a in panels] == ["head 1", "head 2", "head 3", "head 4"]
    for h, ax in enumerate(panels):
        torch.testing.assert_close(torch.tensor(ax.images[0].get_array()), att.decoder_cross[-1][h].double())
    assert {a.images[0].get_clim() for a in panels} == {panels[0].images[0].get_clim()}  # one colour scale
    assert any(a.get_label() == "<colorbar>" for a in fig.axes)
    (ax,) = [a for a in plot_attention(att, "encoder", layer=1, head="mean").axes if a.images]
    torch.testing.assert_close(torch.tensor(ax.images[0].get_array()), att.encoder[0].mean(0).double())


def test_decoder_self_attention_picture_shows_no_future(att):
    (ax,) = [a for a in plot_attention(att, "decoder_self", head=2).axes if a.images]
    w = torch.tensor(ax.images[0].get_array())
    assert torch.all(w.triu(diagonal=1) == 0) and torch.allclose(w.sum(-1), torch.ones(w.shape[0], dtype=w.dtype))


@pytest.mark.parametrize("kw,message", [
    ({"kind": "self"}, "unknown attention kind"),
    ({"layer": 3}, "layer 3 does not exist: the decoder has layers 1 to 2"),
    ({"layer": 0}, "layer 0 does not exist"),
    ({"head": 5}, "head 5 does not exist: use 1 to 4"),
    ({"head": 0}, "head 0 does not exist"),
    ({"head": "all"}, "head 'all' does not exist"),
])
def test_unknown_kind_layer_or_head_is_a_one_line_error(att, kw, message):
    with pytest.raises(TformerError, match=message):
        plot_attention(att, **{"kind": "cross", **kw})


# ---- positional encoding ----------------------------------------------------------------------------------


def test_positional_picture_is_the_sinusoid_formula_and_its_dot_products():
    length, d_model = 50, 16
    fig = plot_positional(sinusoidal_table(length, d_model))
    pe_ax, sim_ax = [a for a in fig.axes if a.images]
    pe = torch.tensor(pe_ax.images[0].get_array())
    formula = torch.tensor([[math.sin(p / 10000 ** (i / d_model)) if i % 2 == 0 else
                             math.cos(p / 10000 ** ((i - 1) / d_model)) for i in range(d_model)]
                            for p in range(length)], dtype=torch.float64)
    torch.testing.assert_close(pe, formula, atol=1e-6, rtol=0)
    sim = torch.tensor(sim_ax.images[0].get_array())
    torch.testing.assert_close(sim, formula @ formula.T, atol=1e-4, rtol=0)
    assert torch.allclose(sim.diagonal(), torch.full((length,), d_model / 2, dtype=torch.float64))  # sin²+cos²
    assert pe_ax.get_xlabel() == "dimension (even: sin, odd: cos)" and "§3.5" in fig.get_suptitle()
    halves = plot_positional(sinusoidal_table(length, d_model, layout="halves"))
    assert [a for a in halves.axes if a.images][0].get_xlabel() == "dimension (first half: sin, second half: cos)"


# ---- masks ------------------------------------------------------------------------------------------------


def test_masks_are_those_of_masks_py_and_the_picture_draws_them(translator):
    texts, targets = ["three hundred twenty-one", "five"], ["dreihunderteinundzwanzig", "fünf"]
    src, tgt_in, src_tokens, tgt_tokens = sentence_batch(translator, texts, targets)
    v = translator.vocabs
    batch = collate([(v.src.encode(s), v.tgt.encode(t)) for s, t in zip(texts, targets, strict=True)])
    assert torch.equal(src, batch.src) and torch.equal(tgt_in, batch.tgt_in)  # padded as training pads
    assert src_tokens[1][-1] == "<pad>" and tgt_tokens[0][0] == "<s>"
    m = batch_masks(src, tgt_in, pad_id=0)
    b, s, t = src.shape[0], src.shape[1], tgt_in.shape[1]
    assert torch.equal(m.padding, padding_mask(src, 0)[:, 0, 0])
    assert torch.equal(m.decoder_self, causal_mask(t))
    for i in range(b):  # what attention_reference sees: the mask broadcast to (queries, keys)
        assert torch.equal(m.encoder[i], padding_mask(src, 0).expand(b, 1, s, s)[i, 0])
        assert torch.equal(m.cross[i], padding_mask(src, 0).expand(b, 1, t, s)[i, 0])
    fig = plot_masks(m, src_tokens, tgt_tokens)
    images = [a for a in fig.axes if a.images]
    assert len(images) == 1 + 3 * b
    drawn = [torch.tensor(a.images[0].get_array()).bool() for a in images]
    assert torch.equal(drawn[0], m.padding)
    for i in range(b):
        enc, dec, cross = drawn[1 + 3 * i : 4 + 3 * i]
        assert torch.equal(enc, m.encoder[i]) and torch.equal(dec, m.decoder_self) and torch.equal(cross, m.cross[i])
        enc_ax, dec_ax, cross_ax = images[1 + 3 * i : 4 + 3 * i]
        assert _tick_labels(enc_ax.xaxis) == src_tokens[i] and _tick_labels(dec_ax.yaxis) == tgt_tokens[i]
        assert _tick_labels(cross_ax.xaxis) == src_tokens[i] and _tick_labels(cross_ax.yaxis) == tgt_tokens[i]
    assert [t.get_text() for t in images[0].texts][:s] == src_tokens[0]  # the tokens written in the cells


def test_masks_reject_empty_sentences_and_unpaired_targets(translator):
    with pytest.raises(TformerError, match="non-empty"):
        sentence_batch(translator, ["one", " "])
    with pytest.raises(TformerError, match="got 1 targets for 2 sentences"):
        sentence_batch(translator, ["one", "two"], ["eins"])


# ---- schedule and curves ----------------------------------------------------------------------------------


def test_schedule_curve_is_eq3():
    d_model, warmup, scale = 512, 4000, 2.0
    fig = plot_schedule(d_model, warmup, scale, steps=20000)
    (ax,) = fig.axes
    x, y = ax.lines[0].get_data()
    assert x[0] == 1 and x[-1] == 20000
    for step in (1, 1000, 3999, 4000, 4001, 16000, 20000):
        closed_form = scale / math.sqrt(d_model) * min(1 / math.sqrt(step), step / warmup**1.5)
        assert y[step - 1] == pytest.approx(closed_form, rel=1e-12)
    assert int(x[max(range(len(y)), key=y.__getitem__)]) == warmup
    assert "peak 0.0014 at step 4,000" in ax.texts[0].get_text()  # 2 / sqrt(512 * 4000) = 0.0013975
    assert "Eq. 3" in fig.get_suptitle() and "warmup_steps = 4,000" in fig.get_suptitle()


def test_schedule_rejects_nonpositive_parameters():
    with pytest.raises(TformerError, match="must be >= 1"):
        plot_schedule(512, 0)


def _write_metrics(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_curves_draw_the_metrics_keys_and_a_resumed_step_once(tmp_path):
    records = [
        {"kind": "train", "step": 10, "loss": 4.0, "lr": 0.01, "tokens_per_s": 1000.0},
        {"kind": "train", "step": 20, "loss": 3.0, "lr": 0.02, "tokens_per_s": 1100.0},
        {"kind": "valid", "step": 20, "loss": 3.5, "bleu": 5.0},
        {"kind": "train", "step": 20, "loss": 2.9, "lr": 0.02, "tokens_per_s": 1200.0},  # resumed: wins
        {"kind": "train", "step": 30, "loss": 2.0, "lr": 0.015, "tokens_per_s": 1300.0},
        {"kind": "valid", "step": 30, "loss": 2.5, "bleu": 9.0},
    ]
    read = read_metrics(_write_metrics(tmp_path / "metrics.jsonl", records))
    assert read == records
    fig = plot_curves(read, "run")
    loss_ax, bleu_ax, speed_ax, lr_ax = fig.axes
    lines = {(ax.get_ylabel(), line.get_label()): [list(map(float, d)) for d in line.get_data()]
             for ax in fig.axes for line in ax.lines}
    assert lines[(loss_ax.get_ylabel(), "train")] == [[10, 20, 30], [4.0, 2.9, 2.0]]
    assert lines[(loss_ax.get_ylabel(), "validation")] == [[20, 30], [3.5, 2.5]]
    assert lines[(bleu_ax.get_ylabel(), "validation BLEU")] == [[20, 30], [5.0, 9.0]]
    assert lines[(speed_ax.get_ylabel(), "train")] == [[10, 20, 30], [1000.0, 1200.0, 1300.0]]
    assert lines[(lr_ax.get_ylabel(), "train")] == [[11, 21, 31], [0.01, 0.02, 0.015]]  # the rate of the next update
    assert logged_learning_rates(read) == [(11, 0.01), (21, 0.02), (31, 0.015)]
    no_valid = plot_curves([r for r in records if r["kind"] == "train"])
    assert "not in metrics.jsonl" in [t.get_text() for t in no_valid.axes[1].texts]


@pytest.mark.parametrize("content,message", [
    (None, "no training metrics"),
    ("", "holds no records"),
    ('{"kind": "train", "step": 1}\nnot json\n', "line 2: not valid JSON"),
    ('[1, 2]\n', "line 1: not a metrics record"),
])
def test_unreadable_metrics_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "metrics.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TformerError, match=message):
        read_metrics(path)


# ---- beam search trace and tree ---------------------------------------------------------------------------


def _replay(trace, sentence, k):
    """Every hypothesis a trace says was completed for one sentence: {tokens: logprob}, and its last live beams."""
    live, done, last = [()] * k, {}, {}
    for record in trace:
        if sentence not in record.sentences:
            break
        r = record.sentences.index(sentence)
        assert int(record.kept[r].sum()) == k  # exactly K live hypotheses after every step
        assert not record.finished[r, k:].any() and not (record.finished[r] & record.kept[r]).any()
        kept = []
        for c in range(record.token.shape[1]):
            tokens = live[int(record.parent[r, c])] + (int(record.token[r, c]),)
            if record.finished[r, c]:
                done[tokens] = float(record.logprob[r, c])
            if record.kept[r, c]:
                kept.append((tokens, float(record.logprob[r, c])))
        assert [lp for _, lp in kept] == sorted((lp for _, lp in kept), reverse=True)
        live = [tokens for tokens, _ in kept]
        last = dict(kept)
    return done, last


@pytest.mark.parametrize("k,max_len", [(2, 12), (4, 6), (4, 16)])
def test_traced_beam_search_is_the_same_search_and_its_trace_is_consistent(translator, k, max_len):
    model = translator.model
    torch.manual_seed(k + max_len)
    src = torch.randint(4, model.cfg.vocab_size, (3, 7))
    src[1, 4:] = model.cfg.pad_id
    src[2, 2:] = model.cfg.pad_id
    limits = torch.tensor([max_len, max_len - 3, max_len])
    plain = beam_search_nbest(model, src, beam_size=k, max_len=limits, nbest=k)
    trace = []
    traced = beam_search_nbest(model, src, beam_size=k, max_len=limits, nbest=k, trace=trace)
    assert traced == plain
    assert torch.equal(beam_search(model, src, beam_size=k, max_len=limits),
                       torch.nn.utils.rnn.pad_sequence([torch.tensor(h[0].tokens) for h in traced], batch_first=True,
                                                       padding_value=model.cfg.pad_id))
    assert [r.step for r in trace] == list(range(len(trace)))
    assert any(h.tokens[-1] == model.cfg.eos_id for hyps in traced for h in hyps)
    for i, hyps in enumerate(traced):
        done, last_live = _replay(trace, i, k)
        for h in hyps:  # every returned hypothesis, the best included, is in the trace with its log-probability
            found = done.get(h.tokens, last_live.get(h.tokens))  # completed with EOS, or cut at the limit
            assert found == pytest.approx(h.logprob), (i, h)


def test_beam_tree_holds_the_translation_that_translate_returns(translator):
    for text, k in [("three hundred twenty-one", 4), ("seven", 2)]:
        tree = beam_tree(translator, text, beam_size=k, max_len=10)
        assert tree.translation == translator.translate([text], beam_size=k, max_len=10)[0]
        best = [tree.nodes[i] for i in tree.best]
        assert best[0].status == "root" and best[-1].status in ("finished", "kept")
        assert all(n.status == "kept" for n in best[1:-1])
        assert [tree.nodes[i].parent for i in tree.best[1:]] == tree.best[:-1]  # a path from the root
        per_step = {}
        for n in tree.nodes[1:]:
            per_step.setdefault(n.step, []).append(n)
        assert all(sum(n.status == "kept" for n in nodes) == k for nodes in per_step.values())
        finished = [n for n in tree.nodes if n.status == "finished"]
        assert all(n.token == "</s>" and n.score == pytest.approx(n.logprob / ((5 + n.step + 1) / 6) ** 0.6)
                   for n in finished)
        fig = plot_beam_tree(tree)
        (ax,) = fig.axes
        assert len(ax.texts) == len(tree.nodes) and "beam size" in fig.get_suptitle()
        assert [t.get_text() for t in ax.texts][0] == "<s>"


def test_beam_tree_rejects_beam_one_and_empty_text(translator):
    with pytest.raises(TformerError, match="beam size of 2 or more"):
        beam_tree(translator, "one", beam_size=1)
    with pytest.raises(TformerError, match="non-empty"):
        beam_tree(translator, "  ")
