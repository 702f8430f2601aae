"""int8 dynamic quantization for CPU decoding: every linear layer converted, the original untouched,
logits close to fp32's, and the quantized model decodes through the same engine."""

import torch
from torch import nn

import tformer
from tformer.nn.linear import Linear
from tformer.nn.quantize import quantize_dynamic_int8


def _model():
    torch.manual_seed(0)
    return tformer.Transformer(tformer.TransformerConfig.tiny(vocab_size=50)).eval()


def test_every_linear_layer_is_int8_and_the_original_is_unchanged():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = quantize_dynamic_int8(model)
    assert not any(type(m) in (nn.Linear, Linear) for m in q.modules())
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    n_int8 = sum(type(m).__name__ == "Linear" and "quantized" in type(m).__module__ for m in q.modules())
    assert n_int8 == n_linear > 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_int8_logits_are_close_to_fp32():
    model = _model()
    q = quantize_dynamic_int8(model)
    src = torch.randint(4, 50, (3, 9))
    tgt = torch.randint(4, 50, (3, 7))
    ref, got = model(src, tgt), q(src, tgt)
    rel = (got - ref).norm() / ref.norm()
    assert rel < 0.05, rel  # int8 weights and activations: about 1% here


def test_int8_model_decodes_greedy_and_beam():
    model = _model()
    q = quantize_dynamic_int8(model)
    src = torch.randint(4, 50, (4, 8))
    for beam in (1, 3):
        out = q.generate(src, beam_size=beam, max_len=6, min_len=6)
        assert out.shape == (4, 6)
        assert ((out >= 0) & (out < 50)).all()
        assert not (out == model.cfg.pad_id).any() and not (out == model.cfg.bos_id).any()
