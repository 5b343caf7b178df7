"""Untrained checkpoints of every registered model, written as training writes them (same keys, same
preprocessing fields): for tests of code that loads, exports or runs a checkpoint and does not care
how accurate it is."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from data_loaders.augment import IMAGENET_MEAN, IMAGENET_STD
from data_loaders.classes import DEFAULT_CLASSES, make_class_set
from engine.checkpoint import make_checkpoint, save_checkpoint
from model_classes import create_model, list_models, model_spec

#: The crop settings a checkpoint records (``preprocessing["crop"]``), as ``hand-gestures crop`` writes them.
CROP_INFO = {"size": 128, "box_scale": 1.5, "fill": 0, "resample": "bicubic", "box_source": "annotation"}
#: Hyperparameters that keep the random models small where the model allows it.
SMALL_HPARAMS = {"resnet34": {"weights": None}, "fusion": {"resnet": {"weights": None}}}


def random_checkpoint(model_name: str, path: str | Path, *, class_names: Sequence[str] | None = None,
                      landmark_norm: str = "wrist", seed: int = 0, **extra) -> Path:
    """Write an untrained ``model_name`` checkpoint to ``path`` and return the path (classes: the 18 gestures
    unless ``class_names`` is given)."""
    class_names = list(make_class_set(DEFAULT_CLASSES).names if class_names is None else class_names)
    torch.manual_seed(seed)
    spec = model_spec(model_name)
    model = create_model(model_name, len(class_names), **SMALL_HPARAMS.get(model_name, {})).eval()
    preprocessing = {"inputs": list(spec.inputs), "image_size": spec.image_size, "landmark_norm": landmark_norm,
                     "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "crop": dict(CROP_INFO)}
    ckpt = make_checkpoint(model, model_name=model_name, class_names=class_names, preprocessing=preprocessing,
                           args={"crops_dir": None}, extra=extra)
    return save_checkpoint(path, ckpt)


def random_checkpoints(folder: str | Path, models: Sequence[str] | None = None, **kw) -> dict[str, Path]:
    """One untrained checkpoint per model (all registered models by default): ``{name: path}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {m: random_checkpoint(m, folder / f"{m}.pt", **kw) for m in (models or list_models())}
