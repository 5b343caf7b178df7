"""Hand-skeleton GCN (``"gcn"``), three PyTorch Geometric graph convolutions.

Input: ``batch["landmarks"]`` ``(B, 21, 2)``; node features built from it by
``node_features``: ``"xy"`` (2 per node, default) or ``"xy+bone"`` (4: the
point and the vector from its parent joint, :data:`data_loaders.hand_graph.PARENTS`; zero at the wrist).

Graph: the 21 MediaPipe bones of :mod:`data_loaders.hand_graph` (plus the named
``extra_edges`` sets), self-loops added by the convolution, symmetric
normalisation. Every hand has the same topology, so the batch runs as one
dense ``(B, 21, F)`` tensor through :class:`torch_geometric.nn.DenseGCNConv`
with a fixed ``(21, 21)`` adjacency buffer shared by the batch: no per-sample
``Data`` objects, no scatter, so it needs no torch-scatter/torch-sparse and is
numerically the same as ``GCNConv`` over ``hand_graph.batched_edge_index``.

Joint identity. A plain GCN with mean pooling cannot tell which joint is which
beyond the graph's structure (the bone graph is mirror-symmetric: index<->pinky,
middle<->ring is an automorphism, so such a GCN gives a hand and its finger-
swapped copy the same output). We keep identity two ways:

* ``node_embedding=True``: a learned ``(21, hidden)`` per-joint embedding added
  after the first convolution (the same as appending a one-hot joint id to the
  input features, up to reparametrisation);
* ``readout="weighted"``: a learned per-joint, per-channel weighting of the 21
  node vectors (initialised to the mean); ``"flatten"`` concatenates the 21
  ordered node vectors and projects them to ``hidden`` (many more parameters);
  ``"mean"`` is the seed's mean pooling.

``readout="mean", node_embedding=False`` builds a seed-style GCN for comparison.

Defaults: ``hidden=64, node_features="xy", node_embedding=True,
readout="weighted", extra_edges=(), dropout=0.1``. Layers:
``conv(2->64) + emb(21x64) -> ReLU -> conv(64->64) -> ReLU -> conv(64->64) -> ReLU ->
readout -> dropout -> linear(64->C)``. Parameters for 18 classes:
``192 + 1,344 + 4,160 + 4,160 + 1,344 + 1,170 =`` **12,370** (seed-style
mean/no-embedding: 9,682; ``"xy+bone"`` adds 128).
``embed(batch)`` returns the 64-D readout (``embed_dim``).
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

from .registry import register_model

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


class HandGCN(nn.Module):
    inputs = ("landmarks",)

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
        }
        n = hand_graph.NUM_NODES
        try:
            adj = hand_graph.adjacency(extra_edges)
        except KeyError as e:
            raise ValueError(str(e.args[0])) from None
        # rebuilt from the hparams, so not part of the state dict
        self.register_buffer("adj", adj, persistent=False)
        dims = [NODE_FEATURES[node_features]] + [hidden] * num_layers
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


# The class itself is the factory: its keyword arguments (with defaults) are the hyperparameters.
build_gcn = register_model("gcn", inputs=("landmarks",))(HandGCN)
