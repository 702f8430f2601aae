"""Batch invariance of decoding: a sentence's output is what it gets decoded alone, whatever else is in its batch.

Hypothesis draws a few source sentences (duplicates included), shuffles them, cuts them into sub-batches,
pads each sub-batch with extra columns beyond its longest sentence, and draws the search settings (beam
size, max_len, min_len, length penalty, n-best). Every sentence's result must equal decoding it alone:

* tokens exactly, for ``generate`` (greedy, beam) and ``generate_nbest`` (each hypothesis, in order);
* log-probabilities and scores up to float32 rounding. The batch changes the shapes of the matrix products
  (rows = sentences x beams), and the CPU GEMM kernels sum in a shape-dependent order: one ``nn.Linear`` on
  1 row vs 5 rows already differs by 1 ulp, and a sentence's per-step logits differ by up to ~4e-6 between
  its batch and itself alone. Padding itself measured exact (masked keys get weight exactly 0; the encoder
  output of a padded row equalled the unpadded one bit for bit). A hypothesis' log-probability, a sum of L per-step
  terms, drifts by up to ~5e-7 per token (2.8e-5 seen at L = 52), so the tolerance is 5e-6 per token, ten
  times that. Tokens are compared exactly: that assumes no two competing candidates lie within ~1e-5 of
  each other, true for every drawn example here but not a law (another BLAS could meet such a near-tie);
* at the Translator level, ``translate`` / ``translate_nbest`` under random orders of lines and random
  ``max_tokens`` (which regroups the sorted sentences into different batches) give each line its own
  translation.

Seeded sampling is promised only to repeat for the same seed and the same batch (``decoding.sample``: "a
sentence's sample depends on its batch"), and only that is checked.

The models are random, with EOS favoured through an output bias (as in test_generate.py) so that some
outputs end in EOS at various lengths and others are cut at their length limit. The last tests show that the
check is not vacuous: distinct sentences get distinct outputs ending both ways, and two regressions (source
padding leaking into attention; max_len=None as the batch's padded length + 50) are caught.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence

import pytest
import torch
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

import tformer.models.transformer.model as transformer_module
from tformer import Transformer, TransformerConfig, Translator
from tformer.data.synthetic import make_number_task
from tformer.data.vocabularies import Vocabularies
from tformer.generation import GenerationOptions

PAD, EOS = 0, 2
FIRST_WORD = 4  # ids 0-3 are pad, BOS, EOS, unk: never in a drawn source
VOCAB = 64
TOL_PER_TOKEN = 5e-6  # float32 drift of a summed log-probability, per token (see the module docstring)


def _random_model(vocab: int, seed: int, eos_bias: float) -> Transformer:
    """A seeded, untrained tiny model whose EOS logit gets ``eos_bias`` added (an output bias only on EOS)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        cfg = TransformerConfig.tiny(vocab_size=vocab, output_bias=True, tie_output=False, share_embeddings=False)
        model = Transformer(cfg).eval()
    with torch.no_grad():
        model.output_projection.bias.zero_()
        model.output_projection.bias[EOS] = eos_bias
    return model


@functools.cache
def _model() -> Transformer:
    # Seed and bias chosen so that outputs end in EOS after 1..20 tokens or run to the limit (checked below).
    return _random_model(VOCAB, seed=2, eos_bias=0.5)


# ---- drawing batches ---------------------------------------------------------------------------------------

Layout = list[tuple[list[int], int]]  # sub-batches: (indices into the sentences, extra pad columns)


@st.composite
def _sentences_and_layout(draw, max_sentences: int = 5) -> tuple[list[tuple[int, ...]], Layout]:
    """Sentences (from a small pool, so duplicates occur), a random order cut into sub-batches, extra padding."""
    word = st.integers(FIRST_WORD, VOCAB - 1)
    sentence = st.integers(1, 20).flatmap(lambda n: st.lists(word, min_size=n, max_size=n).map(tuple))
    pool = draw(st.lists(sentence, min_size=2, max_size=4, unique=True))
    sentences = draw(st.lists(st.sampled_from(pool), min_size=2, max_size=max_sentences))
    order = draw(st.permutations(range(len(sentences))))
    cuts = sorted(draw(st.sets(st.integers(1, len(sentences) - 1)))) if len(sentences) > 1 else []
    bounds = [0, *cuts, len(sentences)]
    layout = [(list(order[a:b]), draw(st.integers(0, 3))) for a, b in itertools.pairwise(bounds)]
    return sentences, layout


