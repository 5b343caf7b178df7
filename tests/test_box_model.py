"""The landmark box model: geometry, clipping, the fit, and its held-out IoU on the real sample."""
from __future__ import annotations

import numpy as np
import pytest

from data_loaders.box_model import (
    DEFAULT_BOX_MODEL,
    BoxModel,
    box_iou,
    fit_box_model,
    landmark_box,
    landmark_boxes,
)
from data_loaders.classes import make_class_set
from data_loaders.hagrid import load_hagrid
from data_loaders.images import image_size

# joint indices per group, MediaPipe order
WRIST, THUMB_CMC, MCPS, TIPS = [0], [1], [2, 5, 9, 13, 17], [4, 8, 12, 16, 20]


def _hand(rng: np.random.Generator, n: int, wh=(640, 480)) -> np.ndarray:
    """``n`` plausible hands (normalised): a palm of random size, position and rotation, fingers spread."""
    base = np.zeros((21, 2))
    base[0] = (0, 0)
    for k, (mcp, angle) in enumerate(zip(MCPS, (-0.9, -0.35, 0.0, 0.3, 0.6))):
        direction = np.array([np.sin(angle), -np.cos(angle)])
        for j in range(4 if k else 3):
            base[mcp + j] = direction * (0.9 + 0.3 * j)
    base[THUMB_CMC] = (-0.3, -0.3)
    out = []
    for _ in range(n):
        t = rng.uniform(-np.pi, np.pi)
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        px = base @ rot.T * rng.uniform(30, 90) + rng.uniform((120, 120), (wh[0] - 120, wh[1] - 120))
        out.append(px / wh)
    return np.array(out)


def test_radii_follow_mediapipe_joint_groups():
    r = BoxModel(wrist=1, thumb_cmc=2, mcp=3, joint=4, tip=5).radii()
    assert r.shape == (21,)
    assert r[WRIST] == 1 and r[THUMB_CMC] == 2 and (r[MCPS] == 3).all() and (r[TIPS] == 5).all()
    assert sorted(set(range(21)) - set(WRIST + THUMB_CMC + MCPS + TIPS)) == list(np.flatnonzero(r == 4))


def test_box_is_the_extent_of_the_discs_in_hand_sizes():
    # hand size = wrist-middle MCP distance = 100 px; every radius 0.5 hand sizes = 50 px
    lm_px = np.zeros((21, 2)) + (300, 200)
    lm_px[9] = (300, 100)
    lm_px[4] = (360, 150)
    box = landmark_box(lm_px / (640, 480), (640, 480), BoxModel(0.5, 0.5, 0.5, 0.5, 0.5))
    np.testing.assert_allclose(np.array(box) * (640, 480, 640, 480), (250, 50, 160, 200), atol=1e-6)
    # z is ignored; the raw extent (all radii 0) is the landmarks' bounding box
    lm3 = np.concatenate([lm_px / (640, 480), np.ones((21, 1))], axis=1)
    raw = landmark_boxes(lm3[None], np.array([[640, 480]]), BoxModel(0, 0, 0, 0, 0))[0]
    np.testing.assert_allclose(raw * (640, 480, 640, 480), (300, 100, 60, 100), atol=1e-6)


def test_boxes_are_clipped_to_the_image():
    lm_px = np.zeros((21, 2)) + (10, 470)  # near the bottom-left corner, one point outside the image
    lm_px[9] = (10, 370)
    lm_px[20] = (-5, 480)
    x, y, w, h = landmark_box(lm_px / (640, 480), (640, 480), BoxModel(0.5, 0.5, 0.5, 0.5, 0.5))
    assert x == 0.0 and y + h == pytest.approx(1.0)
    assert w * 640 == pytest.approx(60) and h * 480 == pytest.approx(480 - 320)


def test_box_iou_of_known_boxes():
    a = np.array([[0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5], [0, 0, 0, 0]])
    b = np.array([[0, 0, 0.5, 0.5], [0.25, 0, 0.5, 0.5], [0.6, 0.6, 0.1, 0.1], [0, 0, 0, 0]])
    np.testing.assert_allclose(box_iou(a, b), [1.0, 1 / 3, 0.0, 0.0])


def test_fit_recovers_the_radii_that_made_the_boxes():
    rng = np.random.default_rng(0)
    wh = np.array([640, 480])
    lm = _hand(rng, 120, tuple(wh))
    truth = BoxModel(wrist=0.25, thumb_cmc=0.3, mcp=0.2, joint=0.15, tip=0.12)
    boxes = landmark_boxes(lm, wh, truth)
    start = BoxModel(0.2, 0.2, 0.2, 0.2, 0.2)
    assert box_iou(landmark_boxes(lm, wh, start), boxes).mean() < 0.97
    fitted = fit_box_model(lm, wh, boxes, start=start)
    assert box_iou(landmark_boxes(lm, wh, fitted), boxes).mean() > 0.995
    # the radii that shape the box (the outermost joints: wrist, tips) come back; inner discs may not matter
    assert fitted.wrist == pytest.approx(truth.wrist, abs=0.01)
    assert fitted.tip == pytest.approx(truth.tip, abs=0.01)


def test_to_dict_round_trip_and_bad_radii():
    assert BoxModel.from_dict(DEFAULT_BOX_MODEL.to_dict()) == DEFAULT_BOX_MODEL
    with pytest.raises(ValueError, match="thumb_cmc"):
        BoxModel.from_dict({**DEFAULT_BOX_MODEL.to_dict(), "thumb_cmc": "big"})
    with pytest.raises(ValueError, match="tip"):
        BoxModel.from_dict({k: v for k, v in DEFAULT_BOX_MODEL.to_dict().items() if k != "tip"})


def _sample_hands(root, split):
    ann = load_hagrid(root, make_class_set(include_no_gesture=True), splits=[split])
    recs = [r for r in ann.records if r.landmarks is not None]
    sizes = {p: image_size(p) for p in {r.image_path for r in recs}}
    return (np.stack([r.landmarks for r in recs]), np.array([sizes[r.image_path] for r in recs]),
            np.array([r.bbox for r in recs]))


def test_held_out_iou_on_the_sample(hagrid_sample):
    """Fitted on val, measured on test (frames and subjects it never saw): HaGRID-like boxes, unlike the raw
    landmark extent; and the default model (fitted on val+test) is as good on test."""
    val, test = _sample_hands(hagrid_sample, "val"), _sample_hands(hagrid_sample, "test")
    assert len(val[0]) > 150 and len(test[0]) > 300
    raw = box_iou(landmark_boxes(test[0], test[1], BoxModel(0, 0, 0, 0, 0)), test[2]).mean()
    fitted = fit_box_model(*val, start=BoxModel(0.2, 0.2, 0.2, 0.2, 0.2))
    held_out = box_iou(landmark_boxes(test[0], test[1], fitted), test[2])
    assert raw < 0.65
    assert held_out.mean() >= 0.85 and (held_out >= 0.5).all()
    assert box_iou(landmark_boxes(test[0], test[1]), test[2]).mean() >= 0.87
