"""GenerationOptions are checked once, keywords and the options object decode alike, each model kind declares what
it supports, every refusal has one form, and the decoding engines import no model class."""

import ast
from pathlib import Path

import pytest
import torch

from tformer import GenerationOptions, TformerError, Transformer, TransformerConfig, Translator
from tformer.data.synthetic import make_number_task
from tformer.data.vocabularies import Vocabularies
from tformer.generation import Capabilities, Feature, capabilities_of, refusal
from tformer.models.cmlm.config import CMLMConfig
from tformer.models.cmlm.model import CMLM
from tformer.models.gpt.config import DecoderOnlyConfig
from tformer.models.gpt.model import DecoderOnly

GENERATION = Path(__file__).resolve().parents[2] / "src" / "tformer" / "generation"


@pytest.mark.parametrize("settings,message", [
    ({"beam_size": 0}, "beam_size must be >= 1, got 0"),
    ({"nbest": 0}, "nbest must be >= 1, got 0"),
    ({"beam_size": 2, "nbest": 3}, r"nbest must be in \[1, beam_size=2\], got 3"),
    ({"max_len": 0}, "max_len must be >= 1, got 0"),
    ({"min_len": -1}, "min_len must be >= 0, got -1"),
    ({"min_len": 5, "max_len": 4}, r"min_len \(5\) must not exceed max_len \(4\)"),
    ({"do_sample": True, "beam_size": 2}, "use beam_size=1 with do_sample=True"),
    ({"do_sample": True, "nbest": 1}, "do not combine nbest with do_sample"),
    ({"do_sample": True, "temperature": 0}, "temperature must be > 0 for sampling, got 0"),
    ({"do_sample": True, "top_p": 0}, r"top_p must be in \(0, 1\], got 0"),
    ({"do_sample": True, "top_k": -1}, "top_k must be >= 0, got -1"),
    ({"iterations": 0}, "iterations must be >= 1, got 0"),
    ({"length_candidates": 0}, "length_candidates must be >= 1, got 0"),
    ({"temperature": 0.7}, "temperature only applies when sampling: add do_sample or leave it out"),
    ({"top_k": 5, "seed": 1}, "top_k and seed only apply when sampling"),
    ({"no_repeat_ngram_size": -1}, r"no_repeat_ngram_size must be >= 0 \(0 = off\), got -1"),
    ({"beam_size": 1, "top_p": 0.9}, "top_p only applies when sampling"),
])
def test_bad_settings_are_one_line_errors_when_the_options_are_made(settings, message):
    with pytest.raises(TformerError, match=message) as e:
        GenerationOptions(**settings)
    assert "\n" not in str(e.value)
    with pytest.raises(TformerError, match=message):  # the same check when keywords override an options object
        GenerationOptions.of(GenerationOptions(), **settings)


def test_keywords_override_an_options_object_and_unknown_ones_are_type_errors():
    base = GenerationOptions(beam_size=4, length_penalty=1.0)
    assert GenerationOptions.of(base, beam_size=2) == GenerationOptions(beam_size=2, length_penalty=1.0)
    assert GenerationOptions.of(base) is base and GenerationOptions.of() == GenerationOptions()
    with pytest.raises(TypeError, match="unexpected generation setting 'beams'"):
        GenerationOptions.of(beams=4)
    with pytest.raises(TypeError, match="options must be a GenerationOptions"):
        GenerationOptions.of(4)
    assert base.with_defaults(beam_size=8, nbest=2) == GenerationOptions(beam_size=4, nbest=2, length_penalty=1.0)


def test_options_name_the_features_they_ask_for():
    assert GenerationOptions().asks() == []
    assert GenerationOptions(beam_size=1, length_penalty=0.0, max_len=9).asks() == []
    asked = GenerationOptions(beam_size=4, nbest=2, min_len=1, iterations=3).asks()
    assert asked == [(Feature.BEAM, "beam_size=4"), (Feature.NBEST, "nbest=2"), (Feature.MIN_LENGTH, "min_len=1"),
                     (Feature.MASK_PREDICT, "iterations=3")]
    assert GenerationOptions(do_sample=True).asks() == [(Feature.SAMPLING, "do_sample=True")]
    assert GenerationOptions(no_repeat_ngram_size=3).asks() == [(Feature.NO_REPEAT_NGRAM, "no_repeat_ngram_size=3")]


def _models():
    torch.manual_seed(0)
    return (Transformer(TransformerConfig.tiny(vocab_size=40)).eval(), CMLM(CMLMConfig.tiny(vocab_size=40)).eval(),
            DecoderOnly(DecoderOnlyConfig.tiny(vocab_size=40)).eval())


def test_each_model_kind_declares_what_it_supports():
    transformer, cmlm, gpt = _models()
    assert capabilities_of(transformer).features == {Feature.GREEDY, Feature.BEAM, Feature.NBEST, Feature.SAMPLING,
                                                     Feature.MIN_LENGTH, Feature.ATTENTION_MAPS,
                                                     Feature.MONOTONIC_WINDOW, Feature.NO_REPEAT_NGRAM,
                                                     Feature.REPETITION_PENALTY, Feature.FORCED_PREFIX,
                                                     Feature.ENSEMBLE}
    assert capabilities_of(cmlm).features == {Feature.MASK_PREDICT}
    assert capabilities_of(gpt).features == {Feature.GREEDY, Feature.BEAM, Feature.NBEST, Feature.SAMPLING,
                                              Feature.MIN_LENGTH, Feature.NO_REPEAT_NGRAM}
    assert capabilities_of(torch.nn.Linear(2, 2)) == Capabilities("a Linear")  # declares nothing: supports nothing


