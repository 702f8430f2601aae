"""The CUDA paths: fused attention against the written-out Eq. 1, cached decoding against the CPU, the fused
output layer + loss under bf16/fp16 autocast, pinned-memory batches, and a compiled mixed-precision Trainer.

Marked ``gpu``: the default suite deselects them (``addopts``) and ``benchmarks/gpu_check.sh`` runs them
(``pytest -m gpu tests/gpu``). Without a CUDA device each test skips itself. ``TFORMER_GPU_TESTS_DEVICE=cpu``
runs them on the CPU instead (slow; for checking the tests themselves where there is no GPU), except those
that need CUDA itself (pinned memory).

Tolerances are relative norms ‖out − ref‖ / ‖ref‖ against a float64 CPU reference: float32 far under 1e-4,
float16 operands about 1e-3, bfloat16 about 1e-2.
"""

import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

from tformer import Transformer, TransformerConfig
from tformer.data.batching import collate
from tformer.nn.attention import MultiHeadAttention, attention_fast, attention_reference
from tformer.nn.masks import padding_mask
from tformer.tasks.translation import ParallelData, TranslationTask
from tformer.training.config import RunConfig, TrainConfig
from tformer.training.devices import to_device
from tformer.training.label_smoothing import label_smoothed_loss, linear_label_smoothed_loss
from tformer.training.trainer import Trainer

DEVICE = torch.device(os.environ.get("TFORMER_GPU_TESTS_DEVICE", "cuda"))
NO_CUDA = "needs a CUDA GPU: torch.cuda.is_available() is False (benchmarks/gpu_check.sh runs these on one)"
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(),
                                                  reason=NO_CUDA)]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TOL = {"fp32": 1e-4, "bf16": 2e-2, "fp16": 4e-3}  # relative norm, against float64


def rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    assert torch.isfinite(out).all(), "non-finite output"
    return float((out - ref).norm() / ref.norm())


# ---- attention: SDPA (flash / memory-efficient kernels) against Eq. 1 written out ----------------------------
def _qkv(b, h, tq, tk, dh):
    g = torch.Generator().manual_seed(b * 1000 + tq * 10 + tk)
    return [torch.randn(b, h, t, dh, generator=g) for t in (tq, tk, tk)]


CASES = {  # name: (B, H, Tq, Tk, Dh, padded keys of row 1, causal)
    "padding": (2, 3, 5, 7, 8, 3, False),
    "causal": (2, 3, 6, 6, 8, 0, True),
    "causal+padding": (2, 3, 6, 6, 8, 2, True),
    "causal, fewer queries": (2, 3, 2, 7, 8, 0, True),
    "long, flash-sized": (2, 8, 128, 128, 64, 0, False),
    "long causal, flash-sized": (2, 8, 128, 128, 64, 0, True),
    "long with padding": (2, 8, 96, 128, 64, 40, False),
}


@pytest.mark.parametrize("precision", list(DTYPES))
@pytest.mark.parametrize("case", list(CASES))
def test_sdpa_on_the_gpu_equals_the_reference(case, precision):
    b, h, tq, tk, dh, pads, causal = CASES[case]
    q, k, v = _qkv(b, h, tq, tk, dh)
    mask = None
    if pads:
        ids = torch.ones(b, tk, dtype=torch.long)
        ids[1, tk - pads :] = 0
        mask = padding_mask(ids, pad_id=0)  # (B, 1, 1, Tk)
    ref, _ = attention_reference(q.double(), k.double(), v.double(), mask, causal=causal)
    dt = DTYPES[precision]
    on = [x.to(DEVICE, dt) for x in (q, k, v)]
    dev_mask = None if mask is None else mask.to(DEVICE)
    fast = attention_fast(*on, dev_mask, causal=causal)
    assert fast.device.type == DEVICE.type and fast.dtype == dt
    assert rel(fast, ref) < TOL[precision]
    written_out, w = attention_reference(*on, dev_mask, causal=causal)
    assert rel(written_out, ref) < TOL[precision]
    if pads:
        assert float(w[1, :, :, tk - pads :].abs().max()) == 0.0  # padded keys get no weight on the GPU either


def test_multihead_attention_on_the_gpu_equals_the_cpu():
    torch.manual_seed(0)
    mha = MultiHeadAttention(64, 4).eval()
    x, mem = torch.randn(3, 9, 64), torch.randn(3, 11, 64)
    ids = torch.ones(3, 11, dtype=torch.long)
    ids[2, 6:] = 0
    mask = padding_mask(ids, pad_id=0)
    with torch.no_grad():
        cpu_self, _ = mha(x, causal=True)
        cpu_cross, _ = mha(x, mem, mask)
        gpu = mha.to(DEVICE)
        dev_self, _ = gpu(x.to(DEVICE), causal=True)
        dev_cross, weights = gpu(x.to(DEVICE), mem.to(DEVICE), mask.to(DEVICE), need_weights=True)
    assert rel(dev_self, cpu_self) < 1e-5 and rel(dev_cross, cpu_cross) < 1e-5
    torch.testing.assert_close(weights.sum(-1).cpu(), torch.ones(3, 4, 9))


