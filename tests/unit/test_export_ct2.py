"""CTranslate2 export: the exported model gives tformer's log-probabilities and its greedy translations.

The oracle is the PyTorch model itself: CTranslate2's ``score_batch`` returns the log-probability of every
target token (EOS included) under teacher forcing, compared with ``log_softmax(model(src, BOS + tgt))``; a
wrongly mapped weight, norm, position table or special token shows there at once. Greedy translations of
untrained models, which run to the length limit or stop at a random EOS, must then be identical strings.
"""

import functools
import json

import pytest
import torch

ctranslate2 = pytest.importorskip("ctranslate2")

from tformer.cli.main import main  # noqa: E402
from tformer.data.synthetic import make_number_task  # noqa: E402
from tformer.data.vocabularies import Vocabularies  # noqa: E402
from tformer.errors import TformerError  # noqa: E402
from tformer.export import ctranslate2 as ct2_export  # noqa: E402
from tformer.models.transformer.config import TransformerConfig  # noqa: E402
from tformer.models.transformer.model import Transformer  # noqa: E402
from tformer.translator import Translator  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: two threads on a busy two-core machine make tiny-model decoding tens of times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@functools.cache
def _pairs() -> list[tuple[str, str]]:
    return make_number_task(300, 0, 0, max_number=999, seed=5)["train"]


@functools.cache
def _vocabs(shared: bool) -> Vocabularies:
    pairs = _pairs()
    return Vocabularies.train([s for s, _ in pairs], [t for _, t in pairs], 60, shared=shared)


# name -> (shared vocabulary, config options). Every case also perturbs all biases and norm weights.
CASES = {
    "post-norm, interleaved sinusoids (the paper)": (True, {}),
    "pre-norm, learned positions": (True, dict(norm="pre", positional="learned")),
    "separate vocabularies, untied output with bias": (
        False, dict(share_embeddings=False, tie_output=False, output_bias=True, activation="silu")),
    "T5-like options, halves layout, short max_len": (
        True, dict(norm="pre", norm_type="rms", bias=False, d_kv=6, scale_attention=False, scale_output=True,
                   scale_embedding=False, activation="gelu", layer_norm_eps=0.3, sinusoidal_layout="halves",
                   attention={"kind": "chunked", "chunk_size": 5}, max_len=24)),
    "a restricted output vocabulary (every other token scored, -inf elsewhere)": (True, dict(scored_every=2)),
}


def _translator(shared: bool, options: dict) -> Translator:
    """A seeded untrained tiny model: every 1-D parameter (biases, norm gains) perturbed, so that a misplaced one
    shows; with an output bias, EOS is favoured so that some translations end before their length limit."""
    vocabs = _vocabs(shared)
    options = dict(options)
    if not shared:
        options["tgt_vocab_size"] = vocabs.tgt.vocab_size
    every = options.pop("scored_every", None)
    scored = sorted({0, 2, 3} | set(range(4, vocabs.tgt.vocab_size, every))) if every else None  # pad, EOS, UNK
    if scored:
        options["output_vocab"] = len(scored)
    torch.manual_seed(0)
    cfg = TransformerConfig.tiny(vocab_size=vocabs.src.vocab_size, **{"max_len": 64, **options})
    model = Transformer(cfg).eval()
    if scored:
        model.set_output_ids(torch.tensor(scored))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.3)
        if cfg.output_bias:
            model.output_projection.bias[cfg.eos_id] += 2.5
    return Translator(model, vocabs)


@functools.cache
def _exported(case: str, tmp_root) -> tuple[Translator, ct2_export.Runtime]:
    translator = _translator(*CASES[case])
    out = tmp_root / f"ct2-{list(CASES).index(case)}"
    out.mkdir()
    info = ct2_export.export(translator, out)
    assert info["ctranslate2_version"] == ctranslate2.__version__ and info["size_mb"] > 0
    return translator, ct2_export.Runtime(out, intra_threads=1)


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory):
    return tmp_path_factory.mktemp("ct2")


