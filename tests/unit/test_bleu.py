"""The scores of `tformer evaluate`: sacreBLEU's BLEU, chrF and TER, and the tokenized BLEU of Multi30k papers,
checked against the Moses scripts' own output and multi-bleu.perl's formula written out here."""

import math
from collections import Counter

import pytest
import sacrebleu
from sacremoses import MosesPunctNormalizer, MosesTokenizer

from tformer.errors import TformerError
from tformer.evaluation.bleu import corpus_bleu, moses_tokenize, score

# Raw lines of Multi30k (test_2016_flickr, val) and the same lines in the dataset's own lowercased, tokenized
# files (data/task1/tok/*.lc.norm.tok.*), made by lowercase.perl | normalize-punctuation.perl | tokenizer.perl.
# (sacremoses reproduces 8039 of the 8042 lines of val and test_2016_flickr in en, de, fr and cs; the other three
# put a closing quote before or after a final period differently, or normalize French "d’œil" to "d &quot; œil".)
MULTI30K_TOK = [
    ("en", "One man holds another man's head down and prepares to punch him in the face.",
     "one man holds another man &apos;s head down and prepares to punch him in the face ."),
    ("en", "A man in a black t-shirt, cap and jeans is playing drums on an upside down yellow pail.",
     "a man in a black t-shirt , cap and jeans is playing drums on an upside down yellow pail ."),
    ("de", "Ein älterer Mann sitzt im Freien vor einem großen Banner mit der Aufschrift „Memoria Justicia Sin Olvido“ "
     "auf einer Bank.", "ein älterer mann sitzt im freien vor einem großen banner mit der aufschrift &quot; memoria "
     "justicia sin olvido &quot; auf einer bank ."),
    ("de", "Eine junge Frau in „Straßenkleidung“ und Stiefeln führt eine Ballettübung an einem See aus.",
     "eine junge frau in &quot; straßenkleidung &quot; und stiefeln führt eine ballettübung an einem see aus ."),
    ("fr", "Un terrier de Boston court sur l'herbe verdoyante devant une clôture blanche.",
     "un terrier de boston court sur l&apos; herbe verdoyante devant une clôture blanche ."),
    ("fr", "Un homme assis à une table chez lui, en train d'utiliser un outil.",
     "un homme assis à une table chez lui , en train d&apos; utiliser un outil ."),
    ("cs", 'Mladík s černým tričkem s nápisem "Asian Pacific 2007" hraje sedíc na bubny.',
     "mladík s černým tričkem s nápisem &quot; asian pacific 2007 &quot; hraje sedíc na bubny ."),
]

REFS = ["A man in an orange hat starring at something.", "A Boston Terrier is running on lush green grass.",
        "A girl in karate uniform breaking a stick with a front kick.", "Five people in winter jackets and helmets "
        "stand in the snow, with snowmobiles in the background.", "People are fixing the roof of a house.",
        "A man in light colored clothing photographs a group of men wearing dark suits and hats.",
        "A group of people standing in front of an igloo.", "A boy in a red uniform is attempting to avoid "
        "getting out at home plate, while the catcher in the blue uniform is attempting to catch him."]
HYPS = ["A man in an orange hat stares at something.", "A Boston terrier runs over the lush green grass.",
        "A girl in a karate uniform breaks a board with a kick.", "Five people in winter jackets and helmets are "
        "standing in the snow with snowmobiles behind them.", "People fix the roof of a house.",
        "A man in light clothes takes a photo of men in dark suits and hats.", "People stand in front of an igloo.",
        "A boy in a red uniform tries not to get out at home plate; the catcher in blue tries to catch him."]


def multi_bleu(hyps: list[list[str]], refs: list[list[str]]) -> float:
    """multi-bleu.perl: corpus n-gram precisions (n = 1..4, counts clipped by the reference), their geometric
    mean, the brevity penalty exp(1 - r/c) when c < r; 0 if any precision is 0."""
    log_p = 0.0
    for n in range(1, 5):
        match = total = 0
        for h, r in zip(hyps, refs, strict=True):
            hc = Counter(tuple(h[i:i + n]) for i in range(len(h) - n + 1))
            rc = Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1))
            match += sum(min(k, rc[g]) for g, k in hc.items())
            total += max(len(h) - n + 1, 0)
        if match == 0:
            return 0.0
        log_p += math.log(match / total) / 4
    c, r = sum(map(len, hyps)), sum(map(len, refs))
    return 100 * (1.0 if c >= r else math.exp(1 - r / c)) * math.exp(log_p)


