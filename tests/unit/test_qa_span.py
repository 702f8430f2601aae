"""The span head, the best legal span, windows over long contexts and the offsets back to characters
(tformer.models.bert.span, tformer.data.qa_windows, tformer.tasks.qa_reader).

Oracles: brute-force enumeration of every (start, end) pair; a model whose scores cannot depend on the window (a
hand-set encoder whose hidden state at a position is a function of that position's token alone) read with one window
that holds the whole context; the context text itself (offsets must give back the answer's exact characters);
PyTorch's cross-entropy on the allowed positions alone.
"""

from __future__ import annotations

import itertools
import random

import pytest
import torch
import torch.nn.functional as F

from tformer.data.babi import BabiConfig, generate_split
from tformer.data.qa_windows import answer_tokens, char_span, make_windows, piece_starts
from tformer.data.tokenizer import Tokenizer
from tformer.errors import TformerError
from tformer.models.bert import EncoderOnly, EncoderOnlyConfig, EncoderOnlyForQuestionAnswering, best_spans
from tformer.models.registry import load_pretrained
from tformer.tasks.qa import position_loss
from tformer.tasks.qa_reader import Reader, ReaderSpec, collate_windows


# ---- the head -------------------------------------------------------------------------------------------------
def _tiny_qa(seed: int = 0, **kw) -> EncoderOnlyForQuestionAnswering:
    torch.manual_seed(seed)
    return EncoderOnlyForQuestionAnswering(EncoderOnlyConfig.tiny(vocab_size=64, **kw)).eval()


def test_the_head_gives_start_and_end_logits_masked_outside_the_answer_positions():
    model = _tiny_qa()
    ids = torch.randint(1, 64, (3, 10))
    allowed = torch.rand(3, 10) < 0.5
    start, end = model(ids, answer_mask=allowed)
    assert start.shape == end.shape == (3, 10)
    low = torch.finfo(start.dtype).min
    assert (start[~allowed] == low).all() and (end[~allowed] == low).all()
    assert torch.isfinite(start[allowed]).all() and (start[allowed] > low).all()
    free_start, free_end = model(ids)  # no mask: the same logits where allowed
    assert torch.equal(free_start[allowed], start[allowed]) and torch.equal(free_end[allowed], end[allowed])


def test_the_head_round_trips_through_its_folder_and_the_registry(tmp_path):
    model = _tiny_qa(seed=3)
    model.save_pretrained(tmp_path / "m")
    again = load_pretrained(tmp_path / "m")
    assert type(again) is EncoderOnlyForQuestionAnswering
    ids = torch.randint(1, 64, (2, 12))
    for a, b in zip(model(ids), again.eval()(ids), strict=True):
        assert torch.equal(a, b)
    encoder = EncoderOnly.from_pretrained(tmp_path / "m").eval()  # the encoder alone, to fine-tune elsewhere
    assert torch.equal(encoder(ids), model.encoder(ids))


# ---- the best legal span --------------------------------------------------------------------------------------
def _brute_force(start, end, allowed, max_len):
    best = (float("-inf"), 0, 0)
    for i, j in itertools.product(range(len(start)), repeat=2):
        if i <= j < i + max_len and allowed[i] and allowed[j] and start[i] + end[j] > best[0]:
            best = (start[i] + end[j], i, j)
    return best


@pytest.mark.parametrize("max_len", [1, 2, 5, 40])
def test_best_spans_equals_brute_force_enumeration(max_len):
    g = torch.Generator().manual_seed(max_len)
    b, s = 24, 17
    start, end = (torch.randn(b, s, generator=g, dtype=torch.float64) for _ in range(2))
    allowed = torch.rand(b, s, generator=g) < 0.6
    allowed[0] = False  # a row with no legal span
    allowed[1] = torch.arange(s) == 4  # one legal position: the span (4, 4)
    i, j, score = best_spans(start, end, allowed, max_len)
    for r in range(b):
        want = _brute_force(start[r].tolist(), end[r].tolist(), allowed[r].tolist(), max_len)
        assert (score[r].item(), i[r].item(), j[r].item()) == want
    assert (i[1].item(), j[1].item()) == (4, 4)
    assert score[0].item() == float("-inf")


