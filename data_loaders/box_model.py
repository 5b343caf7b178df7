"""A HaGRID-like hand box from the 21 MediaPipe landmarks.

The image models were trained on squares around HaGRID's annotated boxes, which
cover the whole hand (skin around the joints included); the landmarks' own
extent is much tighter (mean IoU 0.61 with the official box on the sample). So
each landmark is grown into a disc whose radius is a multiple of the hand size
(:func:`data_loaders.landmarks.hand_size`, in pixels: invariant to how far the
hand is from the camera), one multiple per joint group, and the box is the
discs' extent, clipped to the image. The five multiples are fitted on hands that
have both an official box and landmarks (``tools/fit_box_model.py``).

numpy only (scipy for the fit), so prediction can use it without torch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from .hand_graph import NUM_NODES
from .landmarks import hand_size, to_pixels

#: MediaPipe joint index -> group of :class:`BoxModel` (wrist=0, thumb CMC=1, the five MCPs incl. the
#: thumb's (2, 5, 9, 13, 17), the five tips (4, 8, 12, 16, 20), the other finger joints).
_GROUP_OF_JOINT = ("wrist", "thumb_cmc", "mcp", "joint", "tip", "mcp", "joint", "joint", "tip", "mcp", "joint",
                   "joint", "tip", "mcp", "joint", "joint", "tip", "mcp", "joint", "joint", "tip")
assert len(_GROUP_OF_JOINT) == NUM_NODES


@dataclass(frozen=True)
class BoxModel:
    """Disc radius per joint group, in hand sizes."""

    wrist: float
    thumb_cmc: float
    mcp: float
    joint: float
    tip: float

    def radii(self) -> np.ndarray:
        """``(21,)`` radius of each joint in MediaPipe order, in hand sizes."""
        return np.array([getattr(self, g) for g in _GROUP_OF_JOINT], dtype=np.float64)

    def to_dict(self) -> dict:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> BoxModel:
        """From :meth:`to_dict`'s output; a missing or non-numeric radius is a ``ValueError`` naming it."""
        names = [f.name for f in fields(cls)]
        bad = [n for n in names if not isinstance(d.get(n), (int, float)) or isinstance(d.get(n), bool)
               or not 0 <= d[n] < np.inf]
        if bad:
            raise ValueError(f"box model needs finite radii >= 0 for {', '.join(names)}; bad: {', '.join(bad)}")
        return cls(**{n: float(d[n]) for n in names})


#: Fitted by ``uv run python tools/fit_box_model.py --data-dir ../shared/hagrid_sample`` on the sample's val+test
#: hands with landmarks and an official box (176 + 318, no_gesture included). Mean IoU with the official box:
#: raw landmark extent 0.607; held out: fitted on val -> test 0.884 (median 0.894), fitted on test -> val 0.868
#: (median 0.892); these radii, in-sample on val+test: 0.880, median 0.896, IoU >= 0.5 for 100.0 % of hands,
#: >= 0.75 for 95.5 %. (The sample README's radii, fitted the same way, give 0.880 here too.)
DEFAULT_BOX_MODEL = BoxModel(wrist=0.1827, thumb_cmc=0.2614, mcp=0.2188, joint=0.1595, tip=0.1579)