# ---- decoding: the cache on the GPU equals full recomputation and the CPU's result -------------------------
def _model_and_inputs():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig.tiny()).eval()
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, 64, (3, 7), generator=g)
    src[1, 5:] = model.cfg.pad_id  # rows of different lengths
    tgt = torch.randint(4, 64, (3, 8), generator=g)
    return model, src, tgt


@torch.no_grad()
def test_cached_decoding_on_the_gpu_equals_recomputation_and_the_cpu():
    model, src, tgt = _model_and_inputs()
    cpu_full = model(src, tgt)
    cpu_greedy = model.generate(src, beam_size=1, max_len=12)
    cpu_beam = model.generate(src, beam_size=4, max_len=12)
    model.to(DEVICE)
    s, t = src.to(DEVICE), tgt.to(DEVICE)
    full = model(s, t)
    cache = model.start_decoding(model.encode(s), s)
    steps = [model.decode_step(t[:, :3], cache)]  # a prefix of 3 at once, then one by one
    steps += [model.decode_step(t[:, i : i + 1], cache) for i in range(3, 8)]
    assert rel(torch.cat(steps, dim=1), full) < 1e-5
    assert rel(full, cpu_full) < 1e-5
    assert torch.equal(model.generate(s, beam_size=1, max_len=12).cpu(), cpu_greedy)
    assert torch.equal(model.generate(s, beam_size=4, max_len=12).cpu(), cpu_beam)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@torch.no_grad()
def test_half_precision_decoding_on_the_gpu_is_close_to_fp32(precision):
    model, src, tgt = _model_and_inputs()
    ref = model.double()(src, tgt)
    model.to(DEVICE, DTYPES[precision])
    s, t = src.to(DEVICE), tgt.to(DEVICE)
    cache = model.start_decoding(model.encode(s), s)
    steps = torch.cat([model.decode_step(t[:, i : i + 1], cache) for i in range(8)], dim=1)
    assert steps.dtype == DTYPES[precision]
    assert rel(steps, ref) < 3 * TOL[precision]  # errors of several layers add up
    for beam in (1, 4):
        out = model.generate(s, beam_size=beam, max_len=12)
        assert out.shape[0] == 3 and out.dtype == torch.long and int(out.max()) < model.cfg.vocab_size


# ---- the fused output layer + label-smoothed loss under autocast -------------------------------------------
def _loss_inputs(n=700, d=64, v=1000, pad=0):
    g = torch.Generator().manual_seed(2)
    hidden = torch.randn(n, d, generator=g)
    weight = torch.randn(v, d, generator=g) / math.sqrt(d)
    bias = torch.randn(v, generator=g) * 0.1
    target = torch.randint(1, v, (n,), generator=g)
    target[::7] = pad
    return hidden, weight, bias, target


def _reference_loss(hidden, weight, bias, target, eps=0.1, pad=0):
    """float64 on the CPU, through the unfused path: logits, then the loss; its value and gradients."""
    leaves = [t.double().requires_grad_() for t in (hidden, weight, bias)]
    out = label_smoothed_loss(F.linear(*leaves), target, eps, pad)
    out.loss.backward()
    return out, [t.grad for t in leaves]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_fused_loss_under_autocast_on_the_gpu_matches_fp32(precision):
    hidden, weight, bias, target = _loss_inputs()
    ref, ref_grads = _reference_loss(hidden, weight, bias, target)
    leaves = [t.to(DEVICE).requires_grad_() for t in (hidden, weight, bias)]
    scale = 2.0**16  # as fp16's gradient scaler multiplies the loss: the gradients must not overflow
    with torch.autocast(DEVICE.type, dtype=DTYPES[precision]):
        out = linear_label_smoothed_loss(*leaves, target.to(DEVICE), 0.1, 0, chunk=128)
    (out.loss * scale).backward()
    assert out.num_tokens == ref.num_tokens
    assert abs(float(out.loss.detach()) - float(ref.loss.detach())) < TOL[precision] * abs(float(ref.loss.detach()))
    assert abs(float(out.nll) - float(ref.nll)) < TOL[precision] * abs(float(ref.nll))
    for name, leaf, g in zip(("hidden", "weight", "bias"), leaves, ref_grads, strict=True):
        assert leaf.grad.dtype == torch.float32, name  # the leaves' dtype: fp32 master weights
        assert rel(leaf.grad / scale, g) < 2 * TOL[precision], name


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_loss_of_half_precision_logits_on_the_gpu_matches_fp32(precision):
    hidden, weight, bias, target = _loss_inputs()
    ref, _ = _reference_loss(hidden, weight, bias, target)
    logits = F.linear(hidden, weight, bias).to(DEVICE, DTYPES[precision]).requires_grad_()
    out = label_smoothed_loss(logits, target.to(DEVICE), 0.1, 0)
    out.loss.backward()
    assert logits.grad.dtype == DTYPES[precision] and torch.isfinite(logits.grad).all()
    assert abs(float(out.loss.detach()) - float(ref.loss.detach())) < TOL[precision] * abs(float(ref.loss.detach()))


