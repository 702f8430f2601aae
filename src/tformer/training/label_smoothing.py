"""Label-smoothed cross-entropy (§5.4, eps_ls = 0.1), padding ignored.

The smoothed target distribution of a position whose gold token is y:

    q(k) = 1 - eps                 for k = y
    q(k) = eps / (V - 2)           for every other k except pad
    q(pad) = 0

so q sums to 1 and never asks the model to predict padding. The loss is the cross-entropy
-sum_k q(k) log p(k), summed over non-pad positions. :func:`smoothed_targets` builds q
explicitly (the reference path); :func:`label_smoothed_loss` computes the same number without
materialising q or log p (the fast path). They are tested equal, gradients included.

The fast path is one autograd function. With lse = log sum_k exp(z_k) of a row's logits z,
log p(k) = z_k - lse, and since sum_k q(k) = 1 the gradient of a real position's loss is simply

    d loss / d z_k = p(k) - q(k)

so the backward pass is one softmax over the (N, V) logits with q subtracted in place, instead of
autograd's chain through log-softmax, gather, sum and masking (several (N, V) temporaries).

Shape legend: N positions (B*T flattened), V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class LossOutput:
    loss: Tensor  # summed label-smoothed cross-entropy over real tokens (what is minimised)
    nll: Tensor  # summed negative log-likelihood of the gold tokens (for perplexity), detached
    num_tokens: int  # real (non-pad) target tokens
    # auxiliary losses already inside ``loss`` (unweighted, summed like it, detached), logged by name per token
    terms: dict[str, Tensor] = field(default_factory=dict)


def smoothed_targets(target: Tensor, vocab_size: int, eps: float, pad_id: int) -> Tensor:
    """The explicit target distribution q, (N, V); rows at pad targets are all zero."""
    q = torch.full((target.numel(), vocab_size), eps / (vocab_size - 2), dtype=torch.float32, device=target.device)
    q[:, pad_id] = 0.0
    q.scatter_(1, target.reshape(-1, 1), 1.0 - eps)
    q[target.reshape(-1) == pad_id] = 0.0
    return q


def _loss_terms(z: Tensor, target: Tensor, eps: float, pad_id: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Summed smoothed loss and NLL of logits z (N, V) (fp32 or fp64) -> loss, nll, lse (N,), real (N,)."""
    v = z.shape[1]
    lse = torch.logsumexp(z, dim=1)  # (N,)
    real = (target != pad_id).to(z.dtype)  # (N,) 1 = real token: masks per-row numbers, never (N, V)
    gold = z.gather(1, target[:, None]).squeeze(1) - lse  # (N,) log p(y)
    nll = -(gold * real).sum()
    loss = nll.clone()  # a tensor of its own: callers mark nll non-differentiable
    if eps > 0:
        others = z.sum(dim=1) - v * lse - gold - (z[:, pad_id] - lse)  # (N,) sum of log p(k), k not in {y, pad}
        loss = (1.0 - eps) * nll - eps / (v - 2) * (others * real).sum()
    return loss, nll, lse, real


def _p_minus_q_(z: Tensor, lse: Tensor, target: Tensor, real: Tensor, eps: float, pad_id: int) -> Tensor:
    """d loss / d logits = p - q on real positions, 0 on pads, written over z (N, V) in place."""
    off = eps / (z.shape[1] - 2) if eps > 0 else 0.0  # q(k) for k not in {y, pad}
    g = z.sub_(lse[:, None]).exp_()  # (N, V) p(k)
    if off:
        g.sub_(off)
        g[:, pad_id] += off  # q(pad) = 0
    g.scatter_add_(1, target[:, None], torch.full_like(lse[:, None], -(1.0 - eps - off)))  # q(y) = 1 - eps
    return g.mul_(real[:, None])


class _LabelSmoothedCrossEntropy(torch.autograd.Function):
    """Summed label-smoothed cross-entropy of logits (N, V) against gold ids (N,); also returns the NLL."""

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, eps: float, pad_id: int) -> tuple[Tensor, Tensor]:
        z = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()  # (N, V) fp16/bf16 upcast
        loss, nll, lse, real = _loss_terms(z, target, eps, pad_id)
        ctx.save_for_backward(z, lse, target, real)
        ctx.eps, ctx.pad_id, ctx.in_dtype = eps, pad_id, logits.dtype
        ctx.mark_non_differentiable(nll)
        return loss, nll

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss: Tensor, _grad_nll: Tensor):
        z, lse, target, real = ctx.saved_tensors
        grad = _p_minus_q_(z.clone(), lse, target, real, ctx.eps, ctx.pad_id).mul_(grad_loss)  # (N, V)
        return grad.to(ctx.in_dtype), None, None, None


# torch.compile (``train.compile``) leaves the two fused losses below to run as they are written, between compiled
# graphs: each is already the kernel a compiler would make (one pass over a block of logits, no (N, V) tensors kept).
# Their autograd functions write gradients in place inside forward; with them traced, compiled training on a CUDA GPU
# under torch 2.11 did not learn at all (tests/gpu/test_cuda.py, 2026-12-04), most likely the silent error class of
# pytorch/pytorch#184113 (torch 2.13 on the CPU traced them correctly). Traced or not, the numbers are the same.
@torch.compiler.disable
def label_smoothed_loss(logits: Tensor, target: Tensor, eps: float, pad_id: int) -> LossOutput:
    """logits (..., V) and gold ids (...) -> summed smoothed loss and NLL over non-pad targets."""
    v = logits.shape[-1]
    target = target.reshape(-1)  # (N,)
    loss, nll = _LabelSmoothedCrossEntropy.apply(logits.reshape(-1, v), target, float(eps), int(pad_id))
    return LossOutput(loss=loss, nll=nll.detach(), num_tokens=int((target != pad_id).sum()))


