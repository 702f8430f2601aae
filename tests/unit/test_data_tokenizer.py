"""Tests of the subword tokenizer: round trips, special ids, persistence, shared vs separate vocabularies."""

import json
import unicodedata

import pytest
import torch

from tformer.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer, TokenizerError
from tformer.data.vocabularies import Vocabularies

GERMAN = [
    "Ein Hund läuft über die Straße.",
    "Zwei Männer spielen im Park Fußball!",
    "Die Größe des Bären beträgt 2,5 Meter.",
    "Öffnungszeiten: 9:00 bis 17:30 Uhr (außer sonntags).",
    "„Schön“, sagte die Ärztin – und lächelte.",
    "Am 3. Oktober 1990 war es kühl; später regnete es.",
    "Ein Mädchen mit einem gelben Hut isst ein Eis?",
]
ENGLISH = [
    "A dog is running across the street.",
    "Two men play soccer in the park!",
    "The bear's size is 2.5 meters.",
    "Opening hours: 9:00 to 17:30 (except Sundays).",
    '"Nice," said the doctor - and smiled.',
    "On October 3, 1990, it was cool; later it rained.",
    "A girl with a yellow hat is eating ice cream?",
]
CORPUS = (GERMAN + ENGLISH) * 20
UNSEEN_BUT_TRAINED_CHARS = ["Straße läuft 1990.", "Ärztin, Bär; Größe: 17 (Hut)!", "ice-cream 2.5"]


@pytest.fixture(scope="module", params=["bpe", "unigram"])
def tok(request):
    return Tokenizer.train(CORPUS, 200, model=request.param)


def test_special_tokens_have_fixed_ids(tok):
    assert [tok.id_to_token(i) for i in range(4)] == ["<pad>", "<s>", "</s>", "<unk>"]
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)


def test_round_trip_of_training_text_and_new_text(tok):
    for text in GERMAN + ENGLISH + UNSEEN_BUT_TRAINED_CHARS:
        ids = tok.encode(text)
        assert UNK_ID not in ids
        assert tok.decode(ids) == text


def test_encode_adds_no_special_tokens(tok):
    ids = tok.encode("Ein Hund läuft.")
    assert ids and not {PAD_ID, BOS_ID, EOS_ID} & set(ids)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.encode("") == []


def test_digits_and_punctuation_are_split_off(tok):
    tokens = tok.tokens("Am 1990, Hund!")
    assert {"1", "9", "0", ",", "!"} <= set(tokens)
    assert not any(len(t) > 1 and any(c.isdigit() for c in t) for t in tokens)


def test_tokens_spell_the_text(tok):
    text = "Zwei Männer spielen 17 Fußball."
    tokens = tok.tokens(text)
    assert len(tokens) == len(tok.encode(text))
    assert "".join(tokens).replace("▁", " ").strip() == text


def test_whitespace_collapses_and_nfc_applies(tok):
    assert tok.decode(tok.encode("  Ein \t Hund\n läuft.  ")) == "Ein Hund läuft."
    decomposed = unicodedata.normalize("NFD", "Männer über Öl")
    assert decomposed != "Männer über Öl"
    assert tok.encode(decomposed) == tok.encode("Männer über Öl")


def test_unseen_character_becomes_unk(tok):
    ids = tok.encode("Hund €")
    assert UNK_ID in ids
    assert tok.decode(ids) == "Hund <unk>"


def test_special_token_strings_in_text_are_not_control_ids(tok):
    ids = tok.encode("a <s> b </s>")
    assert BOS_ID not in ids and EOS_ID not in ids


def test_decode_drops_pad_and_bos_and_stops_at_eos(tok):
    ids = tok.encode("Ein Hund läuft.")
    other = tok.encode("Zwei Männer")
    assert tok.decode([BOS_ID, *ids, EOS_ID, *other, PAD_ID]) == "Ein Hund läuft."
    assert tok.decode(torch.tensor([BOS_ID, *ids, EOS_ID, PAD_ID, PAD_ID])) == "Ein Hund läuft."
    assert tok.decode([EOS_ID, *ids]) == ""
    with pytest.raises(ValueError, match="1-D"):
        tok.decode(torch.tensor([[BOS_ID, *ids]]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])


def test_batch_calls_match_single_calls(tok):
    texts = GERMAN + ENGLISH
    batch_ids = tok.encode_batch(texts)
    assert batch_ids == [tok.encode(t) for t in texts]
    length = max(len(ids) for ids in batch_ids) + 2
    rows = torch.full((len(texts), length), PAD_ID)  # (B, L) as a model would return
    for b, ids in enumerate(batch_ids):
        rows[b, : len(ids) + 2] = torch.tensor([BOS_ID, *ids, EOS_ID])
    assert tok.decode_batch(rows) == texts
    assert tok.decode_batch(batch_ids) == texts


