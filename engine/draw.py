"""Annotated pictures: each hand's box, its 21-point skeleton, its label and probability (and the FPS).

Drawn with OpenCV on a copy of the frame, so one function serves saved images, saved videos and the
camera window. Line widths and text scale with the frame, so a 4K photo and a 512p frame both read.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from data_loaders.hand_graph import HAND_BONES

#: RGB colours: a recognised gesture, an "unknown" hand, the skeleton's bones and joints, the text.
KNOWN, UNKNOWN_COLOUR = (40, 200, 60), (255, 150, 0)
BONE, JOINT, TEXT = (255, 255, 255), (220, 30, 30), (0, 0, 0)


def _scale(shape: tuple[int, ...]) -> float:
    """Drawing scale: 1 for a 512-pixel short side."""
    return max(min(shape[:2]) / 512.0, 0.4)


def _label_text(hand: Any) -> str:
    return f"{hand.label} {hand.probability:.2f}" if hand.probability > 0 else hand.label


def _put_label(img: np.ndarray, text: str, x: int, y: int, colour: tuple, s: float) -> None:
    """``text`` on a filled ``colour`` tag whose bottom-left corner is at (x, y), kept inside the frame."""
    import cv2

    font, fs, th = cv2.FONT_HERSHEY_SIMPLEX, 0.6 * s, max(1, round(1.5 * s))
    (tw, tht), base = cv2.getTextSize(text, font, fs, th)
    x = int(min(max(x, 0), max(img.shape[1] - tw - 4, 0)))
    y = int(min(max(y, tht + base + 4), img.shape[0]))
    cv2.rectangle(img, (x, y - tht - base - 4), (x + tw + 4, y), colour, -1)
    cv2.putText(img, text, (x + 2, y - base - 2), font, fs, TEXT, th, cv2.LINE_AA)


def draw_hand(img: np.ndarray, hand: Any, s: float) -> None:
    """One hand, in place on an RGB array: box, skeleton (when it has landmarks), label tag."""
    import cv2

    h, w = img.shape[:2]
    colour = UNKNOWN_COLOUR if hand.label == "unknown" else KNOWN
    x, y, bw, bh = hand.box
    p0, p1 = (round(x * w), round(y * h)), (round((x + bw) * w), round((y + bh) * h))
    cv2.rectangle(img, p0, p1, colour, max(1, round(2 * s)), cv2.LINE_AA)
    if hand.landmarks is not None and np.isfinite(hand.landmarks[:, :2]).all():
        pts = np.rint(hand.landmarks[:, :2] * (w, h)).astype(int)
        for a, b in HAND_BONES:
            cv2.line(img, tuple(pts[a]), tuple(pts[b]), BONE, max(1, round(2 * s)), cv2.LINE_AA)
        for pt in pts:
            cv2.circle(img, tuple(pt), max(2, round(3 * s)), JOINT, -1, cv2.LINE_AA)
    _put_label(img, _label_text(hand), p0[0], p0[1] - 2, colour, s)


def draw_hands(frame: Any, hands: Sequence[Any], fps: float | None = None) -> Any:
    """A copy of ``frame`` (PIL image or (H, W, 3) uint8 RGB array; the same type comes back) with every hand
    drawn, and ``fps`` in the top-left corner when given."""
    is_pil = isinstance(frame, Image.Image)
    img = np.array(frame.convert("RGB") if is_pil else frame, dtype=np.uint8, copy=True)
    s = _scale(img.shape)
    for hand in hands:
        draw_hand(img, hand, s)
    if fps is not None:
        _put_label(img, f"{fps:.1f} FPS", 4, round(30 * s), BONE, s)
    return Image.fromarray(img, "RGB") if is_pil else img
