"""Late fusion (``"fusion"``) of the ResNet-34 image branch and the GCN landmark branch.

Input ``batch["image"]`` ``(B, 3, 128, 128)``, ``batch["landmarks"]`` ``(B, 21, 2)`` and
``batch["has_landmarks"]`` ``(B,)``; returns ``(B, C)`` logits. A hand is "present" when it has
landmarks (minus modality dropout in training); for the others the prediction uses the image alone.

* ``mode="feature"``: ``MLP([z_image, z_graph, present])``, the MLP being ``dropout -> Linear(577,
  head_hidden) -> ReLU -> dropout -> Linear(head_hidden, C)``; ``z_graph`` is a learned "missing"
  vector where not present. The branches' own ``fc`` heads are unused and frozen.
* ``mode="logit"``: ``image_logits + w * graph_logits`` (the graph term only where present), ``w``
  a learned scalar.

Args:
    num_classes (int): number of classes ``C``.
    resnet (Mapping): the ResNet-34 branch's hyperparameters, completed from its defaults
        (default ``{"weights": "imagenet", "dropout": 0.0}``).
    gcn (Mapping): the GCN branch's hyperparameters, completed from its defaults.
    mode (str): ``"feature"`` (default) or ``"logit"``.
    head_hidden (int), head_dropout (float): the feature head's width and dropout (``256``, ``0.2``).
    graph_weight (float): initial ``w`` of the logit head (``1.0``).
    freeze_branches (bool): train only the head, branches kept in eval mode (default ``False``).
    modality_dropout (float): probability, in training, of treating a hand's landmarks as missing
        (default ``0.2``).
    handedness (bool): the GCN branch also reads ``batch["handedness"]`` (see :mod:`model_classes.gcn`;
        default ``False``). Either this or ``gcn={"handedness": true}`` turns it on, and both are then
        stored true (a branch started from a GCN trained with it keeps it). Only the landmark path reads
        it: where landmarks are missing the graph embedding is the "missing" vector, handedness included.

``FusionModel.from_unimodal`` starts the branches from trained unimodal models. The stored
``hparams["resnet"]["weights"]`` is ``None``, so a checkpoint rebuild never downloads.
The model has no ``embed``. Why these modes, parameter counts: ``docs/models.md``.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn as nn

from .gcn import HandGCN
from .registry import check_bool, create_model, handedness_input, model_spec, register_model
from .resnet import IMAGE_SIZE, ResNet34Classifier

MODES = ("feature", "logit")
RESNET_DEFAULTS = model_spec("resnet34").default_hparams
GCN_DEFAULTS = model_spec("gcn").default_hparams


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
    inputs: tuple[str, ...] = ("image", "landmarks")

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
        self.hparams: dict[str, Any] = {
            "resnet": {**image_branch.hparams, "weights": None},
            "gcn": dict(graph_branch.hparams),
            "mode": head.mode,
            **head.hparams,
            "freeze_branches": self.freeze_branches,
            "modality_dropout": self.modality_dropout,
            "handedness": graph_branch.hparams.get("handedness", False),
        }
        self.inputs = type(self).inputs + handedness_input(self.hparams)
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
        ``freeze_branches``, ``modality_dropout``, ``handedness``; a branch's architecture comes from its
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


def _fusion_extra_inputs(hparams: dict) -> tuple[str, ...]:
    """Handedness when the fusion model or its GCN branch has it on."""
    return handedness_input(hparams) or handedness_input(dict(hparams.get("gcn") or {}))


@register_model("fusion", inputs=("image", "landmarks"), image_size=IMAGE_SIZE, extra_inputs=_fusion_extra_inputs)
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
    handedness: bool = False,
) -> FusionModel:
    if mode not in MODES:
        raise ValueError(f"unknown fusion mode {mode!r}; choose from {MODES}")
    # partial sub-dicts are completed from the branch defaults; unknown keys raise from create_model
    gcn_hparams = {**GCN_DEFAULTS, **(gcn or {})}
    gcn_hparams["handedness"] = check_bool("handedness", handedness) or check_bool("gcn handedness",
                                                                                  gcn_hparams["handedness"])
    image_branch = create_model("resnet34", num_classes, **{**RESNET_DEFAULTS, **(resnet or {})})
    graph_branch = create_model("gcn", num_classes, **gcn_hparams)
    if mode == "feature":
        head: nn.Module = FeatureFusionHead(
            image_branch.embed_dim, graph_branch.embed_dim, num_classes, hidden=head_hidden, dropout=head_dropout
        )
    else:
        head = LogitFusionHead(graph_weight)
    return FusionModel(
        image_branch, graph_branch, head, freeze_branches=freeze_branches, modality_dropout=modality_dropout
    )