def test_bpe_vocab_size_is_an_upper_bound():
    small = Tokenizer.train(CORPUS, 90)
    assert small.vocab_size == 90
    large = Tokenizer.train(CORPUS, 100_000)
    assert large.vocab_size < 100_000  # the text has fewer subwords than that
    assert len(large.encode(GERMAN[0])) < len(small.encode(GERMAN[0]))


def test_bpe_keeps_rare_characters_of_the_training_text():
    texts = ["der Hund"] * 50 + ["Ȣ"]  # "Ȣ" occurs once, below min_frequency
    tok = Tokenizer.train(texts, 100, min_frequency=2)
    assert tok.decode(tok.encode("Ȣ Hund")) == "Ȣ Hund"


def test_train_rejects_bad_arguments():
    with pytest.raises(ValueError, match="too small"):
        Tokenizer.train(CORPUS, 10)
    with pytest.raises(ValueError, match="unknown subword model"):
        Tokenizer.train(CORPUS, 200, model="wordpiece")


def test_save_load_gives_identical_ids(tok, tmp_path):
    path = tmp_path / "sub" / "tokenizer.json"
    tok.save(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["tokenizer.json"]  # no temp file left
    json.loads(path.read_text(encoding="utf-8"))
    loaded = Tokenizer.load(path)
    assert loaded.vocab_size == tok.vocab_size
    for text in GERMAN + ENGLISH + ["Hund €", "a <s> b"]:
        assert loaded.encode(text) == tok.encode(text)
        assert loaded.decode(tok.encode(text)) == tok.decode(tok.encode(text))


def test_load_errors_are_one_line_naming_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(TokenizerError) as err:
        Tokenizer.load(missing)
    assert str(missing) in str(err.value) and "\n" not in str(err.value)

    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"version": "1.0", "model": ', encoding="utf-8")
    with pytest.raises(ValueError) as err:
        Tokenizer.load(corrupt)
    assert str(corrupt) in str(err.value) and "\n" not in str(err.value)

    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TokenizerError, match="binary.json"):
        Tokenizer.load(binary)


def test_shared_vocabularies(tmp_path):
    vocabs = Vocabularies.train(GERMAN * 10, ENGLISH * 10, 150)
    assert vocabs.shared and vocabs.src is vocabs.tgt
    assert UNK_ID not in vocabs.src.encode(ENGLISH[0]) + vocabs.tgt.encode(GERMAN[0])
    vocabs.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.json"]
    loaded = Vocabularies.load(tmp_path)
    assert loaded.shared
    assert loaded.src.encode(GERMAN[2]) == vocabs.src.encode(GERMAN[2])


def test_separate_vocabularies(tmp_path):
    vocabs = Vocabularies.train(GERMAN * 10, ENGLISH * 10, 150, shared=False)
    assert not vocabs.shared and vocabs.src is not vocabs.tgt
    assert UNK_ID in vocabs.tgt.encode("Straße")  # "ß" occurs only on the German (source) side
    assert vocabs.src.decode(vocabs.src.encode("Straße")) == "Straße"
    vocabs.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.src.json", "tokenizer.tgt.json"]
    loaded = Vocabularies.load(tmp_path)
    assert not loaded.shared
    assert loaded.src.encode(GERMAN[3]) == vocabs.src.encode(GERMAN[3])
    assert loaded.tgt.encode(ENGLISH[3]) == vocabs.tgt.encode(ENGLISH[3])


def test_vocabularies_save_replaces_the_other_layout(tmp_path):
    Vocabularies.train(GERMAN * 10, ENGLISH * 10, 150, shared=False).save(tmp_path)
    Vocabularies.train(GERMAN * 10, ENGLISH * 10, 150).save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.json"]
    assert Vocabularies.load(tmp_path).shared


def test_vocabularies_load_errors(tok, tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer found"):
        Vocabularies.load(tmp_path)
    tok.save(tmp_path / "tokenizer.src.json")
    with pytest.raises(TokenizerError, match="tokenizer.tgt.json"):
        Vocabularies.load(tmp_path)  # half of a separate pair: the missing file is named


def test_json_text_round_trip_and_errors(tok):
    again = Tokenizer.from_json(tok.to_json())
    assert again.encode(GERMAN[4]) == tok.encode(GERMAN[4])
    with pytest.raises(TokenizerError, match="not a valid tokenizer"):
        Tokenizer.from_json("[]")


def test_errors_are_user_errors_for_the_cli():
    from tformer.errors import TformerError

    with pytest.raises(TformerError):
        Tokenizer.train(CORPUS, 10)
    with pytest.raises(TformerError):
        Vocabularies.load("/nonexistent/tformer-test-dir")