def _padded(sentences: Sequence[Sequence[int]], extra: int) -> torch.Tensor:
    """(B, S) right-padded source, S = the longest sentence + ``extra`` pad columns."""
    src = torch.full((len(sentences), max(map(len, sentences)) + extra), PAD, dtype=torch.long)
    for row, s in enumerate(sentences):
        src[row, : len(s)] = torch.tensor(s)
    return src


def _rows(out: torch.Tensor) -> list[tuple[int, ...]]:
    """Each row of a (B, L) output without its trailing padding; padding may only trail."""
    rows = []
    for row in out.tolist():
        n = len(row)
        while n and row[n - 1] == PAD:
            n -= 1
        assert PAD not in row[:n], row
        rows.append(tuple(row[:n]))
    return rows


def _mismatches(decode: Callable[[torch.Tensor], list], sentences, layout: Layout, same=None) -> list[str]:
    """Decode every sub-batch of ``layout`` and each distinct sentence alone; describe every disagreement.

    ``decode`` maps a (B, S) source to one result per row; ``same(a, b)`` compares two results (default ==).
    """
    same = same or (lambda a, b: a == b)
    alone = {s: decode(_padded([s], 0))[0] for s in set(sentences)}
    problems = []
    for indices, extra in layout:
        results = decode(_padded([sentences[i] for i in indices], extra))
        assert len(results) == len(indices)
        for i, got in zip(indices, results, strict=True):
            if not same(got, alone[sentences[i]]):
                problems.append(f"sentence {i} in batch {indices} (+{extra} pad): {got} != alone {alone[sentences[i]]}")
    return problems


def _generate(model: Transformer, **kw) -> Callable[[torch.Tensor], list[tuple[int, ...]]]:
    return lambda src: _rows(model.generate(src, **kw))


def _generate_nbest(model: Transformer, **kw) -> Callable[[torch.Tensor], list]:
    return lambda src: model.generate_nbest(src, **kw)


def _same_hypotheses(a, b) -> bool:
    """Same tokens in the same order, log-probabilities and scores equal up to float32 drift."""
    return [h.tokens for h in a] == [h.tokens for h in b] and all(
        x.logprob == pytest.approx(y.logprob, rel=0, abs=TOL_PER_TOKEN * len(x.tokens))
        and x.score == pytest.approx(y.score, rel=0, abs=TOL_PER_TOKEN * len(x.tokens))
        for x, y in zip(a, b, strict=True)
    )


def _limits(draw) -> dict:
    """max_len None (each source's length + 50) or small, a min_len that fits, a length penalty."""
    max_len = draw(st.one_of(st.none(), st.sampled_from([1, 2, 4, 8, 16])))  # None half the time: per-sentence
    min_len = draw(st.integers(0, 3 if max_len is None else min(3, max_len)))
    return dict(max_len=max_len, min_len=min_len, length_penalty=draw(st.sampled_from([0.0, 0.6, 1.0, 2.0])))


def _note_endings(rows: Sequence[Sequence[int]], max_len: int | None) -> None:
    for r in rows:
        event("ends in EOS" if r and r[-1] == EOS else "cut at its length limit")
    if max_len is not None:
        assert all(len(r) <= max_len for r in rows)


# ---- the model: generate and generate_nbest ----------------------------------------------------------------


@settings(max_examples=40)
@given(_sentences_and_layout(), st.sampled_from([1, 2, 4]), st.data())
def test_generate_output_is_the_sentence_decoded_alone(case, beam, data):
    sentences, layout = case
    kw = _limits(data.draw)
    note(f"beam {beam}, {kw}")
    decode = _generate(_model(), beam_size=beam, **kw)
    assert _mismatches(decode, sentences, layout) == []
    _note_endings(decode(_padded(sentences, 0)), kw["max_len"])


