"""The monotonic window of decoding and the alignment measures: the focus never moves backwards, a window covering
the source is plain decoding, cached decoding equals full recomputation under the window; the diagonal focus rate
and the monotonic rate on hand-made alignments."""

import pytest
import torch

from tformer import Transformer, TransformerConfig
from tformer.errors import TformerError
from tformer.evaluation.alignment import alignment_rates, moves_forward, on_diagonal
from tformer.generation import GenerationOptions, beam_search_nbest, greedy_search
from tformer.generation.alignment import forced_alignment, step_alignment
from tformer.nn.attention import AttentionProbe
from tformer.nn.cache import MonotonicWindow
from tformer.nn.masks import monotonic_window_mask, padding_mask


def random_model(seed, layers=2):
    torch.manual_seed(seed)
    cfg = TransformerConfig.tiny(vocab_size=24, num_decoder_layers=layers, dropout=0.0, max_len=40)
    return Transformer(cfg).double().eval()


def random_source(model, seed, b=3, s=9):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 24, (b, s), generator=g)
    for row in range(1, b):  # rows of other lengths, right-padded
        src[row, s - 2 * row :] = model.cfg.pad_id
    return src


def step_with_window(model, src, tokens, window):
    """Feed BOS + tokens (B, L) one at a time under ``window``: each step's logits (B, L+1, V), the focus before each
    step (B, L+1) and the last layer's attention of each step, mean over heads (B, L+1, S)."""
    cache = model.start_decoding(model.encode(src), src)
    cache.constrain(window)
    inputs = torch.cat([src.new_full((src.shape[0], 1), model.cfg.bos_id), tokens], dim=1)
    logits, focus, attention = [], [], []
    for t in range(inputs.shape[1]):
        focus.append(cache.focus.clone())
        out, (w,) = model.decode_step(inputs[:, t : t + 1], cache, cross_attention=AttentionProbe(layers=(-1,)))
        logits.append(out[:, -1])
        attention.append(w.mean(dim=1)[:, -1])
    return torch.stack(logits, 1), torch.stack(focus, 1), torch.stack(attention, 1), cache


def full_recomputation(model, src, tokens, focus, window):
    """The whole target BOS + tokens (B, T) in one teacher-forced pass, each position under the window of the
    focus it was decoded with, ``focus`` (B, T): the output (logits, last layer's probed weights (B, H, T, S))."""
    tgt_in = torch.cat([src.new_full((src.shape[0], 1), model.cfg.bos_id), tokens], dim=1)  # (B, T)
    mask = padding_mask(src, model.cfg.pad_id) & monotonic_window_mask(focus, src.shape[1], window.back,
                                                                       window.ahead)  # (B, 1, T, S)
    out = model.decoder(tgt_in, model.encode(src), mask, probe=AttentionProbe(layers=(-1,)))
    return model.output_projection(out.hidden), out.probed[0]


def running_peak(weights):
    """Where the focus must be after each step, computed independently of the cache: the running maximum of the
    peaks of the mean-over-heads weights (B, H, T, S) of the steps so far, (B, T)."""
    peaks = weights.mean(dim=1).argmax(dim=-1).tolist()  # (B, T)
    rows = []
    for row in peaks:
        best, path = 0, []
        for p in row:
            best = max(best, p)
            path.append(best)
        rows.append(path)
    return torch.tensor(rows)


@pytest.mark.parametrize("seed", range(4))
def test_the_focus_never_moves_backwards_and_the_peak_stays_in_the_window(seed):
    model = random_model(seed)
    src = random_source(model, seed)
    window = MonotonicWindow(ahead=2, back=1)
    tokens = torch.randint(4, 24, (src.shape[0], 12), generator=torch.Generator().manual_seed(seed + 50))
    _, focus, attention, cache = step_with_window(model, src, tokens, window)
    _, weights = full_recomputation(model, src, tokens, focus, window)  # (B, H, L+1, S)
    focus = torch.cat([focus, cache.focus[:, None]], dim=1)  # (B, L+2): before each step and after the last
    assert torch.equal(focus[:, 1:], running_peak(weights))  # the peaks of a pass that knows nothing of the cache
    assert (focus[:, -1] > 0).any()  # the window moved on (it does on random models)
    peak = attention.argmax(dim=-1)  # (B, L+1)
    assert ((peak >= focus[:, :-1] - 1) & (peak <= focus[:, :-1] + 2)).all()
    lengths = (src != model.cfg.pad_id).sum(dim=1)
    assert (focus.max(dim=1).values < lengths).all()  # never on padding
    outside = ~monotonic_window_mask(focus[:, :-1].reshape(-1), src.shape[1], 1, 2)[:, 0, 0]  # (B*(L+1), S)
    assert (attention.reshape(-1, src.shape[1])[outside] == 0).all()  # nothing attended outside the window


