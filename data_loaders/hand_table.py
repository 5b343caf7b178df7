"""Columnar view of the hands a run works on (one row per hand).

Built from the crop manifest (the usual path: every model then sees the same
hands, rows pair up across models for evaluation) or straight from annotation
records (landmark models can train without cropping). Arrays, not objects, so
550k hands fit in memory and go to the GPU in one copy.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from common.errors import DataError

from .classes import ClassSet
from .hagrid import MAX_EXAMPLES, HandRecord, unreadable_image_reason, with_image_sizes
from .hand_graph import NUM_NODES
from .landmarks import normalize_landmarks
from .manifest import CROP_INFO_NAME, MANIFEST_NAME, count_manifest_lines, iter_manifest, read_crop_info

log = logging.getLogger(__name__)

#: The ``handedness`` column's codes: the person's own hand, +1 right, -1 left, 0 unknown.
HANDEDNESS_CODES = {"right": 1.0, "left": -1.0}
#: A model with handedness as an input trains, and is scored, only when at least this share of the hands know theirs.
MIN_HANDEDNESS_KNOWN = 0.5
HANDEDNESS_FIX = ("v2 annotations carry no handedness: run `hand-gestures annotate --hagrid <root> --out <dir>` "
                  "and crop that")


def handedness_code(value: object) -> float:
    """``"right"`` -> +1, ``"left"`` -> -1 (any case); None or anything else (unknown) -> 0."""
    return HANDEDNESS_CODES.get(value.lower(), 0.0) if isinstance(value, str) else 0.0


@dataclass
class HandTable:
    """Per-hand arrays; ``index`` is each row's id in the table it was first built as."""

    class_names: tuple[str, ...]
    keys: np.ndarray  # (N,) object: "<uuid>_<hand>"
    split: np.ndarray  # (N,) object
    labels: np.ndarray  # (N,) int64
    landmarks: np.ndarray  # (N, 21, 2) float32, normalised image coords, zeros where missing
    has_landmarks: np.ndarray  # (N,) bool
    image_size: np.ndarray  # (N, 2) float32 (width, height) of each hand's source image, as displayed
    bbox: np.ndarray  # (N, 4) float32 normalised x, y, w, h
    user_id: np.ndarray  # (N,) object, None when unknown
    index: np.ndarray  # (N,) int64
    handedness: np.ndarray | None = None  # (N,) float32: +1 right, -1 left, 0 unknown (None: all unknown)
    crop_paths: np.ndarray | None = None  # (N,) object: absolute paths of crops
    crops_dir: Path | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.handedness is None:
            self.handedness = np.zeros(len(self.labels), np.float32)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def handedness_known(self) -> float:
        """The share of hands whose handedness is known (0 for an empty table)."""
        return float(np.count_nonzero(self.handedness)) / len(self) if len(self) else 0.0

    # ------------------------------------------------------------------ build
    @classmethod
    def from_manifest(cls, crops_dir: str | Path, class_names: Sequence[str] | None = None) -> "HandTable":
        """Read ``<crops_dir>/manifest.jsonl``; class order from ``crop_info.json`` unless given.

        Streams the manifest into preallocated arrays (never a list of every
        entry: full HaGRID is ~1.3M lines). With ``class_names`` given, rows of
        other labels (e.g. ``no_gesture`` crops read for an 18-class model) are
        dropped and counted in ``meta["dropped_labels"]`` (label -> rows); it is
        an error only when none of the requested classes was cropped. Without
        ``class_names``, a label outside ``crop_info.json`` is an error naming
        the line.
        """
        crops_dir = Path(crops_dir)
        path = crops_dir / MANIFEST_NAME
        if not path.is_file():
            raise DataError(path, "crop manifest not found: run `hand-gestures crop` first")
        info = read_crop_info(crops_dir)
        names = _requested_classes(crops_dir, list(info["class_names"]), class_names)
        cols = _ManifestColumns(count_manifest_lines(path), str(crops_dir))  # an upper bound on the rows
        dropped = cols.read(path, names, strict=class_names is None)
        _report_class_coverage(crops_dir, path, names, info["class_names"], cols.n, dropped)
        return cls(**cols.arrays(), class_names=names, crops_dir=crops_dir,
                   meta={"crop_info": info, "source": str(path), "dropped_labels": dict(sorted(dropped.items()))})

    @classmethod
    def from_records(
        cls,
        records: Sequence[HandRecord],
        class_set: ClassSet,
        read_size: Callable[[Path], tuple[int, int]],
    ) -> "HandTable":
        """Build from annotation records; ``read_size(path)`` reads (width, height) (a JPEG header).

        A hand whose image cannot be read (``read_size`` raises :class:`DataError`:
        missing, corrupt) is left out, not fatal: ``meta["skipped"]`` counts them
        by reason, ``meta["skipped_examples"]`` names a few, and one warning is logged.
        """
        n = len(records)
        lms = np.zeros((n, NUM_NODES, 2), np.float32)
        has = np.zeros(n, bool)
        sizes = np.empty((n, 2), np.float32)
        keep = np.ones(n, bool)
        skipped: Counter = Counter()
        examples: list[str] = []
        for i, (r, wh) in enumerate(with_image_sizes(records, read_size)):
            if isinstance(wh, DataError):
                keep[i] = False
                skipped[unreadable_image_reason(wh)] += 1
                if len(examples) < MAX_EXAMPLES:
                    examples.append(f"{wh.path} [{r.uuid}] hand {r.hand}: {wh.problem}")
                continue
            sizes[i] = wh
            if r.landmarks is not None:
                lms[i] = r.landmarks
                has[i] = True
        obj = lambda xs: np.array(xs, dtype=object)  # noqa: E731
        table = cls(
            class_names=tuple(class_set.names),
            keys=obj([r.key for r in records]),
            split=obj([r.split for r in records]),
            labels=np.array([class_set.index(r.label) for r in records], np.int64),
            landmarks=lms, has_landmarks=has, image_size=sizes,
            bbox=np.array([r.bbox for r in records], np.float32).reshape(n, 4),
            user_id=obj([r.user_id for r in records]),
            index=np.arange(n, dtype=np.int64),
            handedness=np.array([handedness_code(r.leading_hand) for r in records], np.float32).reshape(n),
        )
        if skipped:
            total = sum(skipped.values())
            log.warning("%d hand(s) left out: their image could not be read (%s), e.g. %s", total,
                        ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())), examples[0])
            table = table.subset(keep)
            table.index = np.arange(len(table), dtype=np.int64)  # ids of the table as built
        table.meta.update(skipped=dict(sorted(skipped.items())), skipped_hands=sum(skipped.values()),
                          skipped_examples=examples)
        return table

    # ------------------------------------------------------------------ views
    def subset(self, mask: np.ndarray) -> "HandTable":
        """Rows where ``mask`` is true (boolean mask or integer indices); ``index`` is kept."""
        pick = lambda a: None if a is None else a[mask]  # noqa: E731
        return replace(
            self, keys=self.keys[mask], split=self.split[mask], labels=self.labels[mask],
            landmarks=self.landmarks[mask], has_landmarks=self.has_landmarks[mask],
            image_size=self.image_size[mask], bbox=self.bbox[mask], user_id=self.user_id[mask],
            index=self.index[mask], handedness=self.handedness[mask], crop_paths=pick(self.crop_paths),
        )

    def split_view(self, split: str, *, require_landmarks: bool = False) -> "HandTable":
        mask = self.split == split
        if require_landmarks:
            mask &= self.has_landmarks
        return self.subset(mask)

    def normalized_landmarks(self, method: str) -> np.ndarray:
        """Landmarks normalised by ``method`` (see :mod:`data_loaders.landmarks`); zeros where missing."""
        out = np.zeros_like(self.landmarks)
        if self.has_landmarks.any():
            m = self.has_landmarks
            out[m] = normalize_landmarks(self.landmarks[m], method, image_size=self.image_size[m], bbox=self.bbox[m],
                                         source=self.meta.get("source"), names=self.keys[m])
        return out