@settings(max_examples=20)
@given(_sentences_and_layout(), st.sampled_from([1, 2, 4]), st.data())
def test_generate_nbest_hypotheses_and_scores_are_those_of_the_sentence_alone(case, beam, data):
    sentences, layout = case
    kw = _limits(data.draw)
    nbest = data.draw(st.integers(1, beam), label="nbest")
    note(f"beam {beam}, nbest {nbest}, {kw}")
    decode = _generate_nbest(_model(), beam_size=beam, nbest=nbest, **kw)
    assert _mismatches(decode, sentences, layout, same=_same_hypotheses) == []


@settings(max_examples=10)
@given(_sentences_and_layout(max_sentences=4), st.integers(0, 2**31 - 1), st.sampled_from([None, 4, 8]))
def test_seeded_sampling_repeats_for_the_same_batch(case, seed, max_len):
    # Promised (generation/sampling.py): the same seed and batch give the same samples. Not promised: that a
    # sentence's sample is independent of its batch (the rows share one random stream), so not tested.
    sentences, layout = case
    model = _model()
    for indices, extra in layout:
        src = _padded([sentences[i] for i in indices], extra)
        first = model.generate(src, do_sample=True, max_len=max_len, seed=seed, top_k=8)
        assert torch.equal(first, model.generate(src, do_sample=True, max_len=max_len, seed=seed, top_k=8))


# ---- the Translator: translate and translate_nbest ---------------------------------------------------------


@functools.cache
def _translator() -> tuple[Translator, list[str]]:
    """An untrained tiny model with a real tokenizer (number words, 60 ids), and the lines to translate."""
    pairs = make_number_task(300, 0, 0, max_number=999, seed=5)["train"]
    vocabs = Vocabularies.train([s for s, _ in pairs], [t for _, t in pairs], 60)
    model = _random_model(vocabs.src.vocab_size, seed=0, eos_bias=1.0)  # EOS after 2..8 tokens, or cut
    lines = [s for s, _ in pairs[:12]] + [""]  # an empty line translates to "" and must not shift the others
    return Translator(model, vocabs), lines


def test_translate_ids_are_the_translations_and_the_alignment_reads_them():
    """translate() is the text of translate_ids(); the alignment rates of those ids from one teacher-forced pass
    equal those of stepping them through the cache (a window wider than every source: the stepped pass)."""
    translator, lines = _translator()
    outputs = translator.translate_ids(lines, beam_size=2, max_len=12)
    assert translator.texts(outputs) == translator.translate(lines, beam_size=2, max_len=12)
    assert outputs[-1] == [] and all(outputs[:-1])  # the empty line decodes to nothing
    forced = translator.alignment_rates(lines, outputs)
    stepped = translator.alignment_rates(lines, outputs, GenerationOptions(monotonic_window=99,
                                                                           monotonic_window_back=99))
    assert forced == stepped and forced.steps == sum(map(len, outputs))


@st.composite
def _lines_and_settings(draw) -> tuple[list[str], int, dict]:
    _, pool = _translator()
    lines = draw(st.lists(st.sampled_from(pool), min_size=2, max_size=7))
    lines = draw(st.permutations(lines))
    max_tokens = draw(st.integers(1, 80))  # sentences have 7..16 ids: from one per batch to all in one
    kw = dict(beam_size=draw(st.sampled_from([1, 2, 4])),
              max_len=draw(st.one_of(st.none(), st.sampled_from([3, 6, 12]))),  # None: each line's length + 50
              length_penalty=draw(st.sampled_from([0.0, 0.6, 1.0])))
    return list(lines), max_tokens, kw


@functools.cache
def _translate_alone(line: str, nbest: int | None, settings_key: tuple) -> object:
    translator, _ = _translator()
    kw = dict(settings_key)
    if nbest is None:
        return translator.translate([line], **kw, max_tokens=1)[0]
    return translator.translate_nbest([line], nbest=nbest, **kw, max_tokens=1)[0]


@settings(max_examples=20)
@given(_lines_and_settings())
def test_translate_gives_each_line_its_own_translation(case):
    lines, max_tokens, kw = case
    translator, _ = _translator()
    note(f"max_tokens {max_tokens}, {kw}")
    got = translator.translate(lines, max_tokens=max_tokens, **kw)
    assert got == [_translate_alone(line, None, tuple(sorted(kw.items()))) for line in lines]


