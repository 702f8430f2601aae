"""The non-autoregressive translator (CMLM) and mask-predict: the length predictor, the bidirectional decoder,
the training corruption and loss against plain formulas, and the decoding rounds counted and checked."""

import math

import pytest
import torch
import torch.nn.functional as F

from tformer.config import ConfigError
from tformer.errors import TformerError
from tformer.generation.mask_predict import mask_predict
from tformer.models.cmlm.config import CMLMConfig
from tformer.models.cmlm.model import CMLM
from tformer.models.registry import legacy_architecture, resolve
from tformer.tasks.cmlm import MaskedBatch, cmlm_loss, hide_tokens
from tformer.training.label_smoothing import label_smoothed_loss

V, L = 40, 24


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return CMLM(CMLMConfig.tiny(vocab_size=V, max_target_len=L, dropout=0.0, **kw)).eval()


def _src():
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, V, (3, 9), generator=g)
    src[:, -1] = 2  # EOS
    src[1, 5], src[1, 6:] = 2, 0  # a shorter sentence, padded
    return src


def _force_length(model, n):
    """Make the length predictor certain of length n."""
    with torch.no_grad():
        model.length_predictor.proj.weight.zero_()
        model.length_predictor.proj.bias.fill_(-30.0)
        model.length_predictor.proj.bias[n] = 30.0


def test_the_length_predictor_scores_every_length_and_ignores_padding():
    model = _model()
    src = _src()
    memory = model.encode(src)
    logits = model.predict_length(memory, src)
    assert logits.shape == (3, L + 1)
    alone = model.predict_length(model.encode(src[1:2, :6]), src[1:2, :6])  # row 1 without its padding
    torch.testing.assert_close(logits[1:2], alone, rtol=1e-5, atol=1e-5)


def test_the_mask_token_is_an_input_but_never_an_output():
    model = _model()
    assert model.cfg.mask_id == V
    assert model.decoder.embed.tokens.weight.shape[0] == V + 1  # the embedding has the mask row
    tgt = torch.full((3, 5), model.cfg.mask_id)
    logits, lengths = model(_src(), tgt)
    assert logits.shape == (3, 5, V) and lengths.shape == (3, L + 1)
    w, _ = model.output_weight()
    assert w.data_ptr() == model.decoder.embed.tokens.weight.data_ptr()  # tied to the first V rows (§3.4)


def test_the_decoder_sees_later_positions_and_not_padding():
    model = _model()
    src = _src()[:1]
    tgt = torch.tensor([[5, 6, 7, 8]])
    base = model(src, tgt)[0]
    changed = model(src, torch.tensor([[5, 6, 7, 9]]))[0]
    assert not torch.allclose(base[0, 0], changed[0, 0])  # position 0 reads position 3: not causal
    padded = model(src, torch.tensor([[5, 6, 7, 8, 0, 0]]))[0]
    torch.testing.assert_close(padded[:, :4], base, rtol=1e-5, atol=1e-5)


def test_hide_tokens_hides_between_one_and_all_real_tokens_uniformly():
    tgt = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 0, 0, 0]])
    g = torch.Generator().manual_seed(0)
    counts = {0: [], 1: []}
    for _ in range(400):
        tin, tout = hide_tokens(tgt, 0, V, g)
        hidden = tin == V
        assert torch.equal(tout != 0, hidden)  # the labels are exactly the hidden tokens
        assert torch.equal(tout[hidden], tgt[hidden]) and torch.equal(tin[~hidden], tgt[~hidden])
        for row in (0, 1):
            counts[row].append(int(hidden[row].sum()))
    assert set(counts[0]) == {1, 2, 3, 4, 5} and set(counts[1]) == {1, 2}  # n ~ U{1..|y|}, pads never hidden
    assert abs(sum(counts[0]) / 400 - 3.0) < 0.25  # the mean of U{1..5}


def test_the_loss_is_the_hidden_tokens_cross_entropy_plus_the_weighted_length_loss():
    model = _model(length_loss_weight=0.3)
    src = _src()
    tgt = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0], [11, 12, 13, 0]])
    tin, tout = hide_tokens(tgt, 0, V, torch.Generator().manual_seed(3))
    lengths = (tgt != 0).sum(1)
    out = cmlm_loss(model, MaskedBatch(src, tin, tout, lengths, 0, int((tout != 0).sum())), 0.1)
    logits, length_logits = model(src, tin)
    oracle_tokens = label_smoothed_loss(logits, tout, 0.1, 0)
    oracle = oracle_tokens.loss + 0.3 * F.cross_entropy(length_logits, lengths, reduction="sum")
    torch.testing.assert_close(out.loss, oracle, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.nll, oracle_tokens.nll, rtol=1e-5, atol=1e-5)
    assert out.num_tokens == int((tout != 0).sum())


