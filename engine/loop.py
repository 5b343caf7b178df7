"""Running a model over batches: the one loop shared by validation, evaluation and inference."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data_loaders.augment import BatchTransform


def to_device(batch: dict[str, torch.Tensor], device: torch.device, channels_last: bool = False) -> dict[str, torch.Tensor]:
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if channels_last and "image" in out:
        out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
    return out


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA (no loss scaling needed); nothing on CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class Predictions:
    index: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    probs: np.ndarray
    loss_sum: float
    seconds: float

    @property
    def n(self) -> int:
        return len(self.y_true)


@torch.no_grad()
def predict(
    model: nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    transform: BatchTransform,
    device: torch.device,
    *,
    amp: bool = False,
    channels_last: bool = False,
    max_batches: int | None = None,
) -> Predictions:
    """Predict every batch (eval mode); returns indices, labels, predictions, probabilities and summed loss."""
    import time

    model.eval()
    idx, ys, ps, probs = [], [], [], []
    loss_sum, seconds = 0.0, 0.0
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        batch = transform(to_device(batch, device, channels_last), train=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with autocast(device, amp):
            logits = model(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds += time.perf_counter() - t0
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, batch["label"], reduction="sum").item()
        p = logits.softmax(-1)
        idx.append(batch["index"].cpu())
        ys.append(batch["label"].cpu())
        ps.append(p.argmax(-1).cpu())
        probs.append(p.cpu())
    cat = lambda xs, dt: torch.cat(xs).numpy() if xs else np.zeros(0, dt)  # noqa: E731
    return Predictions(
        index=cat(idx, np.int64), y_true=cat(ys, np.int64), y_pred=cat(ps, np.int64),
        probs=torch.cat(probs).numpy() if probs else np.zeros((0, 0), np.float32),
        loss_sum=loss_sum, seconds=seconds,
    )
