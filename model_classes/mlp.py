"""Landmark MLP (``"mlp"``): fully connected layers over the flattened landmarks.

Computes ``Linear(42, h_1) -> ReLU -> Dropout -> ... -> Linear(h_k, C)`` on
``batch["landmarks"]`` ``(B, 21, 2)`` flattened to 42 features (43 with ``batch["handedness"]``
appended when ``handedness``), and returns ``(B, C)`` logits. It has no ``embed``.

Args:
    num_classes (int): number of classes ``C``.
    hidden (Sequence[int]): widths of the hidden layers (default ``(64, 32)``, the seed's baseline).
    dropout (float): dropout after each hidden layer, in ``[0, 1)`` (default ``0.1``).
    handedness (bool): also read ``batch["handedness"]`` ``(B,)`` (+1 right, -1 left, 0 unknown) as one
        more input feature (default ``False``). In the input, not the head, so the hidden layers can
        combine it with the geometry: a right hand's back view looks like a left hand's palm.

Parameter counts: ``docs/models.md``.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from .registry import check_bool, handedness_input, register_model

NUM_LANDMARK_FEATURES = 42


@register_model("mlp", inputs=("landmarks",), extra_inputs=handedness_input)
class LandmarkMLP(nn.Module):
    inputs: tuple[str, ...] = ("landmarks",)

    def __init__(self, num_classes: int, hidden: Sequence[int] = (64, 32), dropout: float = 0.1,
                 handedness: bool = False) -> None:
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.num_classes = num_classes
        self.handedness = check_bool("handedness", handedness)
        self.hparams: dict[str, Any] = {"hidden": hidden, "dropout": float(dropout), "handedness": self.handedness}
        self.inputs = type(self).inputs + handedness_input(self.hparams)
        layers: list[nn.Module] = []
        width = NUM_LANDMARK_FEATURES + int(self.handedness)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = h
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = batch["landmarks"].flatten(1)
        if self.handedness:
            x = torch.cat([x, batch["handedness"].to(x.dtype)[:, None]], dim=1)
        return self.fc(self.features(x))
