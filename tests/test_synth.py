"""The synthetic demonstration set: HaGRID v2 layout, subject splits, determinism, geometry."""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image

from common.errors import DataError
from data_loaders.classes import GESTURES_18, NO_GESTURE, make_class_set
from data_loaders.hagrid import load_hagrid
from data_loaders.splits import find_subject_leaks
from data_loaders.synthetic import generate as S
from engine import cli

TINY = dict(n_subjects=6, images_per_subject=4, image_size=(192, 144), seed=3, second_hand_p=0.5, progress=False)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "set"
    stats = S.generate_synthetic_hagrid(out, **TINY, workers=2)  # a pool, even on one CPU
    return out, stats


def _specs(gestures, n_per, **kw):
    """Frame specs only (no drawing): cheap enough for hundreds of frames."""
    out = []
    for i in range(n_per):
        subj = S.make_subject(i, 11, "train", 0.3)
        for j, g in enumerate(gestures):
            spec, _rng = S.sample_frame(subj, g, 1000 + i * len(gestures) + j, 11, (384, 288), **kw)
            out.append(spec)
    return out


def test_layout_and_reader(tiny):
    out, stats = tiny
    assert (out / "README.md").read_text().lower().count("not hagrid") >= 1
    info = orjson.loads((out / "synth_info.json").read_bytes())
    assert info["complete"] and info["synthetic"] and info["settings"]["seed"] == TINY["seed"]
    assert sorted(p.name for p in (out / "hagrid_annotations").iterdir()) == ["test", "train", "val"]
    ann = load_hagrid(out)
    assert ann.format == "v2"
    assert not ann.skipped.counts and not ann.degraded.counts
    excluded = getattr(ann, "excluded", ann.skipped).counts  # no_gesture is left out of the 18-class set
    assert set(excluded) <= {"excluded_label:no_gesture"}
    assert sum(excluded.values()) == stats["n_no_gesture"] > 0
    # one gesture hand per frame, every one of the 18 classes present (the schedule cycles through them)
    assert len(ann.records) == stats["n_images"] == 24
    assert {r.label for r in ann.records} == set(GESTURES_18)
    for r in ann.records:
        assert r.image_path.is_file() and r.image_path.parent.name == r.label
        assert r.leading_hand in ("left", "right")
        assert r.user_id and all(c in "0123456789abcdef" for c in r.user_id)
    # the images are JPEGs of the set's size (landscape, or portrait for some subjects)
    for r in ann.records[:6]:
        with Image.open(r.image_path) as im:
            assert im.format == "JPEG" and im.size in ((192, 144), (144, 192))


def test_records_carry_v2_fields(tiny):
    out, _ = tiny
    for f in (out / "hagrid_annotations").glob("*/*.json"):
        for rec in orjson.loads(f.read_bytes()).values():
            assert set(rec) >= {"bboxes", "labels", "united_bbox", "united_label", "user_id", "hand_landmarks", "meta"}
            assert rec["meta"] == {"synthetic": True}
            assert len(rec["bboxes"]) == len(rec["labels"]) == len(rec["hand_landmarks"])
            assert [lab for lab in rec["labels"] if lab != NO_GESTURE] == [f.stem]
            assert rec["labels"].count(NO_GESTURE) <= 1
            for lm in rec["hand_landmarks"]:
                assert lm == [] or (len(lm) == 21 and all(len(p) == 2 for p in lm))


def test_boxes_contain_landmarks(tiny):
    out, _ = tiny
    ann = load_hagrid(out, make_class_set(include_no_gesture=True))
    assert any(r.label == NO_GESTURE for r in ann.records)
    n = 0
    for r in ann.records:
        x, y, w, h = r.bbox
        assert 0 <= x and 0 <= y and x + w <= 1 + 1e-6 and y + h <= 1 + 1e-6 and w > 0 and h > 0
        if r.landmarks is not None:
            n += 1
            lm = r.landmarks
            assert (lm[:, 0] >= x - 1e-6).all() and (lm[:, 0] <= x + w + 1e-6).all()
            assert (lm[:, 1] >= y - 1e-6).all() and (lm[:, 1] <= y + h + 1e-6).all()
            # the box is the hand's extent plus a small margin, not the whole frame
            assert w < 0.6 and h < 0.6
    assert n > 0


def test_subject_disjoint_splits(tiny):
    out, stats = tiny
    ann = load_hagrid(out, make_class_set(include_no_gesture=True))
    assert find_subject_leaks((r.user_id, r.split) for r in ann.records) == {}
    by_split = {s: {r.user_id for r in ann.records if r.split == s} for s in ("train", "val", "test")}
    assert all(by_split.values())
    assert sum(len(v) for v in by_split.values()) == TINY["n_subjects"]
    assert stats["splits"]["train"]["subjects"] == 4