def _lines() -> list[str]:
    """Ten sentences, an empty one, and one longer than the models take (cut to max_len - 1 with a warning)."""
    sources = [s for s, _ in _pairs()]
    return sources[:10] + ["", " ".join(sources[10:16])]


def _quiet(_message: str) -> None:
    pass


@pytest.mark.parametrize("case", list(CASES))
def test_per_token_log_probabilities_match_the_pytorch_model(case, tmp_root):
    translator, runtime = _exported(case, tmp_root)
    model, vocabs, cfg = translator.model, translator.vocabs, translator.model.cfg
    g = torch.Generator().manual_seed(1)
    src_len, tgt_len = (5, 9, 14), (7, 2, 12)  # a padded batch on the CTranslate2 side
    sources = [torch.randint(4, cfg.vocab_size, (n,), generator=g).tolist() + [cfg.eos_id] for n in src_len]
    targets = [torch.randint(4, cfg.target_vocab_size, (n,), generator=g).tolist() for n in tgt_len]
    results = runtime.translator.score_batch([[vocabs.src.id_to_token(i) for i in s] for s in sources],
                                             [[vocabs.tgt.id_to_token(i) for i in t] for t in targets])
    for src, tgt, result in zip(sources, targets, results, strict=True):
        with torch.no_grad():
            logp = model(torch.tensor([src]), torch.tensor([[cfg.bos_id] + tgt]))[0].log_softmax(-1)  # (T, V)
        expected = logp.gather(1, torch.tensor(tgt + [cfg.eos_id])[:, None])[:, 0]  # target tokens, then EOS
        torch.testing.assert_close(torch.tensor(result.log_probs), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("case", list(CASES))
def test_greedy_translations_are_identical(case, tmp_root):
    translator, runtime = _exported(case, tmp_root)
    lines = _lines()
    expected = translator.translate(lines, beam_size=1, warn=_quiet)
    assert runtime.translate(lines, beam_size=1, warn=_quiet) == expected
    # CTranslate2's own batching (one sentence a batch here) changes nothing.
    assert runtime.translate(lines, beam_size=1, max_tokens=8, warn=_quiet) == expected
    assert expected[10] == ""


def test_the_cases_cover_outputs_cut_at_the_limit_and_ended_by_eos(tmp_root):
    """Both ways a greedy translation ends are exercised (an untrained model without an EOS bias never stops)."""
    endings = set()
    for case in CASES:
        translator, _ = _exported(case, tmp_root)
        for _, src in translator._batches(translator._encode(_lines(), _quiet), max_tokens=4096):
            out = translator.model.generate(src, beam_size=1)  # (B, L): EOS then pads, or cut at the limit
            endings.update("eos" if translator.model.cfg.eos_id in row else "cut" for row in out.tolist())
    assert endings == {"eos", "cut"}


@pytest.mark.parametrize("options", [{}, dict(norm="pre", positional="learned")])
def test_beam_search_without_length_penalty_is_tformers(options, tmp_path):
    """With alpha = 0 both searches rank by log-probability and stop when no live beam can win: identical.

    CTranslate2 removes pad and BOS before its softmax, tformer after, which adds log(1 - p(pad) - p(BOS)) to
    CTranslate2's scores; the output bias makes both probabilities negligible, as they are in a trained model."""
    translator = _translator(True, dict(options, output_bias=True))
    cfg = translator.model.cfg
    with torch.no_grad():
        translator.model.output_projection.bias[[cfg.pad_id, cfg.bos_id]] = -30.0
    ct2_export.export(translator, tmp_path)
    runtime = ct2_export.Runtime(tmp_path, intra_threads=1)
    lines = _lines()
    expected = translator.translate(lines, beam_size=4, length_penalty=0.0, warn=_quiet)
    assert runtime.translate(lines, beam_size=4, length_penalty=0.0, warn=_quiet) == expected


def test_the_length_penalty_exponent_has_gnmts_slope_at_the_source_length():
    """d/dL log L^a = d/dL log ((5 + L) / 6)^alpha at L = n."""
    for alpha, n in ((0.6, 15), (1.0, 4), (0.0, 30)):
        a = ct2_export.ct2_length_penalty(alpha, n)
        assert a / n == pytest.approx(alpha / (5 + n))


def test_beam_search_with_a_length_penalty_and_int8_run(tmp_root):
    """With alpha > 0 the searches differ (see Runtime) and int8 rounds the weights: only the contract is checked."""
    translator, runtime = _exported("separate vocabularies, untied output with bias", tmp_root)
    lines = _lines()
    beam = runtime.translate(lines, beam_size=4, warn=_quiet)
    assert len(beam) == len(lines) and beam[10] == "" and all(isinstance(s, str) for s in beam)
    out = tmp_root / "int8"
    out.mkdir()
    assert ct2_export.export(translator, out, quantization="int8")["quantization"] == "int8"
    assert len(ct2_export.Runtime(out, intra_threads=1).translate(lines, warn=_quiet)) == len(lines)
    assert runtime.translate([]) == []


@pytest.mark.parametrize(
    "options, reason",
    [
        (dict(positional="relative"), "relative position bias"),
        (dict(pointer_generator=True), "pointer_generator"),
        (dict(attention={"kind": "sliding", "window": 4}), "sliding attention"),
    ],
)
def test_unsupported_models_are_refused_in_one_line(options, reason, tmp_path):
    translator = _translator(True, options)
    with pytest.raises(TformerError, match=reason) as e:
        ct2_export.export(translator, tmp_path)
    assert "\n" not in str(e.value) and str(e.value).startswith("cannot export to CTranslate2: ")
    assert list(tmp_path.iterdir()) == []


def test_a_non_autoregressive_or_quantized_model_is_refused(tmp_path):
    from tformer.models.cmlm.config import CMLMConfig
    from tformer.models.cmlm.model import CMLM

    vocabs = _vocabs(True)
    translator = Translator(CMLM(CMLMConfig.tiny(vocab_size=vocabs.src.vocab_size)), vocabs)
    with pytest.raises(TformerError, match="CMLM is not an autoregressive encoder-decoder"):
        ct2_export.export(translator, tmp_path)
    with pytest.raises(TformerError, match="linear layers are quantized"):
        ct2_export.export(_translator(True, {}).quantized(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_tokenizer_that_does_not_fit_the_model_is_refused(tmp_path):
    translator = _translator(True, {})
    small = Translator(Transformer(translator.model.cfg.replace(vocab_size=50)), translator.vocabs)
    with pytest.raises(TformerError, match="source tokenizer has 60 ids but the model's embedding has 50"):
        ct2_export.export(small, tmp_path)
    with pytest.raises(TformerError, match="quantization must be one of"):
        ct2_export.export(translator, tmp_path, quantization="int4")
    with pytest.raises(TformerError, match="no model written by"):
        ct2_export.Runtime(tmp_path)


def test_cli_export_with_check_reports_full_agreement(tmp_path, capsys):
    run = tmp_path / "run"
    _translator(True, {}).save_pretrained(run)
    src = tmp_path / "src.txt"
    src.write_text("\n".join(s for s, _ in _pairs()[:6]) + "\n", encoding="utf-8")
    out = tmp_path / "ct2"
    assert main(["export", str(run), "--format", "ctranslate2", "-o", str(out), "--check", str(src)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "ctranslate2" and report["sentences"] == 6 and report["agreement"] == 1.0
    assert report["ctranslate2_version"] == ctranslate2.__version__
    files = {p.name for p in out.iterdir()}
    assert {"model.bin", "config.json", "shared_vocabulary.json", "tokenizer.json", "tformer_config.json"} <= files
    ct2_config = json.loads((out / "config.json").read_text())
    assert (ct2_config["decoder_start_token"], ct2_config["eos_token"], ct2_config["unk_token"]) == (
        "<s>", "</s>", "<unk>")


def test_cli_refuses_an_unsupported_model_with_exit_2(tmp_path, capsys):
    run = tmp_path / "run"
    _translator(True, dict(positional="relative")).save_pretrained(run)
    out = tmp_path / "ct2"
    assert main(["export", str(run), "--format", "ctranslate2", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tformer: error: cannot export to CTranslate2: relative position bias") and "\n" not in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no half-written folder
