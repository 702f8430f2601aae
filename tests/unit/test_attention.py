"""Eq. 1 and §3.2.2: the fast path equals the written-out path; MultiHeadAttention equals PyTorch's."""

import math

import pytest
import torch
from torch import nn

from tformer.model.attention import MultiHeadAttention, attention_fast, attention_reference
from tformer.model.masks import causal_mask, padding_mask


def _qkv(b=2, h=3, tq=5, tk=7, dh=8):
    return torch.randn(b, h, tq, dh), torch.randn(b, h, tk, dh), torch.randn(b, h, tk, dh)


def test_reference_is_softmax_qk_over_sqrt_dk_times_v():
    q, k, v = _qkv(b=1, h=1, tq=2, tk=3, dh=4)
    out, w = attention_reference(q, k, v)
    # Written with plain Python numbers, independent of tensor ops.
    for i in range(2):
        scores = [sum(q[0, 0, i, d].item() * k[0, 0, j, d].item() for d in range(4)) / math.sqrt(4) for j in range(3)]
        z = sum(math.exp(s) for s in scores)
        p = [math.exp(s) / z for s in scores]
        for j in range(3):
            assert w[0, 0, i, j].item() == pytest.approx(p[j], abs=1e-6)
        for d in range(4):
            assert out[0, 0, i, d].item() == pytest.approx(sum(p[j] * v[0, 0, j, d].item() for j in range(3)), abs=1e-5)


@pytest.mark.parametrize("tq,tk", [(5, 7), (6, 6), (1, 9)])
def test_fast_equals_reference_with_padding_mask(tq, tk):
    q, k, v = _qkv(tq=tq, tk=tk)
    ids = torch.tensor([[5] * tk, [5] * (tk - 3) + [0] * 3])
    mask = padding_mask(ids, pad_id=0)
    ref, w = attention_reference(q, k, v, mask)
    torch.testing.assert_close(attention_fast(q, k, v, mask), ref, atol=1e-5, rtol=1e-5)
    assert torch.all(w[1, :, :, -3:] == 0)  # padded keys get no weight
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))


@pytest.mark.parametrize("with_padding", [False, True])
def test_fast_equals_reference_causal(with_padding):
    q, k, v = _qkv(tq=6, tk=6)
    mask = padding_mask(torch.tensor([[4] * 6, [4] * 4 + [0] * 2]), 0) if with_padding else None
    ref, w = attention_reference(q, k, v, mask, causal=True)
    torch.testing.assert_close(attention_fast(q, k, v, mask, causal=True), ref, atol=1e-5, rtol=1e-5)
    assert torch.all(w.triu(diagonal=1) == 0)  # no weight on the future


def test_causal_with_fewer_queries_is_the_last_rows_of_full_attention():
    q, k, v = _qkv(tq=7, tk=7)
    full, _ = attention_reference(q, k, v, causal=True)
    for path in (lambda *a, **kw: attention_reference(*a, **kw)[0], attention_fast):
        torch.testing.assert_close(path(q[:, :, -2:], k, v, causal=True), full[:, :, -2:], atol=1e-5, rtol=1e-5)


def test_causal_mask_closed_form():
    m = causal_mask(3, 5)
    assert m.tolist() == [[j <= i + 2 for j in range(5)] for i in range(3)]


def _copy_into_torch_mha(ours: MultiHeadAttention, d: int, h: int) -> nn.MultiheadAttention:
    ref = nn.MultiheadAttention(d, h, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    return ref.eval()


@pytest.mark.parametrize("need_weights", [False, True])
def test_multihead_equals_torch_multiheadattention_cross(need_weights):
    d, h = 32, 4
    ours = MultiHeadAttention(d, h).eval()
    for p in ours.parameters():
        nn.init.normal_(p, std=0.2)
    ref = _copy_into_torch_mha(ours, d, h)
    x, mem = torch.randn(2, 5, d), torch.randn(2, 7, d)
    ids = torch.tensor([[3] * 7, [3] * 4 + [0] * 3])
    out, w = ours(x, mem, padding_mask(ids, 0), need_weights=need_weights)
    ref_out, ref_w = ref(x, mem, mem, key_padding_mask=ids == 0, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    if need_weights:
        torch.testing.assert_close(w, ref_w, atol=1e-5, rtol=1e-5)
    else:
        assert w is None


def test_multihead_equals_torch_multiheadattention_causal_self():
    d, h = 32, 8
    ours = MultiHeadAttention(d, h).eval()
    ref = _copy_into_torch_mha(ours, d, h)
    x = torch.randn(3, 6, d)
    out, _ = ours(x, causal=True)
    ref_out, _ = ref(x, x, x, attn_mask=~causal_mask(6), need_weights=False)  # torch: True = masked
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