# ---- pinned-memory batches ---------------------------------------------------------------------------------
def _batch():
    g = torch.Generator().manual_seed(3)
    pairs = [(torch.randint(4, 40, (n,), generator=g).tolist(), torch.randint(4, 40, (n + 1,), generator=g).tolist())
             for n in (5, 3, 7)]
    return pairs, collate(pairs)


@needs_cuda
def test_a_pinned_batch_reaches_the_gpu_unchanged():
    _, batch = _batch()
    pinned = batch.pin_memory()
    assert all(t.is_pinned() for t in (pinned.src, pinned.tgt_in, pinned.tgt_out))
    on_gpu = to_device(batch, DEVICE, pin_memory=True)  # the Trainer's path on CUDA (non_blocking copy)
    plain = to_device(batch, DEVICE, pin_memory=False)
    torch.cuda.synchronize()
    for name in ("src", "tgt_in", "tgt_out"):
        got = getattr(on_gpu, name)
        assert got.device.type == "cuda" and torch.equal(got.cpu(), getattr(batch, name)), name
        assert torch.equal(got, getattr(plain, name)), name
    assert (on_gpu.num_src_tokens, on_gpu.num_tgt_tokens) == (batch.num_src_tokens, batch.num_tgt_tokens)


@needs_cuda
def test_a_dataloader_with_pin_memory_pins_tformer_batches():
    pairs, batch = _batch()
    loader = torch.utils.data.DataLoader([pairs], batch_size=None, collate_fn=collate, pin_memory=True)
    (got,) = list(loader)
    assert all(t.is_pinned() for t in (got.src, got.tgt_in, got.tgt_out))  # DataLoader called Batch.pin_memory
    assert torch.equal(got.src, batch.src) and got.num_tgt_tokens == batch.num_tgt_tokens


# ---- the Trainer on the GPU: compiled, mixed precision -----------------------------------------------------
def _copy_pairs(n=32, length=5):
    g = torch.Generator().manual_seed(0)
    return [(s, s) for s in (torch.randint(4, 12, (length,), generator=g).tolist() for _ in range(n))]


def _train(run_dir, **train):
    settings = {"max_tokens": 48, "max_steps": 30, "warmup_steps": 8, "log_every": 1, "device": DEVICE.type,
                "keep_checkpoints": 0, **train}
    cfg = RunConfig(run_dir=str(run_dir), seed=3, model={"preset": "tiny"}, train=TrainConfig(**settings))
    torch.manual_seed(3)
    model = Transformer(TransformerConfig.tiny(vocab_size=40, dropout=0.0))
    trainer = Trainer(cfg, model, TranslationTask(ParallelData(None, _copy_pairs())), show_progress=False)
    summary = trainer.train()
    losses = [r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
              if r["kind"] == "train"]
    return trainer, summary, losses


@pytest.mark.parametrize("precision, compile", [("bf16", True), ("fp16", False)])
def test_mixed_precision_training_on_the_gpu_learns(tmp_path, precision, compile):
    """bf16 through ``train.compile`` (inductor's CUDA kernels); fp16 with the gradient scaler on CUDA. (The
    compiled loss equals the eager one: tests/unit/test_compile.py, on the CPU.)"""
    trainer, summary, losses = _train(tmp_path, precision=precision, compile=compile)
    if compile:
        assert trainer.loss_fn.failed is None, trainer.loss_fn.failed  # inductor compiled it: no eager fallback
    assert trainer.device.type == DEVICE.type and trainer.amp_dtype is DTYPES[precision]
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    assert summary["steps"] == 30 and all(math.isfinite(x) for x in losses)
    assert losses[0] - sum(losses[-5:]) / 5 > 1.0  # from about ln(40) to the copied tokens' few
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in trainer.model.parameters())
