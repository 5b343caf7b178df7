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
from .hagrid import MAX_EXAMPLES, HandRecord
from .images import IMAGE_NOT_FOUND
from .landmarks import normalize_landmarks
from .manifest import CROP_INFO_NAME, MANIFEST_NAME, count_manifest_lines, iter_manifest, read_crop_info

log = logging.getLogger(__name__)


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
        cropped = list(info["class_names"])
        if class_names is not None:
            names = tuple(class_names)
            if not set(names) & set(cropped):
                raise DataError(crops_dir / CROP_INFO_NAME,
                                f"none of the requested classes ({', '.join(names)}) was cropped here "
                                f"(crop classes: {', '.join(cropped)}); crop them or choose another crops folder")
        else:
            names = tuple(cropped)
        lookup = {n: i for i, n in enumerate(names)}
        cap = count_manifest_lines(path)  # an upper bound: blank lines and dropped rows are trimmed below
        keys = np.empty(cap, object)
        split = np.empty(cap, object)
        user_id = np.empty(cap, object)
        crop_paths = np.empty(cap, object)
        labels = np.empty(cap, np.int64)
        lms = np.zeros((cap, 21, 2), np.float32)
        has = np.zeros(cap, bool)
        sizes = np.empty((cap, 2), np.float32)
        boxes = np.empty((cap, 4), np.float32)
        shared: dict[str, str] = {}  # one string object per split / user, not one per row
        root = str(crops_dir)
        dropped: Counter = Counter()
        n = 0
        for lineno, e in iter_manifest(path, line_numbers=True):
            label = e["label"]
            k = lookup.get(label)
            if k is None:
                if class_names is None:
                    raise DataError(path, f"line {lineno}: label {label!r} is not in the class set {list(names)} "
                                    f"of {CROP_INFO_NAME}", e["key"])
                dropped[label] += 1
                continue
            if n == cap:  # the file grew while we read it
                raise DataError(path, "the manifest changed while it was read; is a crop run writing it?")
            labels[n] = k
            if e["landmarks"] is not None:
                lms[n] = e["landmarks"]
                has[n] = True
            sizes[n] = e["image_size"]
            boxes[n] = e["bbox"]
            keys[n] = e["key"]
            split[n] = shared.setdefault(e["split"], e["split"])
            u = e.get("user_id")
            user_id[n] = None if u is None else shared.setdefault(u, u)
            crop_paths[n] = os.path.join(root, e["crop"])
            n += 1
        if n == 0 and dropped:
            raise DataError(path, f"no rows of the requested classes ({', '.join(names)}); "
                            f"the manifest holds {', '.join(sorted(dropped))}")
        missing = [c for c in names if c not in cropped]
        if missing:
            log.warning("%s: class(es) %s were not cropped here: they have no rows", crops_dir, ", ".join(missing))
        if dropped:
            log.info("%s: dropped %d rows of labels outside the class set: %s", path, sum(dropped.values()),
                     ", ".join(f"{c} {m}" for c, m in sorted(dropped.items())))

        def trim(a: np.ndarray) -> np.ndarray:  # drop the unused tail without a second full-size copy
            if n == cap:
                return a
            if a.dtype == object:
                return a[:n].copy()  # pointers only
            a.resize((n, *a.shape[1:]), refcheck=False)  # in place: nothing else refers to it yet
            return a

        return cls(
            class_names=names, keys=trim(keys), split=trim(split), labels=trim(labels), landmarks=trim(lms),
            has_landmarks=trim(has), image_size=trim(sizes), bbox=trim(boxes), user_id=trim(user_id),
            index=np.arange(n, dtype=np.int64), crop_paths=trim(crop_paths), crops_dir=crops_dir,
            meta={"crop_info": info, "source": str(path), "dropped_labels": dict(sorted(dropped.items()))},
        )

    @classmethod
    def from_records(
        cls,
        records: Sequence[HandRecord],
        class_set: ClassSet,
        image_size: Callable[[Path], tuple[int, int]],
    ) -> "HandTable":
        """Build from annotation records; ``image_size(path)`` reads (width, height) (a JPEG header).

        A hand whose image cannot be read (``image_size`` raises :class:`DataError`:
        missing, corrupt) is left out, not fatal: ``meta["skipped"]`` counts them
        by reason, ``meta["skipped_examples"]`` names a few, and one warning is logged.
        """
        n = len(records)
        lms = np.zeros((n, 21, 2), np.float32)
        has = np.zeros(n, bool)
        sizes = np.empty((n, 2), np.float32)
        keep = np.ones(n, bool)
        cache: dict[Path, tuple[int, int] | DataError] = {}
        skipped: Counter = Counter()
        examples: list[str] = []
        for i, r in enumerate(records):
            wh = cache.get(r.image_path)
            if wh is None:
                try:
                    wh = image_size(r.image_path)
                except DataError as e:
                    wh = e
                cache[r.image_path] = wh
            if isinstance(wh, DataError):
                keep[i] = False
                reason = "missing_image" if wh.problem == IMAGE_NOT_FOUND else "corrupt_image"
                skipped[reason] += 1
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
