"""Landmark MLP (``"mlp"``): fully connected layers over the flattened landmarks.

Computes ``Linear(42, h_1) -> ReLU -> Dropout -> ... -> Linear(h_k, C)`` on
``batch["landmarks"]`` ``(B, 21, 2)`` flattened to 42 features, and returns ``(B, C)`` logits.
It has no ``embed``.

Args:
    num_classes (int): number of classes ``C``.
    hidden (Sequence[int]): widths of the hidden layers (default ``(64, 32)``, the seed's baseline).
    dropout (float): dropout after each hidden layer, in ``[0, 1)`` (default ``0.1``).

Parameter counts: ``docs/models.md``.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from .registry import register_model

NUM_LANDMARK_FEATURES = 42


@register_model("mlp", inputs=("landmarks",))
class LandmarkMLP(nn.Module):
    inputs = ("landmarks",)

    def __init__(self, num_classes: int, hidden: Sequence[int] = (64, 32), dropout: float = 0.1) -> None:
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.num_classes = num_classes
        self.hparams: dict[str, Any] = {"hidden": hidden, "dropout": float(dropout)}
        layers: list[nn.Module] = []
        width = NUM_LANDMARK_FEATURES
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = h
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = batch["landmarks"].flatten(1)
        return self.fc(self.features(x))
