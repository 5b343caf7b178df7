"""ResNet-34 (``"resnet34"``): torchvision's ResNet-34 with a new C-class head.

Computes ``Linear(512, C)(dropout(backbone(x)))``, where ``backbone`` is
``torchvision.models.resnet34`` with ``fc = Identity``, on ``batch["image"]`` ``(B, 3, 128, 128)``
(ImageNet-normalised), and returns ``(B, C)`` logits. ``embed(batch)`` returns the ``(B, 512)``
average-pooled backbone features.

Args:
    num_classes (int): number of classes ``C``.
    weights (str | os.PathLike | None): the backbone's initial weights (the head is always random):
        ``"imagenet"`` (default) for torchvision's IMAGENET1K_V1 through :func:`load_imagenet_weights`;
        a path to a torchvision state dict, a state dict of this model or a checkpoint dict with a
        ``"state_dict"`` entry (``module.``/``backbone.`` prefixes stripped, ``fc.*`` dropped, every
        backbone key required); or ``None`` for random initialisation.
    dropout (float): dropout before the linear head (default ``0.0``).

``model.hparams["weights"]`` is always ``None`` and ``model.pretrained`` records the source, so
``create_model("resnet34", C, **hparams)`` from a checkpoint never downloads. Parameter counts:
``docs/models.md``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

import torch
import torch.nn as nn
from torchvision.models import resnet34

from common.errors import UserFacingError

from .registry import register_model

IMAGE_SIZE = 128
EMBED_DIM = 512
#: torchvision ``ResNet34_Weights.IMAGENET1K_V1.url``.
IMAGENET_URL = "https://download.pytorch.org/models/resnet34-b627a593.pth"


class PretrainedWeightsError(UserFacingError, RuntimeError):
    """Pretrained weights could not be fetched or do not fit the backbone (the message says what
    to do, so the command line prints it alone, without a traceback)."""


def hub_cache_dir(model_dir: str | os.PathLike | None = None) -> str:
    """Where ``torch.hub`` looks for (and stores) downloaded weight files."""
    return str(model_dir) if model_dir is not None else os.path.join(torch.hub.get_dir(), "checkpoints")


def imagenet_cache_path(url: str = IMAGENET_URL, model_dir: str | os.PathLike | None = None) -> Path:
    """Where torch.hub keeps the ImageNet weight file once downloaded (``$TORCH_HOME/hub/checkpoints/...``)."""
    return Path(hub_cache_dir(model_dir)) / (os.path.basename(urlparse(url).path) or "resnet34.pth")


def cached_imagenet_weights(url: str = IMAGENET_URL, model_dir: str | os.PathLike | None = None) -> Path | None:
    """The cached ImageNet weight file when it is there (so ``weights="imagenet"`` needs no network), else None."""
    path = imagenet_cache_path(url, model_dir)
    return path if path.is_file() else None


def load_imagenet_weights(
    url: str = IMAGENET_URL, model_dir: str | os.PathLike | None = None, *, progress: bool = False
) -> dict[str, torch.Tensor]:
    """Fetch (or read from the hub cache) the ImageNet ResNet-34 state dict, on the CPU.

    Raises :class:`PretrainedWeightsError` with instructions when the file can be neither
    found in the cache nor downloaded.
    """
    cached = imagenet_cache_path(url, model_dir)
    cache, file_name = str(cached.parent), cached.name
    try:
        return torch.hub.load_state_dict_from_url(
            url,
            model_dir=None if model_dir is None else str(model_dir),
            map_location="cpu",
            progress=progress,
            check_hash=True,
            weights_only=True,
        )
    except (OSError, RuntimeError, ValueError) as e:  # URLError/HTTPError/timeouts are OSErrors
        raise PretrainedWeightsError(
            f"could not get the ImageNet ResNet-34 weights from {url} ({type(e).__name__}: {e}).\n"
            f"To use them without internet access here, either:\n"
            f"  * download {url} on a machine with internet and pass the file: weights='<path>/{file_name}', or\n"
            f"  * put the file in the torch hub cache as {os.path.join(cache, file_name)} "
            f"(the directory comes from $TORCH_HOME), where it is picked up without downloading;\n"
            f"or train from scratch with weights=None."
        ) from e


def _strip_prefix(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def model_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """The state dict in ``obj``: a state dict, or a checkpoint dict with a ``"state_dict"`` entry;
    a DDP ``module.`` prefix is stripped. Raises :class:`PretrainedWeightsError` for anything else."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise PretrainedWeightsError(f"expected a state dict, got {type(obj).__name__}")
    return _strip_prefix(obj, "module.")


def backbone_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """The backbone part of a torchvision/this-model state dict or a checkpoint dict (``fc.*`` dropped)."""
    state = model_state_dict(obj)
    if any(k.startswith("backbone.") for k in state):  # a ResNet34Classifier state dict
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def load_backbone_weights(backbone: nn.Module, state: Mapping[str, Any], source: str = "state dict") -> None:
    """Load ``state`` into ``backbone`` (a torchvision ResNet with ``fc = Identity``); every key must match."""
    state = backbone_state_dict(state)
    expected = set(backbone.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:

        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "") if keys else "none"

        raise PretrainedWeightsError(
            f"{source} does not fit the ResNet-34 backbone: {len(missing)} missing key(s): {show(missing)}; "
            f"{len(unexpected)} unexpected key(s): {show(unexpected)}"
        )
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as e:  # shape mismatches
        raise PretrainedWeightsError(f"{source} does not fit the ResNet-34 backbone: {e}") from e


@register_model("resnet34", inputs=("image",), image_size=IMAGE_SIZE)
class ResNet34Classifier(nn.Module):
    inputs = ("image",)
    embed_dim = EMBED_DIM

    def __init__(self, num_classes: int, weights: str | os.PathLike | None = "imagenet", dropout: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = resnet34(weights=None)
        self.backbone.fc = nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(EMBED_DIM, num_classes)
        self.hparams: dict[str, Any] = {"weights": None, "dropout": float(dropout)}
        self.pretrained: str | None = None
        if weights is not None:
            self.load_pretrained(weights)

    def load_pretrained(self, weights: str | os.PathLike) -> None:
        """Initialise the backbone from ``"imagenet"`` or a local file (the head stays random)."""
        if isinstance(weights, str) and weights.lower() == "imagenet":
            load_backbone_weights(self.backbone, load_imagenet_weights(), source=f"ImageNet weights {IMAGENET_URL}")
            self.pretrained = "imagenet"
            return
        path = Path(weights)
        if not path.is_file():
            raise PretrainedWeightsError(
                f"weights={str(weights)!r} is neither 'imagenet' nor an existing file; "
                f"pass 'imagenet', a path to a ResNet-34 state dict (.pth), or None"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file
            raise PretrainedWeightsError(f"could not read weights file {path}: {e}") from e
        load_backbone_weights(self.backbone, state, source=f"weights file {path}")
        self.pretrained = str(path)

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.backbone(batch["image"])

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fc(self.dropout(self.embed(batch)))