# --------------------------------------------------------------------------- #
# from_manifest's steps
# --------------------------------------------------------------------------- #
def _requested_classes(crops_dir: Path, cropped: list[str], class_names: Sequence[str] | None) -> tuple[str, ...]:
    """The table's class order: ``class_names`` when given (at least one of them cropped), else crop_info's."""
    if class_names is None:
        return tuple(cropped)
    names = tuple(class_names)
    if not set(names) & set(cropped):
        raise DataError(crops_dir / CROP_INFO_NAME,
                        f"none of the requested classes ({', '.join(names)}) was cropped here "
                        f"(crop classes: {', '.join(cropped)}); crop them or choose another crops folder")
    return names


def _report_class_coverage(crops_dir: Path, path: Path, names: tuple[str, ...], cropped: Sequence[str], n: int,
                           dropped: Counter) -> None:
    """Fail when only other classes' rows were read; log classes never cropped and rows dropped."""
    if n == 0 and dropped:
        raise DataError(path, f"no rows of the requested classes ({', '.join(names)}); "
                        f"the manifest holds {', '.join(sorted(dropped))}")
    missing = [c for c in names if c not in cropped]
    if missing:
        log.warning("%s: class(es) %s were not cropped here: they have no rows", crops_dir, ", ".join(missing))
    if dropped:
        log.info("%s: dropped %d rows of labels outside the class set: %s", path, sum(dropped.values()),
                 ", ".join(f"{c} {m}" for c, m in sorted(dropped.items())))


