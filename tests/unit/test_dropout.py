"""Dropout (§5.4): the CPU path against its definition and against torch's dropout in distribution."""

import pytest
import torch

from tformer.nn.dropout import Dropout


def test_zeroes_a_fraction_p_and_scales_the_rest():
    torch.manual_seed(0)
    x = torch.rand(400_000) + 0.5  # no zeros before dropout
    y = Dropout(0.1).train()(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.1) < 0.003  # 400k Bernoulli(0.1): std 0.00047, so 6 std
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / 0.9)
    # the expected value is kept, as with torch's dropout
    assert abs(y.mean().item() - x.mean().item()) < 0.01


def test_gradient_is_the_same_mask_and_scale():
    torch.manual_seed(1)
    x = torch.randn(64, 33, requires_grad=True)
    y = Dropout(0.3).train()(x)
    g = torch.randn_like(y)
    y.backward(g)
    mask = (y != 0).float()
    torch.testing.assert_close(x.grad, g * mask / 0.7)


def test_eval_and_p0_are_identity_p1_zeroes_and_seed_repeats():
    x = torch.randn(5, 7)
    assert Dropout(0.5).eval()(x) is x
    assert Dropout(0.0).train()(x) is x
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    torch.manual_seed(3)
    a = Dropout(0.2).train()(x)
    torch.manual_seed(3)
    b = Dropout(0.2).train()(x)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)


def test_model_uses_it_everywhere_dropout_is_placed():
    from tformer import Transformer, TransformerConfig

    model = Transformer(TransformerConfig.tiny(vocab_size=20))
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    # two embedding sums + a residual per sub-layer (2 per encoder layer, 3 per decoder layer) + FFN inner dropouts
    n = sum(isinstance(m, Dropout) for m in model.modules())
    cfg = model.cfg
    assert n == 2 + 2 * cfg.num_encoder_layers + 3 * cfg.num_decoder_layers + cfg.num_encoder_layers \
        + cfg.num_decoder_layers
