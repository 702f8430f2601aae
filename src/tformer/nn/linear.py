"""The linear maps of the model (W^Q, W^K, W^V, W^O, W_1, W_2 and the pre-softmax projection), y = x Wᵀ + b,
with a fast path for decoding one token at a time on the CPU.

:class:`Linear` is ``nn.Linear`` (same parameters, same state-dict keys, same initialisation, same gradients)
plus one thing: an inference call with at most :data:`FEW_ROWS` rows of float32 input on the CPU (a greedy or
beam step of a small batch: one row per hypothesis) multiplies by a transposed, contiguous copy of W kept
beside it, ``addmm(b, x, Wᵀ)``, instead of ``F.linear(x, W, b)``. The two compute the same sums; on the CPUs
measured (AMD EPYC, Intel Xeon) the BLAS kernels read an (in, out) matrix for a few rows 1.6-2.6x faster than
an (out, in) one, which is what a single-token decoding step is made of (``benchmarks/decode.py``). With more
rows the kernels are at least as fast on the (out, in) layout, and ``F.linear`` is used as ``nn.Linear`` does.

The copy is made at the first such call and made again whenever the weight may have changed: after any
optimizer step (a global post-step hook counts them: fused optimizers update in place without touching the
tensor's version counter), when its version counter moves (``load_state_dict`` or any other in-place write), or
when it is a new tensor (``.to()``): it costs one more copy of the weights that decode that way (the
decoder's and the output layer's), held while the module lives. It is never part of the state dict, and
tracing, ``torch.compile`` and ``torch.export`` see ``F.linear`` only.

Shape legend: N rows (all leading dimensions together), I in_features, O out_features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook

__all__ = ["FEW_ROWS", "Linear"]

FEW_ROWS = 4  # the most rows of an inference call that take the transposed weight (beam 4 of one sentence)

_optimizer_steps = [0]  # optimizer steps taken in this process, by any optimizer: part of every kept copy's key


def _count_step(optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
    _optimizer_steps[0] += 1


register_optimizer_step_post_hook(_count_step)


class Linear(nn.Linear):
    """``nn.Linear`` with the transposed-weight path for few-row inference on the CPU (see the module docs)."""

    _transposed: tuple[tuple, Tensor] | None = None  # (the weight's identity, Wᵀ (I, O) contiguous)

    def forward(self, x: Tensor) -> Tensor:
        if not self._takes_fast_path(x):
            return F.linear(x, self.weight, self.bias)  # (..., I) -> (..., O)
        rows = x.reshape(-1, self.in_features)  # (N, I)
        w_t = self.transposed_weight()  # (I, O)
        y = rows @ w_t if self.bias is None else torch.addmm(self.bias, rows, w_t)  # (N, O)
        return y.view(*x.shape[:-1], self.out_features)

    def _takes_fast_path(self, x: Tensor) -> bool:
        if torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.is_grad_enabled():
            return False
        return (x.numel() <= FEW_ROWS * self.in_features and x.device.type == "cpu"
                and x.dtype == torch.float32 and self.weight.dtype == torch.float32)

    def transposed_weight(self) -> Tensor:
        """Wᵀ as an (in, out) contiguous tensor: the kept copy, made again if W has changed since."""
        w = self.weight
        key = (_optimizer_steps[0], w.data_ptr(), w._version, w.dtype, w.device, tuple(w.shape))
        kept = self._transposed
        if kept is None or kept[0] != key:
            kept = (key, w.detach().t().contiguous())
            self._transposed = kept  # one assignment: concurrent callers see the old or the new pair
        return kept[1]
