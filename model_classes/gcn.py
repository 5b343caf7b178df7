"""Hand-skeleton GCN (``"gcn"``): graph convolutions over the 21 MediaPipe joints.

Computes, with :class:`torch_geometric.nn.DenseGCNConv` over the fixed ``(21, 21)`` adjacency of
:func:`data_loaders.hand_graph.adjacency` (bones plus ``extra_edges``; the convolution adds
self-loops and normalises symmetrically)::

    h = ReLU(conv_1(x) + E);  h = ReLU(conv_i(h)) for i = 2..num_layers
    logits = Linear(dropout(readout(h)))

on ``batch["landmarks"]`` ``(B, 21, 2)``, and returns ``(B, C)`` logits. ``E`` is the learned
per-joint embedding (when ``node_embedding``). ``embed(batch)`` returns the ``(B, hidden)`` readout.

Args:
    num_classes (int): number of classes ``C``.
    hidden (int): width of every convolution (default ``64``).
    num_layers (int): number of convolutions, at least 1 (default ``3``).
    node_features (str): ``"xy"`` (the point, default) or ``"xy+bone"`` (also the vector from its
        parent joint, :data:`data_loaders.hand_graph.PARENTS`; zero at the wrist).
    node_embedding (bool): add a learned ``(21, hidden)`` joint embedding after the first
        convolution (default ``True``).
    readout (str): ``"weighted"`` (learned per-joint, per-channel weights, starting as the mean;
        default), ``"mean"`` or ``"flatten"`` (the 21 node vectors concatenated, projected to ``hidden``).
    extra_edges (Sequence[str]): named edge sets of :mod:`data_loaders.hand_graph` (default none).
    dropout (float): dropout before the linear head (default ``0.1``).
    handedness (bool): also read ``batch["handedness"]`` ``(B,)`` (+1 right, -1 left, 0 unknown), appended
        to every joint's features (default ``False``). On the nodes rather than the pooled embedding: a
        right hand's back view and a left hand's palm view have the same 2-D points, so what separates
        ``stop`` from ``stop_inverted`` is the geometry *given* the hand, an interaction every convolution
        can learn; appended to the readout it would only shift the linear head's logits.

Why joint identity matters, parameter counts: ``docs/models.md``.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import torch
import torch.nn as nn

from data_loaders import hand_graph

with warnings.catch_warnings():  # PyG's import trips torch's own torch.jit.script deprecation notice
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    from torch_geometric.nn import DenseGCNConv

from .registry import check_bool, handedness_input, register_model

NODE_FEATURES = {"xy": 2, "xy+bone": 4}
READOUTS = ("weighted", "mean", "flatten")


def node_feature_tensor(landmarks: torch.Tensor, kind: str) -> torch.Tensor:
    """``(B, 21, 2)`` landmarks -> ``(B, 21, F)`` node features."""
    if kind == "xy":
        return landmarks
    if kind == "xy+bone":
        parents = torch.tensor(hand_graph.PARENTS, device=landmarks.device)
        return torch.cat([landmarks, landmarks - landmarks[:, parents]], dim=-1)
    raise ValueError(f"unknown node_features {kind!r}; choose from {sorted(NODE_FEATURES)}")


@register_model("gcn", inputs=("landmarks",), extra_inputs=handedness_input)
class HandGCN(nn.Module):
    inputs: tuple[str, ...] = ("landmarks",)

    def __init__(
        self,
        num_classes: int,
        hidden: int = 64,
        num_layers: int = 3,
        node_features: str = "xy",
        node_embedding: bool = True,
        readout: str = "weighted",
        extra_edges: Sequence[str] = (),
        dropout: float = 0.1,
        handedness: bool = False,
    ) -> None:
        super().__init__()
        if node_features not in NODE_FEATURES:
            raise ValueError(f"unknown node_features {node_features!r}; choose from {sorted(NODE_FEATURES)}")
        if readout not in READOUTS:
            raise ValueError(f"unknown readout {readout!r}; choose from {READOUTS}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if isinstance(extra_edges, str):
            extra_edges = (extra_edges,)
        extra_edges = tuple(extra_edges)
        hidden = int(hidden)
        self.num_classes = num_classes
        self.hparams: dict[str, Any] = {
            "hidden": hidden,
            "num_layers": int(num_layers),
            "node_features": node_features,
            "node_embedding": bool(node_embedding),
            "readout": readout,
            "extra_edges": extra_edges,
            "dropout": float(dropout),
            "handedness": check_bool("handedness", handedness),
        }
        self.inputs = type(self).inputs + handedness_input(self.hparams)
        n = hand_graph.NUM_NODES
        try:
            adj = hand_graph.adjacency(extra_edges)
        except KeyError as e:
            raise ValueError(str(e.args[0])) from None
        # rebuilt from the hparams, so not part of the state dict
        self.register_buffer("adj", adj, persistent=False)
        dims = [NODE_FEATURES[node_features] + int(handedness)] + [hidden] * num_layers
        self.convs = nn.ModuleList(DenseGCNConv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.node_embedding = nn.Parameter(torch.zeros(n, hidden)) if node_embedding else None
        if self.node_embedding is not None:
            nn.init.normal_(self.node_embedding, std=0.1)
        if readout == "weighted":
            self.readout_weight = nn.Parameter(torch.full((n, hidden), 1.0 / n))
        elif readout == "flatten":
            self.readout_proj = nn.Linear(n * hidden, hidden)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, num_classes)
        self.embed_dim = hidden

    def node_states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, 21, hidden)`` node vectors after the last convolution."""
        x = node_feature_tensor(batch["landmarks"], self.hparams["node_features"])
        if self.hparams["handedness"]:
            h = batch["handedness"].to(x.dtype)[:, None, None].expand(-1, x.shape[1], 1)
            x = torch.cat([x, h], dim=-1)
        for i, conv in enumerate(self.convs):
            x = conv(x, self.adj)
            if i == 0 and self.node_embedding is not None:
                x = x + self.node_embedding
            x = self.act(x)
        return x

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.node_states(batch)
        readout = self.hparams["readout"]
        if readout == "weighted":
            return (h * self.readout_weight).sum(dim=1)
        if readout == "flatten":
            return self.act(self.readout_proj(h.flatten(1)))
        return h.mean(dim=1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fc(self.dropout(self.embed(batch)))

