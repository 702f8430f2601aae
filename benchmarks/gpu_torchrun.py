"""tformer's data-parallel training under ``torchrun``, on as few as one GPU: NCCL and DDP exercised.

    python -m torch.distributed.run --standalone --nproc_per_node 1 benchmarks/gpu_torchrun.py \\
        --config base --precision bf16 --steps 20 --json-out FILE

Each process starts the process group itself (NCCL on CUDA, Gloo on the CPU or with ``--backend gloo``)
and trains the workload of ``gpu_train.py`` through the Trainer's DDP strategy. ``Distributed.from_env``
starts no process group for a single process (there is nothing to share), so that a one-GPU run would
otherwise test nothing of the parallel path: here one rank is still treated as a group of one, and every
collective (the token count, the loss sums, the stop flags, DDP's gradient all-reduce) goes through the
backend. Rank 0 writes the JSON of ``gpu_train.measure`` with the backend and world size added.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from gpu_train import measure, parser

from tformer.training.distributed import Distributed


@dataclass(frozen=True)
class GroupOfRanks(Distributed):
    """A started process group, used as one even when it has a single rank."""

    @property
    def enabled(self) -> bool:
        return True


def main() -> None:
    ap = parser()
    ap.description = __doc__.splitlines()[0]
    ap.add_argument("--backend", choices=("auto", "nccl", "gloo"), default="auto")
    args = ap.parse_args()
    if "LOCAL_RANK" not in os.environ:
        raise SystemExit("start me with torchrun (python -m torch.distributed.run ... benchmarks/gpu_torchrun.py)")
    rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    cuda = args.device != "cpu" and torch.cuda.is_available()
    backend = args.backend if args.backend != "auto" else ("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group(backend)
    try:
        result = measure(args, dist=GroupOfRanks(rank, world, local))
        used = dist.get_backend()
    finally:
        dist.destroy_process_group()
    result.update(backend=used, world_size=world, launcher="torchrun")
    if rank == 0:
        text = json.dumps(result, indent=1)
        print(text)
        if args.json_out:
            args.json_out.write_text(text + "\n")


if __name__ == "__main__":
    main()
