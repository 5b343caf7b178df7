"""The five gesture classifiers and their registry.

``create_model(name, num_classes, **hparams)``, ``list_models()`` (``mlp``, ``cnn``,
``gcn``, ``resnet34``, ``fusion``) and ``model_spec(name)``; see :mod:`model_classes.registry`.
Every model's ``forward`` takes the dict batch of ``docs/architecture.md`` and returns
``(B, C)`` logits. Design notes and parameter counts: ``docs/models.md``.
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

# isort: off
# Importing a model module registers it: this order is list_models() order (fusion last, it builds the others).
from .mlp import LandmarkMLP
from .cnn import SmallCNN
from .gcn import HandGCN
from .resnet import (
    IMAGENET_URL,
    PretrainedWeightsError,
    ResNet34Classifier,
    load_backbone_weights,
    load_imagenet_weights,
)
from .fusion import FusionModel
# isort: on

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
