"""DDP under ``torchrun``: process group setup, rank helpers and metric reduction.

``torchrun --nproc_per_node=N -m engine.cli train ...`` sets RANK/WORLD_SIZE/
LOCAL_RANK; we initialise NCCL on GPUs and gloo on CPU. Rank 0 writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from common.errors import UsageError


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


def check_device(spec: str) -> torch.device | None:
    """The device ``spec`` names (None for ``auto``); a one-line :class:`UsageError` when it is not a
    device name or not present on this machine, instead of a torch traceback at first use."""
    if spec == "auto":
        return None
    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError):
        raise UsageError(f"--device {spec!r}: not a device (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (dev.index or 0) >= count:
            raise UsageError(f"--device {spec}: no such CUDA GPU on this machine ({count} found); "
                             "use --device cpu or auto")
    elif dev.type != "cpu" and not _available(dev.type):
        raise UsageError(f"--device {spec}: no {dev.type} device on this machine; use --device cpu or auto")
    return dev


def _available(device_type: str) -> bool:
    """Whether torch can use a non-CUDA accelerator type (mps, xpu, ...) here."""
    backend = torch.backends.mps if device_type == "mps" else getattr(torch, device_type, None)
    return bool(getattr(backend, "is_available", lambda: False)())


def resolve_device(spec: str, info: DistInfo | None = None) -> torch.device:
    """``auto`` (this rank's GPU when there is one, else the CPU) or a torch device string."""
    dev = check_device(spec)
    if dev is None:
        if torch.cuda.is_available():
            return torch.device("cuda", info.local_rank if info else 0)
        return torch.device("cpu")
    if dev.type == "cuda" and info is not None and info.enabled:
        dev = torch.device("cuda", info.local_rank)
    return dev