def test_one_round_with_one_length_is_the_argmax_of_one_pass():
    model = _model()
    _force_length(model, 6)
    src = _src()
    out = model.generate(src, iterations=1, length_candidates=1)
    assert out.shape == (3, 7) and (out[:, 6] == 2).all()
    logits = model(src, torch.full((3, 6), V))[0]
    for special in (0, 1, 2):
        logits[..., special] = -math.inf
    assert torch.equal(out[:, :6], logits.argmax(-1))


@pytest.mark.parametrize("iterations", [1, 4, 10])
def test_mask_predict_makes_one_decoder_pass_per_round_and_re_predicts_the_least_confident(iterations):
    model = _model()
    n = 12
    _force_length(model, n)
    inputs = []
    # the decoder's input ids, once per decoder pass (Decoder.bidirectional embeds them first)
    model.decoder.embed.register_forward_hook(lambda m, args, out: inputs.append(args[0].clone()))
    trace = []
    mask_predict(model, _src(), iterations=iterations, length_candidates=1, trace=trace)
    assert len(inputs) == iterations == len(trace)  # one decoder pass per round
    for t, x in enumerate(inputs):
        hidden = (x == V).sum(dim=1)
        expect = n if t == 0 else n * (iterations - t) // iterations  # Mask-Predict: n = |y| (T - t) / T
        assert hidden.tolist() == [expect] * 3


def test_rounds_with_nothing_to_re_predict_are_skipped():
    model = _model()
    _force_length(model, 2)
    trace = []
    mask_predict(model, _src(), iterations=10, length_candidates=1, trace=trace)
    assert len(trace) == 6  # n = 2 (10 - t) // 10 > 0 only for t <= 5


def test_the_length_beam_decodes_the_most_likely_lengths_side_by_side():
    model = _model(seed=3)
    src = _src()
    with torch.no_grad():
        model.length_predictor.proj.weight.zero_()
        model.length_predictor.proj.bias.fill_(-30.0)
        model.length_predictor.proj.bias[[3, 5, 8]] = torch.tensor([30.0, 29.0, 28.0])
    best = model.generate(src, iterations=3, length_candidates=3)
    singles = []  # each length decoded alone
    for n in (3, 5, 8):
        _force_length(model, n)
        singles.append(mask_predict(model, src, iterations=3, length_candidates=1))
    for row in range(3):  # every winner is one of them, decoded the same side by side as alone
        assert any(torch.equal(best[row, : o.shape[1]], o[row]) and best[row, o.shape[1]:].eq(0).all()
                   for o in singles)
    chosen = {int((best[row] != 0).sum()) - 1 for row in range(3)}
    assert chosen <= {3, 5, 8}


def test_a_sentence_translates_the_same_alone_and_in_a_padded_batch():
    model = _model(seed=5)
    src = _src()
    batch = model.generate(src, iterations=4)
    alone = model.generate(src[1:2, :6], iterations=4)
    assert torch.equal(batch[1, : alone.shape[1]], alone[0]) and batch[1, alone.shape[1]:].eq(0).all()


def test_save_and_load_round_trip_and_configs_are_told_apart(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path)
    again = CMLM.from_pretrained(tmp_path)
    src = _src()
    assert torch.equal(model.generate(src), again.generate(src))
    assert resolve(tmp_path) is CMLM  # config.json names its architecture
    assert legacy_architecture(model.cfg.to_dict()) == "CMLM"  # a checkpoint's config, or a 0.1.0 folder's
    assert legacy_architecture(CMLMConfig.tiny().to_dict()) == "CMLM"


def test_bad_settings_are_one_line_errors():
    model = _model()
    with pytest.raises(TformerError, match="iterations"):
        model.generate(_src(), iterations=0)
    with pytest.raises(TformerError, match="length_candidates"):
        model.generate(_src(), length_candidates=0)
    with pytest.raises(ConfigError, match="max_target_len"):
        CMLMConfig.tiny(max_target_len=0)
    with pytest.raises(ConfigError, match="pointer_generator"):
        CMLMConfig.tiny(pointer_generator=True)


def test_int8_decoding_works_with_a_separate_output_layer():
    from tformer.nn.quantize import quantize_dynamic_int8

    model = _model(tie_output=False, output_bias=True)
    src = _src()
    out = quantize_dynamic_int8(model).generate(src, iterations=2)
    assert out.shape[0] == 3 and (out == 2).sum(dim=1).eq(1).all()  # one EOS a row
