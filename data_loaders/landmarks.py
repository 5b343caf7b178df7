"""Landmark normalisation and orientation-safe augmentation.

Default ``"wrist"``: landmarks in pixel units (normalised coords times image
width/height, so the aspect ratio is right), centred on the wrist and divided
by the hand size (see :func:`hand_size`). It needs nothing but the landmarks
and the image size (in every JPEG header), so it works unchanged when a model
is deployed and there is no ground-truth box. It does need each frame's real
size: HaGRID frames are mostly portrait (1,337 of the sample's 1,650 frames,
1,216 of them 3:4 such as 512x683; only 83 are 16:9 landscape), so no size can
be assumed, and a wrong aspect ratio stretches every hand (on official
landmarks it moved a model from 88% to 63%).
An unknown or non-positive size is refused (:func:`frame_sizes`), never guessed.

``"bbox"`` reproduces the seed: per-axis normalisation by the annotated box,
clamped to [0, 1]. It distorts the aspect ratio, clips points outside the box
and needs the box; keep it for reproduction only.

Valid augmentations are horizontal flips (a mirrored left hand is a right hand
with the same gesture), small rotations and scale jitter. Vertical flips and
large rotations are not: like and dislike differ only by vertical orientation. The
``*_inverted`` classes (stop, peace, two_up) are the back of the hand towards the camera,
fingers still up, not the gesture upside down: in 2-D landmarks a right hand's back looks
like a left hand's palm: handedness separates them (a horizontal flip swaps it), and
until the models take it as an input they see only subtle cues, which the flip
augmentation blurs further.
"""
from __future__ import annotations

import numpy as np
import torch

from common.errors import DataError

from .hand_graph import NUM_NODES

METHODS = ("wrist", "bbox")
#: Rotations beyond this turn one class into another (e.g. like into dislike).
MAX_SAFE_ROTATION_DEG = 30.0

# (a, b) node pairs whose longest length defines the hand size; all lie on the
# palm, so the size does not change when fingers bend.
_SIZE_PAIRS = np.array([(0, 9), (5, 17), (0, 5), (0, 17)])


def to_pixels(landmarks: np.ndarray, image_size: np.ndarray) -> np.ndarray:
    """``(N,21,2)`` normalised coords times ``(N,2)`` (width, height) -> pixels."""
    return landmarks * image_size[:, None, :].astype(np.float32)


def hand_size(landmarks_px: np.ndarray) -> np.ndarray:
    """Longest of wrist-middle MCP, index-pinky MCP, wrist-index MCP, wrist-pinky MCP; ``(N,)``."""
    d = landmarks_px[:, _SIZE_PAIRS[:, 0]] - landmarks_px[:, _SIZE_PAIRS[:, 1]]
    return np.linalg.norm(d, axis=-1).max(axis=1)


def frame_sizes(image_size, n: int, *, source: str | None = None, names=None) -> np.ndarray:
    """``image_size`` as ``(n, 2)`` float32 (width, height) pixels, every one finite and > 0.

    Anything else is a one-line :class:`DataError` naming ``source`` (the file the sizes came from)
    and the first bad hand (``names[i]``, else its row): the ``"wrist"`` normalisation works in pixels,
    and a guessed size (say 1920x1080 for a 3:4 portrait frame) would silently stretch every hand.
    """
    where = source or "landmarks"
    if image_size is None:
        raise DataError(where, "the frame size (width, height) of each hand is unknown; the 'wrist' landmark "
                        "normalisation works in pixels and needs it (it is in every image's header)")
    try:
        wh = np.asarray(image_size, dtype=np.float32).reshape(n, 2)
    except (TypeError, ValueError):
        raise DataError(where, f"frame sizes must be {n} (width, height) pairs, got {np.shape(image_size)}") from None
    bad = np.flatnonzero(~(np.isfinite(wh).all(axis=1) & (wh > 0).all(axis=1)))
    if len(bad):
        i = int(bad[0])
        who = f"hand {names[i]}" if names is not None else f"hand at row {i}"
        raise DataError(where, f"{who}: frame size {wh[i, 0]:g}x{wh[i, 1]:g} is unknown or not positive "
                        f"({len(bad)} of {n} hands); the 'wrist' landmark normalisation needs each frame's "
                        "real width and height in pixels and does not guess them")
    return wh


def normalize_landmarks(
    landmarks: np.ndarray,
    method: str = "wrist",
    *,
    image_size: np.ndarray | None = None,
    bbox: np.ndarray | None = None,
    source: str | None = None,
    names=None,
) -> np.ndarray:
    """Normalise ``(N,21,2)`` image-normalised landmarks; returns float32 ``(N,21,2)``.

    ``image_size`` ``(N,2)`` (width, height in pixels, each known and > 0: :func:`frame_sizes`) is
    needed for ``"wrist"``, ``bbox`` ``(N,4)`` for ``"bbox"``. ``source`` and ``names`` (one per hand)
    name the file and hand in the error about a bad frame size.
    """
    lm = np.asarray(landmarks, dtype=np.float32)
    if lm.ndim != 3 or lm.shape[1:] != (NUM_NODES, 2):
        raise ValueError(f"landmarks must be (N, {NUM_NODES}, 2), got {lm.shape}")
    if method == "wrist":
        px = to_pixels(lm, frame_sizes(image_size, len(lm), source=source, names=names))
        centred = px - px[:, :1, :]
        size = hand_size(px)
        size = np.where(size > 1e-6, size, 1.0).astype(np.float32)
        return (centred / size[:, None, None]).astype(np.float32)
    if method == "bbox":
        if bbox is None:
            raise ValueError("method 'bbox' needs the annotated box per hand")
        b = np.asarray(bbox, dtype=np.float32).reshape(-1, 4)
        xy, wh = b[:, None, :2], np.maximum(b[:, None, 2:], 1e-6)
        return np.clip((lm - xy) / wh, 0.0, 1.0).astype(np.float32)
    raise ValueError(f"unknown landmark normalisation {method!r}; choose from {METHODS}")


def flip_center(method: str) -> float:
    """The x coordinate a horizontal flip mirrors about, for a normalisation."""
    return 0.0 if method == "wrist" else 0.5


def transform_landmarks(
    x: torch.Tensor,
    *,
    method: str,
    flip: torch.Tensor,
    theta: torch.Tensor,
    scale: torch.Tensor,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply given per-hand geometry to a ``(B,21,2)`` batch: horizontal ``flip`` (bool), rotation by
    ``theta`` (radians, the same sense as :func:`rotate_image_params` gives the image), ``scale``.

    Image coordinates (y down): a positive ``theta`` turns the hand clockwise on screen.
    """
    dev, dt = x.device, x.dtype
    center = torch.tensor([flip_center(method), 0.0 if method == "wrist" else 0.5], device=dev, dtype=dt)
    out = x - center
    out = torch.where(flip[:, None, None], out * torch.tensor([-1.0, 1.0], device=dev, dtype=dt), out)
    cos, sin = torch.cos(theta).to(dt), torch.sin(theta).to(dt)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (B,2,2)
    out = out @ rot.transpose(1, 2) * scale.to(dt)[:, None, None]
    if noise is not None:
        out = out + noise
    out = out + center
    return out.clamp(0.0, 1.0) if method == "bbox" else out
