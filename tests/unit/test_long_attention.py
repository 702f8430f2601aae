"""Attention for long inputs (tformer.nn.attention_algorithms) against outside oracles: attention_reference with
explicit masks (band, padding, causal, the Reformer self rule), PyTorch's SDPA, and properties (memory never
T x T, padding and the future never leak, dropout is dropout)."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import tformer
from tformer.config import AttentionConfig, ConfigError
from tformer.models.transformer.config import TransformerConfig
from tformer.nn.attention import MultiHeadAttention, attention_fast, attention_reference
from tformer.nn.attention_algorithms import (
    attention_chunked,
    attention_linformer,
    attention_lsh,
    attention_shared_qk,
    attention_sliding,
    sliding_window_mask,
)
from tformer.nn.masks import causal_mask, combine, padding_mask
from tformer.tasks import load_run_config
from tformer.training.config import RunConfig


def _qkv(b=2, h=3, tq=13, tk=13, dh=8, dtype=torch.float64):
    g = torch.Generator().manual_seed(tq * 100 + tk)
    return [torch.randn(b, h, t, dh, generator=g, dtype=dtype).requires_grad_() for t in (tq, tk, tk)]


def _pad_mask(b, t, pads):
    """(B, 1, 1, T): row i has pads[i] padded positions at the end."""
    ids = torch.ones(b, t, dtype=torch.long)
    for i, n in enumerate(pads):
        if n:
            ids[i, -n:] = 0
    return padding_mask(ids, 0)


def _grads(out, inputs):
    g = torch.Generator().manual_seed(7)
    upstream = torch.randn(out.shape, generator=g, dtype=out.dtype)
    return torch.autograd.grad(out, inputs, upstream)


def _assert_same(out, ref, inputs, atol=1e-10):
    torch.testing.assert_close(out, ref, atol=atol, rtol=atol)
    for a, b in zip(_grads(out, inputs), _grads(ref, inputs), strict=True):
        torch.testing.assert_close(a, b, atol=atol, rtol=atol)


class _Largest(TorchDispatchMode):
    """Records the largest tensor any operator returns, forward, recomputation and backward."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def _largest_tensor(fn, b=1, h=2, t=256, dh=8):
    q, k, v = (torch.randn(b, h, t, dh, requires_grad=True) for _ in range(3))
    with _Largest() as mode:
        fn(q, k, v).sum().backward()
    return mode.largest


# ---- config ------------------------------------------------------------------------------------------
def test_attention_config_round_trips_through_dict_json_and_yaml(tmp_path):
    cfg = TransformerConfig.tiny(attention=AttentionConfig(kind="chunked", chunk_size=16))
    assert TransformerConfig.from_dict(cfg.to_dict()) == cfg
    cfg.save_json(tmp_path / "c.json")
    assert TransformerConfig.load_json(tmp_path / "c.json") == cfg
    assert TransformerConfig.tiny(attention={"kind": "sliding", "window": 4}).attention == AttentionConfig(
        kind="sliding", window=4)
    (tmp_path / "run.yaml").write_text(
        "data: {train_src: a, train_tgt: b}\nmodel: {preset: tiny, attention: {kind: chunked, chunk_size: 256}}\n"
        "train: {max_steps: 1}\n")
    run = load_run_config(tmp_path / "run.yaml")
    assert run.model_config(vocab_size=50).attention == AttentionConfig(kind="chunked", chunk_size=256)
    run = load_run_config(tmp_path / "run.yaml", ["model.attention.kind=lsh"])
    assert run.model_config(vocab_size=50).attention.kind == "lsh"
    assert RunConfig().model_config(vocab_size=50).attention == AttentionConfig()  # default: full


