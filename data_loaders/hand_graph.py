"""The hand skeleton graph: MediaPipe's 21 landmarks and 21 bones.

Node order (MediaPipe Hands): 0 wrist; 1-4 thumb CMC, MCP, IP, tip; 5-8 index
MCP, PIP, DIP, tip; 9-12 middle; 13-16 ring; 17-20 pinky.

Edges: the 21 bones of ``mediapipe.solutions.hands.HAND_CONNECTIONS`` (finger
chains, wrist to thumb/index/pinky bases and the palm arch 5-9-13-17), each in
both directions, i.e. 42 directed edges. The seed quoted 46 edges without
saying which; we keep the anatomical 42 and let graph convolutions add the 21
self-loops themselves (``GCNConv(add_self_loops=True)``), so nothing is
counted twice. Extra edges are configuration (:data:`EXTRA_EDGE_SETS`).

This is the one hand schema of the project (joint count, parents, bones): the annotation
reader, the manifest check and the synthetic renderer read it too, so torch is imported only
by the functions that build tensors and the crop step never loads it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    import torch

#: Landmarks per hand (MediaPipe Hands).
NUM_NODES = 21

#: Parent joint of each landmark along the kinematic chain (the wrist is its own parent).
PARENTS: tuple[int, ...] = (0, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)

#: MediaPipe HAND_CONNECTIONS (undirected), 21 bones.
HAND_BONES: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 4),          # thumb
    (0, 5), (5, 6), (6, 7), (7, 8),          # index
    (9, 10), (10, 11), (11, 12),             # middle
    (13, 14), (14, 15), (15, 16),            # ring
    (0, 17), (17, 18), (18, 19), (19, 20),   # pinky
    (5, 9), (9, 13), (13, 17),               # palm arch
)

#: Optional extra undirected edges, chosen by name in a model's config.
EXTRA_EDGE_SETS: dict[str, tuple[tuple[int, int], ...]] = {
    # wrist to the middle and ring bases: closes the palm so the wrist reaches every finger in 2 hops
    "palm": ((0, 9), (0, 13)),
    # neighbouring fingertips: lets open/closed finger states talk in one hop
    "tips": ((4, 8), (8, 12), (12, 16), (16, 20)),
}


def undirected_edges(extra: Iterable[str] = ()) -> list[tuple[int, int]]:
    """The bones plus the named extra edge sets, each pair once."""
    edges = list(HAND_BONES)
    for name in extra:
        try:
            edges.extend(EXTRA_EDGE_SETS[name])
        except KeyError:
            raise KeyError(f"unknown extra edge set {name!r}; known: {sorted(EXTRA_EDGE_SETS)}") from None
    return sorted({(min(a, b), max(a, b)) for a, b in edges})


def edge_index(extra: Iterable[str] = ()) -> torch.Tensor:
    """``(2, E)`` long tensor with every edge in both directions (E = 42 for the bones alone)."""
    import torch

    pairs = undirected_edges(extra)
    src = [a for a, b in pairs] + [b for a, b in pairs]
    dst = [b for a, b in pairs] + [a for a, b in pairs]
    return torch.tensor([src, dst], dtype=torch.long)


def adjacency(extra: Iterable[str] = (), self_loops: bool = False) -> torch.Tensor:
    """Dense ``(21, 21)`` 0/1 adjacency, symmetric."""
    import torch

    adj = torch.zeros(NUM_NODES, NUM_NODES)
    ei = edge_index(extra)
    adj[ei[0], ei[1]] = 1.0
    if self_loops:
        adj += torch.eye(NUM_NODES)
    return adj


def batched_edge_index(ei: torch.Tensor, batch_size: int, num_nodes: int = NUM_NODES) -> torch.Tensor:
    """Repeat one graph's ``edge_index`` for ``batch_size`` graphs stacked node-wise.

    Every hand has the same topology, so a batch is one static graph of
    ``batch_size * 21`` nodes: no per-sample ``Data`` objects are needed.
    """
    import torch

    offsets = torch.arange(batch_size, device=ei.device).repeat_interleave(ei.shape[1]) * num_nodes
    return ei.repeat(1, batch_size) + offsets
