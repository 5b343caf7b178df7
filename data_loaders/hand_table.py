"""Columnar view of the hands a run works on (one row per hand).

Built from the crop manifest (the usual path: every model then sees the same
hands, rows pair up across models for evaluation) or straight from annotation
records (landmark models can train without cropping). Arrays, not objects, so
550k hands fit in memory and go to the GPU in one copy.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .classes import ClassSet
from .errors import DataError
from .hagrid import HandRecord
from .landmarks import normalize_landmarks

MANIFEST_NAME = "manifest.jsonl"


@dataclass
class HandTable:
    """Per-hand arrays; ``index`` is each row's id in the table it was first built as."""

    class_names: tuple[str, ...]
    keys: np.ndarray  # (N,) object: "<uuid>_<hand>"
    split: np.ndarray  # (N,) object
    labels: np.ndarray  # (N,) int64
    landmarks: np.ndarray  # (N, 21, 2) float32, normalised image coords, zeros where missing
    has_landmarks: np.ndarray  # (N,) bool
    image_size: np.ndarray  # (N, 2) float32 (width, height)
    bbox: np.ndarray  # (N, 4) float32 normalised x, y, w, h
    user_id: np.ndarray  # (N,) object, None when unknown
    index: np.ndarray  # (N,) int64
    crop_paths: np.ndarray | None = None  # (N,) object: absolute paths of crops
    crops_dir: Path | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    # ------------------------------------------------------------------ build
    @classmethod
    def from_manifest(cls, crops_dir: str | Path, class_names: Sequence[str] | None = None) -> "HandTable":
        """Read ``<crops_dir>/manifest.jsonl``; class order from ``crop_info.json`` unless given."""
        from .manifest import read_crop_info, read_manifest  # written by the crop step

        crops_dir = Path(crops_dir)
        path = crops_dir / MANIFEST_NAME
        if not path.is_file():
            raise DataError(path, "crop manifest not found: run `hand-gestures crop` first")
        info = read_crop_info(crops_dir)
        names = tuple(class_names) if class_names is not None else tuple(info["class_names"])
        entries = read_manifest(path)
        lookup = {n: i for i, n in enumerate(names)}
        n = len(entries)
        labels = np.empty(n, np.int64)
        lms = np.zeros((n, 21, 2), np.float32)
        has = np.zeros(n, bool)
        sizes = np.empty((n, 2), np.float32)
        boxes = np.empty((n, 4), np.float32)
        for i, e in enumerate(entries):
            try:
                labels[i] = lookup[e["label"]]
            except KeyError:
                raise DataError(path, f"label {e['label']!r} is not in the class set {list(names)}", e.get("key")) from None
            if e.get("landmarks"):
                lms[i] = e["landmarks"]
                has[i] = True
            sizes[i] = e["image_size"]
            boxes[i] = e["bbox"]
        obj = lambda xs: np.array(xs, dtype=object)  # noqa: E731
        return cls(
            class_names=names,
            keys=obj([e["key"] for e in entries]),
            split=obj([e["split"] for e in entries]),
            labels=labels, landmarks=lms, has_landmarks=has, image_size=sizes, bbox=boxes,
            user_id=obj([e.get("user_id") for e in entries]),
            index=np.arange(n, dtype=np.int64),
            crop_paths=obj([str(crops_dir / e["crop"]) for e in entries]),
            crops_dir=crops_dir,
            meta={"crop_info": info, "source": str(path)},
        )

    @classmethod
    def from_records(
        cls,
        records: Sequence[HandRecord],
        class_set: ClassSet,
        image_size: Callable[[Path], tuple[int, int]],
    ) -> "HandTable":
        """Build from annotation records; ``image_size(path)`` reads (width, height) (a JPEG header)."""
        n = len(records)
        lms = np.zeros((n, 21, 2), np.float32)
        has = np.zeros(n, bool)
        sizes = np.empty((n, 2), np.float32)
        cache: dict[Path, tuple[int, int]] = {}
        for i, r in enumerate(records):
            if r.landmarks is not None:
                lms[i] = r.landmarks
                has[i] = True
            if r.image_path not in cache:
                cache[r.image_path] = image_size(r.image_path)
            sizes[i] = cache[r.image_path]
        obj = lambda xs: np.array(xs, dtype=object)  # noqa: E731
        return cls(
            class_names=tuple(class_set.names),
            keys=obj([r.key for r in records]),
            split=obj([r.split for r in records]),
            labels=np.array([class_set.index(r.label) for r in records], np.int64),
            landmarks=lms, has_landmarks=has, image_size=sizes,
            bbox=np.array([r.bbox for r in records], np.float32).reshape(n, 4),
            user_id=obj([r.user_id for r in records]),
            index=np.arange(n, dtype=np.int64),
        )

    # ------------------------------------------------------------------ views
    def subset(self, mask: np.ndarray) -> "HandTable":
        """Rows where ``mask`` is true (boolean mask or integer indices); ``index`` is kept."""
        pick = lambda a: None if a is None else a[mask]  # noqa: E731
        return replace(
            self, keys=self.keys[mask], split=self.split[mask], labels=self.labels[mask],
            landmarks=self.landmarks[mask], has_landmarks=self.has_landmarks[mask],
            image_size=self.image_size[mask], bbox=self.bbox[mask], user_id=self.user_id[mask],
            index=self.index[mask], crop_paths=pick(self.crop_paths),
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
            out[m] = normalize_landmarks(self.landmarks[m], method, image_size=self.image_size[m], bbox=self.bbox[m])
        return out

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.class_names))
