"""``tformer import`` of a T5 folder, proved by ``transformers`` itself.

A real ``T5ForConditionalGeneration`` (v1.0, briefly trained here) saved with its ``T5Tokenizer`` (a SentencePiece
unigram model trained here, converted to ``tokenizer.json`` by ``transformers``; ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2,
10 sentinels) becomes a translation run: its tokenizer gives ``T5Tokenizer``'s ids, and ``tformer translate`` gives
what ``tokenizer`` + ``generate`` + ``batch_decode(skip_special_tokens=True)`` give, greedy and beam 4, on a padded
batch. One difference, stated in a test: tformer writes a special token the model emits (``<unk>``, a sentinel
``<extra_id_N>``) as its text, where ``skip_special_tokens`` drops it.
"""

import json

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")
import torch  # noqa: E402
from cli_helpers import tformer_cli  # noqa: E402
from hf_helpers import WORDS_EN, cli_translate, sentences  # noqa: E402
from hf_import_helpers import edited_copy, hf_generate, short_pairs, t5_folder  # noqa: E402

from tformer.data.vocabularies import Vocabularies  # noqa: E402
from tformer.errors import TformerError  # noqa: E402
from tformer.interop.folders import import_folder, load_folder  # noqa: E402
from tformer.translator import Translator  # noqa: E402

TEXTS = [*(s for s, _ in short_pairs(6, seed=99)), *sentences(WORDS_EN, 3, seed=99), "Ünïcode wörds ¿", "a",
         "the  dog\tsees  ﬁsh Ａ"]  # spaces, a ligature and a full-width letter for T5's normalizer


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    return t5_folder(tmp_path_factory.mktemp("hf") / "t5-tiny")


@pytest.fixture(scope="module")
def imported(t5, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "t5"
    r = tformer_cli("import", t5, "--out", run)
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    assert record["model_type"] == "t5" and record["task"] == "translation"
    return run


def test_the_tokenizer_gives_t5_tokenizers_ids_and_texts(t5, imported):
    ref = transformers.AutoTokenizer.from_pretrained(t5)
    vocabs = Vocabularies.load(imported)
    assert vocabs.shared
    tok = vocabs.src
    assert (tok.pad_id, tok.eos_id, tok.unk_id) == (ref.pad_token_id, ref.eos_token_id, ref.unk_token_id) == (0, 1, 2)
    assert tok.bos_id == 0 == json.loads((imported / "model" / "config.json").read_text())["bos_id"]  # decoder start
    for text in TEXTS:
        assert tok.encode(text) + [tok.eos_id] == ref(text)["input_ids"]
    special = set(ref.all_special_ids)
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):  # any ids but pad and EOS (decoding skips pad and stops at EOS, as generate's output does)
        ids = torch.randint(2, tok.vocab_size, (12,), generator=gen).tolist()
        ours, theirs = tok.decode(ids), ref.decode(ids, skip_special_tokens=True)
        if special.isdisjoint(ids):
            assert ours == theirs
        else:  # tformer writes <unk> and the sentinels; skip_special_tokens drops them
            for i in special & set(ids):
                ours = ours.replace(ref.convert_ids_to_tokens(i), "")
            assert ours == theirs


@pytest.mark.parametrize("beam", [1, 4])
def test_translate_gives_what_transformers_generate_gives(t5, imported, beam):
    expected = hf_generate(t5, TEXTS, beam)
    assert len(set(expected)) > 3  # a model whose outputs depend on the input
    assert cli_translate(imported, TEXTS, beam) == expected


def test_the_folder_read_in_memory_is_the_imported_run(t5, imported):
    translator = load_folder(t5)  # what model.init_from reads
    assert isinstance(translator, Translator)
    assert translator.translate(TEXTS, beam_size=1, max_len=40) == Translator.from_pretrained(imported).translate(
        TEXTS, beam_size=1, max_len=40)


@pytest.mark.parametrize(("change", "message"), [
    ({"drop": ("tokenizer.json",)}, "has no tokenizer.json: tformer reads the fast tokenizer's file"),
    ({"eos_token_id": 2}, "the tokenizer's eos id is 1 ('</s>') but the model's is 2"),
    ({"pad_token_id": 3, "decoder_start_token_id": 3}, "the tokenizer's pad id is 0 ('<pad>') but the model's is 3"),
    ({"vocab_size": 50}, "shared.weight has shape (106, 32); its config.json describes (50, 32)"),
    ({"feed_forward_proj": "gated-gelu", "is_gated_act": True, "dense_act_fn": "gelu_new"},
     "is gated; tformer builds T5 v1.0's ungated FFN"),
    ({"architectures": ["T5EncoderModel"]}, "holds a T5EncoderModel; tformer imports T5ForConditionalGeneration"),
    ({"drop": ("model.safetensors",)}, "has no weights (model.safetensors or pytorch_model.bin)"),
])
def test_a_folder_that_does_not_fit_is_one_line(t5, tmp_path, change, message):
    folder = edited_copy(t5, tmp_path / "bad", **change)
    with pytest.raises(TformerError) as e:
        import_folder(folder, tmp_path / "run")
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()


def test_a_folder_with_pytorch_model_bin_imports_the_same_weights(t5, imported, tmp_path):
    from safetensors.torch import load_file

    folder = edited_copy(t5, tmp_path / "bin", drop=("model.safetensors",))
    torch.save(load_file(t5 / "model.safetensors"), folder / "pytorch_model.bin")
    import_folder(folder, tmp_path / "run")
    ours, theirs = (load_file(run / "model" / "model.safetensors") for run in (imported, tmp_path / "run"))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_a_tokenizer_larger_than_the_model_is_one_line(t5, tmp_path):
    folder = edited_copy(t5, tmp_path / "bad")
    doc = json.loads((folder / "tokenizer.json").read_text())
    doc["added_tokens"] += [{"id": 100 + n, "content": f"<new_{n}>", "single_word": False, "lstrip": False,
                             "rstrip": False, "normalized": False, "special": False} for n in range(10)]
    (folder / "tokenizer.json").write_text(json.dumps(doc))
    with pytest.raises(TformerError, match=r"the tokenizer has 110 ids but the model's vocabulary only 106$"):
        import_folder(folder, tmp_path / "run")


def test_the_cli_refuses_in_one_line(t5, tmp_path):
    folder = edited_copy(t5, tmp_path / "bad", drop=("tokenizer.json",))
    r = tformer_cli("import", folder, "--out", tmp_path / "run")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "tokenizer.json" in r.stderr
