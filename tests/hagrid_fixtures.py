"""Tiny HaGRID datasets (v1 and v2 layouts) with real small JPEGs, written into a test's tmp_path.

``make_specs`` describes the images (class, split group, user, hands); ``write_v2``
and ``write_v1`` lay them out on disk exactly as HaGRID does, so the loader and
the crop step see the real formats at a size that runs in milliseconds.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

IMAGE_SIZE = (96, 72)  # width, height: landscape, so pixel maths is not symmetric by accident


@dataclass
class ImageSpec:
    """One image and its annotation record."""

    uuid: str
    cls: str  # class folder and annotation file
    group: str  # v2: train/val/test; v1: train_val/test/subsample
    user_id: str | None
    labels: list[str]
    bboxes: list[list[float]]
    landmarks: list[list] = field(default_factory=list)  # per hand: 21 [x, y] or []
    size: tuple[int, int] = IMAGE_SIZE
    leading_hand: str = "right"

    @property
    def n_hands(self) -> int:
        return len(self.labels)


def landmarks_in_box(bbox: Sequence[float], rng: np.random.Generator) -> list[list[float]]:
    """21 plausible points inside ``bbox`` (normalised), wrist at the bottom."""
    x, y, w, h = bbox
    pts = np.column_stack([x + w * rng.uniform(0.1, 0.9, 21), y + h * rng.uniform(0.1, 0.9, 21)])
    pts[0] = [x + w / 2, y + h * 0.95]
    return np.round(pts, 6).tolist()


def make_specs(
    classes: Sequence[str] = ("call", "fist", "palm"),
    per_class: int = 4,
    groups: Sequence[str] = ("train", "val", "test"),
    n_users: int = 6,
    *,
    no_gesture_every: int = 3,
    empty_landmarks_every: int = 5,
    null_user_every: int = 0,
    seed: int = 0,
) -> list[ImageSpec]:
    """Deterministic images: user ``k`` always lands in group ``k % len(groups)`` (no leaks).

    Every ``no_gesture_every``-th image gets a second, ``no_gesture`` hand; every
    ``empty_landmarks_every``-th hand has ``[]`` landmarks; every
    ``null_user_every``-th image has no user_id (0: never).
    """
    rng = np.random.default_rng(seed)
    specs: list[ImageSpec] = []
    n = 0
    for cls in classes:
        for j in range(per_class):
            user = n % n_users
            uid = None if null_user_every and n % null_user_every == 0 else f"user{user:03d}"
            box = [round(float(v), 4) for v in (rng.uniform(0.05, 0.5), rng.uniform(0.05, 0.4),
                                                 rng.uniform(0.15, 0.35), rng.uniform(0.2, 0.4))]
            labels, boxes = [cls], [box]
            if no_gesture_every and n % no_gesture_every == 0:
                labels.append("no_gesture")
                boxes.append([0.6, 0.55, 0.2, 0.3])
            lms = []
            for b in boxes:
                k = len(specs) * 2 + len(lms)
                lms.append([] if empty_landmarks_every and k % empty_landmarks_every == 0 else landmarks_in_box(b, rng))
            specs.append(ImageSpec(
                uuid=f"{cls}-{j:04d}-0000-0000-{n:012d}", cls=cls, group=groups[user % len(groups)],
                user_id=uid, labels=labels, bboxes=boxes, landmarks=lms,
            ))
            n += 1
    return specs


def write_jpeg(path: Path, size: tuple[int, int] = IMAGE_SIZE, seed: int = 0, quality: int = 90) -> Path:
    """A real JPEG with smooth content (gradients + a few blobs), so resizing is testable."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w * 255, yy / h * 255, np.full_like(xx, rng.uniform(40, 200))], -1)
    for _ in range(3):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(5, 20)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path, quality=quality)
    return path


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def write_v2(root: Path, specs: Sequence[ImageSpec], *, images_dir: str = "hagrid_dataset_512",
             meta: str = "absent") -> Path:
    """HaGRID v2: ``<images_dir>/<class>/<uuid>.jpg``, ``hagrid_annotations/<split>/<class>.json``.

    ``meta`` is ``"absent"``, ``"null"`` or ``"dict"`` (the v2 age/gender/race block).
    """
    files: dict[tuple[str, str], dict] = {}
    for i, s in enumerate(specs):
        write_jpeg(root / images_dir / s.cls / f"{s.uuid}.jpg", s.size, seed=i)
        rec = {"bboxes": s.bboxes, "labels": s.labels, "united_bbox": None, "united_label": None,
               "user_id": s.user_id, "hand_landmarks": s.landmarks, "leading_hand": s.leading_hand}
        if meta == "null":
            rec["meta"] = None
        elif meta == "dict":
            rec["meta"] = {"age": [30.0], "gender": ["female"], "race": ["White"]}
        files.setdefault((s.group, s.cls), {})[s.uuid] = rec
    for (group, cls), data in files.items():
        _write_json(root / "hagrid_annotations" / group / f"{cls}.json", data)
    return root


V1_ANN_DIRS = {"train_val": "ann_train_val", "test": "ann_test", "subsample": "ann_subsample"}


def write_v1(root: Path, specs: Sequence[ImageSpec], *, layout: str = "class_dirs") -> Path:
    """HaGRID v1: ``ann_train_val/``, ``ann_test/`` or ``ann_subsample/`` with per-class JSON.

    ``layout`` ``"class_dirs"`` puts images in ``<root>/<class>/``; ``"archive"`` in
    ``train_val_<class>/`` and ``test_<class>/`` as the v1 archives unpack.
    """
    files: dict[tuple[str, str], dict] = {}
    for i, s in enumerate(specs):
        folder = s.cls if layout == "class_dirs" else f"{'test' if s.group == 'test' else 'train_val'}_{s.cls}"
        write_jpeg(root / folder / f"{s.uuid}.jpg", s.size, seed=i)
        rec = {"bboxes": s.bboxes, "labels": s.labels, "landmarks": s.landmarks,
               "leading_hand": s.leading_hand, "leading_conf": 1.0, "user_id": s.user_id}
        files.setdefault((s.group, s.cls), {})[s.uuid] = rec
    for (group, cls), data in files.items():
        _write_json(root / V1_ANN_DIRS[group] / f"{cls}.json", data)
    return root


def annotation_file(root: Path, spec: ImageSpec) -> Path:
    """The annotation file a spec was written to (v1 or v2)."""
    if (root / "hagrid_annotations").is_dir():
        return root / "hagrid_annotations" / spec.group / f"{spec.cls}.json"
    return root / V1_ANN_DIRS[spec.group] / f"{spec.cls}.json"


def edit_record(root: Path, spec: ImageSpec, **changes) -> None:
    """Change fields of one written record (to plant a bad value)."""
    path = annotation_file(root, spec)
    data = json.loads(path.read_text())
    data[spec.uuid].update(changes)
    path.write_text(json.dumps(data))


def image_path(root: Path, spec: ImageSpec, images_dir: str = "hagrid_dataset_512") -> Path:
    return root / images_dir / spec.cls / f"{spec.uuid}.jpg"


def count_hands(specs: Sequence[ImageSpec], labels: Sequence[str]) -> int:
    return sum(lab in labels for s in specs for lab in s.labels)