def _pixels(landmarks: np.ndarray, image_wh: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Landmarks ``(N,21,2)`` in pixels, their hand sizes ``(N,)`` and the image sizes ``(N,2)``."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 3 or lm.shape[1] != NUM_NODES or lm.shape[2] not in (2, 3):
        raise ValueError(f"landmarks must be (N, {NUM_NODES}, 2 or 3), got {lm.shape}")
    wh = np.broadcast_to(np.asarray(image_wh, dtype=np.float64).reshape(-1, 2), (len(lm), 2))
    px = to_pixels(lm[..., :2], wh)
    return px, hand_size(px), wh


def _boxes_px(px: np.ndarray, size: np.ndarray, wh: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """``(N,4)`` normalised x, y, w, h: the extent of discs ``radii * size`` around ``px``, clipped to the image."""
    r = radii[None, :] * size[:, None]
    lo = np.clip((px - r[..., None]).min(axis=1), 0.0, wh)
    hi = np.clip((px + r[..., None]).max(axis=1), 0.0, wh)
    return np.concatenate([lo / wh, (hi - lo) / wh], axis=1)


def landmark_boxes(landmarks: np.ndarray, image_wh, model: BoxModel = DEFAULT_BOX_MODEL) -> np.ndarray:
    """Boxes of ``(N,21,2|3)`` image-normalised landmarks in images of ``image_wh`` ``(N,2)`` or ``(2,)``
    (width, height, pixels) -> ``(N,4)`` normalised x, y, w, h."""
    px, size, wh = _pixels(landmarks, image_wh)
    return _boxes_px(px, size, wh, model.radii())


def landmark_box(landmarks, image_wh, model: BoxModel = DEFAULT_BOX_MODEL) -> tuple[float, float, float, float]:
    """One hand's box: ``(21,2|3)`` landmarks, ``(width, height)`` -> normalised ``(x, y, w, h)``."""
    b = landmark_boxes(np.asarray(landmarks)[None], image_wh, model)[0]
    return float(b[0]), float(b[1]), float(b[2]), float(b[3])


def box_iou(a, b) -> np.ndarray:
    """IoU of each row of ``a`` with the same row of ``b`` (both ``(N,4)`` x, y, w, h) -> ``(N,)``; 0 where both
    boxes are empty."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def fit_box_model(landmarks, image_wh, boxes, start: BoxModel = DEFAULT_BOX_MODEL) -> BoxModel:
    """The radii that maximise the mean IoU of :func:`landmark_boxes` with ``boxes`` ``(N,4)``.

    Nelder-Mead from ``start`` (the mean IoU is piecewise smooth in the radii, with no useful gradient at the
    kinks); radii are kept >= 0. A few hundred hands take well under a second.
    """
    from scipy.optimize import minimize  # only the fit needs scipy

    px, size, wh = _pixels(landmarks, image_wh)
    target = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(target) != len(px) or not len(px):
        raise ValueError(f"need one box per hand and at least one hand, got {len(target)} boxes, {len(px)} hands")
    groups = [f.name for f in fields(BoxModel)]
    index = np.array([groups.index(g) for g in _GROUP_OF_JOINT])

    def loss(v: np.ndarray) -> float:
        return -float(box_iou(_boxes_px(px, size, wh, np.abs(v)[index]), target).mean())

    x0 = np.array([getattr(start, g) for g in groups], dtype=np.float64)
    res = minimize(loss, x0, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-7, "maxiter": 4000})
    return BoxModel(**{g: round(float(abs(v)), 4) for g, v in zip(groups, res.x)})


#: IoU a detection needs with an annotated box to be that hand (annotate --hagrid, evaluate --end-to-end).
MATCH_IOU = 0.5


def greedy_match(det_boxes, ann_boxes, iou_threshold: float = MATCH_IOU) -> np.ndarray:
    """For each annotated box, the index of the detection matched to it, or -1.

    Greedy one-to-one by IoU: all pairs sorted by IoU (highest first; ties by detection, then annotation
    index), a pair taken when both are still free and its IoU >= ``iou_threshold``. Boxes are normalised
    ``(x, y, w, h)``."""
    det = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    ann = np.asarray(ann_boxes, dtype=np.float64).reshape(-1, 4)
    match = np.full(len(ann), -1, dtype=np.int64)
    if not len(det) or not len(ann):
        return match
    iou = box_iou(np.repeat(det, len(ann), axis=0), np.tile(ann, (len(det), 1))).reshape(len(det), len(ann))
    d_idx, a_idx = np.nonzero(iou >= iou_threshold)
    used = np.zeros(len(det), dtype=bool)
    for k in np.lexsort((a_idx, d_idx, -iou[d_idx, a_idx])):
        d, a = d_idx[k], a_idx[k]
        if not used[d] and match[a] < 0:
            used[d], match[a] = True, d
    return match
