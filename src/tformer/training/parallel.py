"""The parallel modes of training as strategy objects: one process, DDP, FSDP.

The trainer runs one loop for all three and asks its strategy at the points where they differ:

====================  ===============  =========================  ==================================
                      one process      DDP                        FSDP
====================  ===============  =========================  ==================================
wrap the loss         as it is         DistributedDataParallel    ``fully_shard`` every layer + root
gradient sync         none             ``no_sync`` but the last   ``set_requires_gradient_sync``
loss scale            / tokens         x W / global tokens        x W / global tokens
sums and decisions    local            all-reduce                 all-reduce
gradient norm         local            local (grads are whole)    gathered over the shards
state to save, load   the model's      the model's                gathered whole / cut to shards
decoding model        the model        the model                  a whole copy on rank 0
====================  ===============  =========================  ==================================

Why W processes end where one process ends with the same global batch is in
:mod:`tformer.training.distributed`.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from tformer.training.distributed import (
    Distributed,
    full_state,
    full_tensor,
    fully_shard_model,
    load_full_model_state,
    sharded_optimizer_state,
)
from tformer.training.seed import rng_state


class SingleProcess:
    """One process: the loss module as it is, nothing to share with other processes."""

    name = ""
    fused_optimizer = True  # Adam's fused kernel (sharded weights need the default implementation)

    def __init__(self, dist: Distributed, device: torch.device) -> None:
        self.dist, self.device = dist, device

    def wrap(self, loss: nn.Module) -> nn.Module:
        """The module whose forward computes the training loss (the task's loss over the model)."""
        return loss

    def gradient_sync(self, last: bool) -> contextlib.AbstractContextManager:
        """The context of one forward and backward pass of an update; ``last``: the update's last pass."""
        return contextlib.nullcontext()

    def backward_loss(self, loss: Tensor, weight: float, num_tgt: int) -> Tensor:
        """What backward is called on: the summed loss of a batch / the target tokens of the update."""
        return loss / num_tgt

    def global_count(self, n: int) -> int:
        """``n`` summed over the processes."""
        return n

    def global_sums(self, loss: Any, nll: Any, src: int) -> tuple[Any, Any, int]:
        """The update's summed loss, NLL and source tokens over the processes."""
        return loss, nll, src

    def global_terms(self, terms: dict[str, Any]) -> dict[str, Any]:
        """The update's summed auxiliary losses (by name, the same names on every process) over the processes."""
        return terms

    def agree_on_stop(self, stop: str | None, elapsed: float) -> tuple[str | None, float]:
        """(the stop request to act on after this update, the seconds this invocation has trained), the same on
        all processes (the time budget and a schedule that follows the clock read the seconds)."""
        return stop, elapsed

    def global_norm(self, norm: Tensor) -> Tensor:
        """The gradient norm over the whole model, from this process's :func:`gradient_norm`."""
        return norm

    def model_state(self, model: nn.Module) -> dict[str, Any] | None:
        """The model's whole state dict (None on ranks that do not write)."""
        return model.state_dict()

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
        return optimizer.state_dict()

    def load_model_state(self, model: nn.Module, state: dict[str, Any]) -> None:
        model.load_state_dict(state)

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        optimizer.load_state_dict(state)

    def rng_ranks(self) -> dict[str, Any]:
        """Every process's RNG state, for a checkpoint (one process: rank 0's is all there is)."""
        return {}

    @contextlib.contextmanager
    def whole_model(self, model: nn.Module) -> Iterator[nn.Module | None]:
        """The model whole on the device, for decoding at validation (None on ranks that do not decode)."""
        yield model

    def model_to_save(self, model: nn.Module, state: dict[str, Any]) -> nn.Module:
        """The module whose ``save_pretrained`` writes ``model/``, given the whole ``state`` (rank 0)."""
        return model


class DataParallel(SingleProcess):
    """DDP: every process holds the whole model; the gradients are averaged during the last backward pass of
    each update, and the counts, sums and stop decisions are all-reduced."""

    name = "DDP"

    def wrap(self, loss: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        # buffers (the sinusoidal table) are the same on every rank: no broadcast per forward
        no_sync = {"forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(
            DistributedDataParallel).parameters else "broadcast_buffers": False}
        self.ddp = DistributedDataParallel(loss, device_ids=ids, **no_sync)
        return self.ddp

    def gradient_sync(self, last: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext() if last else self.ddp.no_sync()

    def backward_loss(self, loss: Tensor, weight: float, num_tgt: int) -> Tensor:
        # x W, which DDP's averaging cancels; weight 0: a pass that only keeps the ranks in step
        return loss * (weight * self.dist.world_size / num_tgt)

    def global_count(self, n: int) -> int:
        count = torch.tensor([n], dtype=torch.float64, device=self.device)  # NCCL: on the GPU
        return int(self.dist.all_sum(count).item())

    def global_sums(self, loss: Any, nll: Any, src: int) -> tuple[Any, Any, int]:
        sums = self.dist.all_sum(torch.stack([torch.as_tensor(x, device=self.device, dtype=torch.float64)
                                              for x in (loss, nll, float(src))]))
        return sums[0], sums[1], int(sums[2].item())

    def global_terms(self, terms: dict[str, Any]) -> dict[str, Any]:
        if not terms:
            return terms
        names = sorted(terms)
        sums = self.dist.all_sum(torch.stack([torch.as_tensor(terms[k], device=self.device, dtype=torch.float64)
                                              for k in names]))
        return dict(zip(names, sums, strict=True))

    def agree_on_stop(self, stop: str | None, elapsed: float) -> tuple[str | None, float]:
        # one collective, so that one rank's reason stops all after the same update, and all read one clock (the
        # longest-running rank's: the time budget runs out on every rank at once, and a clock schedule sets one lr)
        flags = self.dist.all_max(torch.tensor([float(stop is not None), elapsed], dtype=torch.float64,
                                               device=self.device)).tolist()  # one sync
        return (stop or "a stop request to another process") if flags[0] > 0 else None, flags[1]

    def rng_ranks(self) -> dict[str, Any]:
        return {"rng_ranks": self.dist.gather(rng_state())}


class FullyShardedDataParallel(DataParallel):
    """FSDP: each process keeps 1/W of every weight, gradient and Adam moment; checkpoints hold whole tensors
    (gathered on rank 0), and rank 0 keeps a whole copy of the model in CPU memory for ``model/`` and for
    decoding at validation."""

    name = "FSDP"
    fused_optimizer = False

    def __init__(self, dist: Distributed, device: torch.device, model: nn.Module) -> None:
        super().__init__(dist, device)
        self.whole = copy.deepcopy(model).cpu() if dist.is_main else None  # before the model is sharded

    def wrap(self, loss: nn.Module) -> nn.Module:
        fully_shard_model(loss, loss.model)
        self.root = loss
        return loss

    def gradient_sync(self, last: bool) -> contextlib.AbstractContextManager:
        self.root.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    def global_norm(self, norm: Tensor) -> Tensor:
        return full_tensor(norm)  # the norm over all shards

    def model_state(self, model: nn.Module) -> dict[str, Any] | None:
        return full_state(model.state_dict(), self.dist.is_main)

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
        return full_state(optimizer.state_dict(), self.dist.is_main)

    def load_model_state(self, model: nn.Module, state: dict[str, Any]) -> None:
        load_full_model_state(model, state)  # each rank copies in its shard

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        optimizer.load_state_dict(sharded_optimizer_state(state, optimizer))  # cut before reaching a device

    @contextlib.contextmanager
    def whole_model(self, model: nn.Module) -> Iterator[nn.Module | None]:
        weights = full_state(model.state_dict(), self.dist.is_main)  # decoding is no forward of the shards
        if not self.dist.is_main:
            yield None
            return
        self.whole.load_state_dict(weights)
        yield self.whole.to(self.device)
        self.whole.cpu()

    def model_to_save(self, model: nn.Module, state: dict[str, Any]) -> nn.Module:
        self.whole.load_state_dict(state)
        return self.whole


def parallel_strategy(dist: Distributed, kind: str, device: torch.device, model: nn.Module) -> SingleProcess:
    """The strategy for this process: one process, or ``train.parallel`` ("ddp" or "fsdp") under torchrun.
    Call it before ``model`` moves to the device (FSDP keeps a CPU copy for rank 0)."""
    if not dist.enabled:
        return SingleProcess(dist, device)
    if kind == "fsdp":
        return FullyShardedDataParallel(dist, device, model)
    return DataParallel(dist, device)
