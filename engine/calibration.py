"""Temperature scaling: probabilities that mean what they say, for the reject option.

A trained classifier is usually over-confident: of the hands it calls with 99%, fewer
than 99% are right. Dividing its logits by one temperature ``T`` fitted on the
validation split (Guo et al. 2017, "On calibration of modern neural networks") fixes
most of that without changing a single prediction. Training fits ``T`` on the best
checkpoint when it ends (:func:`calibrate_training_run`); ``hand-gestures calibrate``
(:func:`calibrate_checkpoint`) fits it on a checkpoint afterwards. Either way it is
stored as ``ckpt["calibration"]``::

    {"temperature": T, "split": "val", "n": hands, "nll_before": ..., "nll_after": ...,
     "ece_before": ..., "ece_after": ...}

and predictors divide their logits by ``ckpt.get("calibration", {}).get("temperature", 1.0)``.
The arithmetic (fit, ECE, reliability bins, coverage curve) lives in :mod:`engine.metrics`
and is re-exported here.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.errors import UsageError, UserFacingError
from data_loaders.augment import BatchTransform
from data_loaders.batches import load_hand_table

from .checkpoint import build_model, load_checkpoint, save_checkpoint
from .evaluate import checkpoint_temperature, predict_checkpoint
from .loop import predict
from .metrics import (
    apply_temperature,
    coverage_curve,
    expected_calibration_error,
    fit_temperature,
    log_probs,
    nll,
    reliability_bins,
)

__all__ = ["apply_temperature", "calibrate_checkpoint", "calibrate_training_run", "calibration_record",
           "checkpoint_temperature", "coverage_curve", "describe", "expected_calibration_error", "fit_temperature",
           "reliability_bins"]

#: The split a temperature is fitted on unless told otherwise.
DEFAULT_SPLIT = "val"


def calibration_record(probs: np.ndarray, labels: np.ndarray, split: str = DEFAULT_SPLIT) -> dict:
    """Fit ``T`` on softmax outputs ``probs`` (``(n, C)``) and their ``labels``: the ``ckpt["calibration"]``
    dict (plain floats, so the checkpoint stays loadable with ``weights_only=True``)."""
    z = log_probs(probs)  # logits up to a per-hand constant: enough for temperature scaling
    t = fit_temperature(z, labels)
    return {
        "temperature": t, "split": split, "n": len(labels),
        "nll_before": nll(z, labels), "nll_after": nll(z, labels, t),
        "ece_before": expected_calibration_error(probs, labels),
        "ece_after": expected_calibration_error(apply_temperature(probs, t), labels),
    }


def describe(calib: dict) -> str:
    """One line: ``temperature 1.42: val NLL 0.512 -> 0.433, ECE 6.1% -> 1.2%``."""
    return (f"temperature {calib['temperature']:.3g}: {calib['split']} NLL {calib['nll_before']:.4f} -> "
            f"{calib['nll_after']:.4f}, ECE {100 * calib['ece_before']:.2f}% -> {100 * calib['ece_after']:.2f}% "
            f"({calib['n']} hands)")


def _store(path: Path, ckpt: dict, calib: dict) -> dict:
    """Write ``calib`` into the checkpoint file (atomically) and return it."""
    ckpt["calibration"] = calib
    save_checkpoint(path, ckpt)
    return calib


def calibrate_checkpoint(path: str | Path, *, crops_dir: str | Path | None = None, data_dir: str | Path | None = None,
                         split: str = DEFAULT_SPLIT, device: str | torch.device = "cpu") -> dict:
    """Fit the temperature of the checkpoint at ``path`` on ``split`` and store it there (see the module doc).

    The hands are read as evaluation reads them (:func:`engine.evaluate.predict_checkpoint`) from
    ``crops_dir`` (default: the crops folder the checkpoint was trained on) or, for landmark models,
    the annotations in ``data_dir`` (default: the checkpoint's). Returns the stored dict.
    """
    path = Path(path)
    ckpt = load_checkpoint(path)
    args = ckpt.get("args") or {}
    crops_dir = crops_dir if crops_dir is not None else args.get("crops_dir")
    data_dir = data_dir if data_dir is not None else args.get("data_dir")
    need_images = "image" in ckpt["preprocessing"]["inputs"]
    if crops_dir is None and (need_images or data_dir is None):
        raise UsageError(f"{path}: the checkpoint records no crops folder to calibrate on; pass --crops-dir"
                         + ("" if need_images else " (or --data-dir, the HaGRID root)"))
    source = Path(crops_dir) if crops_dir is not None else Path(data_dir)  # no manifest there: annotations
    table = load_hand_table(source, data_dir, need_images=need_images, class_names=ckpt["class_names"])
    if not (table.split == split).any():
        raise UserFacingError(f"{path}: no hands of split {split!r} in {source} to fit the temperature on "
                              f"(splits there: {', '.join(sorted(set(map(str, table.split)))) or 'none'})")
    preds = predict_checkpoint(path, table, split=split, device=torch.device(device), ckpt=ckpt)
    return _store(path, ckpt, calibration_record(preds.probs, preds.y_true, split))


def calibrate_training_run(path: str | Path, batches: Iterable[dict], transform: BatchTransform,
                           device: torch.device, *, split: str = DEFAULT_SPLIT, **predict_options: Any) -> dict | None:
    """Fit the temperature of the best checkpoint of a run that just ended, on the validation ``batches``
    training already holds (no crop is read again); store and return it, or None without hands or file."""
    path = Path(path)
    if not path.is_file():
        return None
    ckpt = load_checkpoint(path)
    model = build_model(ckpt, path).to(device)
    preds = predict(model, batches, transform, device, **predict_options)
    if preds.n == 0:
        return None
    return _store(path, ckpt, calibration_record(preds.probs, preds.y_true, split))
