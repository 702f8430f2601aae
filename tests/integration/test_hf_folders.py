"""Hugging Face folders in and out, proved by ``transformers`` itself.

In: a real ``MarianMTModel`` + ``MarianTokenizer`` folder (SentencePiece models trained here, OPUS-MT's id layout:
``</s>`` 0, ``<unk>`` 1, ``<pad>`` last) becomes a run with ``tformer import``, and ``tformer translate`` gives the
strings ``tokenizer`` + ``generate`` + ``batch_decode`` give, greedy and beam 4, on a padded batch.
Out: ``tformer export --format hf`` writes folders that ``AutoModelForSeq2SeqLM``/``AutoTokenizer`` load and that
generate what tformer generates, for the imported run (``MarianTokenizer``) and for a run trained by tformer
(its own BPE as a ``PreTrainedTokenizerFast``; the paper's interleaved positions, permuted into Marian's).
"""

import json

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")
import torch  # noqa: E402
from cli_helpers import tformer_cli  # noqa: E402
from hf_helpers import WORDS_EN, cli_translate, sentences  # noqa: E402
from hf_import_helpers import hf_generate  # noqa: E402

from tformer import Translator  # noqa: E402
from tformer.data.vocabularies import Vocabularies  # noqa: E402

TEXTS = [*sentences(WORDS_EN, 7, seed=99), "Ünïcode wörds ¿", ">>de<< the dog", "A"]  # lengths 2..14 tokens


@pytest.fixture(scope="module")
def imported(marian, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "imported"
    r = tformer_cli("import", marian, "--out", run)
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    assert record["model_type"] == "marian" and record["task"] == "translation"
    return run


def test_the_tokenizer_gives_marian_tokenizers_ids_and_texts(marian, imported):
    ref = transformers.MarianTokenizer.from_pretrained(marian)
    vocabs = Vocabularies.load(imported)
    assert (vocabs.src.pad_id, vocabs.src.eos_id, vocabs.src.unk_id) == (
        ref.pad_token_id, ref.eos_token_id, ref.unk_token_id) == (len(ref.get_vocab()) - 1, 0, 1)
    for text in TEXTS:
        assert vocabs.src.encode(text) + [vocabs.src.eos_id] == ref(text)["input_ids"]
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):  # any ids, special ones included
        ids = torch.randint(0, vocabs.tgt.vocab_size, (12,), generator=gen).tolist()
        assert vocabs.tgt.decode(ids) == ref.decode(ids[: ids.index(0)] if 0 in ids else ids, skip_special_tokens=True)


@pytest.mark.parametrize("beam", [1, 4])
def test_translate_gives_what_transformers_generate_gives(marian, imported, beam):
    expected = hf_generate(marian, TEXTS, beam)
    assert len(set(expected)) > 3  # a model whose outputs depend on the input
    assert cli_translate(imported, TEXTS, beam) == expected


def test_the_imported_run_exports_back_to_a_marian_folder(imported, tmp_path):
    out = tmp_path / "hf"
    src = tmp_path / "src.txt"
    src.write_text("\n".join(TEXTS) + "\n")
    r = tformer_cli("export", imported, "--format", "hf", "-o", out, "--check", src)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["tokenizer"] == "MarianTokenizer" and result["agreement"] == 1.0
    assert type(transformers.AutoTokenizer.from_pretrained(out)).__name__ == "MarianTokenizer"
    for beam in (1, 4):
        assert hf_generate(out, TEXTS, beam) == cli_translate(imported, TEXTS, beam)


def test_a_tformer_run_exports_to_a_folder_transformers_runs(trained_run, tmp_path, corpus):
    out = tmp_path / "hf"
    r = tformer_cli("export", trained_run, "--format", "hf", "-o", out, "--check", corpus / "test.en")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["agreement"] == 1.0
    texts = (corpus / "test.en").read_text().splitlines()[:12]
    ours = Translator.from_pretrained(trained_run)
    assert ours.model.cfg.sinusoidal_layout == "interleaved"  # permuted into Marian's halves on the way out
    for beam in (1, 4):
        alpha = {"length_penalty": 0.0} if beam > 1 else {}
        assert hf_generate(out, texts, beam) == ours.translate(texts, beam_size=beam, max_len=40, **alpha)


def test_bad_folders_and_runs_are_one_line_errors(tmp_path, marian, imported):
    r = tformer_cli("import", tmp_path, "--out", tmp_path / "x")
    assert r.returncode == 2 and "no config.json" in r.stderr and len(r.stderr.splitlines()) == 1
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "config.json").write_text(json.dumps({"model_type": "reformer"}))
    r = tformer_cli("import", odd, "--out", tmp_path / "x")
    assert r.returncode == 2 and "'reformer' cannot be imported" in r.stderr
    r = tformer_cli("import", marian, "--out", imported)
    assert r.returncode == 2 and "exists" in r.stderr
    assert not (tmp_path / "x").exists()
