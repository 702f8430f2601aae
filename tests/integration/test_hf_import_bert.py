"""``tformer import`` of encoder folders, proved by ``transformers`` itself.

A real ``BertForSequenceClassification`` (labels ``en``/``de`` in ``id2label``, briefly trained here) saved with its
``BertTokenizer`` (WordPiece trained here; ``[PAD]`` 0, ``[UNK]`` 1, ``[CLS]`` 2, ``[SEP]`` 3) becomes a classify
run: ``tformer predict`` and ``tformer serve`` answer the label of ``transformers``' largest logit, with its
probabilities. A BERT without a classification head is refused in one line that says why and what to do instead
(ViT folders: test_hf_import_vit.py).
"""

import json
import re

import pytest

transformers = pytest.importorskip("transformers")
import torch  # noqa: E402
from cli_helpers import tformer_cli  # noqa: E402
from hf_helpers import WORDS_DE, WORDS_EN, sentences  # noqa: E402
from hf_import_helpers import bert_folder, edited_copy  # noqa: E402

from tformer.data.tokenizer import Tokenizer  # noqa: E402
from tformer.errors import TformerError  # noqa: E402
from tformer.interop.folders import import_folder  # noqa: E402
from tformer.tasks.classify import encode_texts  # noqa: E402

TEXTS = [*sentences(WORDS_EN, 4, seed=7), *sentences(WORDS_DE, 4, seed=8), "der dog", "Ünïcode ¿", "a",
         "hund katze the cat", "THE DOG  RUNS"]


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return bert_folder(tmp_path_factory.mktemp("hf") / "bert-tiny")


@pytest.fixture(scope="module")
def imported(bert, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "bert"
    r = tformer_cli("import", bert, "--out", run)
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    assert record["model_type"] == "bert" and record["task"] == "classify"
    return run


@pytest.fixture(scope="module")
def expected(bert):
    """transformers' answers: (label of the largest logit, softmax probabilities) per text, on a padded batch."""
    model = transformers.AutoModelForSequenceClassification.from_pretrained(bert).eval()
    tok = transformers.AutoTokenizer.from_pretrained(bert)
    with torch.no_grad():
        logits = model(**tok(TEXTS, return_tensors="pt", padding=True)).logits.double()
    labels = [model.config.id2label[int(i)] for i in logits.argmax(-1)]
    assert len(set(labels)) == 2  # a model whose answers depend on the text
    return labels, logits.softmax(-1).tolist()


def test_the_tokenizer_reads_texts_as_bert_tokenizer_does(bert, imported):
    ref = transformers.AutoTokenizer.from_pretrained(bert)
    tok = Tokenizer.load(imported / "tokenizer.json")
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (
        ref.pad_token_id, ref.cls_token_id, ref.sep_token_id, ref.unk_token_id) == (0, 2, 3, 1)
    from tokenizers import Tokenizer as Backend

    ids = encode_texts(Backend.from_file(str(imported / "tokenizer.json")), TEXTS, 64)  # what the run reads
    assert ids == ref(TEXTS)["input_ids"]


def test_predict_answers_transformers_labels_and_probabilities(imported, expected, tmp_path):
    labels, probs = expected
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS) + "\n")
    r = tformer_cli("predict", imported, "--input", tmp_path / "texts.txt")
    assert r.returncode == 0, r.stderr
    answers = [json.loads(line) for line in r.stdout.splitlines()]
    assert [a["label"] for a in answers] == labels
    for a, p in zip(answers, probs, strict=True):
        assert list(a["probabilities"]) == ["en", "de"]
        assert list(a["probabilities"].values()) == pytest.approx(p, abs=1e-5)


def test_serve_answers_transformers_labels(imported, expected):
    from serve_helpers import request, served_app

    from tformer.cli.serve import served
    from tformer.serving.app import create_app
    from tformer.serving.limits import Limits

    model, example = served(str(imported), "cpu")
    with served_app(create_app(model, Limits(max_texts=16), name="bert", example=example)) as url:
        status, info = request(url, "/info")
        assert status == 200 and info["task"] == "classify" and info["labels"] == ["en", "de"]
        status, got = request(url, "/predict", {"inputs": TEXTS})
    assert status == 200 and [out["label"] for out in got["outputs"]] == expected[0]


@pytest.mark.parametrize(("change", "message"), [
    ({"architectures": ["BertForMaskedLM"]}, r"holds a BertForMaskedLM, without a classification head: tformer "
                                             r"imports BertForSequenceClassification; fine-tune this one with task: "
                                             r"classify and model\.init_from: \S+/bad$"),
    ({"architectures": None}, r"config\.json names no architecture, so no classification head: .* fine-tune"),
    ({"architectures": ["BertForTokenClassification"]}, r"BertForTokenClassification, not a text classifier"),
    ({"problem_type": "multi_label_classification"}, r"a multi_label_classification head with 2 output\(s\)"),
    ({"pad_token_id": 1}, r"the tokenizer's pad id is 0 \('\[PAD\]'\) but the model's is 1"),
    ({"drop": ("tokenizer.json",)}, r"has no tokenizer\.json"),
    ({"id2label": {"0": "en", "2": "de"}, "label2id": {"en": 0, "de": 2}}, r"id2label's keys must be ids 0\.\.K-1"),
])
def test_a_folder_that_does_not_fit_is_one_line(bert, tmp_path, change, message):
    folder = edited_copy(bert, tmp_path / "bad", **change)
    with pytest.raises(TformerError) as e:
        import_folder(folder, tmp_path / "run")
    assert re.search(message, str(e.value)) and "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()


def test_another_model_type_is_refused_in_one_line_naming_those_imported(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "swin"}))
    r = tformer_cli("import", tmp_path, "--out", tmp_path / "run")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    assert "'swin' cannot be imported; tformer imports bert, gpt2, marian, t5, vit" in r.stderr
