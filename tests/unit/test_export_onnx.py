"""ONNX export (:mod:`tformer.export.onnx`): each graph against the PyTorch model, greedy translations against
:meth:`Translator.translate`, and the ``tformer export`` command.

Exporting is the slow part (torch.export, then the ONNX translation: several seconds), so the default suite
exports once: the paper's configuration through the CLI (module fixture ``exported``). The other supported
configurations (pre-norm, T5's relative positions and RMSNorm, the copy mechanism) are exported by the slow tests
(``pytest -m slow``).
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch

from tformer.cli.main import main
from tformer.config import AttentionConfig
from tformer.data.synthetic import make_number_task
from tformer.data.vocabularies import Vocabularies
from tformer.errors import TformerError
from tformer.export.onnx import DECODER_INIT, DECODER_STEP, ENCODER, META_NAME, Runtime, export
from tformer.models.transformer.config import TransformerConfig
from tformer.models.transformer.model import Transformer
from tformer.translator import Translator


@pytest.fixture(scope="module")
def task() -> tuple[Vocabularies, list[str]]:
    """A real tokenizer (number words, 60 ids) and sentences of 4..15 ids, an empty line among them."""
    pairs = make_number_task(300, 0, 0, max_number=999, seed=5)["train"]
    vocabs = Vocabularies.train([s for s, _ in pairs], [t for _, t in pairs], 60)
    lines = [s for s, _ in pairs[:9]] + ["", "one", "nine hundred ninety-nine"]
    return vocabs, lines


def _translator(vocabs: Vocabularies, **kw) -> Translator:
    """An untrained tiny model (max_len 64). Its EOS embedding, tied to the output layer, is scaled up so that
    greedy search ends 4 of the 11 test sentences with EOS; the others run to their length limit (their length
    + 50, or max_len)."""
    torch.manual_seed(0)
    cfg = TransformerConfig.tiny(vocab_size=vocabs.src.vocab_size, max_len=64, **kw)
    model = Transformer(cfg).eval()
    with torch.no_grad():
        model.decoder.embed.tokens.weight[cfg.eos_id] *= 10.0
    return Translator(model, vocabs)


def _src(rows: list[list[int]], pad_id: int = 0) -> torch.Tensor:
    """Right-padded (B, S) int64 ids."""
    src = torch.full((len(rows), max(map(len, rows))), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        src[i, : len(r)] = torch.tensor(r)
    return src


@pytest.fixture(scope="module")
def exported(tmp_path_factory, task):
    """The paper's configuration (post-norm, sinusoidal positions, tied embeddings), untrained, saved as a run
    and exported with ``tformer export --check``: (translator, folders, exit code, printed JSON)."""
    vocabs, lines = task
    translator = _translator(vocabs)
    root = tmp_path_factory.mktemp("onnx")
    translator.save_pretrained(root / "run")
    (root / "src.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["export", str(root / "run"), "--format", "onnx", "-o", str(root / "out"),
                     "--check", str(root / "src.txt")])
    return translator, root, code, printed.getvalue()


# ---- the command ------------------------------------------------------------------------------------------


def test_cli_exports_and_every_greedy_translation_agrees(exported, task):
    _, root, code, printed = exported
    assert code == 0
    result = json.loads(printed)
    assert result["format"] == "onnx" and result["opset"] == 18
    assert result["sentences"] == len(task[1]) and result["agreement"] == 1.0
    assert set(result["files"]) == {ENCODER, DECODER_INIT, DECODER_STEP, META_NAME, "tokenizer.json"}
    meta = json.loads((root / "out" / META_NAME).read_text())
    step = meta["graphs"][DECODER_STEP]
    assert [i["name"] for i in step["inputs"][:4]] == ["tokens", "src", "past_key_0", "past_value_0"]
    assert step["inputs"][2]["shape"][2] == "past_len"  # the past's time axis is dynamic
    assert meta["config"]["norm"] == "post"


def test_cli_refuses_an_existing_folder_without_force(exported, capsys):
    _, root, _, _ = exported
    code = main(["export", str(root / "run"), "--format", "onnx", "-o", str(root / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "exists" in err and err.count("\n") == 1


def test_cli_refuses_an_unsupported_configuration_in_one_line(tmp_path, task, capsys):
    translator = _translator(task[0], attention=AttentionConfig(kind="chunked", chunk_size=4))
    translator.save_pretrained(tmp_path / "run")
    code = main(["export", str(tmp_path / "run"), "--format", "onnx", "-o", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "full attention" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no half-written folder left behind


# ---- the graphs against the model --------------------------------------------------------------------------


def test_encoder_graph_equals_encode_for_other_batch_sizes_and_lengths(exported):
    translator, root, _, _ = exported
    model, runtime = translator.model, Runtime(root / "out")
    # Neither shape is the one exported with (2, 5); padding in both.
    for rows in ([[5, 9, 11, 2], [7, 2], [12, 13, 14, 15, 16, 17, 18, 2]], [[20, 2]] * 6 + [[21, 22, 23, 2]]):
        src = _src(rows)
        memory, _ = runtime.start(src.numpy())
        with torch.no_grad():
            expected = model.encode(src).numpy()
        assert memory.shape == expected.shape
        np.testing.assert_allclose(memory, expected, atol=1e-5, rtol=0)


def _check_step(translator: Translator, runtime: Runtime) -> None:
    """decoder_init equals start_decoding's cross keys/values; seven decoder steps from an empty past equal
    decode_step's logits, feeding back the argmax.

    With the copy mechanism the step returns log P, where P = p_gen P_vocab + (1 - p_gen) P_copy: with p_gen
    near 1, float32 holds 1 - p_gen only to about 6e-8, so one ulp of the sigmoid (ONNX Runtime's or torch's)
    moves log P of a copied token by up to ~0.2 where P is ~1e-7. P itself is compared there."""
    model, cfg = translator.model, translator.model.cfg
    src = _src([[5, 9, 11, cfg.eos_id], [7, cfg.eos_id], [12, 13, 14, 15, 16, 17, cfg.eos_id]], cfg.pad_id)
    with torch.no_grad():
        cache = model.start_decoding(model.encode(src), src)
    _, cross = runtime.start(src.numpy())
    for i, kv in enumerate(cache.cross_kv):
        np.testing.assert_allclose(cross[2 * i], kv.k.numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(cross[2 * i + 1], kv.v.numpy(), atol=1e-5, rtol=0)
    past = [np.zeros((3, cfg.num_heads, 0, cfg.d_head), np.float32)] * (2 * cfg.num_decoder_layers)
    tokens = torch.full((3, 1), cfg.bos_id)
    for t in range(7):
        with torch.no_grad():
            expected = model.decode_step(tokens, cache)[:, -1].numpy()  # (B, V)
        logits, past = runtime.step(tokens.numpy(), src.numpy(), past, cross)
        assert [p.shape[2] for p in past] == [t + 1] * len(past)
        if cfg.pointer_generator:  # log P: compared as P, since the copy term's 1 - p_gen is coarse in float32
            np.testing.assert_allclose(np.exp(logits), np.exp(expected), atol=1e-6, rtol=0)
        else:
            np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=1e-5)
        tokens = torch.from_numpy(expected.argmax(-1))[:, None]


def test_decoder_graphs_equal_start_decoding_and_decode_step(exported):
    translator, root, _, _ = exported
    _check_step(translator, Runtime(root / "out"))


# ---- the runtime against Translator.translate --------------------------------------------------------------


def test_runtime_translates_as_translator_greedily_in_several_batches(exported, task):
    """(The CLI's check above translates the same lines in one batch.)"""
    translator, root, _, _ = exported
    lines = task[1]
    expected = translator.translate(lines, beam_size=1, max_tokens=40)  # 5 batches of 2 or 3 sentences
    assert Runtime(root / "out").translate(lines, max_tokens=40) == expected
    assert expected[lines.index("")] == ""


def test_outputs_end_with_eos_or_at_each_sentences_length_limit(exported, task):
    """The agreement above covers both ways a sentence stops, and both length limits."""
    translator, root, _, _ = exported
    cfg = translator.model.cfg
    src = _src([r for r in translator._encode(task[1], print) if r is not None])
    out = Runtime(root / "out").generate(src.numpy())
    with torch.no_grad():
        assert np.array_equal(out, translator.model.generate(src, beam_size=1).numpy())
    ended = (out == cfg.eos_id).any(axis=1)
    assert ended.any() and not ended.all()
    limits = np.minimum((src != cfg.pad_id).sum(1).numpy() + 50, cfg.max_len)
    lengths = (out != cfg.pad_id).sum(1)
    assert (lengths[~ended] == limits[~ended]).all()
    assert {cfg.max_len} < set(lengths[~ended].tolist())  # capped by max_len, and by a source's own length


def test_runtime_decodes_greedily_only(exported):
    _, root, _, _ = exported
    with pytest.raises(TformerError, match="greedily"):
        Runtime(root / "out").translate(["one"], beam_size=4)


def test_runtime_names_a_folder_without_an_export(tmp_path):
    with pytest.raises(TformerError, match="no ONNX export"):
        Runtime(tmp_path)


# ---- the other supported configurations (slow: one export each) ----------------------------------------------

T5_LIKE = dict(positional="relative", norm="pre", norm_type="rms", bias=False, scale_attention=False,
               scale_output=True, final_dropout=True, scale_embedding=False)


@pytest.mark.slow
@pytest.mark.parametrize("options", [dict(norm="pre"), T5_LIKE, dict(pointer_generator=True),
                                     dict(share_embeddings=False, tie_output=False, positional="learned")],
                         ids=["pre-norm", "t5-like", "pointer-generator", "untied-learned"])
def test_other_configurations_export_and_agree(options, tmp_path, task):
    translator = _translator(task[0], **options)
    info = export(translator, tmp_path)
    assert set(info["files"]) >= {ENCODER, DECODER_INIT, DECODER_STEP, META_NAME}
    runtime = Runtime(tmp_path)
    _check_step(translator, runtime)
    lines = task[1]
    assert runtime.translate(lines) == translator.translate(lines, beam_size=1)