@pytest.mark.parametrize("seed", range(3))
def test_a_window_covering_the_source_is_plain_decoding(seed):
    model = random_model(seed)
    src = random_source(model, seed)
    wide = MonotonicWindow(ahead=src.shape[1], back=src.shape[1])
    assert torch.equal(greedy_search(model, src, max_len=15, window=wide), greedy_search(model, src, max_len=15))
    plain = beam_search_nbest(model, src, beam_size=3, max_len=15, nbest=3)
    windowed = beam_search_nbest(model, src, beam_size=3, max_len=15, nbest=3, window=wide)
    assert plain == windowed
    assert torch.equal(model.generate(src, beam_size=2, monotonic_window=20, monotonic_window_back=20),
                       model.generate(src, beam_size=2))


@pytest.mark.parametrize("seed", range(3))
def test_cached_decoding_equals_full_recomputation_under_the_window(seed):
    model = random_model(seed, layers=3)
    src = random_source(model, seed)
    tokens = torch.randint(4, 24, (src.shape[0], 10), generator=torch.Generator().manual_seed(seed + 9))
    window = MonotonicWindow(ahead=1, back=0)
    logits, focus, attention, _ = step_with_window(model, src, tokens, window)
    # the whole target at once, each position with the window of the focus it was decoded with
    full_logits, weights = full_recomputation(model, src, tokens, focus, window)
    torch.testing.assert_close(full_logits, logits)
    torch.testing.assert_close(weights.mean(dim=1), attention)
    assert torch.equal(running_peak(weights)[:, :-1], focus[:, 1:])  # the full pass gives the same focus path


def test_beam_one_equals_greedy_under_the_window_and_the_window_changes_outputs():
    model = random_model(7)
    src = random_source(model, 7)
    window = MonotonicWindow(ahead=1, back=0)
    greedy = greedy_search(model, src, max_len=12, window=window)
    beam = beam_search_nbest(model, src, beam_size=1, max_len=12, length_penalty_alpha=0.0, window=window)
    for row, hyps in enumerate(beam):
        tokens = [t for t in greedy[row].tolist() if t != model.cfg.pad_id]
        assert list(hyps[0].tokens) == tokens
    plain = greedy_search(model, src, max_len=12)
    tight = [greedy_search(model, src, max_len=12, window=MonotonicWindow(ahead=a, back=0)) for a in (1, 2)]
    assert any(not torch.equal(t, plain) for t in tight)  # the constraint is felt on random models


@torch.no_grad()
def replayed_logprob(model, src, tokens, window):
    """log P(tokens | src) (src (1, S)) replayed one token at a time through a fresh cache under ``window``."""
    cache = model.start_decoding(model.encode(src), src)
    cache.constrain(window)
    inputs = [model.cfg.bos_id, *tokens[:-1]]
    total = 0.0
    for given, token in zip(inputs, tokens, strict=True):
        logits = model.decode_step(torch.tensor([[given]]), cache)  # (1, 1, V)
        total += float(logits[0, -1].log_softmax(-1)[token])
    return total


@pytest.mark.parametrize("seed", (1, 2, 3))  # each of these fails when reorder_targets leaves the focus alone
def test_beam_search_reorders_the_focus_with_the_beams(seed):
    """Under a tight window each beam's focus is its own: every hypothesis of a batched beam search (beams
    reordered, finished sentences dropped) has the log-probability of replaying its tokens alone under the window.
    Were the focus not reordered with the beams, a beam would continue with another's window."""
    model = random_model(seed + 20)
    src = random_source(model, seed + 20)
    window = MonotonicWindow(ahead=1, back=0)
    nbest = beam_search_nbest(model, src, beam_size=3, max_len=12, nbest=3, window=window)
    for b, hyps in enumerate(nbest):
        n = int((src[b] != model.cfg.pad_id).sum())
        assert len(hyps) == 3
        for hyp in hyps:  # beam search sums in float32
            assert abs(hyp.logprob - replayed_logprob(model, src[b : b + 1, :n], list(hyp.tokens), window)) < 1e-5