@pytest.mark.parametrize("make,match", [
    (lambda: AttentionConfig(kind="flash"), "attention kind must be one of"),
    (lambda: AttentionConfig(chunk_size=0), "chunk_size must be >= 1"),
    (lambda: AttentionConfig(window=-1), "window must be >= 1"),
    (lambda: AttentionConfig(linformer_k=0), "linformer_k must be >= 1"),
    (lambda: AttentionConfig(lsh_bucket_size=0), "lsh_bucket_size must be >= 1"),
    (lambda: AttentionConfig(lsh_rounds=0), "lsh_rounds must be >= 1"),
    (lambda: attention_lsh(*_qkv(tq=8, tk=8)[::2], causal=True), "lsh attention cannot be causal"),
    (lambda: TransformerConfig.tiny(attention={"kind": "sliding"}, positional="relative"),
     "relative positions need full or chunked attention"),
    (lambda: TransformerConfig.tiny(attention={"kind": "chunked", "chunk": 3}), "unknown key"),
    (lambda: TransformerConfig.tiny(attention=3), "attention must be an AttentionConfig"),
    (lambda: tformer.models.gpt.model.DecoderOnlyConfig.tiny(attention={"kind": "lsh"}),
     "supports attention kinds"),
    (lambda: MultiHeadAttention(16, 2, attention=AttentionConfig(kind="linformer")), "needs max_len"),
])
def test_bad_attention_settings_are_one_line_config_errors(make, match):
    import tformer.models.gpt.model  # noqa: F401

    with pytest.raises(ConfigError, match=match) as e:
        make()
    assert "\n" not in str(e.value)


def test_linformer_and_relative_positions_fail_at_call_time_too():
    q, k, v = _qkv(b=1, h=1, tq=6, tk=6)
    e = torch.eye(6, dtype=q.dtype)
    with pytest.raises(ConfigError, match="linformer attention cannot be causal"):
        attention_linformer(q, k, v, e, e, causal=True)
    with pytest.raises(ConfigError, match="relative positions need full or chunked"):
        attention_sliding(q, k, v, score_bias=torch.zeros(1, 1, 6, 6, dtype=q.dtype), window=2)


# ---- chunked: exact ------------------------------------------------------------------------------------
@pytest.mark.parametrize("tq,tk,chunk,causal", [
    (13, 13, 4, False), (13, 13, 4, True), (13, 13, 13, True), (7, 19, 5, True), (19, 7, 5, False),
    (9, 9, 64, False), (1, 11, 3, True),
])
@pytest.mark.parametrize("with_bias", [False, True])
def test_chunked_equals_reference_forward_and_gradients(tq, tk, chunk, causal, with_bias):
    q, k, v = _qkv(tq=tq, tk=tk)
    mask = _pad_mask(2, tk, [0, 3])
    bias = torch.randn(1, 3, tq, tk, dtype=q.dtype, requires_grad=True) if with_bias else None
    inputs = (q, k, v) + ((bias,) if with_bias else ())
    options = dict(causal=causal, score_bias=bias, scale=0.3)
    ref, _ = attention_reference(q, k, v, mask, **options)  # every row may attend somewhere (else NaN: see below)
    _assert_same(attention_chunked(q, k, v, mask, chunk_size=chunk, **options), ref, inputs)


