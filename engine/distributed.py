"""DDP under ``torchrun``: process group setup, rank helpers and metric reduction.

``torchrun --nproc_per_node=N -m engine.cli train ...`` sets RANK/WORLD_SIZE/
LOCAL_RANK; we initialise NCCL on GPUs and gloo on CPU. Rank 0 writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device: str) -> DistInfo:
    """Join the process group when launched by torchrun; a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") and torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world=world, local_rank=local)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few scalars over all ranks (identity when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def resolve_device(spec: str, info: DistInfo | None = None) -> torch.device:
    """``auto`` (this rank's GPU when there is one, else the CPU) or a torch device string."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", info.local_rank if info else 0)
        return torch.device("cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and info is not None and info.enabled:
        dev = torch.device("cuda", info.local_rank)
    return dev
