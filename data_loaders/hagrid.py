"""Read HaGRID annotations (v1 and v2 on-disk formats) into one record per hand.

v1: ``<images>/<class>/<uuid>.jpg`` with per-class JSON in ``ann_train_val/``,
``ann_test/`` or ``ann_subsample/``; each record has ``bboxes``, ``labels``,
``landmarks``, ``leading_hand``, ``leading_conf`` and ``user_id``.
v2: ``hagrid_dataset*/<class>/<uuid>.jpg`` with
``hagrid_annotations/{train,val,test}/<class>.json``; landmarks live in
``hand_landmarks`` and ``united_bbox``/``united_label``/``meta`` may be null.

Bad records never crash a caller deep in a loop: an unreadable annotation
file raises :class:`DataError` naming it, and a bad hand is skipped and
counted (with a few named examples) in :attr:`HagridAnnotations.skipped`.
"""
from __future__ import annotations

import logging
import math
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import orjson

from .classes import KNOWN_LABELS, NO_GESTURE, ClassSet, make_class_set
from .errors import DataError
from .splits import split_by_subject

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
V1_ANNOTATION_DIRS = {"ann_train_val": "train_val", "ann_test": "test", "ann_subsample": "subsample"}
NUM_LANDMARKS = 21
MAX_EXAMPLES = 5  # named examples kept per skip reason


@dataclass(slots=True)
class HandRecord:
    """One annotated hand. Coordinates are normalised to the image, top-left origin."""

    uuid: str
    image_path: Path
    split: str
    label: str
    hand: int  # index of this box in the image's annotation
    bbox: tuple[float, float, float, float]  # x, y, w, h
    landmarks: np.ndarray | None  # (21, 2) float32, or None when missing
    user_id: str | None
    leading_hand: str | None = None
    source: str = ""  # annotation file the record came from

    @property
    def key(self) -> str:
        """Unique id of the hand: ``<uuid>_<hand>``."""
        return f"{self.uuid}_{self.hand}"


@dataclass
class SkipLog:
    """Counts of skipped (or degraded) hands by reason, with a few named examples."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, reason: str, path: str | Path, uuid: str | None = None, detail: str = "", n: int = 1) -> None:
        self.counts[reason] += n
        ex = self.examples[reason]
        if len(ex) < MAX_EXAMPLES:
            ex.append(f"{path}" + (f" [{uuid}]" if uuid else "") + (f": {detail}" if detail else ""))

    def merge(self, other: "SkipLog") -> None:
        for reason, n in other.counts.items():
            self.counts[reason] += n
            room = MAX_EXAMPLES - len(self.examples[reason])
            self.examples[reason].extend(other.examples.get(reason, [])[: max(room, 0)])

    def summary_lines(self) -> list[str]:
        lines = []
        for reason, n in sorted(self.counts.items()):
            lines.append(f"{reason}: {n}")
            lines.extend(f"    e.g. {e}" for e in self.examples.get(reason, []))
        return lines


@dataclass
class HagridAnnotations:
    """Everything read from one HaGRID root."""

    root: Path
    format: str  # "v1" or "v2"
    class_set: ClassSet
    records: list[HandRecord]
    skipped: SkipLog  # hands not turned into records, by reason
    degraded: SkipLog  # hands kept with something dropped (e.g. malformed landmarks)
    warnings: list[str] = field(default_factory=list)

    def by_split(self, split: str) -> list[HandRecord]:
        return [r for r in self.records if r.split == split]

    @property
    def splits(self) -> list[str]:
        present = {r.split for r in self.records}
        return [s for s in SPLITS if s in present] + sorted(present - set(SPLITS))


# --------------------------------------------------------------------------- #
# format detection and image folders
# --------------------------------------------------------------------------- #
def detect_format(root: str | Path) -> str:
    """Return ``"v2"`` or ``"v1"`` for a HaGRID root, or raise naming what is missing."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "dataset directory does not exist")
    if (root / "hagrid_annotations").is_dir():
        return "v2"
    if any((root / d).is_dir() for d in V1_ANNOTATION_DIRS):
        return "v1"
    raise DataError(
        root,
        "no HaGRID annotations found: expected hagrid_annotations/{train,val,test}/ (v2) "
        "or ann_train_val/, ann_test/, ann_subsample/ (v1); see README.md 'Getting HaGRID'",
    )


