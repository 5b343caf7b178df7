"""Landmark MLP (``"mlp"``).

Input: ``batch["landmarks"]`` ``(B, 21, 2)``, flattened to 42 features.

Default (the seed's small baseline): ``42 -> 64 -> 32 -> C`` with ReLU and
dropout 0.1 after each hidden layer. Parameters for 18 classes:
``42*64+64 + 64*32+32 + 32*18+18 = 2752 + 2080 + 594 = 5,426``.
Wider variants by ``hidden=(256, 128)`` etc. (e.g. ``(256, 128)``: 46,226 parameters).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from .registry import register_model

NUM_LANDMARK_FEATURES = 42


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


# The class itself is the factory: its keyword arguments (with defaults) are the hyperparameters.
build_mlp = register_model("mlp", inputs=("landmarks",))(LandmarkMLP)