def test_step_alignment_is_the_stepped_attention_and_settings_are_checked():
    model = random_model(3)
    src = random_source(model, 3)
    tokens = torch.randint(4, 24, (src.shape[0], 6), generator=torch.Generator().manual_seed(1))
    window = MonotonicWindow(ahead=2, back=1)
    _, _, attention, _ = step_with_window(model, src, tokens, window)
    tgt_in = torch.cat([src.new_full((src.shape[0], 1), model.cfg.bos_id), tokens], dim=1)
    torch.testing.assert_close(step_alignment(model, src, tgt_in, window=window), attention.float())
    # without a window one teacher-forced pass gives what stepping gives (padded rows included)
    torch.testing.assert_close(forced_alignment(model, src, tgt_in), step_alignment(model, src, tgt_in))
    cache = model.start_decoding(model.encode(src), src)
    cache.constrain(window)
    with pytest.raises(TformerError, match="one new position per step") as e:  # the window moves after each
        model.decode_step(tgt_in[:, :2], cache)
    assert "\n" not in str(e.value)
    for bad in (-1, 0):  # a window reaching nothing ahead would freeze its focus
        with pytest.raises(TformerError, match="monotonic_window must be >= 1") as e:
            GenerationOptions(monotonic_window=bad)
        assert "\n" not in str(e.value)
    with pytest.raises(TformerError, match="monotonic_window_back must be >= 0"):
        GenerationOptions(monotonic_window=1, monotonic_window_back=-1)
    for ahead, back in ((0, 1), (0, 0), (-1, 1), (1, -1)):
        with pytest.raises(ValueError, match="ahead >= 1 and back >= 0") as e:
            MonotonicWindow(ahead, back)
        assert "\n" not in str(e.value)
    assert MonotonicWindow(1, 0) == GenerationOptions(monotonic_window=1, monotonic_window_back=0).window()
    assert GenerationOptions(monotonic_window=3, monotonic_window_back=0).window() == MonotonicWindow(3, 0)
    assert GenerationOptions().window() is None


# ---- the measures -----------------------------------------------------------------------------------------------
def one_hot_rows(peaks, s):
    return torch.nn.functional.one_hot(torch.tensor(peaks), s).double()


def test_a_diagonal_alignment_scores_one_and_an_anti_diagonal_one_low():
    for t, s in ((8, 8), (12, 5), (3, 10), (2, 2), (1, 4)):
        diagonal = one_hot_rows([min(s - 1, int((i + 0.5) * s / t)) for i in range(t)], s)
        rates = alignment_rates([diagonal])
        assert rates.diagonal_focus_rate == 1.0 and rates.monotonic_rate == 1.0 and rates.steps == t
    anti = one_hot_rows(list(range(9, -1, -1)), 10)
    rates = alignment_rates([anti])
    assert rates.diagonal_focus_rate == pytest.approx(0.2) and rates.monotonic_rate == pytest.approx(0.1)


def test_the_measures_on_hand_made_alignments():
    peaks = torch.tensor([0, 1, 1, 4, 2, 3])
    assert moves_forward(peaks).tolist() == [True, True, True, True, False, True]
    # T = 6, N = 6, band 0.1 (+ half a cell): |(n + .5)/6 - (t + .5)/6| <= 0.1 + 1/12, i.e. |n - t| <= 1.1
    assert on_diagonal(peaks, 6, 0.1).tolist() == [True, True, True, True, False, False]
    a = one_hot_rows(peaks.tolist(), 6)
    b = one_hot_rows([0, 0, 1, 1], 2)
    rates = alignment_rates([a, b], band=0.1)  # b: every step on its diagonal, and monotonic
    assert rates.steps == 10
    assert rates.diagonal_focus_rate == pytest.approx(8 / 10) and rates.monotonic_rate == pytest.approx(9 / 10)
    assert alignment_rates([a], band=1.0).diagonal_focus_rate == 1.0
    with pytest.raises(TformerError, match="band must be >= 0"):
        alignment_rates([a], band=-0.1)
    assert alignment_rates([]).steps == 0