def words_edit_distance(a: list[str], b: list[str]) -> int:
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[-1]


@pytest.mark.parametrize("lang,raw,official", MULTI30K_TOK)
def test_moses_tokenize_reproduces_the_multi30k_tokenized_files(lang, raw, official):
    assert moses_tokenize([raw], lang) == [official]


def test_tokenized_bleu_is_multi_bleu_on_moses_tokenized_lowercased_text():
    norm, tok = MosesPunctNormalizer(lang="en"), MosesTokenizer(lang="en")

    def split(lines):  # the Moses scripts through sacremoses, called here directly
        return [tok.tokenize(norm.normalize(s.lower()), escape=False) for s in lines]

    expected = multi_bleu(split(HYPS), split(REFS))
    assert 10 < expected < 90
    assert score(HYPS, REFS)["bleu_tok"] == pytest.approx(expected, abs=0.01)
    assert score([h.upper() for h in HYPS], REFS)["bleu_tok"] == pytest.approx(expected, abs=0.01)  # lowercased


def test_tokenized_bleu_of_tokenized_lowercase_text_without_punctuation_is_plain_bleu():
    hyps, refs = ([s.lower().replace(".", "").replace(",", "").replace(";", "") for s in side] for side in (HYPS, REFS))
    expected = sacrebleu.metrics.BLEU(tokenize="none").corpus_score(hyps, [refs]).score
    assert score(hyps, refs)["bleu_tok"] == pytest.approx(expected, abs=0.005)


def test_bleu_chrf_and_ter_are_sacrebleus_with_their_signatures():
    s = score(HYPS, REFS, tokenize="intl", lang="en")
    assert s["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS], tokenize="intl").score, abs=0.005)
    assert s["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score, abs=0.005)
    assert s["ter"] == pytest.approx(sacrebleu.corpus_ter(HYPS, [REFS]).score, abs=0.005)
    assert "tok:intl" in s["bleu_signature"] and s["sentences"] == len(HYPS)
    assert s["ter_signature"].startswith("nrefs:1|case:lc|tok:tercom")
    assert s["bleu_tok_signature"].startswith("moses:en+lc+norm|sacremoses:")
    assert "|case:lc|" in s["bleu_tok_signature"] and "|tok:none|" in s["bleu_tok_signature"]
    assert corpus_bleu(HYPS, REFS, tokenize="intl") == {"bleu": s["bleu"], "bleu_signature": s["bleu_signature"]}


def test_ter_without_a_useful_shift_is_the_word_edit_rate():
    refs = ["a b c d e f", "g h i j"]
    hyps = ["a b x d e", "g h i j k l"]  # a substitution and a deletion; two insertions: no shift helps
    edits = sum(words_edit_distance(h.split(), r.split()) for h, r in zip(hyps, refs, strict=True))
    assert score(hyps, refs)["ter"] == pytest.approx(100 * edits / 10, abs=0.005)
    assert score(refs, refs)["ter"] == 0.0 and score(refs, refs)["bleu_tok"] == 100.0


def test_the_moses_language_matters_and_is_checked():
    fr = ["Une femme jette un coup d'œil."]
    assert score(fr, fr, lang="fr")["bleu_tok_signature"].startswith("moses:fr+")
    assert moses_tokenize(fr, "fr") != moses_tokenize(fr, "en")  # French splits after the apostrophe
    with pytest.raises(TformerError, match="no language 'english'") as e:
        score(fr, fr, lang="english")
    assert "\n" not in str(e.value)
    with pytest.raises(TformerError, match="2 hypotheses but 1 references"):
        score(fr * 2, fr)


def test_the_tokenized_bleu_does_not_warn_that_its_text_is_tokenized(caplog):
    lines = ["A dog runs."] * 101  # Moses makes them end in " .": sacreBLEU warns of more than 100 such lines
    score(lines, lines)
    assert not [r for r in caplog.records if "tokenized period" in r.getMessage()]
    tokenized = moses_tokenize(lines)
    sacrebleu.metrics.BLEU(tokenize="none").corpus_score(tokenized, [tokenized])  # the warning this test would see
    assert [r for r in caplog.records if "tokenized period" in r.getMessage()]