def _image_dirs(root: Path, classes: Iterable[str], max_depth: int = 3) -> dict[str, list[Path]]:
    """Find the folders that hold each class's images.

    Accepts ``<anything>/<class>/`` and the v1 archive names ``train_val_<class>/``
    and ``test_<class>/`` up to ``max_depth`` levels below the root; annotation
    folders are not searched.
    """
    wanted = set(classes)
    found: dict[str, list[Path]] = defaultdict(list)
    skip = {"hagrid_annotations", *V1_ANNOTATION_DIRS, "crops"}
    frontier = [root]
    for _depth in range(max_depth):
        nxt = []
        for d in frontier:
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name)
            except OSError:
                continue
            for e in entries:
                if not e.is_dir() or e.name in skip or e.name.startswith("."):
                    continue
                name = e.name
                for prefix in ("train_val_", "test_"):
                    if name.startswith(prefix) and name[len(prefix):] in wanted:
                        name = name[len(prefix):]
                if name in wanted:
                    found[name].append(Path(e.path))
                else:
                    nxt.append(Path(e.path))
        frontier = nxt
    return found


class _ImageLocator:
    """Map (class, uuid) to an image path without a stat per image."""

    def __init__(self, root: Path, classes: Iterable[str]):
        self.root = root
        self.dirs = _image_dirs(root, classes)
        self._members: dict[str, dict[str, Path]] = {}

    def path(self, cls: str, uuid: str) -> Path:
        dirs = self.dirs.get(cls)
        if not dirs:
            return self.root / "images" / cls / f"{uuid}.jpg"  # reported missing by whoever opens it
        if len(dirs) == 1:
            return dirs[0] / f"{uuid}.jpg"
        members = self._members.get(cls)
        if members is None:
            members = {}
            for d in reversed(dirs):  # first folder wins
                for e in os.scandir(d):
                    if e.name.endswith(".jpg"):
                        members[e.name[:-4]] = Path(e.path)
            self._members[cls] = members
        return members.get(uuid, dirs[0] / f"{uuid}.jpg")


# --------------------------------------------------------------------------- #
# parsing
# --------------------------------------------------------------------------- #
def read_annotation_file(path: Path) -> dict:
    """Parse one per-class annotation file, raising :class:`DataError` on any problem."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise DataError(path, "annotation file not found") from None
    except orjson.JSONDecodeError as e:
        raise DataError(path, f"malformed or truncated JSON ({e})") from None
    if not isinstance(data, dict):
        raise DataError(path, f"expected a JSON object {{uuid: record}}, got {type(data).__name__}")
    return data


def _parse_landmarks(raw: object) -> np.ndarray | None | str:
    """Return (21,2) float32, None for an empty list, or a string saying what is wrong."""
    if raw is None or (isinstance(raw, list) and len(raw) == 0):
        return None
    try:
        arr = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError):
        return "landmarks are not numbers"
    if arr.ndim != 2 or arr.shape[0] != NUM_LANDMARKS or arr.shape[1] < 2:
        return f"expected {NUM_LANDMARKS}x2 landmarks, got shape {arr.shape}"
    arr = arr[:, :2]
    if not np.isfinite(arr).all():
        return "landmarks contain NaN or inf"
    return np.ascontiguousarray(arr)


def _parse_box(raw: object) -> tuple[float, float, float, float] | str:
    if not isinstance(raw, (list, tuple)) or len(raw) != 4:
        return "malformed_box"
    try:
        x, y, w, h = (float(v) for v in raw)
    except (TypeError, ValueError):
        return "malformed_box"
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return "malformed_box"
    if w <= 0 or h <= 0:
        return "zero_size_box"
    if x >= 1 or y >= 1 or x + w <= 0 or y + h <= 0:
        return "box_outside_image"
    return (x, y, w, h)


def parse_records(
    data: dict,
    *,
    source: Path,
    image_class: str,
    split: str,
    class_set: ClassSet,
    locator: _ImageLocator,
    landmark_key: str,
    skipped: SkipLog,
    degraded: SkipLog,
) -> Iterator[HandRecord]:
    """Turn one annotation file's ``{uuid: record}`` into hand records."""
    for uuid, rec in data.items():
        if not isinstance(rec, dict):
            skipped.add("malformed_record", source, uuid, "record is not an object")
            continue
        boxes, labels = rec.get("bboxes"), rec.get("labels")
        if not isinstance(boxes, list) or not isinstance(labels, list) or len(boxes) != len(labels):
            n = len(boxes) if isinstance(boxes, list) else 1
            skipped.add("malformed_record", source, uuid, "bboxes/labels missing or of different lengths", n=max(n, 1))
            continue
        lms = rec.get(landmark_key)
        if lms is None and landmark_key == "hand_landmarks":
            lms = rec.get("landmarks")  # tolerate v1-style key in v2 files
        if not isinstance(lms, list):
            lms = []
        user_id = rec.get("user_id") or None
        leading = rec.get("leading_hand") or None
        image_path = locator.path(image_class, uuid)
        for i, (raw_box, label) in enumerate(zip(boxes, labels)):
            if not isinstance(label, str) or label not in KNOWN_LABELS and label not in class_set:
                skipped.add("unknown_label", source, uuid, f"label {label!r}")
                continue
            if label not in class_set:
                skipped.add(f"excluded_label:{label}", source, uuid)
                continue
            box = _parse_box(raw_box)
            if isinstance(box, str):
                skipped.add(box, source, uuid, f"box {raw_box!r}")
                continue
            lm = _parse_landmarks(lms[i]) if i < len(lms) else None
            if isinstance(lm, str):
                degraded.add("malformed_landmarks", source, uuid, lm)
                lm = None
            yield HandRecord(
                uuid=uuid,
                image_path=image_path,
                split=split,
                label=label,
                hand=i,
                bbox=box,
                landmarks=lm,
                user_id=str(user_id) if user_id is not None else None,
                leading_hand=leading if label != NO_GESTURE else None,
                source=str(source),
            )


