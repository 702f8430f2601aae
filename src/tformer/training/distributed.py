"""Data parallelism on PyTorch's own distributed engine: ``torchrun`` and ``DistributedDataParallel``.

One process per device ("rank"), started by ``torchrun``, which sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT. Every rank holds the whole model; each update, the token-budget batches
of one global batch are dealt out to the ranks (:func:`tformer.data.batching.rank_share`), every rank
runs forward and backward on its share, and DDP averages the gradients across ranks during backward.
Then every rank takes the same optimizer step, so the weights stay identical.

What makes W processes train exactly like one process with the same global batch (tested with 2
processes on the CPU, ``tests/integration/test_distributed.py``):

* the global batch is ``train.accumulate * W`` consecutive batches of the one epoch order that every
  rank computes from the same seed; one process with ``accumulate * W`` gets the same batches;
* the loss of each rank is divided by the target tokens of the whole global batch (one all-reduce of
  a count) and multiplied by W, which DDP's averaging cancels: the gradient is the sum over all
  tokens / all tokens, as in one process;
* rank 0's initial weights are broadcast by DDP; every rank's dropout gets its own seed
  (:func:`rank_seed`), so the ranks' dropout masks differ as one process's would across its batches.

Only rank 0 writes metrics, checkpoints and the model; all ranks read a checkpoint to resume. A
checkpoint records the position in the epoch in batches, not in updates, so a run can resume with
another number of processes (its global batch then changes with W).
"""

from __future__ import annotations

import datetime
import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from tformer.errors import TformerError


@dataclass(frozen=True)
class Distributed:
    """Where this process stands among the ranks of a run (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files and prints."""
        return self.rank == 0

    @classmethod
    def from_env(cls, device_type: str = "cpu") -> Distributed:
        """The ranks ``torchrun`` describes in the environment; starts the process group if there are several.

        The backend is NCCL for CUDA devices and Gloo otherwise.
        """
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", "0"))
        except ValueError:
            raise TformerError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun)") from None
        if world <= 1:
            return cls()
        if not 0 <= rank < world:
            raise TformerError(f"RANK {rank} is outside WORLD_SIZE {world}")
        if not dist.is_initialized():
            backend = "nccl" if device_type == "cuda" else "gloo"
            if device_type == "cuda":
                torch.cuda.set_device(local)
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
        return cls(rank, world, local)

    # ---- collectives (no-ops for a single process) -------------------------------------------
    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``values`` over all ranks (in place, and returned)."""
        if self.enabled:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def all_max(self, values: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return values

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def close(self, finished: bool = True) -> None:
        """Leave the process group; after a normal finish, all together (a rank that leaves early can abort
        the others' pending I/O). After an error there is no waiting: torchrun stops the other ranks."""
        if self.enabled and dist.is_initialized():
            if finished:
                dist.barrier()
            dist.destroy_process_group()


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """A seed for the random numbers (dropout) of ``rank`` from ``step`` on: distinct per rank and step,
    fixed by the run's seed."""
    digest = hashlib.sha256(f"tformer|{seed}|{rank}|{step}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # < 2**63


# ---- FSDP: the weights, gradients and Adam state sharded across the ranks --------------------------
def fully_shard_model(root: torch.nn.Module, model: torch.nn.Module) -> None:
    """Shard ``model`` with PyTorch's FSDP (``fully_shard``): every layer of every stack is one unit (its
    weights are gathered just before its forward and backward and freed after), and ``root`` (the
    module whose forward computes the loss: the embeddings, the output layer and the norms, used by
    the loss around the stacks) is the outer unit. Each rank keeps 1/W of every weight, gradient and
    Adam moment."""
    from torch.distributed.fsdp import fully_shard

    stacks = [m for m in model.modules() if hasattr(m, "gradient_checkpointing") and hasattr(m, "layers")]
    for stack in stacks:
        for layer in stack.layers:
            fully_shard(layer)
    fully_shard(root)


def _is_dtensor(t: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def full_tensor(t: Any) -> Any:
    """A sharded tensor gathered whole (a collective: every rank calls it); anything else unchanged."""
    return t.full_tensor() if _is_dtensor(t) else t


def full_state(state: Any, keep: bool) -> Any:
    """``state`` (a nested dict/list of tensors, e.g. a state dict) with sharded tensors gathered whole,
    on the CPU. Every rank must call it (the gathers are collectives, in the same order); ranks with
    ``keep`` False get None and hold no gathered copies."""
    if isinstance(state, dict):
        out = {k: full_state(v, keep) for k, v in state.items()}
        return out if keep else None
    if isinstance(state, (list, tuple)):
        items = [full_state(v, keep) for v in state]
        return type(state)(items) if keep else None
    if isinstance(state, torch.Tensor):
        whole = full_tensor(state)
        return whole.detach().cpu().clone() if keep else None
    return state


def shard_like(full: torch.Tensor, like: Any) -> Any:
    """``full`` cut into this rank's shard the way ``like`` (a sharded parameter) is; ``full`` itself when
    ``like`` is not sharded."""
    if not _is_dtensor(like):
        return full.to(like.device) if isinstance(like, torch.Tensor) else full
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full.to(like.device_mesh.device_type), like.device_mesh, like.placements)


def load_full_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a whole (unsharded) state dict into a sharded ``model``: each rank copies in its shard.
    (Tied weights appear under each of their names and are simply copied twice.)"""
    own = model.state_dict()
    if own.keys() != state.keys():
        raise TformerError(f"the checkpoint's weights do not match the model: "
                           f"{sorted(own.keys() ^ state.keys())[:3]} ...")
    with torch.no_grad():
        for name, target in own.items():
            piece = shard_like(state[name], target)
            if _is_dtensor(target):
                target.to_local().copy_(piece.to_local())
            else:
                target.copy_(piece)


def sharded_optimizer_state(state: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """A whole optimizer state dict (the plain format every checkpoint has) with each parameter's tensors (Adam's
    moments) cut to this rank's shard of that parameter, on the CPU side of the cut: loading it never puts a
    whole moment on the device. Scalars (Adam's step) stay as they are."""
    params = [p for g in optimizer.param_groups for p in g["params"]]  # the order of the saved indices
    out = {**state, "state": {}}
    for i, s in state["state"].items():
        p = params[int(i)]
        out["state"][i] = {k: shard_like(v, p) if isinstance(v, torch.Tensor) and v.dim() > 0 else v
                           for k, v in s.items()}
    return out
