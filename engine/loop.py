"""Running a model over batches: one training epoch, and the one prediction loop shared by
validation, evaluation and inference."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data_loaders.augment import BatchTransform

from .distributed import all_reduce_sum
from .metrics import ModelPredictions


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def prepared(batch: dict[str, torch.Tensor], device: torch.device, transform: BatchTransform, train: bool,
             channels_last: bool) -> dict[str, torch.Tensor]:
    """The batch on ``device``, transformed, its image channels-last when asked (the transform's resampling
    returns contiguous images, and a model with channels-last weights is fastest on channels-last input)."""
    out = transform(to_device(batch, device), train=train)
    if channels_last and "image" in out:
        out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
    return out


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA (no loss scaling needed); nothing on CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class Predictions(ModelPredictions):
    """:class:`~engine.metrics.ModelPredictions` plus what the loop measured: summed loss and model time."""

    loss_sum: float = 0.0
    seconds: float = 0.0

    @property
    def n(self) -> int:
        return len(self)


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
    model.eval()
    idx, ys, ps, probs = [], [], [], []
    loss_sum, seconds = 0.0, 0.0
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        batch = prepared(batch, device, transform, False, channels_last)
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
        name="", index=cat(idx, np.int64), y_true=cat(ys, np.int64), y_pred=cat(ps, np.int64),
        probs=torch.cat(probs).numpy() if probs else np.zeros((0, 0), np.float32),
        loss_sum=loss_sum, seconds=seconds,
    )


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    transform: BatchTransform,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    device: torch.device,
    *,
    steps: int,
    amp: bool = False,
    channels_last: bool = False,
    bar: Any = None,
    world: int = 1,
) -> dict[str, float]:
    """At most ``steps`` optimiser steps of cross-entropy; the scheduler steps every batch.

    Returns ``train_loss``, ``train_acc`` (summed over DDP ranks) and ``samples_per_s``; ``bar``
    (a tqdm bar or None) is advanced every step.
    """
    t0 = time.perf_counter()
    model.train()
    loss_sum = correct = seen = 0.0
    for i, batch in enumerate(batches):
        if i >= steps:
            break
        batch = prepared(batch, device, transform, True, channels_last)
        with autocast(device, amp):
            logits = model(batch)
            loss = F.cross_entropy(logits.float(), batch["label"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        n = batch["label"].shape[0]
        loss_sum += loss.item() * n
        correct += (logits.argmax(-1) == batch["label"]).sum().item()
        seen += n
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", samples_s=f"{seen * world / (time.perf_counter() - t0):.0f}")
    seconds = time.perf_counter() - t0
    loss_sum, correct, seen = all_reduce_sum([loss_sum, correct, seen], device)
    return {"train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
            "samples_per_s": seen / max(seconds, 1e-9)}


def evaluate(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], transform: BatchTransform,
             device: torch.device, **options: Any) -> dict[str, float]:
    """Validation loss and accuracy of ``model`` on ``batches`` (``options`` as for :func:`predict`),
    summed over DDP ranks."""
    preds = predict(model, batches, transform, device, **options)
    loss, correct, n = all_reduce_sum([preds.loss_sum, float((preds.y_true == preds.y_pred).sum()), float(preds.n)],
                                      device)
    return {"val_loss": loss / max(n, 1), "val_acc": correct / max(n, 1)}
