"""Every training default in one place: each model's recipe, the augmentation and the CPU demo plan.

A recipe gives ``lr``, ``batch_size``, ``epochs``, ``optimizer`` (``adam`` or ``adamw``; Adam's
``weight_decay`` is coupled L2, so keep it small), ``scheduler`` (:data:`SCHEDULERS`: constant,
cosine annealing over the run, or OneCycle with ``max_lr=lr`` stepped every batch), ``patience``
(epochs without a better validation accuracy before stopping; 0 never stops early) and
``augment`` (keywords of :class:`data_loaders.augment.AugmentConfig`). ``TrainConfig`` fields
left at ``None`` take these values; the command line and notebooks override them.
"""
from __future__ import annotations

import copy
from typing import Any

SCHEDULERS = ("none", "cosine", "onecycle")
OPTIMIZERS = ("adam", "adamw")

#: Orientation-safe augmentation for landmark models: horizontal flips, at most 15 degrees of
#: rotation (over 30 would turn like into dislike), scale and a little landmark noise.
LANDMARK_AUGMENT: dict[str, Any] = {
    "flip_p": 0.5,
    "rotation_deg": 15.0,
    "scale_range": (0.9, 1.1),
    "landmark_jitter": 0.01,
}
#: ...and for image models (the fusion model's landmarks share the flip, rotation and scale of the image).
IMAGE_AUGMENT: dict[str, Any] = {
    **LANDMARK_AUGMENT,
    "translate": 0.05,
    "brightness": 0.25,
    "contrast": 0.25,
    "saturation": 0.25,
}


def _recipe(lr: float, batch_size: int, epochs: int, weight_decay: float, scheduler: str, patience: int,
            augment: dict[str, Any]) -> dict[str, Any]:
    return {"lr": lr, "batch_size": batch_size, "epochs": epochs, "weight_decay": weight_decay,
            "optimizer": "adam", "scheduler": scheduler, "patience": patience, "augment": dict(augment)}


RECIPES: dict[str, dict[str, Any]] = {
    "mlp": _recipe(1e-3, 128, 8, 0.0, "none", 5, LANDMARK_AUGMENT),
    "gcn": _recipe(1e-3, 128, 8, 0.0, "none", 5, LANDMARK_AUGMENT),
    # a net this small underfits rather than overfits: more epochs, a full OneCycle schedule, no early stop
    "cnn": _recipe(3e-3, 128, 30, 1e-4, "onecycle", 0, IMAGE_AUGMENT),
    "resnet34": _recipe(1e-4, 32, 8, 1e-4, "cosine", 5, IMAGE_AUGMENT),
    "fusion": _recipe(1e-4, 32, 8, 1e-4, "cosine", 5, IMAGE_AUGMENT),
}


#: Image models trained channels-last on the CPU too (always on CUDA): where it measured faster on 2 AVX2
#: cores (the small CNN at 64 px: 421 -> 843 training images/s; ResNet-34 was 5-7% slower, so not it).
CHANNELS_LAST_ON_CPU = frozenset({"cnn"})


def uses_channels_last(model: str, device_type: str) -> bool:
    """Whether ``model`` trains with channels-last images and weights on a ``device_type`` device."""
    from model_classes import model_spec

    return "image" in model_spec(model).inputs and (device_type == "cuda" or model in CHANNELS_LAST_ON_CPU)


def recipe(model: str) -> dict[str, Any]:
    """A copy of ``model``'s training recipe (editing it changes nothing)."""
    try:
        return copy.deepcopy(RECIPES[model])
    except KeyError:
        raise KeyError(f"no training recipe for model {model!r}; known: {', '.join(RECIPES)}") from None


#: The demo's models in training order: fusion last, since it starts from resnet34 + gcn.
DEMO_MODELS = ("mlp", "gcn", "cnn", "resnet34", "fusion")

#: The demo's long CPU plan (``--plan cpu``, ~18 min for the synthetic set on 2 cores). Landmark models get
#: many cheap epochs; ResNet-34 trains from scratch (no ImageNet weights offline) for 8 epochs at 128 px;
#: fusion starts from the trained ResNet-34 and GCN with frozen branches and fuses at the logit level (one
#: learned weight), which keeps the GCN's accuracy and adds the image where landmarks are missing. The
#: feature-level head (the model's default) is the recipe for a GPU and the full dataset (docs/models.md).
CPU_PLAN: dict[str, dict[str, Any]] = {
    "mlp": dict(epochs=150, patience=30, hparams={}),
    "gcn": dict(epochs=150, patience=30, hparams={}),
    "cnn": dict(epochs=60, patience=0, hparams={}),
    "resnet34": dict(epochs=8, patience=0, hparams={"weights": None}, lr=1e-3, scheduler="onecycle"),
    "fusion": dict(epochs=4, patience=0, hparams={"freeze_branches": True, "mode": "logit"}, lr=1e-2),
}

#: The demo's default plan (``--plan quick``): the whole demo in under 5 minutes on 2 CPU cores. Where the
#: seconds go (benchmarks/README.md): ResNet-34 from scratch costs ~80 s per epoch at 128 px here, so it
#: trains at 48 px for 3 epochs (~25 s each) and is badly under-trained (64 px for 3 epochs: 20 s more, no
#: better); the CNN gets 25 of the long plan's 60 epochs; fusion (logit level, frozen branches: one learned
#: weight) needs one epoch.
QUICK_PLAN: dict[str, dict[str, Any]] = {
    "mlp": dict(epochs=150, patience=30, hparams={}),
    "gcn": dict(epochs=100, patience=20, hparams={}),
    "cnn": dict(epochs=25, patience=0, hparams={}),
    "resnet34": dict(epochs=3, patience=0, hparams={"weights": None}, lr=1e-3, scheduler="onecycle",
                     image_size=48),
    "fusion": dict(epochs=1, patience=0, hparams={"freeze_branches": True, "mode": "logit"}, lr=1e-2),
}

#: ``hand-gestures demo --plan``: name -> plan; the first is the default.
DEMO_PLANS: dict[str, dict[str, dict[str, Any]]] = {"quick": QUICK_PLAN, "cpu": CPU_PLAN}
DEFAULT_DEMO_PLAN = next(iter(DEMO_PLANS))
