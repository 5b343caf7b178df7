"""Late fusion of the ResNet-34 image branch and the GCN landmark branch (``"fusion"``).

Input: ``batch["image"]`` ``(B, 3, 128, 128)``, ``batch["landmarks"]`` ``(B, 21, 2)``
and ``batch["has_landmarks"]`` ``(B,)``.

``FusionModel(image_branch, graph_branch, head)``; ``mode`` picks the head:

* ``"feature"`` (default): concatenate the 512-D image embedding, the 64-D graph
  embedding and a landmarks-present indicator, then ``dropout -> Linear(577, 256)
  -> ReLU -> dropout -> Linear(256, C)``. Where a hand has no landmarks the graph
  embedding is replaced by a learned "missing" vector and the indicator is 0, so
  the prediction depends on the image alone. The branches' own ``fc`` heads are
  unused in this mode and are frozen (``requires_grad=False``; their weights stay
  in the state dict so unimodal checkpoints load unchanged, and DDP sees no
  parameter without a gradient).
* ``"logit"``: ``image_logits + w * graph_logits`` with a learned scalar ``w``
  (initial value ``graph_weight``); image logits only where there are no landmarks.

``freeze_branches=True`` trains only the head (branches kept in eval mode, so
their batch-norm statistics do not move). ``modality_dropout`` (default 0.2) is the
probability, in training only, of treating a hand's landmarks as missing, so the
head also learns the image-only case it meets at test time.

Defaults: ``resnet={"weights": "imagenet", "dropout": 0.0}``, ``gcn`` = the GCN's
defaults, ``mode="feature"``, ``head_hidden=256``, ``head_dropout=0.2``,
``graph_weight=1.0``, ``freeze_branches=False``, ``modality_dropout=0.2``.
Parameters for 18 classes (feature mode): 21,293,906 (ResNet-34) + 12,370 (GCN)
+ 152,658 (head: 147,968 + 4,626 + 64 missing vector) = **21,458,934**
(of which 1,170 + 9,234 in the unused branch heads are frozen); logit mode:
21,306,277.

Initialising from trained unimodal models: ``FusionModel.from_unimodal(resnet_model,
gcn_model, num_classes, **hparams)`` or ``model.init_from_checkpoints(resnet_ckpt,
gcn_ckpt)`` (state dicts, checkpoint dicts or paths). As for the ResNet, the stored
``hparams["resnet"]["weights"]`` is ``None`` so a checkpoint rebuild never downloads.
"""
from __future__ import annotations

import inspect
import os
from typing import Any, Mapping

import torch
import torch.nn as nn

from .gcn import HandGCN, build_gcn
from .registry import create_model, register_model
from .resnet import IMAGE_SIZE, PretrainedWeightsError, ResNet34Classifier, build_resnet34, model_state_dict

MODES = ("feature", "logit")


def _defaults(factory: Any) -> dict[str, Any]:
    params = list(inspect.signature(factory).parameters.values())[1:]
    return {p.name: p.default for p in params}


RESNET_DEFAULTS = _defaults(build_resnet34)
GCN_DEFAULTS = _defaults(build_gcn)