def test_chunked_takes_any_mask_shape_and_float32():
    q, k, v = _qkv(b=2, h=3, tq=10, tk=14, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(2, 3, 10, 14, generator=g) < 0.6
    mask[..., 0] = True  # every row can attend somewhere
    for m in (mask, mask[:, :1], mask[:1, :1, :1], causal_mask(10, 14)):
        ref, _ = attention_reference(q, k, v, m)
        _assert_same(attention_chunked(q, k, v, m, chunk_size=4), ref, (q, k, v), atol=1e-5)


def test_chunked_rows_with_nothing_to_attend_to_are_zero_as_in_sdpa():
    """attention_reference gives NaN there; SDPA (the model's default path) gives 0 and finite gradients."""
    q, k, v = _qkv(tq=9, tk=6)
    mask = _pad_mask(2, 6, [0, 6])  # the second sequence is all padding
    for causal in (False, True):  # causal with Tq > Tk: the first 3 queries precede every key
        fast = attention_fast(q, k, v, mask, causal=causal)
        out = attention_chunked(q, k, v, mask, causal=causal, chunk_size=4)
        assert torch.all(out[1] == 0)
        _assert_same(out, fast, (q, k, v))


def test_chunked_dropout_drops_normalised_weights_and_backward_sees_the_same_mask():
    """With V = I the output rows are the (dropped) weights themselves: each is 0 or w / (1 - p)."""
    torch.manual_seed(0)
    t, p = 24, 0.25
    q, k = _qkv(b=1, h=2, tq=t, tk=t, dh=t)[:2]
    v = torch.eye(t, dtype=q.dtype).expand(1, 2, t, t).clone().requires_grad_()
    _, w = attention_reference(q, k, v, causal=True)
    out = attention_chunked(q, k, v, causal=True, dropout_p=p, chunk_size=5)
    kept = out != 0
    torch.testing.assert_close(out[kept], (w / (1 - p))[kept])
    dropped = 1 - kept[w > 0].double().mean()
    assert 0.15 < dropped < 0.35
    # d sum(out) / dV[j, :] = sum_i W_dropped[i, j]: equal only if the recomputation drew the same mask.
    (grad_v,) = torch.autograd.grad(out.sum(), v)
    torch.testing.assert_close(grad_v, out.sum(-2)[..., None].expand_as(grad_v))


def test_chunked_never_forms_a_t_by_t_tensor():
    """No operator (forward, recomputation or backward) returns a tensor of T x T per head; the reference does."""
    b, h, t, chunk = 1, 2, 256, 32
    assert _largest_tensor(lambda q, k, v: attention_reference(q, k, v)[0], b, h, t) >= b * h * t * t  # the control
    for causal in (False, True):
        largest = _largest_tensor(lambda q, k, v, c=causal: attention_chunked(q, k, v, causal=c, chunk_size=chunk),
                                  b, h, t)
        assert largest <= b * h * t * 8  # q, k, v themselves; a block of scores is b * h * chunk * chunk


def test_chunked_keeps_only_its_inputs_for_backward():
    """What autograd keeps between forward and backward: the storages of q, k, v (blocks are views), no scores."""
    t, chunk = 256, 32
    q, k, v = (torch.randn(1, 2, t, 8, requires_grad=True) for _ in range(3))
    saved = {}

    def pack(x):
        saved[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes() // x.element_size()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        out = attention_chunked(q, k, v, chunk_size=chunk)
    assert sum(saved.values()) <= 3 * 2 * t * 8  # q, k, v: (B, H, T, Dh) each
    out.sum().backward()
    assert all(x.grad is not None for x in (q, k, v))


@pytest.mark.parametrize("positional", ["sinusoidal", "relative"])  # relative: the score bias, sliced per block
def test_transformer_with_chunked_attention_equals_full_logits_and_gradients(positional):
    torch.manual_seed(0)
    src = torch.randint(4, 60, (2, 11))
    src[1, -4:] = 0
    tgt = torch.randint(4, 60, (2, 9))
    results = []
    for kind in ("full", "chunked"):
        torch.manual_seed(1)
        model = tformer.Transformer(TransformerConfig.tiny(dropout=0.0, positional=positional,
                                                           attention={"kind": kind, "chunk_size": 4}))
        logits = model(src, tgt)
        logits.square().mean().backward()
        results.append((logits, {n: p.grad for n, p in model.named_parameters()}))
    (full, full_grads), (chunked, chunked_grads) = results
    assert isinstance(model.encoder.layers[0].self_attn.attention, AttentionConfig)
    assert model.decoder.layers[0].cross_attn.attention.kind == "chunked"
    torch.testing.assert_close(chunked, full, atol=1e-5, rtol=1e-5)
    assert full_grads.keys() == chunked_grads.keys()
    for name, g in full_grads.items():
        torch.testing.assert_close(chunked_grads[name], g, atol=1e-5, rtol=1e-4, msg=name)


# ---- sliding window ------------------------------------------------------------------------------------
@pytest.mark.parametrize("t,window", [(13, 4), (16, 4), (5, 8), (29, 7), (12, 1)])
@pytest.mark.parametrize("causal", [False, True])
def test_sliding_equals_reference_with_the_band_mask(t, window, causal):
    q, k, v = _qkv(tq=t, tk=t)
    mask = _pad_mask(2, t, [0, min(window, t - 1)])  # every query keeps a real key within its window
    band = sliding_window_mask(t, t, window, causal=causal)
    assert band.tolist() == [[(0 <= i - j <= window) if causal else abs(i - j) <= window for j in range(t)]
                             for i in range(t)]
    ref, _ = attention_reference(q, k, v, combine(mask, band))
    _assert_same(attention_sliding(q, k, v, mask, causal=causal, window=window), ref, (q, k, v))
    ref, _ = attention_reference(q, k, v, band)
    _assert_same(attention_sliding(q, k, v, causal=causal, window=window), ref, (q, k, v))


def test_sliding_far_padding_gives_zero_rows_and_finite_gradients():
    q, k, v = _qkv(tq=20, tk=20)
    mask = _pad_mask(2, 20, [0, 12])  # padded queries 3+ positions past the last real token see only padding
    out = attention_sliding(q, k, v, mask, window=3)
    allowed = combine(mask, sliding_window_mask(20, 20, 3))  # (B, 1, T, T)
    empty = ~allowed.any(-1)[:, 0]  # (B, T)
    assert empty.any() and torch.all(out.permute(0, 2, 1, 3)[empty] == 0)
    ref, _ = attention_reference(q, k, v, allowed)
    torch.testing.assert_close(out.permute(0, 2, 1, 3)[~empty], ref.permute(0, 2, 1, 3)[~empty])
    assert all(torch.isfinite(g).all() for g in _grads(out, (q, k, v)))


def test_sliding_incremental_rows_equal_the_last_rows_of_the_whole():
    """Decoding with a cache: the last Tq of Tk positions (a single new one attends without ``causal``)."""
    q, k, v = _qkv(tq=15, tk=15)
    whole = attention_sliding(q, k, v, causal=True, window=4)
    torch.testing.assert_close(attention_sliding(q[:, :, -3:], k, v, causal=True, window=4), whole[:, :, -3:])
    torch.testing.assert_close(attention_sliding(q[:, :, -1:], k, v, window=4), whole[:, :, -1:])


def test_sliding_rejects_masks_that_are_not_key_padding():
    q, k, v = _qkv(tq=6, tk=6)
    with pytest.raises(ConfigError, match=r"key-padding masks \(B, 1, 1, Tk\) only"):
        attention_sliding(q, k, v, causal_mask(6), window=2)


def test_sliding_memory_is_t_times_window():
    b, h, t, w = 1, 2, 256, 16
    largest = _largest_tensor(lambda q, k, v: attention_sliding(q, k, v, window=w), b, h, t)
    assert largest <= b * h * t * 3 * w < t * t


def test_multihead_sliding_weights_show_the_band_and_match_the_output():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 2, attention=AttentionConfig(kind="sliding", window=2)).eval()
    x = torch.randn(2, 9, 16)
    mask = _pad_mask(2, 9, [0, 2])
    out, w = mha(x, mask=mask, causal=True, need_weights=True)
    assert torch.all(w.masked_select(~sliding_window_mask(9, 9, 2, causal=True)) == 0)
    torch.testing.assert_close(mha(x, mask=mask, causal=True)[0], out, atol=1e-6, rtol=1e-5)


# ---- Linformer ---------------------------------------------------------------------------------------------
def test_linformer_with_identity_projections_is_full_attention():
    t = 12
    mha = MultiHeadAttention(16, 2, attention=AttentionConfig(kind="linformer", linformer_k=t), max_len=t).eval()
    full = MultiHeadAttention(16, 2).eval()
    full.load_state_dict({n: p for n, p in mha.state_dict().items() if not n.startswith("linformer.")})
    with torch.no_grad():
        mha.linformer.E.copy_(torch.eye(t))
        mha.linformer.F.copy_(torch.eye(t))
    x = torch.randn(2, t, 16)
    torch.testing.assert_close(mha(x)[0], full(x)[0], atol=1e-6, rtol=1e-5)
    with pytest.raises(ConfigError, match="covers 12 positions"):
        mha(torch.randn(1, t + 1, 16))
    with pytest.raises(ConfigError, match="linformer attention forms no attention weights"):
        mha(x, need_weights=True)
    with pytest.raises(ConfigError, match="cannot be causal"):
        mha(x, causal=True)


def test_linformer_never_reads_padding_content():
    q, k, v = _qkv(tq=10, tk=10)
    e, f = torch.randn(4, 16, dtype=q.dtype), torch.randn(4, 16, dtype=q.dtype)
    mask = _pad_mask(2, 10, [0, 3])
    out = attention_linformer(q, k, v, e, f, mask)
    k2, v2 = k.detach().clone(), v.detach().clone()
    k2[1, :, -3:], v2[1, :, -3:] = 100.0, -100.0
    torch.testing.assert_close(attention_linformer(q, k2, v2, e, f, mask), out)


def test_encoder_only_and_vit_run_with_linformer():
    from tformer.models.bert.model import EncoderOnly, EncoderOnlyConfig
    from tformer.models.vit.model import VisionConfig, VisionTransformer

    bert = EncoderOnly(EncoderOnlyConfig.tiny(attention={"kind": "linformer", "linformer_k": 8}))
    ids = torch.randint(4, 60, (2, 10))
    assert bert(ids, ids != 0).shape == (2, 10, 32)
    assert bert.layers[0].self_attn.linformer.E.shape == (8, 64)
    vit = VisionTransformer(VisionConfig.digits(attention={"kind": "linformer", "linformer_k": 8}))
    assert vit(torch.randn(2, 1, 8, 8)).shape == (2, 17, 64)


# ---- LSH (Reformer) -----------------------------------------------------------------------------------------
def _dense_shared_qk(q, v, mask, causal):
    """The oracle: keys = normalised queries; a position attends to itself only when it has nothing else."""
    t = q.shape[-2]
    eye = torch.eye(t, dtype=torch.bool)
    allowed = combine(mask, causal_mask(t) if causal else None)
    allowed = (torch.ones(t, t, dtype=torch.bool) if allowed is None else allowed) & ~eye
    allowed = allowed | (~allowed.any(-1, keepdim=True) & eye)
    return attention_reference(q, F.normalize(q, dim=-1), v, allowed)[0]


@pytest.mark.parametrize("t,bucket_size", [(13, 16), (13, 13), (16, 8), (15, 8)])  # one chunk, or two
def test_lsh_with_one_or_two_chunks_equals_dense_shared_qk_attention(t, bucket_size):
    q, _, v = _qkv(tq=t, tk=t)
    mask = _pad_mask(2, t, [0, 4])
    _assert_same(attention_lsh(q, v, mask, bucket_size=bucket_size, n_rounds=3),
                 _dense_shared_qk(q, v, mask, False), (q, v))


def test_lsh_padding_never_reaches_a_position_and_takes_no_chunk_places():
    q, _, v = _qkv(b=2, h=2, tq=40, tk=40)
    mask = _pad_mask(2, 40, [0, 7])  # sequence 1: 33 real positions
    out = attention_lsh(q, v, mask, bucket_size=4, n_rounds=2, seed=3)  # ten chunks
    q2, v2 = q.detach().clone(), v.detach().clone()
    q2[1, :, 33:], v2[1, :, 33:] = -3.0, -5e3  # only the padding of sequence 1 changes, its queries included
    torch.testing.assert_close(attention_lsh(q2, v2, mask, bucket_size=4, n_rounds=2, seed=3)[1, :, :33],
                               out[1, :, :33])


def test_lsh_hashes_are_fixed_by_the_seed_and_rows_are_convex_combinations():
    q, _, v = _qkv(b=1, h=2, tq=64, tk=64)
    a = attention_lsh(q, v, bucket_size=8, seed=1)
    assert torch.equal(a, attention_lsh(q, v, bucket_size=8, seed=1))
    assert not torch.allclose(a, attention_lsh(q, v, bucket_size=8, seed=2))
    ones = attention_lsh(q, torch.ones_like(v), bucket_size=8, seed=1)  # weights of every row sum to 1
    torch.testing.assert_close(ones, torch.ones_like(ones))


def test_lsh_multihead_has_no_key_projection_and_decodes_incrementally():
    """bucket_size >= T: one chunk, so the hashed path equals the dense path used with a KV cache."""
    torch.manual_seed(0)
    layer = MultiHeadAttention(32, 4, attention=AttentionConfig(kind="lsh", lsh_bucket_size=32, lsh_rounds=2)).eval()
    assert layer.k_proj is None and not any("k_proj" in n for n in layer.state_dict())
    cfg = TransformerConfig.tiny(dropout=0.0, attention={"kind": "lsh", "lsh_bucket_size": 32, "lsh_rounds": 2})
    model = tformer.Transformer(cfg).eval()
    assert model.encoder.layers[0].self_attn.k_proj is None  # lsh in the encoder; the decoder's is causal: full
    decoder = model.decoder.layers[0]
    assert decoder.self_attn.k_proj is not None and decoder.cross_attn.k_proj is not None
    src, tgt = torch.randint(4, 60, (2, 7)), torch.randint(4, 60, (2, 6))
    whole = model(src, tgt)
    cache = model.start_decoding(model.encode(src), src)
    steps = torch.cat([model.decode_step(tgt[:, i:i + 1], cache) for i in range(6)], dim=1)
    torch.testing.assert_close(steps, whole, atol=1e-5, rtol=1e-5)
    q, k, v = _qkv(b=1, h=2, tq=7, tk=7)
    k = F.normalize(q, dim=-1)
    torch.testing.assert_close(attention_shared_qk(q[:, :, -2:], k, v, causal=True),
                               _dense_shared_qk(q, v, None, True)[:, :, -2:])
    with pytest.raises(ConfigError, match="lsh attention forms no attention weights"):
        model(src, tgt, need_weights=True)


def test_lsh_multihead_is_deterministic_in_eval_and_rehashes_in_training():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 2, attention=AttentionConfig(kind="lsh", lsh_bucket_size=4))
    x = torch.randn(1, 32, 16)
    mha.eval()
    assert torch.equal(mha(x)[0], mha(x)[0])
    mha.train()
    assert not torch.equal(mha(x)[0], mha(x)[0])