def test_deterministic_and_reused(tiny, tmp_path):
    out, _ = tiny
    again = tmp_path / "again"
    S.generate_synthetic_hagrid(again, **TINY, workers=1)  # the fixture drew in a pool of two
    assert _files(again) == _files(out)  # byte-identical images and annotation files, whatever the workers
    mtime = (again / "synth_info.json").stat().st_mtime_ns
    stats = S.generate_synthetic_hagrid(again, **TINY)
    assert stats["reused"] and (again / "synth_info.json").stat().st_mtime_ns == mtime
    # another seed: other uuids, other pixels; the previous set's files are replaced, not mixed in
    S.generate_synthetic_hagrid(again, **{**TINY, "seed": 4})
    new = _files(again)
    assert not set(k for k in new if k.endswith(".jpg")) & set(k for k in _files(out) if k.endswith(".jpg"))
    assert len(load_hagrid(again).records) == 24


def test_refuses_foreign_annotations(tmp_path):
    (tmp_path / "hagrid_annotations" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="synth_info"):
        S.generate_synthetic_hagrid(tmp_path, **TINY)


def test_orientation_rule():
    """like: thumb tip above the wrist; dislike: below; *_inverted: fingertips below the wrist."""
    specs = _specs(["like", "dislike", "peace", "peace_inverted", "stop", "stop_inverted", "two_up",
                    "two_up_inverted"], 25, second_hand_p=0.0, empty_landmarks_p=0.0)
    for spec in specs:
        j = spec.gesture_hand.geom.joints  # pixels, y grows downwards
        lm = np.asarray(spec.gesture_hand.landmarks)  # the written, noisy landmarks
        tips = [8, 12, 16, 20] if spec.gesture.startswith("stop") else [8, 12]
        for pts in (j, lm):
            if spec.gesture == "like":
                assert pts[4, 1] < pts[0, 1]
            elif spec.gesture == "dislike":
                assert pts[4, 1] > pts[0, 1]
            elif spec.gesture.endswith("_inverted"):
                assert (pts[tips, 1] > pts[0, 1]).all(), spec.gesture
            else:
                assert (pts[tips, 1] < pts[0, 1]).all(), spec.gesture


def test_mute_is_at_the_lips_and_one_is_not():
    for spec in _specs(["mute", "one"], 12, second_hand_p=0.0):
        j = spec.gesture_hand.geom.joints
        mouth = np.array([spec.face[0], spec.face[1] + 0.52 * spec.head[1]])
        d = np.linalg.norm(0.5 * (j[6] + j[7]) - mouth) / spec.head[1]
        assert (d < 0.5) if spec.gesture == "mute" else (d > 0.5)


def test_second_hands_and_empty_landmarks():
    specs = _specs(list(GESTURES_18), 20, second_hand_p=0.3)
    hands = [h for s in specs for h in s.hands]
    labels = Counter(h.label for h in hands)
    n_second = labels[NO_GESTURE]
    assert 0.2 * len(specs) < n_second < 0.4 * len(specs)
    for s in specs:
        assert sum(h.label != NO_GESTURE for h in s.hands) == 1 and s.gesture_hand.label == s.gesture
        for h in s.hands:
            if h.label == NO_GESTURE:  # the relaxed hand hangs lower in the frame than the gesture hand
                assert h.geom.joints[:, 1].mean() > s.gesture_hand.geom.joints[:, 1].mean() - 0.5 * s.person_scale
    empty = sum(not h.landmarks for h in hands) / len(hands)
    assert 0.02 < empty < 0.09, empty


def test_cli_hooks(tmp_path, capsys):
    argv = ["synth", "--out", str(tmp_path / "cli"), "--subjects", "3", "--images-per-subject", "2",
            "--size", "160x120", "--seed", "1", "--no-progress"]
    args = cli.build_parser(argv).parse_args(argv)
    assert args.size == (160, 120)
    assert cli.run_args(args) == 0
    assert "not HaGRID" in capsys.readouterr().out
    assert len(load_hagrid(tmp_path / "cli").records) == 6
    assert S.parse_size("320") == (320, 240)
    with pytest.raises(argparse.ArgumentTypeError):
        S.parse_size("big")


def test_frames_look_like_frames(tiny):
    """Cheap pixel sanity: not blank, the hand region differs from the frame's corners."""
    out, _ = tiny
    ann = load_hagrid(out)
    for r in ann.records[:8]:
        a = np.asarray(Image.open(r.image_path).convert("RGB"), np.float32)
        assert a.std() > 5
        H, W = a.shape[:2]
        x, y, w, h = r.bbox
        patch = a[int(y * H):int((y + h) * H) + 1, int(x * W):int((x + w) * W) + 1]
        assert patch.size > 0
