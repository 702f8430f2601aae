"""The Translator's decoding options for translators: prefixes, ensembles, word alignments, and the refusals of a
model that cannot honour them (a CMLM)."""

import functools

import pytest
import torch

from tformer import Transformer, TransformerConfig, Translator
from tformer.data.synthetic import make_number_task
from tformer.data.vocabularies import Vocabularies
from tformer.errors import TformerError
from tformer.generation.ensemble import Ensemble
from tformer.generation.search import length_limits, search
from tformer.models.cmlm import CMLM, CMLMConfig


@functools.cache
def _vocabs() -> tuple[Vocabularies, list[str]]:
    pairs = make_number_task(200, 0, 0, max_number=999, seed=5)["train"]
    return Vocabularies.train([s for s, _ in pairs], [t for _, t in pairs], 60), [s for s, _ in pairs[:8]]


def _translator(seed: int = 0, cls=Transformer, config=TransformerConfig, vocabs=None, **kw) -> Translator:
    vocabs = vocabs or _vocabs()[0]
    torch.manual_seed(seed)
    model = cls(config.tiny(vocab_size=vocabs.src.vocab_size, **kw))
    return Translator(model, vocabs)


def _source(t: Translator, line: str) -> torch.Tensor:
    return torch.tensor([t.vocabs.src.encode(line) + [t.model.cfg.eos_id]])  # (1, S)


LINES = ["three hundred twelve", "seven", "", "forty five", "nine hundred"]
PREFIXES = ["drei", None, "acht", "", "neun hundert und"]


@pytest.mark.parametrize("beam", [1, 3])
def test_translations_start_with_their_prefix_and_a_batch_equals_one_by_one(beam):
    t = _translator()
    tgt = t.vocabs.tgt
    outs = t.translate_ids(LINES, beam_size=beam, max_len=12, prefixes=PREFIXES)
    assert outs[2] == []  # an empty line stays empty, prefix or not
    for line, prefix, out in zip(LINES, PREFIXES, outs, strict=True):
        if line and prefix:
            assert out[: len(tgt.encode(prefix))] == tgt.encode(prefix)
            assert t.texts([out])[0].startswith(tgt.decode(tgt.encode(prefix)))
        assert [out] == t.translate_ids([line], beam_size=beam, max_len=12, prefixes=[prefix])
    assert outs == t.translate_ids(LINES, beam_size=beam, max_len=12, prefixes=PREFIXES, max_tokens=8)  # batches
    nbest = t.translate_nbest(LINES, beam_size=beam, max_len=12, prefixes=PREFIXES)
    assert [hyps[0][0] for hyps in nbest] == t.texts(outs)


def test_an_ensemble_of_translators():
    a, b = _translator(0), _translator(1)
    assert Translator.ensemble([a]).translate(LINES, beam_size=2) == a.translate(LINES, beam_size=2)
    both = Translator.ensemble([a, b])
    assert both.members == [a.model, b.model] and both.model is a.model
    src = _source(a, LINES[0])
    expected = search(Ensemble([a.model, b.model]), src, both.decoding_options(beam_size=3),
                      max_len=length_limits(src, a.model.cfg.pad_id, None, a.model.cfg.max_len))[0].tolist()
    assert both.translate_ids(LINES[:1], beam_size=3)[0] == [x for x in expected if x != a.model.cfg.pad_id]
    assert both.translate(LINES, beam_size=3) != a.translate(LINES, beam_size=3)
    with pytest.raises(TformerError, match="no one folder"):
        both.save_pretrained("unused")


def test_an_ensemble_needs_the_same_tokenizers_and_models_that_can_ensemble():
    pairs = make_number_task(50, 0, 0, max_number=99, seed=9)["train"]
    other = Vocabularies.train([s for s, _ in pairs], [t for _, t in pairs], 40)
    with pytest.raises(TformerError, match="^ensemble model 2 has other tokenizers than model 1"):
        Translator.ensemble([_translator(0), _translator(1, vocabs=other)])
    with pytest.raises(TformerError, match="^ensemble model 2 has max_len 40, model 1 "):
        Translator.ensemble([_translator(0), _translator(1, max_len=40)])
    cmlm = _translator(0, CMLM, CMLMConfig)
    with pytest.raises(TformerError, match="^decoding several models together needs ensembles of models, but this "
                                           "model \\(a non-autoregressive CMLM\\)"):
        Translator.ensemble([cmlm, cmlm])
    with pytest.raises(TformerError, match="^translate\\(\\) with prefixes needs a forced target prefix, but this "
                                           "model \\(a non-autoregressive CMLM\\)"):
        cmlm.translate(["seven"], prefixes=["sieben"])
    with pytest.raises(TformerError, match="^translate\\(\\) with repetition_penalty=1.2 needs a repetition penalty"):
        cmlm.translate(["seven"], repetition_penalty=1.2)
    with pytest.raises(TformerError, match="got 2 sentences but 1 prefixes"):
        _translator().translate(["seven", "two"], prefixes=["sieben"])


@pytest.mark.parametrize("layer", [-1, 0])
def test_alignments_are_the_argmax_of_the_mean_cross_attention(layer):
    """Brute force: the teacher-forced pass's attention maps of that layer (need_weights), mean over heads (and over
    the models of an ensemble), argmax over the source tokens without EOS, for each output token without EOS."""
    a, b = _translator(0), _translator(1)
    for t in (a, Translator.ensemble([a, b])):
        outs = t.translate_ids(LINES, beam_size=2, max_len=10)
        got = t.alignments(LINES, outs, layer=layer)
        assert got[2] == []
        for line, out, pairs in zip(LINES, outs, got, strict=True):
            if not line:
                continue
            src = _source(t, line)
            tgt_in = torch.tensor([[t.model.cfg.bos_id, *out[:-1]]])
            weights = torch.stack([m(src, tgt_in, need_weights=True)[1].decoder_cross[layer][0].mean(0)
                                   for m in t.members]).mean(0)  # (T, S)
            n = len(out) - (out[-1] == t.model.cfg.eos_id)
            assert pairs == [(int(weights[i, :-1].argmax()), i) for i in range(n)]
    with pytest.raises(TformerError, match="alignment layer 5 is out of range"):
        a.alignments(LINES, outs, layer=5)