# --------------------------------------------------------------------------- #
# public entry point
# --------------------------------------------------------------------------- #
def load_hagrid(
    root: str | Path,
    class_set: ClassSet | None = None,
    *,
    splits: Sequence[str] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    v1_annotations: str = "auto",
) -> HagridAnnotations:
    """Load every hand of a HaGRID root (format detected) for ``class_set``.

    Official split folders are used where they exist. v1 ``ann_train_val`` is
    split into train/val by ``user_id`` (``val_fraction``, seeded); a v1
    ``ann_subsample`` alone is split into train/val/test the same way.
    ``v1_annotations`` picks ``"full"`` (train_val + test), ``"subsample"`` or
    ``"auto"`` (full when present).
    """
    root = Path(root)
    class_set = class_set or make_class_set()
    fmt = detect_format(root)
    # images are looked up for every class an annotation file may be named after
    file_classes = sorted(set(class_set.names) | KNOWN_LABELS)
    locator = _ImageLocator(root, file_classes)
    skipped, degraded = SkipLog(), SkipLog()
    records: list[HandRecord] = []
    warnings: list[str] = []

    def read_dir(ann_dir: Path, split: str, landmark_key: str) -> list[HandRecord]:
        out: list[HandRecord] = []
        files = sorted(ann_dir.glob("*.json"))
        if not files:
            warnings.append(f"{ann_dir}: no annotation files")
        for f in files:
            cls = f.stem
            if cls not in class_set and cls != NO_GESTURE and cls in KNOWN_LABELS:
                # whole file of a class outside the set: count it cheaply as excluded only if asked
                pass
            data = read_annotation_file(f)
            out.extend(parse_records(
                data, source=f, image_class=cls, split=split, class_set=class_set, locator=locator,
                landmark_key=landmark_key, skipped=skipped, degraded=degraded,
            ))
        return out

    if fmt == "v2":
        ann_root = root / "hagrid_annotations"
        present = [s for s in SPLITS if (ann_root / s).is_dir()]
        if not present:
            raise DataError(ann_root, "no train/, val/ or test/ folder")
        for split in present:
            if splits is None or split in splits:
                records.extend(read_dir(ann_root / split, split, "hand_landmarks"))
    else:
        have_full = (root / "ann_train_val").is_dir() or (root / "ann_test").is_dir()
        use = v1_annotations if v1_annotations != "auto" else ("full" if have_full else "subsample")
        if use == "full":
            if (root / "ann_train_val").is_dir():
                tv = read_dir(root / "ann_train_val", "train_val", "landmarks")
                warnings.extend(_assign_subject_splits(tv, {"train": 1 - val_fraction, "val": val_fraction}, seed))
                records.extend(tv)
            if (root / "ann_test").is_dir():
                records.extend(read_dir(root / "ann_test", "test", "landmarks"))
        else:
            if not (root / "ann_subsample").is_dir():
                raise DataError(root, "v1_annotations='subsample' but ann_subsample/ is missing")
            sub = read_dir(root / "ann_subsample", "subsample", "landmarks")
            fr = {"train": 1 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction}
            warnings.extend(_assign_subject_splits(sub, fr, seed))
            records.extend(sub)
        if splits is not None:
            records = [r for r in records if r.split in splits]
    for w in warnings:
        log.warning(w)
    return HagridAnnotations(root=root, format=fmt, class_set=class_set, records=records,
                             skipped=skipped, degraded=degraded, warnings=warnings)


def _assign_subject_splits(records: list[HandRecord], fractions: dict[str, float], seed: int) -> list[str]:
    """Set ``split`` on records in place, by subject; returns warnings."""
    assignment, n_unknown = split_by_subject([r.user_id for r in records], fractions, seed=seed)
    for r, s in zip(records, assignment):
        r.split = s
    if n_unknown:
        return [f"{n_unknown} hands have no user_id; they form one group, kept in 'train' so they cannot leak into val/test"]
    return []