def test_best_spans_refuses_a_zero_answer_length():
    with pytest.raises(TformerError, match="max_answer_len"):
        best_spans(torch.zeros(1, 3), torch.zeros(1, 3), torch.ones(1, 3, dtype=torch.bool), 0)


# ---- windows --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "piece", "stride"), [(1, 5, 5), (5, 5, 5), (6, 5, 5), (100, 20, 7), (37, 10, 1),
                                                    (50, 13, 13)])
def test_windows_cover_the_context_in_overlapping_pieces(n, piece, stride):
    question, context = [7, 8, 9], list(range(100, 100 + n))
    windows = make_windows(question, context, cls_id=1, sep_id=2, max_len=piece + len(question) + 3,
                           doc_stride=stride)
    covered = set()
    for w in windows:
        assert w.ids == [1, *question, 2, *context[w.first: w.first + w.length], 2]
        assert w.token_types == [0] * (len(question) + 2) + [1] * (w.length + 1)
        assert w.ids[w.offset: w.offset + w.length] == context[w.first: w.first + w.length]
        assert 1 <= w.length <= piece and len(w.ids) <= piece + len(question) + 3
        covered |= set(range(w.first, w.first + w.length))
    assert covered == set(range(n))  # every token is read
    assert windows[-1].first + windows[-1].length == n  # and the last piece ends with the context
    assert [w.first for w in windows] == [k * stride for k in range(len(windows))]
    assert len(windows) == 1 or windows[-2].first + piece < n  # no window more than needed


def test_training_labels_point_at_the_answer_in_its_window_and_at_cls_elsewhere():
    context = list(range(100, 160))
    windows = make_windows([5], context, cls_id=1, sep_id=2, max_len=14, doc_stride=6, answer=(30, 32))
    for w in windows:
        if w.first <= 30 and 32 < w.first + w.length:
            assert w.ids[w.start: w.end + 1] == context[30:33]
            assert w.context_index(w.start) == 30 and w.context_index(w.end) == 32
        else:
            assert (w.start, w.end) == (0, 0)
    assert any(w.start > 0 for w in windows) and any(w.start == 0 for w in windows)


def test_a_stride_longer_than_a_piece_or_a_question_that_fills_the_window_is_refused():
    with pytest.raises(TformerError, match="doc_stride"):
        piece_starts(30, 5, 6)
    with pytest.raises(TformerError, match="no room"):
        make_windows(list(range(10)), [1, 2], cls_id=1, sep_id=2, max_len=12, doc_stride=1)


# ---- offsets back to characters, with real tokenizers ------------------------------------------------------
@pytest.fixture(scope="module")
def questions():
    return generate_split(BabiConfig(train_questions=40), "train") + \
        generate_split(BabiConfig(long_questions=5), "test_long")


@pytest.fixture(scope="module")
def bpe(questions):
    from tokenizers import Tokenizer as HFTokenizer

    return HFTokenizer.from_str(Tokenizer.train([q.context for q in questions], vocab_size=150).to_json())


def _tokenizers(bpe):
    yield bpe
    try:
        from tformer.interop.bert import load_bert_folder
        from tformer.tasks.classify import minilm_folder

        wordpiece = load_bert_folder(minilm_folder())[1]  # WordPiece, lower case: offsets into the original text
        wordpiece.no_truncation()  # (its tokenizer.json cuts at 512 tokens)
        yield wordpiece
    except TformerError:
        pass


def test_answer_tokens_map_back_to_the_exact_answer_characters(questions, bpe):
    for tokenizer in _tokenizers(bpe):
        for q in questions:
            enc = tokenizer.encode(q.context, add_special_tokens=False)
            first, last = answer_tokens(enc.offsets, q.answer_start, q.answer_start + len(q.answer))
            assert char_span(enc.offsets, q.context, first, last) == (q.answer_start, q.answer_start + len(q.answer))