@settings(max_examples=10)
@given(_lines_and_settings(), st.data())
def test_translate_nbest_gives_each_line_its_own_hypotheses(case, data):
    lines, max_tokens, kw = case
    nbest = data.draw(st.integers(1, kw["beam_size"]), label="nbest")
    translator, _ = _translator()
    note(f"max_tokens {max_tokens}, nbest {nbest}, {kw}")
    got = translator.translate_nbest(lines, nbest=nbest, max_tokens=max_tokens, **kw)
    for line, hyps in zip(lines, got, strict=True):
        alone = _translate_alone(line, nbest, tuple(sorted(kw.items())))
        assert [text for text, _ in hyps] == [text for text, _ in alone], line
        # A score is a sum of per-token log-probabilities over at most max_len (or ~66) tokens.
        assert [s for _, s in hyps] == pytest.approx([s for _, s in alone], rel=0, abs=TOL_PER_TOKEN * 70), line


# ---- the property is not vacuous ---------------------------------------------------------------------------


def _fixed_sentences() -> list[tuple[int, ...]]:
    """Ten sentences of lengths 1..20, two of them duplicates (a seeded draw, checked to vary below)."""
    g = torch.Generator().manual_seed(1)
    lengths = (1, 2, 3, 5, 8, 12, 16, 20)
    sentences = [tuple(torch.randint(FIRST_WORD, VOCAB, (n,), generator=g).tolist()) for n in lengths]
    return sentences + [sentences[2], sentences[4]]


_FIXED_LAYOUT = [([9, 0, 3], 2), ([5], 0), ([1, 8, 2, 7], 3), ([6, 4], 1)]  # a shuffled split, padded

_length_limits = Transformer._length_limits


def _limits_from_padded_width(self, src, max_len, min_len):
    """A regression: max_len=None as the batch's padded source length + 50, not each sentence's own."""
    if max_len is None:
        return torch.full((src.shape[0],), src.shape[1] + 50)
    return _length_limits(self, src, max_len, min_len)


def _leaky_padding_mask(ids, pad_id):
    """A regression: every source position, padding included, may be attended to."""
    return torch.ones_like(ids, dtype=torch.bool)[:, None, None, :]


_MUTANTS = {
    "padding leaks": (transformer_module, "padding_mask", _leaky_padding_mask),
    "batch length limit": (Transformer, "_length_limits", _limits_from_padded_width),
}


@pytest.mark.parametrize("beam", [1, 4])
def test_outputs_differ_and_end_both_ways(beam):
    rows = _generate(_model(), beam_size=beam, max_len=16)(_padded(_fixed_sentences(), 0))
    assert len(set(rows[:8])) >= 6, rows  # different sentences get different outputs
    assert len({len(r) for r in rows if r[-1] == EOS}) >= 2, rows  # outputs end in EOS at different lengths ...
    assert any(len(r) == 16 and EOS not in r for r in rows), rows  # ... and some are cut at max_len
    assert _mismatches(_generate(_model(), beam_size=beam, max_len=None), _fixed_sentences(), _FIXED_LAYOUT) == []


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("mutant", sorted(_MUTANTS))
def test_the_check_catches_a_batch_dependent_decoder(mutant, beam, monkeypatch):
    # The same layout passes unmutated (test_outputs_differ_and_end_both_ways).
    monkeypatch.setattr(*_MUTANTS[mutant])
    assert _mismatches(_generate(_model(), beam_size=beam, max_len=None), _fixed_sentences(), _FIXED_LAYOUT) != []


@pytest.mark.parametrize("beam", [1, 4])
def test_translator_outputs_differ_end_both_ways_and_a_batch_limit_is_caught(beam, monkeypatch):
    translator, lines = _translator()
    out = translator.translate(lines, beam_size=beam, max_len=12)
    assert out[-1] == "" and len(set(out[:-1])) >= 4, out
    src = _padded([translator.vocabs.src.encode(line) + [EOS] for line in lines[:-1]], 0)  # as translate() does
    rows = _rows(translator.model.generate(src, beam_size=beam, max_len=12))
    assert any(r[-1] == EOS for r in rows) and any(len(r) == 12 and EOS not in r for r in rows), rows
    alone = [translator.translate([line], beam_size=beam, max_len=None)[0] for line in lines]
    assert translator.translate(lines, beam_size=beam, max_len=None) == alone
    monkeypatch.setattr(*_MUTANTS["batch length limit"])
    assert translator.translate(lines, beam_size=beam, max_len=None) != alone