def test_the_refusal_has_one_form():
    cmlm = Capabilities("a non-autoregressive CMLM", [Feature.MASK_PREDICT])
    assert refusal("tformer serve", Feature.BEAM, cmlm) == ("tformer serve needs beam search, but this model (a "
                                                            "non-autoregressive CMLM) supports only mask-predict "
                                                            "(non-autoregressive decoding)")
    two = Capabilities("a thing", [Feature.SAMPLING, Feature.GREEDY])
    assert refusal("x", Feature.BEAM, two).endswith("supports only greedy search and sampling")
    assert refusal("x", Feature.BEAM, Capabilities("a Linear")).endswith("(a Linear) supports no decoding")
    with pytest.raises(TformerError, match="^translate\\(\\) with beam_size=4 needs beam search, but this model"):
        cmlm.check(GenerationOptions(beam_size=4), "translate()")
    cmlm.check(GenerationOptions(beam_size=1, iterations=2), "translate()")  # beam 1 asks for nothing
    with pytest.raises(TformerError, match="^plot needs n-best lists, but"):
        cmlm.require(Feature.MASK_PREDICT, Feature.NBEST, what="plot")


def test_every_kind_refuses_what_it_does_not_support_through_generate():
    transformer, cmlm, gpt = _models()
    src = torch.randint(4, 40, (2, 5))
    with pytest.raises(TformerError, match="generate\\(\\) with iterations=2 needs mask-predict .* autoregressive "
                                           "Transformer"):
        transformer.generate(src, iterations=2)
    for bad in ({"beam_size": 2}, {"do_sample": True}, {"min_len": 1}, {"monotonic_window": 2}):
        with pytest.raises(TformerError, match="but this model \\(a non-autoregressive CMLM\\)"):
            cmlm.generate(src, **bad)
    with pytest.raises(TformerError, match="with monotonic_window=2 needs a monotonic attention window .*, but "
                                           "this model \\(a decoder-only"):
        gpt.generate(src, monotonic_window=2)
    with pytest.raises(TypeError, match="unexpected generation setting 'beams'"):
        transformer.generate(src, beams=2)


def test_the_options_object_and_keywords_decode_alike():
    transformer, cmlm, gpt = _models()
    src = torch.randint(4, 40, (3, 6))
    for kw in ({"beam_size": 1, "max_len": 7}, {"beam_size": 3, "max_len": 7, "min_len": 2, "length_penalty": 1.0},
               {"do_sample": True, "seed": 4, "top_k": 5, "max_len": 7}):
        assert torch.equal(transformer.generate(src, GenerationOptions(**kw)), transformer.generate(src, **kw))
        overridden = transformer.generate(src, GenerationOptions(max_len=3), **kw)  # keywords override the object
        assert torch.equal(overridden, transformer.generate(src, **kw))
    nbest = transformer.generate_nbest(src, GenerationOptions(beam_size=3, nbest=2, max_len=6))
    assert nbest == transformer.generate_nbest(src, beam_size=3, nbest=2, max_len=6)
    assert [len(h) for h in transformer.generate_nbest(src, beam_size=2, max_len=6)] == [2, 2, 2]  # nbest = beam
    assert torch.equal(cmlm.generate(src, GenerationOptions(iterations=2, length_candidates=2)),
                       cmlm.generate(src, iterations=2, length_candidates=2))
    assert torch.equal(cmlm.generate(src), cmlm.generate(src, iterations=10, length_candidates=3))
    assert torch.equal(gpt.generate(src, GenerationOptions(max_len=5)), gpt.generate(src, max_new_tokens=5))
    assert torch.equal(gpt.generate(src), gpt.generate(src, max_new_tokens=32))  # 32 new tokens unless told


def _translator(model_class, config_class) -> Translator:
    pairs = make_number_task(60, 0, 0, max_number=99, seed=1)["train"]
    vocabs = Vocabularies.train([s for s, _ in pairs], [t for _, t in pairs], 40)
    torch.manual_seed(0)
    return Translator(model_class(config_class.tiny(vocab_size=vocabs.src.vocab_size)), vocabs)


def test_the_translator_fills_in_its_defaults_and_refuses_in_one_form():
    ar, nar = _translator(Transformer, TransformerConfig), _translator(CMLM, CMLMConfig)
    assert ar.decoding_options() == GenerationOptions(beam_size=4)  # §6.1
    assert ar.decoding_options(do_sample=True, seed=1) == GenerationOptions(beam_size=1, do_sample=True, seed=1)
    assert nar.decoding_options() == GenerationOptions(iterations=10, length_candidates=3)
    assert ar.translate(["seven", "twelve"], GenerationOptions(beam_size=2)) == ar.translate(["seven", "twelve"],
                                                                                             beam_size=2)
    with pytest.raises(TformerError, match="^translate\\(\\) with iterations=3 needs mask-predict"):
        ar.translate(["seven"], iterations=3)
    with pytest.raises(TformerError, match="^translate\\(\\) with beam_size=4 needs beam search"):
        nar.translate(["seven"], beam_size=4)
    with pytest.raises(TformerError, match="^translate_nbest\\(\\) needs n-best lists"):
        nar.translate_nbest(["seven"])
    with pytest.raises(TformerError, match="^attention\\(\\) needs encoder-decoder attention maps"):
        nar.attention("seven")
    assert not ar.non_autoregressive and nar.non_autoregressive


def test_generation_imports_no_model_class():
    # The decoding engines are one layer below the models: they work over protocols (generation/protocols.py).
    for path in GENERATION.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith(("tformer.models", "tformer.translator")), path
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("tformer.models") for a in node.names), path
