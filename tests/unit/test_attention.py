"""Eq. 1 and §3.2.2: the fast path equals the written-out path; MultiHeadAttention equals PyTorch's."""

import math

import pytest
import torch
from torch import nn

from tformer.nn.attention import MultiHeadAttention, attention_fast, attention_reference
from tformer.nn.masks import causal_mask, padding_mask


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


# ---- T5's options: an additive score bias (relative positions), another scale, another head width ----------


@pytest.mark.parametrize(
    "tq,causal,with_padding,scale",
    [(6, False, True, None), (6, True, False, 1.0), (6, True, True, 1.0), (6, False, False, 0.3), (1, False, True, 1.0),
     (2, True, True, None)],
)
def test_fast_equals_reference_with_a_score_bias(tq, causal, with_padding, scale):
    q, k, v = _qkv(tq=tq, tk=6)
    bias = 2.0 * torch.randn(1, 3, tq, 6)  # (1, H, Tq, Tk), shared by the batch
    mask = padding_mask(torch.tensor([[4] * 6, [4] * 4 + [0] * 2]), 0) if with_padding else None
    ref, w = attention_reference(q, k, v, mask, causal=causal, score_bias=bias, scale=scale)
    fast = attention_fast(q, k, v, mask, causal=causal, score_bias=bias, scale=scale)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    # The reference is softmax(s * Q Kᵀ + bias) written out, with -inf where the masks forbid.
    scores = q @ k.transpose(-2, -1) * (1 / math.sqrt(8) if scale is None else scale) + bias
    allowed = torch.ones(2, 1, tq, 6, dtype=torch.bool)
    if mask is not None:
        allowed = allowed & mask
    if causal:
        allowed = allowed & causal_mask(tq, 6)
    torch.testing.assert_close(w, scores.masked_fill(~allowed, float("-inf")).softmax(-1), atol=1e-6, rtol=1e-5)


def test_multihead_with_its_own_head_width_and_no_biases():
    mha = MultiHeadAttention(32, 4, d_head=16, bias=False, scale_scores=False).eval()
    assert mha.q_proj.weight.shape == (64, 32) and mha.out_proj.weight.shape == (32, 64)
    assert all(not name.endswith("bias") for name, _ in mha.named_parameters())
    x, mem = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    bias = torch.randn(1, 4, 5, 5)
    out, _ = mha(x, causal=True, score_bias=bias)
    ref, w = mha(x, causal=True, score_bias=bias, need_weights=True)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert out.shape == (2, 5, 32) and w.shape == (2, 4, 5, 5)
    assert mha(x, mem)[0].shape == (2, 5, 32)