class _ManifestColumns:
    """Preallocated per-hand arrays filled one manifest line at a time, then trimmed to the rows read."""

    def __init__(self, cap: int, root: str) -> None:
        self.cap, self.n, self.root = cap, 0, root
        self.keys, self.split = np.empty(cap, object), np.empty(cap, object)
        self.user_id, self.crop_paths = np.empty(cap, object), np.empty(cap, object)
        self.labels = np.empty(cap, np.int64)
        self.landmarks = np.zeros((cap, NUM_NODES, 2), np.float32)
        self.has_landmarks = np.zeros(cap, bool)
        self.handedness = np.zeros(cap, np.float32)
        self.image_size = np.empty((cap, 2), np.float32)
        self.bbox = np.empty((cap, 4), np.float32)
        self.shared: dict[str, str] = {}  # one string object per split / user, not one per row

    def read(self, path: Path, names: tuple[str, ...], *, strict: bool) -> Counter:
        """Add every row of a label in ``names``; others are an error (``strict``) or counted and returned."""
        lookup = {c: i for i, c in enumerate(names)}
        dropped: Counter = Counter()
        for lineno, e in iter_manifest(path, line_numbers=True):
            k = lookup.get(e["label"])
            if k is None:
                if strict:
                    raise DataError(path, f"line {lineno}: label {e['label']!r} is not in the class set "
                                    f"{list(names)} of {CROP_INFO_NAME}", e["key"])
                dropped[e["label"]] += 1
            elif self.n == self.cap:  # the file grew while we read it
                raise DataError(path, "the manifest changed while it was read; is a crop run writing it?")
            else:
                self._add(e, k)
        return dropped

    def _add(self, e: dict, label: int) -> None:
        n, shared = self.n, self.shared
        self.labels[n] = label
        if e["landmarks"] is not None:
            self.landmarks[n] = e["landmarks"]
            self.has_landmarks[n] = True
        self.image_size[n] = e["image_size"]
        self.bbox[n] = e["bbox"]
        self.handedness[n] = handedness_code(e.get("leading_hand"))
        self.keys[n] = e["key"]
        self.split[n] = shared.setdefault(e["split"], e["split"])
        u = e.get("user_id")
        self.user_id[n] = None if u is None else shared.setdefault(u, u)
        self.crop_paths[n] = os.path.join(self.root, e["crop"])
        self.n = n + 1

    def arrays(self) -> dict[str, np.ndarray]:
        """The columns trimmed to the rows read (without a second full-size copy), plus ``index``."""
        def trim(a: np.ndarray) -> np.ndarray:
            if self.n == self.cap:
                return a
            if a.dtype == object:
                return a[:self.n].copy()  # pointers only
            a.resize((self.n, *a.shape[1:]), refcheck=False)  # in place: nothing else refers to it yet
            return a

        cols = ("keys", "split", "labels", "landmarks", "has_landmarks", "image_size", "bbox", "user_id", "crop_paths",
                "handedness")
        return {c: trim(getattr(self, c)) for c in cols} | {"index": np.arange(self.n, dtype=np.int64)}