class FeatureFusionHead(nn.Module):
    """Concatenated embeddings (graph part masked where landmarks are missing) -> small MLP."""

    mode = "feature"

    def __init__(self, image_dim: int, graph_dim: int, num_classes: int, hidden: int = 256, dropout: float = 0.2):
        super().__init__()
        self.hparams = {"head_hidden": int(hidden), "head_dropout": float(dropout)}
        self.missing = nn.Parameter(torch.zeros(graph_dim))
        self.mlp = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(image_dim + graph_dim + 1, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, z_image: torch.Tensor, z_graph: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        mask = present[:, None]
        z_graph = torch.where(mask, z_graph, self.missing.to(z_graph.dtype).expand_as(z_graph))
        return self.mlp(torch.cat([z_image, z_graph, mask.to(z_image.dtype)], dim=1))


class LogitFusionHead(nn.Module):
    """``image_logits + w * graph_logits``; image logits alone where landmarks are missing."""

    mode = "logit"

    def __init__(self, graph_weight: float = 1.0):
        super().__init__()
        self.hparams = {"graph_weight": float(graph_weight)}
        self.graph_weight = nn.Parameter(torch.tensor(float(graph_weight)))

    def forward(self, image_logits: torch.Tensor, graph_logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        graph = torch.where(present[:, None], self.graph_weight * graph_logits, torch.zeros_like(graph_logits))
        return image_logits + graph


class FusionModel(nn.Module):
    inputs = ("image", "landmarks")

    def __init__(
        self,
        image_branch: ResNet34Classifier,
        graph_branch: HandGCN,
        head: FeatureFusionHead | LogitFusionHead,
        *,
        freeze_branches: bool = False,
        modality_dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if not 0.0 <= modality_dropout < 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1), got {modality_dropout}")
        if head.mode == "logit" and image_branch.num_classes != graph_branch.num_classes:
            raise ValueError(
                f"logit fusion needs branches with the same classes: image {image_branch.num_classes}, "
                f"graph {graph_branch.num_classes}"
            )
        self.image_branch = image_branch
        self.graph_branch = graph_branch
        self.head = head
        self.mode = head.mode
        self.freeze_branches = bool(freeze_branches)
        self.modality_dropout = float(modality_dropout)
        self.num_classes = image_branch.num_classes
        self.embed_dim = image_branch.embed_dim + graph_branch.embed_dim
        self.hparams: dict[str, Any] = {
            "resnet": {**image_branch.hparams, "weights": None},
            "gcn": dict(graph_branch.hparams),
            "mode": head.mode,
            **head.hparams,
            "freeze_branches": self.freeze_branches,
            "modality_dropout": self.modality_dropout,
        }
        self.pretrained = {"resnet": getattr(image_branch, "pretrained", None), "gcn": None}
        if self.freeze_branches:
            for branch in (self.image_branch, self.graph_branch):
                branch.requires_grad_(False)
                branch.eval()
        if self.mode == "feature":
            self.image_branch.fc.requires_grad_(False)
            self.graph_branch.fc.requires_grad_(False)

    def train(self, mode: bool = True) -> "FusionModel":
        super().train(mode)
        if self.freeze_branches:
            self.image_branch.eval()
            self.graph_branch.eval()
        return self

    def present_mask(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Which hands use their landmarks: ``has_landmarks``, minus modality dropout in training."""
        present = batch["has_landmarks"].to(torch.bool)
        if self.training and self.modality_dropout > 0:
            keep = torch.rand(present.shape, device=present.device) >= self.modality_dropout
            present = present & keep
        return present

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        present = self.present_mask(batch)
        if self.mode == "feature":
            return self.head(self.image_branch.embed(batch), self.graph_branch.embed(batch), present)
        return self.head(self.image_branch(batch), self.graph_branch(batch), present)

    # ----- initialising from unimodal models -------------------------------------------------
    @classmethod
    def from_unimodal(
        cls,
        resnet_model: ResNet34Classifier | None,
        gcn_model: HandGCN | None,
        num_classes: int,
        **hparams: Any,
    ) -> "FusionModel":
        """A fusion model whose branches start as copies of trained ``resnet_model`` and ``gcn_model``.

        ``hparams``: ``mode``, ``head_hidden``, ``head_dropout``, ``graph_weight``,
        ``freeze_branches``, ``modality_dropout``; a branch's architecture comes from its
        model. Either model may be ``None``: that branch is then built from ``resnet=``/``gcn=``
        in ``hparams`` (or the defaults, i.e. ImageNet weights for the ResNet) as by
        ``create_model("fusion", ...)``.
        """
        parts = {"resnet": resnet_model, "gcn": gcn_model}
        if resnet_model is None and gcn_model is None:
            raise ValueError("from_unimodal needs at least one trained model; use create_model('fusion', ...)")
        for key, m in parts.items():
            if m is None:
                continue
            if key in hparams:
                raise TypeError(f"from_unimodal takes the {key} architecture from the given model; do not pass {key}=")
            if m.num_classes != num_classes:
                raise ValueError(f"the {key} model has {m.num_classes} classes, the fusion model {num_classes}")
            hparams[key] = {**m.hparams, "weights": None} if key == "resnet" else dict(m.hparams)
        model = create_model("fusion", num_classes, **hparams)
        if resnet_model is not None:
            model.image_branch.load_state_dict(resnet_model.state_dict())
            model.pretrained["resnet"] = "unimodal model"
        if gcn_model is not None:
            model.graph_branch.load_state_dict(gcn_model.state_dict())
            model.pretrained["gcn"] = "unimodal model"
        return model

    def init_from_checkpoints(self, resnet_state: Any, gcn_state: Any) -> None:
        """Load trained unimodal weights into the branches.

        Each argument is a state dict, a checkpoint dict (``state_dict`` plus optionally
        ``model_name``/``hparams``, which are checked against the branch) or a path to one
        (read with ``torch.load(weights_only=True)``: tensors and plain containers only, as
        ``engine.checkpoint`` writes them; pass the loaded dict for anything else).
        """
        for attr, expected_name, ckpt in (
            ("image_branch", "resnet34", resnet_state),
            ("graph_branch", "gcn", gcn_state),
        ):
            branch: nn.Module = getattr(self, attr)
            source = str(ckpt) if isinstance(ckpt, (str, os.PathLike)) else f"{expected_name} state"
            if isinstance(ckpt, (str, os.PathLike)):
                try:
                    ckpt = torch.load(ckpt, map_location="cpu", weights_only=True)
                except Exception as e:  # noqa: BLE001 - missing, truncated or not plain data
                    raise ValueError(
                        f"{source}: cannot be read as a state dict or checkpoint of plain data "
                        f"(torch.load weights_only=True): {e}"
                    ) from e
            if isinstance(ckpt, Mapping) and isinstance(ckpt.get("state_dict"), Mapping):
                _check_branch_checkpoint(ckpt, branch, expected_name, source)
            try:
                branch.load_state_dict(model_state_dict(ckpt), strict=True)
            except (RuntimeError, PretrainedWeightsError) as e:
                raise ValueError(f"{source} does not fit the fusion's {expected_name} branch: {e}") from e
        self.pretrained = {"resnet": "checkpoint", "gcn": "checkpoint"}


def _check_branch_checkpoint(ckpt: Mapping, branch: nn.Module, expected_name: str, source: str) -> None:
    """A checkpoint's ``model_name`` and architecture ``hparams`` must be those of the branch."""
    name = ckpt.get("model_name", expected_name)
    if name != expected_name:
        raise ValueError(f"{source}: expected a {expected_name!r} checkpoint, got {name!r}")
    saved = ckpt.get("hparams")
    if not isinstance(saved, Mapping):
        return
    diffs = [
        f"{k}: checkpoint {saved[k]!r} vs fusion {v!r}"
        for k, v in branch.hparams.items()
        if k != "weights" and k in saved and not _same(saved[k], v)
    ]
    if diffs:
        raise ValueError(f"{source} does not match the fusion's {expected_name} branch: " + "; ".join(diffs))


def _same(a: Any, b: Any) -> bool:
    """Equal values, where a list and a tuple with the same items are the same (a checkpoint may
    hold either, depending on how it was saved): compares items, never converts."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


@register_model("fusion", inputs=("image", "landmarks"), image_size=IMAGE_SIZE)
def build_fusion(
    num_classes: int,
    resnet: Mapping[str, Any] = RESNET_DEFAULTS,
    gcn: Mapping[str, Any] = GCN_DEFAULTS,
    mode: str = "feature",
    head_hidden: int = 256,
    head_dropout: float = 0.2,
    graph_weight: float = 1.0,
    freeze_branches: bool = False,
    modality_dropout: float = 0.2,
) -> FusionModel:
    if mode not in MODES:
        raise ValueError(f"unknown fusion mode {mode!r}; choose from {MODES}")
    # partial sub-dicts are completed from the branch defaults; unknown keys raise from create_model
    image_branch = create_model("resnet34", num_classes, **{**RESNET_DEFAULTS, **(resnet or {})})
    graph_branch = create_model("gcn", num_classes, **{**GCN_DEFAULTS, **(gcn or {})})
    if mode == "feature":
        head: nn.Module = FeatureFusionHead(
            image_branch.embed_dim, graph_branch.embed_dim, num_classes, hidden=head_hidden, dropout=head_dropout
        )
    else:
        head = LogitFusionHead(graph_weight)
    return FusionModel(
        image_branch, graph_branch, head, freeze_branches=freeze_branches, modality_dropout=modality_dropout
    )