def test_lsh_memory_is_linear_in_length():
    b, h, t, c, r = 1, 2, 256, 16, 2
    largest = _largest_tensor(lambda q, k, v: attention_lsh(q, v, bucket_size=c, n_rounds=r), b, h, t)
    assert largest <= b * h * r * t * 2 * c < b * h * t * t


# ---- the whole model ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["chunked", "sliding", "lsh"])
def test_save_pretrained_round_trips_the_attention_config(kind, tmp_path):
    torch.manual_seed(0)
    model = tformer.Transformer(TransformerConfig.tiny(attention={"kind": kind, "window": 3})).eval()
    model.save_pretrained(tmp_path)
    loaded = tformer.Transformer.from_pretrained(tmp_path).eval()
    assert loaded.cfg.attention == model.cfg.attention
    src, tgt = torch.randint(4, 60, (2, 9)), torch.randint(4, 60, (2, 5))
    torch.testing.assert_close(loaded(src, tgt), model(src, tgt))


def test_sliding_window_as_wide_as_the_input_is_full_attention_in_the_model():
    src = torch.randint(4, 60, (2, 9))
    src[0, -2:] = 0
    tgt = torch.randint(4, 60, (2, 7))
    outs = []
    for attention in ({"kind": "full"}, {"kind": "sliding", "window": 9}):
        torch.manual_seed(0)
        model = tformer.Transformer(TransformerConfig.tiny(attention=attention)).eval()
        outs.append((model(src, tgt), model.generate(src, beam_size=2, max_len=8)))
    torch.testing.assert_close(outs[1][0], outs[0][0], atol=1e-5, rtol=1e-5)
    assert torch.equal(outs[1][1], outs[0][1])


