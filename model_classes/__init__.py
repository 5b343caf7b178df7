"""The five gesture classifiers and their registry.

``create_model(name, num_classes, **hparams)``, ``list_models()`` (``mlp``, ``cnn``,
``gcn``, ``resnet34``, ``fusion``) and ``model_spec(name)``; see :mod:`model_classes.registry`.
Every model's ``forward`` takes the dict batch of ``docs/architecture.md`` and returns
``(B, C)`` logits.
"""
from __future__ import annotations

from .registry import (
    ModelSpec,
    UnknownHyperparameterError,
    UnknownModelError,
    create_model,
    list_models,
    model_spec,
    register_model,
)

# Registration order is list_models() order.
from .mlp import LandmarkMLP  # noqa: E402
from .cnn import SmallCNN  # noqa: E402
from .gcn import HandGCN  # noqa: E402
from .resnet import (  # noqa: E402
    IMAGENET_URL,
    PretrainedWeightsError,
    ResNet34Classifier,
    load_backbone_weights,
    load_imagenet_weights,
)
from .fusion import FusionModel  # noqa: E402

__all__ = [
    "ModelSpec",
    "UnknownHyperparameterError",
    "UnknownModelError",
    "create_model",
    "list_models",
    "model_spec",
    "register_model",
    "LandmarkMLP",
    "SmallCNN",
    "HandGCN",
    "ResNet34Classifier",
    "FusionModel",
    "IMAGENET_URL",
    "PretrainedWeightsError",
    "load_backbone_weights",
    "load_imagenet_weights",
]
