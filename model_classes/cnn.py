"""Small image CNN (``"cnn"``): four convolution blocks, global average pooling, a linear head.

Each block is ``conv3x3 -> BN -> ReLU -> maxpool 2x2`` (depthwise-separable blocks:
``dw3x3 -> BN -> ReLU -> pw1x1 -> BN -> ReLU -> maxpool 2x2``), convolutions without bias.
Input ``batch["image"]`` ``(B, 3, 64, 64)``, ImageNet-normalised; returns ``(B, C)`` logits.
``embed(batch)`` returns the ``(B, embed_dim)`` pooled features (``embed_dim`` = the last channel count).

Args:
    num_classes (int): number of classes ``C``.
    channels (Sequence[int]): output channels per block (default ``(16, 32, 64, 128)``).
    separable (Sequence[bool]): which blocks are depthwise-separable, one per block; not the first
        (default ``(False, False, True, True)``).
    dropout (float): dropout before the linear head (default ``0.2``).

Parameter counts and why this design: ``docs/models.md``.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from .registry import register_model

IMAGE_SIZE = 64


def _conv_block(cin: int, cout: int, separable: bool) -> nn.Sequential:
    if separable:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=False),
        ]
    else:
        layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False)]
    layers += [nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
    return nn.Sequential(*layers)


@register_model("cnn", inputs=("image",), image_size=IMAGE_SIZE)
class SmallCNN(nn.Module):
    inputs = ("image",)

    def __init__(
        self,
        num_classes: int,
        channels: Sequence[int] = (16, 32, 64, 128),
        separable: Sequence[bool] = (False, False, True, True),
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        separable = tuple(bool(s) for s in separable)
        if len(channels) != len(separable) or not channels:
            raise ValueError(
                f"channels and separable need one entry per block, got {len(channels)} and {len(separable)}"
            )
        if separable[0]:
            raise ValueError("the first block cannot be depthwise-separable (3 input channels)")
        self.num_classes = num_classes
        self.hparams: dict[str, Any] = {"channels": channels, "separable": separable, "dropout": float(dropout)}
        blocks = []
        cin = 3
        for cout, sep in zip(channels, separable):
            blocks.append(_conv_block(cin, cout, sep))
            cin = cout
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, num_classes)
        self.embed_dim = cin

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.pool(self.features(batch["image"])).flatten(1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fc(self.dropout(self.embed(batch)))