def test_decoder_only_with_chunked_attention_equals_full_on_a_padded_batch():
    """Per-query (B, 1, T, L) masks (left padding), sliced per block."""
    from tformer.models.gpt.model import DecoderOnly, DecoderOnlyConfig

    ids = torch.randint(4, 60, (2, 10))
    real = torch.ones(2, 10, dtype=torch.bool)
    real[1, :3] = False
    outs = []
    for kind in ("full", "chunked"):
        torch.manual_seed(0)
        model = DecoderOnly(DecoderOnlyConfig.tiny(attention={"kind": kind, "chunk_size": 3})).eval()
        outs.append(model(ids, real))
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["full", "chunked", "sliding", "linformer", "lsh"])
def test_the_decoder_stays_causal_with_every_kind(kind):
    """Teacher forcing: changing target tokens from position j on leaves the logits before j unchanged
    (linformer and lsh serve the encoder; the decoder's masked self-attention is then full)."""
    torch.manual_seed(0)
    cfg = TransformerConfig.tiny(dropout=0.0, attention={"kind": kind, "window": 2, "chunk_size": 3, "linformer_k": 8,
                                                         "lsh_bucket_size": 2, "lsh_rounds": 2})
    model = tformer.Transformer(cfg).eval()
    src, tgt = torch.randint(4, 60, (2, 11)), torch.randint(4, 60, (2, 12))
    changed = tgt.clone()
    changed[:, 7:] = torch.randint(4, 60, (2, 5))
    torch.testing.assert_close(model(src, changed)[:, :7], model(src, tgt)[:, :7], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(model(src, changed)[:, 7:], model(src, tgt)[:, 7:])


def test_chunked_backward_replays_the_forwards_autocast():
    """Under bf16 autocast the recomputed block must run in bf16 as the forward did: the gradients are those
    of the forward that ran (autograd through the same block code without the checkpointing Function)."""
    from tformer.nn.attention_algorithms.chunked import _query_block

    q, k, v = (torch.randn(1, 2, 8, 16, requires_grad=True) for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention_chunked(q, k, v, chunk_size=8)
    grads = torch.autograd.grad(out.float().square().sum(), (q, k, v))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = _query_block(q, k, v, None, None, first=0, shift=0, causal=False, dropout_p=0.0, seed=0,
                           scale=16 ** -0.5, chunk_size=8, keys=8)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    for g, r in zip(grads, torch.autograd.grad(ref.float().square().sum(), (q, k, v)), strict=True):
        torch.testing.assert_close(g, r, rtol=1e-6, atol=1e-6)


def test_chunked_in_bf16_is_as_accurate_as_sdpa():
    """The running max, sum and weighted sum are kept in fp32: bf16 inputs lose no more than SDPA does."""
    q, k, v = (torch.randn(1, 2, 1024, 32, dtype=torch.float64) for _ in range(3))
    exact = attention_reference(q, k, v, causal=True)[0]
    b = [t.bfloat16() for t in (q, k, v)]
    err_chunked = (attention_chunked(*b, causal=True, chunk_size=128).double() - exact).norm() / exact.norm()
    err_sdpa = (attention_fast(*b, causal=True).double() - exact).norm() / exact.norm()
    assert err_chunked < 1.5 * err_sdpa, (err_chunked, err_sdpa)
