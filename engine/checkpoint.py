"""Self-describing checkpoints, written atomically.

A checkpoint carries the weights and everything needed to rebuild and use the
model without the code that trained it: model name, hyperparameters, class
names in order, input preprocessing, landmark normalisation; plus optimizer,
scheduler, epoch, best metric and history so ``--resume`` can continue.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn

from common.errors import CheckpointMismatchError, UsageError
from common.files import atomic_copy, atomic_open

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "model_name", "hparams", "num_classes", "class_names", "preprocessing", "state_dict")
#: Keys of ``preprocessing`` that every reader of a checkpoint relies on.
REQUIRED_PREPROCESSING = ("inputs", "landmark_norm")
#: The fusion model's branches that ``init_from`` may start from trained checkpoints.
FUSION_BRANCHES = ("resnet34", "gcn")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """Save to a temp file in the same folder, then rename: a crash never leaves half a file."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DDP / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def make_checkpoint(
    model: nn.Module,
    *,
    model_name: str,
    class_names: Sequence[str],
    preprocessing: dict,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    epoch: int = 0,
    best_metric: float | None = None,
    args: dict | None = None,
    history: list[dict] | None = None,
    extra: dict | None = None,
) -> dict:
    """The checkpoint dict of ``model``; ``preprocessing["inputs"]``, when given, gains any input the model reads
    that it does not list (:func:`recorded_inputs`), so a checkpoint never under-describes what prediction must
    supply."""
    m = unwrap(model)
    preprocessing = dict(preprocessing)
    if "inputs" in preprocessing:
        preprocessing["inputs"] = recorded_inputs(m, preprocessing["inputs"])
    return {
        "format_version": FORMAT_VERSION,
        "model_name": model_name,
        "hparams": dict(getattr(m, "hparams", {})),
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "preprocessing": preprocessing,
        "state_dict": {k: v.detach().cpu() for k, v in m.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch,
        "best_metric": best_metric,
        "args": dict(args or {}),
        "history": list(history or []),
        **(extra or {}),
    }


def recorded_inputs(model: nn.Module, inputs: Sequence[str] | None) -> list[str]:
    """``inputs`` followed by the inputs ``model`` reads (its ``inputs``, e.g. ``handedness`` when built with
    ``handedness=True``) that ``inputs`` lacks."""
    out = list(inputs or [])
    return out + [i for i in getattr(model, "inputs", ()) if i not in out]


def save_checkpoint(path: str | Path, checkpoint: dict) -> Path:
    atomic_torch_save(checkpoint, path)
    return Path(path)


def _load_failure(e: Exception) -> str:
    """One line on why ``torch.load(weights_only=True)`` failed, without torch's advice to load the file
    with ``weights_only=False`` (which would run code from it)."""
    if "Weights only load failed" in str(e):
        return "it holds objects other than tensors and plain containers (not a checkpoint written by this project)"
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"not a checkpoint written by this project ({type(e).__name__}: {first})"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint and check it is one of ours; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        # plain types and tensors only: loading never runs code from the file
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, not a torch file, or holding arbitrary objects
        raise CheckpointMismatchError(f"{path}: cannot read checkpoint: {_load_failure(e)}") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
        raise CheckpointMismatchError(f"{path}: not a hand-gestures checkpoint (missing {missing})")
    if not isinstance(ckpt["format_version"], int) or ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointMismatchError(f"{path}: unsupported checkpoint format version {ckpt['format_version']!r} "
                                      f"(this code reads up to {FORMAT_VERSION})")
    pre = ckpt["preprocessing"]
    missing = [k for k in REQUIRED_PREPROCESSING if not isinstance(pre, Mapping) or k not in pre]
    if missing:
        raise CheckpointMismatchError(f"{path}: not a usable hand-gestures checkpoint "
                                      f"(preprocessing is missing {missing})")
    return ckpt


def checkpoint_temperature(ckpt: dict, path: str | Path = "<checkpoint>") -> float | None:
    """The temperature fitted when the checkpoint's training ended (``ckpt["calibration"]``, see
    :mod:`engine.calibration`), or None when it has none; a value that is not a number > 0 is an error."""
    calib = ckpt.get("calibration")
    if calib is None:
        return None
    t = calib.get("temperature") if isinstance(calib, Mapping) else None
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
        raise CheckpointMismatchError(f"{path}: calibration temperature must be a number > 0, got {t!r} "
                                      "(recalibrate it: `hand-gestures calibrate`)")
    return float(t)


def check_compatible(
    ckpt: dict,
    path: str | Path,
    *,
    model_name: str | None = None,
    class_names: Sequence[str] | None = None,
    hparams: dict | None = None,
    preprocessing: dict | None = None,
) -> None:
    """Raise :class:`CheckpointMismatchError` listing every difference from what is asked for."""
    diffs = []
    if model_name is not None and ckpt["model_name"] != model_name:
        diffs.append(f"model: checkpoint has {ckpt['model_name']!r}, asked for {model_name!r}")
    if class_names is not None and list(ckpt["class_names"]) != list(class_names):
        a, b = list(ckpt["class_names"]), list(class_names)
        diffs.append(f"classes: checkpoint has {len(a)} {a}, asked for {len(b)} {b}")
    for label, want, have in (("hparam", hparams, ckpt["hparams"]), ("preprocessing", preprocessing, ckpt["preprocessing"])):
        for k, v in (want or {}).items():
            if k in have and comparable(have[k]) != comparable(v):
                diffs.append(f"{label} {k}: checkpoint has {have[k]!r}, asked for {v!r}")
    if diffs:
        raise CheckpointMismatchError(f"{path}: checkpoint does not match:\n  " + "\n  ".join(diffs))


def comparable(v: Any) -> Any:
    """Tuples and lists with the same items compare equal (JSON-ish checkpoint values come back as lists)."""
    return list(v) if isinstance(v, tuple) else v


def build_model(ckpt: dict, path: str | Path = "<checkpoint>") -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (never downloads weights)."""
    from model_classes import create_model

    hparams = dict(ckpt["hparams"])
    if "weights" in hparams:
        hparams["weights"] = None  # the checkpoint holds the trained weights
    try:
        model = create_model(ckpt["model_name"], ckpt["num_classes"], **hparams)
    except (KeyError, TypeError, ValueError) as e:  # unknown model name or hyperparameter
        raise CheckpointMismatchError(f"{path}: cannot rebuild model {ckpt['model_name']!r}: {e}") from None
    try:
        missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
    except RuntimeError as e:  # tensors of the wrong size
        raise CheckpointMismatchError(f"{path}: weights do not fit model {ckpt['model_name']!r}: {e}") from None
    if missing or unexpected:
        raise CheckpointMismatchError(
            f"{path}: weights do not fit model {ckpt['model_name']!r}: "
            f"missing {list(missing)[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected {list(unexpected)[:8]}{'...' if len(unexpected) > 8 else ''}"
        )
    listed = (ckpt.get("preprocessing") or {}).get("inputs")
    unlisted = [i for i in getattr(model, "inputs", ()) if listed is not None and i not in listed]
    if unlisted:  # prediction supplies what preprocessing lists: the model would miss these
        raise CheckpointMismatchError(f"{path}: model {ckpt['model_name']!r} reads {unlisted}, which its "
                                      f"preprocessing inputs {list(listed)} do not list")
    return model


def load_model(path: str | Path, map_location: str | torch.device = "cpu", *, train: bool = False,
               **expect: Any) -> tuple[nn.Module, dict]:
    """Load a checkpoint, check it against ``expect`` (see :func:`check_compatible`), rebuild the model.

    The model comes back in eval mode, ready for inference (batch-norm statistics frozen, no
    dropout); ``train=True`` returns it in training mode.
    """
    ckpt = load_checkpoint(path, map_location)
    check_compatible(ckpt, path, **expect)
    return build_model(ckpt, path).train(train), ckpt


def check_fusion_branches(names: Iterable[str]) -> None:
    """``--init-from`` keys must name fusion branches: a typo (``resnet=``) is an error, not ignored."""
    unknown = sorted(set(names) - set(FUSION_BRANCHES))
    if unknown:
        raise UsageError(f"--init-from: unknown branch {', '.join(map(repr, unknown))}; "
                         f"valid keys: {', '.join(FUSION_BRANCHES)}")


def fusion_from_checkpoints(init_from: Mapping[str, str | Path], num_classes: int, class_names: Sequence[str], *,
                            landmark_norm: str, hparams: Mapping[str, Any] | None = None) -> nn.Module:
    """A fusion model whose branches start from trained checkpoints: ``{"resnet34": path, "gcn": path}``.

    Each checkpoint must be of its branch's model and classes (the GCN also of ``landmark_norm``);
    a branch without a checkpoint is built from ``hparams`` as ``create_model("fusion", ...)`` does.
    """
    from model_classes.fusion import FusionModel

    check_fusion_branches(init_from)
    parts = {}
    for key, path in init_from.items():
        expect = {"preprocessing": {"landmark_norm": landmark_norm}} if key == "gcn" else {}
        parts[key], _ = load_model(path, model_name=key, class_names=class_names, **expect)
    return FusionModel.from_unimodal(parts.get("resnet34"), parts.get("gcn"), num_classes, **dict(hparams or {}))


class CheckpointSaver:
    """Where a run's checkpoints go and when they are written: ``<out_dir>/<run>.pt`` holds the
    best epoch so far, ``<out_dir>/<run>.last.pt`` the latest one (what ``--resume`` reads).
    Both are written atomically, best first, so a crash leaves each whole."""

    def __init__(self, out_dir: str | Path, run_name: str) -> None:
        self.best = Path(out_dir) / f"{run_name}.pt"
        self.last = Path(out_dir) / f"{run_name}.last.pt"

    def save(self, checkpoint: dict, improved: bool) -> None:
        if improved:  # written once: the last checkpoint is then a hard link to (or a copy of) the best
            save_checkpoint(self.best, checkpoint)
            atomic_copy(self.best, self.last)
        else:
            save_checkpoint(self.last, checkpoint)