# Logits in one block of linear_label_smoothed_loss. On a CPU, 4 MiB of fp32, which stays in the cache between the
# matrix products that make and use it. On a GPU each block costs some twenty kernel launches and Python calls: at
# the CPU's size the paper's base model (V = 37,000) would run its loss in 64-row blocks, some 800 blocks and 16,000
# launches for a 50,000-token batch, the likely cause of its 4.7% MFU on an H200 (GPU check of 2026-12-04, which
# used the CPU's size everywhere; the GPU's size is not yet measured there). So on a GPU a block is 128 MiB.
BLOCK_LOGITS_CPU, BLOCK_LOGITS_GPU = 1 << 20, 1 << 25


class _LinearLabelSmoothedCrossEntropy(torch.autograd.Function):
    """The pre-softmax linear layer and the smoothed loss together, a block of rows at a time.

    For each block of ``chunk`` positions: logits = h W^T + b (chunk, V), the loss terms, then at once
    the gradient p - q and its products with W and h. The block's logits never leave the CPU's cache
    and the full (N, V) logits are never stored: backward only scales the gradients kept from forward.
    """

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor, eps: float, pad_id: int,
                chunk: int, grad_enabled: bool) -> tuple[Tensor, Tensor]:
        n = hidden.shape[0]
        # grad mode is always off inside forward: whether gradients are wanted is decided by the caller
        need_h, need_w, need_b = (grad_enabled and need for need in ctx.needs_input_grad[:3])
        grads = need_h or need_w or need_b
        grad_h = torch.empty_like(hidden) if need_h else None  # (N, D)
        grad_w = torch.zeros_like(weight) if need_w else None  # (V, D)
        grad_b = torch.zeros_like(bias) if need_b else None  # (V,)
        acc = torch.promote_types(hidden.dtype, torch.float32)  # softmax and sums in fp32 (fp64 stays fp64)
        loss = hidden.new_zeros((), dtype=acc)
        nll = hidden.new_zeros((), dtype=acc)
        for start in range(0, n, chunk):
            h, y = hidden[start : start + chunk], target[start : start + chunk]  # (c, D), (c,)
            z = torch.nn.functional.linear(h, weight, bias).to(acc)  # (c, V) logits
            loss_c, nll_c, lse, real = _loss_terms(z, y, eps, pad_id)
            loss += loss_c
            nll += nll_c
            if not grads:
                continue
            g = _p_minus_q_(z, lse, y, real, eps, pad_id)  # (c, V), in place of the logits
            if need_h:
                grad_h[start : start + chunk] = g @ weight.to(g.dtype)  # (c, V) @ (V, D)
            if need_w:
                grad_w.addmm_(g.t(), h.to(g.dtype))  # (V, c) @ (c, D)
            if need_b:
                grad_b += g.sum(dim=0)
        ctx.save_for_backward(*(t if t is not None else torch.empty(0) for t in (grad_h, grad_w, grad_b)))
        ctx.has = (need_h, need_w, need_b)
        ctx.mark_non_differentiable(nll)
        return loss, nll

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss: Tensor, _grad_nll: Tensor):
        saved = ctx.saved_tensors
        # grad_loss is a 0-dim fp32 tensor (fp16: times the gradient scaler's scale), so t * grad_loss keeps t's
        # dtype but multiplies in fp32: never cast it to fp16 itself, where a scale / tokens > 65504 is inf
        grads = [(t * grad_loss) if has else None for t, has in zip(saved, ctx.has, strict=True)]
        return (*grads, None, None, None, None, None)


@torch.compiler.disable  # see label_smoothed_loss
def linear_label_smoothed_loss(hidden: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor, eps: float,
                               pad_id: int, chunk: int | None = None) -> LossOutput:
    """``label_smoothed_loss(F.linear(hidden, weight, bias), target, ...)`` without storing the logits.

    Args:
        hidden: decoder outputs (..., D); weight: the pre-softmax matrix (V, D) (tied to the embeddings
            or not); bias: (V,) or None; target: gold ids (...).
        chunk: positions per block (default: ``BLOCK_LOGITS_CPU`` logits per block on a CPU,
            ``BLOCK_LOGITS_GPU`` elsewhere; at least 64 rows).
    """
    d, v = hidden.shape[-1], weight.shape[0]
    target = target.reshape(-1)  # (N,)
    chunk = chunk or max(64, (BLOCK_LOGITS_CPU if hidden.device.type == "cpu" else BLOCK_LOGITS_GPU) // v)
    loss, nll = _LinearLabelSmoothedCrossEntropy.apply(hidden.reshape(-1, d), weight, bias, target, float(eps),
                                                       int(pad_id), int(chunk), torch.is_grad_enabled())
    return LossOutput(loss=loss, nll=nll.detach(), num_tokens=int((target != pad_id).sum()))
