"""The task's loss as one module: what the parallel strategies (DDP, FSDP) and ``torch.compile`` wrap.

These engines act on a module's ``forward``. The tasks' losses call other methods of the model
(``decoder_states``, ``hidden_states``: the pre-softmax layer is fused into the loss), so the trainer
wraps ``task.loss(model, batch)`` in :class:`TaskLoss`, whose forward is exactly that call and whose
parameters are the model's. DDP then averages the gradients of everything the loss touched, and
``torch.compile`` traces the whole loss, fused output layer included.

:class:`CompiledOrEager` is ``torch.compile`` with a fallback: if compiling the forward pass fails (no C++
compiler, an operation the compiler cannot handle, an old GPU), it says so in one line and runs the module
eagerly from then on; the results are the same, only slower. Limits: an error of the model or the data
itself (a shape mismatch found while tracing) is raised, not treated as a compiler failure; the backward
graph is compiled lazily, at the first ``backward()``, outside this fallback; and the fused loss loops over
chunks of the batch's tokens, so each new batch size is a new graph for it: after torch's recompile limit
(8) that part runs eagerly, with torch's own warning.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tformer.console import log


class TaskLoss(nn.Module):
    """``forward(batch) = task.loss(model, batch, label_smoothing)``; the model is its only submodule."""

    def __init__(self, task: Any, model: nn.Module, label_smoothing: float) -> None:
        super().__init__()
        self.model = model
        self.task = task  # a plain object: not a module, holds no parameters
        self.label_smoothing = label_smoothing

    def forward(self, batch: Any) -> Any:
        return self.task.loss(self.model, batch, self.label_smoothing)


def _compile_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the compiler failed", as opposed to an error in the model or the data."""
    errors: list[type[BaseException]] = []
    try:
        from torch._dynamo.exc import TorchDynamoException

        errors.append(TorchDynamoException)
    except ImportError:  # pragma: no cover - every supported torch has it
        pass
    try:
        from torch._inductor.exc import InductorError

        errors.append(InductorError)
    except ImportError:  # older torch: inductor errors arrive as BackendCompilerFailed
        pass
    return tuple(errors)


def _is_user_error(e: BaseException) -> bool:
    try:
        from torch._dynamo.exc import TorchRuntimeError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(e, TorchRuntimeError)


class CompiledOrEager:
    """Call ``torch.compile(module)``; on a compiler failure, warn once and call ``module`` itself.

    ``backend`` is torch.compile's ("inductor" by default; "aot_eager" traces without generating code).
    Recompiles for new batch shapes are torch's own (dynamic shapes after the second distinct shape).
    """

    def __init__(self, module: nn.Module, backend: str | Any = "inductor") -> None:
        self.module = module
        self.compiled = torch.compile(module, backend=backend)
        self.failed: str | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failed is None:
            try:
                return self.compiled(*args, **kwargs)
            except _compile_errors() as e:
                if _is_user_error(e):  # the model or the data failed while being traced: not the compiler's fault
                    raise
                lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [""]
                what = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]  # "backend raised:" + cause
                self.failed = f"{type(e).__name__}: {what}"[:300]
                log(f"torch.compile failed ({self.failed}); training continues without it")
        return self.module(*args, **kwargs)