# ---- reading a long context in windows ---------------------------------------------------------------------
def _token_local_model(vocab_size: int) -> EncoderOnlyForQuestionAnswering:
    """An encoder whose hidden state at a position depends only on that position's token: no position or token type
    embedding, and every sub-layer's output projection zero (each layer is then LayerNorm(x + 0))."""
    torch.manual_seed(5)
    model = EncoderOnlyForQuestionAnswering(EncoderOnlyConfig.tiny(vocab_size=vocab_size, max_len=1024,
                                                                   dropout=0.0, attention_dropout=0.0)).eval()
    with torch.no_grad():
        model.encoder.embeddings.positions.weight.zero_()
        model.encoder.embeddings.token_types.weight.zero_()
        for layer in model.encoder.layers:
            for linear in (layer.self_attn.out_proj, layer.ffn.w_2):
                linear.weight.zero_()
                linear.bias.zero_()
    return model


def test_a_long_context_read_in_windows_gets_the_answer_of_one_window_that_holds_it_all(questions, bpe):
    model = _token_local_model(bpe.get_vocab_size())
    items = [(q.question, q.context) for q in questions if len(q.story) >= 30]
    whole = Reader(bpe, ReaderSpec(1, 2, 0, max_len=1024, doc_stride=1000, max_question_len=16, max_answer_len=4))
    strided = Reader(bpe, ReaderSpec(1, 2, 0, max_len=40, doc_stride=20, max_question_len=16, max_answer_len=4))
    assert all(len(strided.windows(strided.encode(*x))) >= 10 for x in items)  # much longer than a window
    assert all(len(whole.windows(whole.encode(*x))) == 1 for x in items)
    # pieces of 40 - 3 - |question| >= 21 tokens every 20 overlap by >= 3 = max_answer_len - 1: every legal span
    # of the whole context lies whole in some window
    # (a name said twice scores the same both times: the two readings may pick different occurrences of one text)
    a, b = whole.read(model, items), strided.read(model, items)
    assert [x["answer"] for x in a] == [x["answer"] for x in b]
    assert all(x["score"] == pytest.approx(y["score"], abs=1e-5) for x, y in zip(a, b, strict=True))
    assert all(x["answer"] == c[x["start"]: x["end"]] for x, (_, c) in zip(b, items, strict=True))
    assert len({x["answer"] for x in b}) > 1  # (not one token that wins everywhere)


def test_the_answer_is_the_best_span_over_the_windows_taken_one_at_a_time(questions, bpe):
    torch.manual_seed(0)
    model = EncoderOnlyForQuestionAnswering(EncoderOnlyConfig.tiny(vocab_size=bpe.get_vocab_size())).eval()
    reader = Reader(bpe, ReaderSpec(1, 2, 0, max_len=48, doc_stride=16, max_question_len=16, max_answer_len=3))
    q = next(q for q in questions if len(q.story) >= 30)
    [got] = reader.read(model, [(q.question, q.context)], max_tokens=150)  # 3 windows a batch
    enc = reader.encode(q.question, q.context)
    alone = []
    for w in reader.windows(enc):  # each window on its own, no padding
        b = collate_windows([w], 0, cls_answers=False)
        s, e = model(b.ids, b.mask, b.token_types, b.answer_mask)
        i, j, score = best_spans(s, e, b.answer_mask, 3)
        alone.append((score.item(), w.context_index(i.item()), w.context_index(j.item())))
    score, first, last = max(alone)
    assert got["score"] == pytest.approx(score, abs=1e-5)
    assert (got["start"], got["end"]) == char_span(enc.offsets, q.context, first, last)
    assert got["answer"] == q.context[got["start"]: got["end"]]


# ---- the loss -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_the_position_loss_is_cross_entropy_over_the_allowed_positions_alone(eps):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 9, generator=g, dtype=torch.float64)
    allowed = torch.rand(6, 9, generator=g) < 0.5
    allowed[:, 0] = True
    target = torch.tensor([random.Random(r).choice(allowed[r].nonzero().flatten().tolist()) for r in range(6)])
    masked = logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)
    loss, nll = position_loss(masked, target, allowed, eps)
    want = sum(F.cross_entropy(logits[r][allowed[r]][None], allowed[r][: target[r]].sum()[None],
                               label_smoothing=eps, reduction="sum") for r in range(6))
    plain = sum(F.cross_entropy(logits[r][allowed[r]][None], allowed[r][: target[r]].sum()[None], reduction="sum")
                for r in range(6))
    assert loss.item() == pytest.approx(want.item(), rel=1e-12) and nll.item() == pytest.approx(plain.item(), rel=1e-12)
