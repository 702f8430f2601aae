"""Task summarization end to end: `tformer train` on the shipped recipe (configs/summarization.yaml, shrunk) over tiny
descriptions the test writes, whose synopsis is a phrase of the text (copyable); ROUGE at validation, test ROUGE and
the lead baseline at the end, then the run's predictor. A marked slow check reads the real Debian corpus."""

import json
import random
from pathlib import Path

import pytest
from summary_helpers import description

from tformer.errors import TformerError
from tformer.evaluation.rouge import lead, lead_baseline
from tformer.tasks import open_run

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "summarization.yaml"
def test_training_reports_rouge_at_validation_and_on_test_with_the_lead_baseline(summarization_run):
    tmp, summary = summarization_run
    records = [json.loads(line) for line in (tmp / "run" / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["kind"] == "valid"]
    assert len(valid) == 2 and all(0 <= r["rouge1"] <= 100 and r["rouge_texts"] == 8 for r in valid)
    assert any("coverage" in r for r in records if r["kind"] == "train")  # the coverage term is logged
    assert summary["test_texts"] == 10
    for key in ("rouge1", "rouge2", "rougeL"):
        assert 0 <= summary[f"test_{key}"] <= 100
    texts = (tmp / "test.src").read_text().splitlines()[:10]
    refs = (tmp / "test.tgt").read_text().splitlines()[:10]
    assert summary["lead_rouge1"] == pytest.approx(lead_baseline(texts, refs)["rouge1"])
    assert lead(texts[0]).endswith("written with care.")


def test_the_predictor_summarizes(summarization_run):
    tmp, _ = summarization_run
    p = open_run(tmp / "run")
    assert p.decodes and p.example() == (tmp / "valid.src").read_text().splitlines()[0]
    texts = [p.example(), "quantozorp is a fast viewer for maps written with care. It also reads logs and more."]
    out = p.predict(texts)
    assert len(out) == 2 and all(isinstance(o["summary"], str) for o in out)
    assert p.predict(texts, beam_size=1) == p.predict(texts, beam_size=1)  # searched: repeatable
    with pytest.raises(TformerError, match="input 2: empty text"):
        p.predict(["a text", "  "])


@pytest.mark.parametrize(("override", "message"), [
    ("summarization.coverage=-1", "coverage must be >= 0"),
    ("data.shared_vocab=false", "needs data.shared_vocab: true"),
    ("summarization.max_source_len=100", "exceeds data.max_len"),
    ("summarization.beam_sise=4", "beam_sise"),
])
def test_bad_settings_are_one_line_errors(override, message):
    from tformer.config import ConfigError
    from tformer.tasks import load_run_config

    with pytest.raises(ConfigError, match=message) as e:
        load_run_config(RECIPE, [override])
    assert "\n" not in str(e.value)


def test_beam_settings_reach_the_copy_model_and_sources_are_cut():
    """min_len, no_repeat_ngram_size and the beam reach a pointer-generator model through the Summarizer (an untrained
    model, so the checks are of the constraints); a source is cut to max_source_len tokens, as in training."""
    import torch

    from tformer import Transformer, TransformerConfig
    from tformer.data.vocabularies import Vocabularies
    from tformer.generation import GenerationOptions
    from tformer.tasks.summarization import Summarizer

    rng = random.Random(3)
    pairs = [description(rng) for _ in range(60)]
    vocabs = Vocabularies.train([s for s, _ in pairs], [t for _, t in pairs], 80)
    torch.manual_seed(0)
    model = Transformer(TransformerConfig.tiny(vocab_size=vocabs.src.vocab_size, pointer_generator=True,
                                               max_len=40, pad_id=vocabs.src.pad_id, bos_id=vocabs.src.bos_id,
                                               eos_id=vocabs.src.eos_id, unk_id=vocabs.src.unk_id))
    s = Summarizer(model, vocabs, "cpu", max_source_len=6)
    texts = [t for t, _ in pairs[:6]]
    opts = GenerationOptions(beam_size=3, min_len=5, max_len=12, no_repeat_ngram_size=1, length_penalty=1.0)
    eos = model.cfg.eos_id
    for ids in s.translate_ids(texts, opts):
        body = ids[:-1] if ids and ids[-1] == eos else ids
        assert eos not in body and len(body) >= 5 and len(ids) <= 12
        assert len(set(body)) == len(body)  # no unigram repeated
    # cut at 6 tokens: a text and its first 6 tokens + anything else summarize alike
    head = vocabs.src.decode(vocabs.src.encode(texts[0])[:6])
    assert vocabs.src.encode(head) == vocabs.src.encode(texts[0])[:6]
    assert s.translate_ids([texts[0]], opts) == s.translate_ids([head + " zzz qqq yyy www"], opts)


@pytest.mark.slow
def test_the_debian_corpus_splits_every_source_into_one_split(tmp_path):
    """The real corpus (apt's lists on this machine): every source package in exactly one split."""
    from tformer.data.debian import APT_LISTS, DebianConfig, build

    if not list(Path(APT_LISTS).glob("*_i18n_Translation-en*")):
        pytest.skip("no apt Translation-en lists (sudo apt-get update -o Acquire::Languages=en)")
    splits = build(tmp_path / "debian", DebianConfig(), lists=APT_LISTS)
    where: dict[str, set[str]] = {}
    for name, rows in splits.items():
        for e in rows:
            where.setdefault(e.source, set()).add(name)
    assert all(len(s) == 1 for s in where.values())
    total = sum(len(r) for r in splits.values())
    assert total > 40_000 and 0.03 < len(splits["test"]) / total < 0.07
