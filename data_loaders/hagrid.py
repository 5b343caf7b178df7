"""Read HaGRID annotations (v1 and v2 on-disk formats) into one record per hand.

v1: ``<images>/<class>/<uuid>.jpg`` with per-class JSON in ``ann_train_val/``,
``ann_test/`` or ``ann_subsample/``; each record has ``bboxes``, ``labels``,
``landmarks``, ``leading_hand``, ``leading_conf`` and ``user_id``.
v2: ``hagrid_dataset*/<class>/<uuid>.jpg`` with
``hagrid_annotations/{train,val,test}/<class>.json``; landmarks live in
``hand_landmarks`` and ``united_bbox``/``united_label``/``meta`` may be null.
Two extensions written by ``hand-gestures annotate`` (data_loaders/annotate.py):
a per-hand ``handedness`` list ("right"/"left"/null, one per box; it takes
precedence over v1's image-level ``leading_hand``) and ``meta.file``, the
image's file name when it is not ``<uuid>.jpg`` (e.g. ``<uuid>.png``).

Bad records never crash a caller deep in a loop: an unreadable annotation
file raises :class:`DataError` naming it; a bad hand is skipped and logged
(file, uuid, hand, reason) in :attr:`HagridAnnotations.skipped`; a hand kept
without its malformed landmarks in ``degraded``; hands outside the class set
(e.g. ``no_gesture`` unless asked for) are only counted, in ``excluded``.
"""
from __future__ import annotations

import contextlib
import gc
import itertools
import json
import logging
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import orjson

from common.errors import DataError

from .classes import KNOWN_LABELS, NO_GESTURE, ClassSet, make_class_set
from .hand_graph import NUM_NODES
from .images import IMAGE_NOT_FOUND
from .splits import UNKNOWN_GROUP_SPLIT, split_by_subject

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
V1_ANNOTATION_DIRS = {"ann_train_val": "train_val", "ann_test": "test", "ann_subsample": "subsample"}
MAX_EXAMPLES = 5  # named examples kept per skip reason
IMAGE_SEARCH_DEPTH = 3  # folder levels below the root searched for class image folders
#: How far (in image widths/heights) a box may reach past the image and still be cropped. Beyond it
#: the box is an annotation error, and its padded square would be huge (GBs for [-5, -5, 10, 10]).
BOX_MARGIN = 0.5
MAX_BOX_SIDE = 1 + BOX_MARGIN  # w and h, normalised
#: Image files found in class folders holding several folders' images; one folder per class is resolved
#: as ``<uuid>.jpg`` (no listing, no stat) unless the record names its file (``meta.file``).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
HANDEDNESS_VALUES = ("right", "left", None)


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


class SkipEntry(NamedTuple):
    """One skipped (or degraded) hand: where, which, why."""

    file: str
    uuid: str | None
    hand: int | None
    reason: str
    detail: str


@dataclass
class SkipLog:
    """Counts of skipped (or degraded) hands by reason, with a few named examples.

    ``entries`` keeps every hand (for ``skipped.csv``); it is None for logs that
    only count (e.g. hands excluded by the class set, which are not errors).
    """

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    entries: list[SkipEntry] | None = field(default_factory=list)

    def add(self, reason: str, path: str | Path, uuid: str | None = None, detail: str = "", n: int = 1,
            hand: int | None = None) -> None:
        """Count ``n`` hands (hands ``0..n-1`` of the image when ``n > 1`` and ``hand`` is None)."""
        self.counts[reason] += n
        ex = self.examples[reason]
        if len(ex) < MAX_EXAMPLES:
            ex.append(f"{path}" + (f" [{uuid}]" if uuid else "") + (f" hand {hand}" if hand is not None else "")
                      + (f": {detail}" if detail else ""))
        if self.entries is not None:
            hands = [hand] if n == 1 or hand is not None else range(n)
            self.entries.extend(SkipEntry(str(path), uuid, h, reason, detail) for h in hands)

    def total(self) -> int:
        return sum(self.counts.values())

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
    excluded: SkipLog = field(default_factory=lambda: SkipLog(entries=None))  # outside the class set (not errors)

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
        "or ann_train_val/, ann_test/, ann_subsample/ (v1); see docs/getting_hagrid.md",
    )


def dataset_labels(root: str | Path) -> list[str]:
    """The gesture labels a dataset's annotation files are named after (sorted, ``no_gesture`` left out):
    what ``--classes dataset`` stands for, e.g. a user's own gestures written by ``hand-gestures annotate``."""
    root = Path(root)
    fmt = detect_format(root)
    dirs = [root / "hagrid_annotations"] if fmt == "v2" else [root / d for d in V1_ANNOTATION_DIRS]
    labels = {f.stem for d in dirs if d.is_dir() for f in d.rglob("*.json")} - {NO_GESTURE}
    if not labels:
        raise DataError(root, "--classes dataset: no <label>.json annotation files found")
    return sorted(labels)


def _image_dirs(root: Path, classes: Iterable[str], max_depth: int) -> dict[str, list[Path]]:
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
        self.dirs = _image_dirs(root, classes, IMAGE_SEARCH_DEPTH)
        self._members: dict[str, dict[str, Path]] = {}
        self.unfound: Counter = Counter()  # class -> images of a class no folder was found for

    def resolver(self, cls: str) -> Callable[..., Path]:
        """A ``(uuid, file_name=None) -> path`` function for one class folder (resolved once per annotation
        file); ``file_name`` is the record's ``meta.file`` (an image that is not ``<uuid>.jpg``)."""
        dirs = self.dirs.get(cls)
        if not dirs:
            return self._unfound_resolver(cls)
        if len(dirs) == 1:
            d = dirs[0]
            return lambda uuid, name=None: d / (name or f"{uuid}.jpg")
        members = self._members.get(cls)
        if members is None:
            members = {}
            for d in reversed(dirs):  # first folder wins (written last)
                found: dict[str, Path] = {}
                for e in os.scandir(d):  # within a folder, <uuid>.jpg before <uuid>.jpeg/.png
                    stem, dot, ext = e.name.rpartition(".")
                    if dot and f".{ext.lower()}" in IMAGE_SUFFIXES and (ext == "jpg" or stem not in found):
                        found[stem] = Path(e.path)
                members.update(found)
            self._members[cls] = members
        first = dirs[0]
        return lambda uuid, name=None: members.get(uuid) or first / (name or f"{uuid}.jpg")

    def _unfound_resolver(self, cls: str) -> Callable[..., Path]:
        """Paths where a class without a folder would sit (beside the other classes' folders), counted
        so :meth:`unfound_warnings` can say what was searched; opening them reports a missing image."""
        expected = self.image_parents()[:1] or [self.root]
        folder = expected[0] / cls

        def path(uuid: str, name: str | None = None) -> Path:
            self.unfound[cls] += 1
            return folder / (name or f"{uuid}.jpg")
        return path

    def image_parents(self) -> list[Path]:
        """The folders that hold the class folders found."""
        return sorted({d.parent for ds in self.dirs.values() for d in ds})

    def unfound_warnings(self) -> list[str]:
        """What was searched for the classes whose images were wanted but whose folder was not found:
        one line per class, or one line in all when no class folder was found."""
        searched = f"searched up to {IMAGE_SEARCH_DEPTH} levels below {self.root} for"
        found = self.image_parents()
        if not found and self.unfound:
            return [f"{self.root}: no image folders found ({sum(self.unfound.values())} images of "
                    f"{len(self.unfound)} classes will be missing): {searched} <class>/, train_val_<class>/ or "
                    "test_<class>/"]
        where = f"; the other classes' folders are in {', '.join(map(str, found))}"
        return [f"{self.root}: no image folder for class {cls!r} ({n} images will be missing): {searched} "
                f"{cls}/, train_val_{cls}/ or test_{cls}/{where}" for cls, n in sorted(self.unfound.items())]


# --------------------------------------------------------------------------- #
# parsing
# --------------------------------------------------------------------------- #
def read_annotation_file(path: Path) -> dict:
    """Parse one per-class annotation file, raising :class:`DataError` on any problem.

    orjson (fast) first; a file it rejects is retried with the standard library, which also
    reads the ``NaN`` and ``Infinity`` that Python's ``json.dumps`` writes (the hands holding
    them are skipped or degraded later, one by one, instead of losing the whole file).
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "annotation file not found") from None
    except IsADirectoryError:
        raise DataError(path, "annotation path is a directory") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise DataError(path, f"malformed or truncated JSON ({e})") from None
    if not isinstance(data, dict):
        raise DataError(path, f"expected a JSON object {{uuid: record}}, got {type(data).__name__}")
    return data


def _parse_landmarks(raw: object) -> np.ndarray | None | str:
    """``(21, 2)`` float32 from 21 points ``[x, y]`` (more coordinates, e.g. MediaPipe's ``z``, are
    dropped), None for an empty list, or a string saying what is wrong."""
    if raw is None or (isinstance(raw, list) and len(raw) == 0):
        return None
    if type(raw) is not list or len(raw) != NUM_NODES:
        n = f"{len(raw)} points" if type(raw) is list else f"a {type(raw).__name__}"
        return f"expected {NUM_NODES}x2 landmarks, got {n}"
    bad = next((i for i, pt in enumerate(raw) if type(pt) is not list or len(pt) < 2), None)
    if bad is not None:
        return f"landmark {bad} is {raw[bad]!r}, not a point [x, y] or [x, y, z]"
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf is reported below
            arr = np.array([pt[:2] for pt in raw], dtype=np.float32)
    except (TypeError, ValueError):
        return "landmarks are not numbers"
    if arr.shape != (NUM_NODES, 2):
        return "landmarks are not numbers"
    if not np.isfinite(arr).all():
        return "landmarks contain NaN or inf"
    return arr


def _landmark_array(raws: list) -> np.ndarray | None:
    """``(n, 21, 2)`` float32 from ``n`` landmark lists, or None when any is malformed.

    ``np.fromiter`` over the flattened floats is ~2.5x faster than ``np.array``
    on nested lists (the largest cost of loading full HaGRID); it is only used
    once every hand is known to be 21 points of the same length.
    """
    flat = itertools.chain.from_iterable
    try:
        if set(map(len, raws)) != {NUM_NODES}:
            return None
        dims = set(map(len, flat(raws)))
        if len(dims) != 1 or (k := dims.pop()) < 2:
            return None
        with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf is reported by the caller
            arr = np.fromiter(flat(flat(raws)), np.float32, count=len(raws) * NUM_NODES * k)
    except (TypeError, ValueError):
        return None
    return np.ascontiguousarray(arr.reshape(-1, NUM_NODES, k)[:, :, :2])


def _attach_landmarks(recs: list[HandRecord], raws: list, source: Path, degraded: SkipLog) -> None:
    """Convert a whole file's landmark lists at once (hand by hand only when some are malformed)."""
    if not recs:
        return
    arr = _landmark_array(raws)
    if arr is None:
        for r, raw in zip(recs, raws):
            lm = _parse_landmarks(raw)
            if isinstance(lm, str):
                degraded.add("malformed_landmarks", source, r.uuid, lm, hand=r.hand)
            else:
                r.landmarks = lm
        return
    finite = np.isfinite(arr).all(axis=(1, 2))
    for r, lm, ok in zip(recs, arr, finite.tolist()):
        if ok:
            r.landmarks = lm  # a view into the file's array: one allocation per file
        else:
            degraded.add("malformed_landmarks", source, r.uuid, "landmarks contain NaN or inf", hand=r.hand)


def box_far_outside(x: float, y: float, w: float, h: float) -> str | None:
    """Why a normalised box reaches implausibly far past the image (see ``BOX_MARGIN``), or None."""
    if x < -BOX_MARGIN or y < -BOX_MARGIN or x + w > 1 + BOX_MARGIN or y + h > 1 + BOX_MARGIN:
        return f"box reaches more than {BOX_MARGIN:g} image sizes past the image"
    if w > MAX_BOX_SIDE or h > MAX_BOX_SIDE:
        return f"box is more than {MAX_BOX_SIDE:g} image sizes wide or high"
    return None


def _parse_box(raw: object) -> tuple[float, float, float, float] | str:
    """A normalised ``(x, y, w, h)`` box, or the reason it cannot be used."""
    try:
        x, y, w, h = raw  # type: ignore[misc]
        x, y, w, h = float(x), float(y), float(w), float(h)
    except (TypeError, ValueError):
        return "malformed_box"
    if not (x - x == 0 and y - y == 0 and w - w == 0 and h - h == 0):  # NaN or inf
        return "malformed_box"
    if w <= 0 or h <= 0:
        return "zero_size_box"
    if x >= 1 or y >= 1 or x + w <= 0 or y + h <= 0 or box_far_outside(x, y, w, h):
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
    excluded: SkipLog | None = None,
    seen: dict[str, str] | None = None,
    strings: dict[str, str] | None = None,
) -> list[HandRecord]:
    """Turn one annotation file's ``{uuid: record}`` into hand records.

    ``seen`` maps uuids already read (from other files) to their file, so an
    image annotated twice is skipped rather than cropped twice under one key.
    ``strings`` shares repeated strings (user ids) across files to save memory.
    This loop runs ~550k times on full HaGRID: keep per-record work minimal.
    """
    f = _FileParser(source, split, class_set, locator.resolver(image_class), landmark_key, skipped, degraded,
                    excluded if excluded is not None else SkipLog(entries=None), {} if strings is None else strings)
    for uuid, rec in data.items():
        boxes_labels = f.checked(uuid, rec, seen)
        if boxes_labels is not None:
            f.add_image(uuid, rec, *boxes_labels)
    _attach_landmarks(f.lm_recs, f.lm_raws, source, degraded)
    return f.out


class _FileParser:
    """The steps of :func:`parse_records`, sharing one annotation file's state: where its hands come
    from, the logs they are counted in, and the hands (and landmark lists) read so far."""

    def __init__(self, source: Path, split: str, class_set: ClassSet, image_path_for: Callable[..., Path],
                 landmark_key: str, skipped: SkipLog, degraded: SkipLog, excluded: SkipLog,
                 strings: dict[str, str]) -> None:
        self.source, self.src, self.split = source, str(source), split
        self.names = {n: n for n in class_set.names}  # canonical label strings: one object per class
        self.image_path_for, self.landmark_key = image_path_for, landmark_key
        self.skipped, self.degraded, self.excluded, self.strings = skipped, degraded, excluded, strings
        self.out: list[HandRecord] = []
        self.lm_recs: list[HandRecord] = []
        self.lm_raws: list = []

    def checked(self, uuid: str, rec: object, seen: dict[str, str] | None) -> tuple[list, list] | None:
        """``(boxes, labels)`` of a well-formed record not read before, else None (counted as skipped)."""
        if type(rec) is not dict:
            self.skipped.add("malformed_record", self.source, uuid, "record is not an object")
            return None
        boxes, labels = rec.get("bboxes"), rec.get("labels")
        if type(boxes) is not list or type(labels) is not list or len(boxes) != len(labels):
            n = len(boxes) if isinstance(boxes, list) else 1
            self.skipped.add("malformed_record", self.source, uuid, "bboxes/labels missing or of different lengths",
                             n=max(n, 1))
            return None
        if seen is not None:
            if uuid in seen:
                self.skipped.add("duplicate_image", self.source, uuid, f"already annotated in {seen[uuid]}",
                                 n=max(len(boxes), 1))
                return None
            seen[uuid] = self.src
        return boxes, labels

    def landmark_lists(self, rec: dict, n_boxes: int) -> tuple[list | None, str]:
        """The record's per-hand landmark lists (None when absent), and why they were dropped (or "")."""
        lms = rec.get(self.landmark_key)
        if lms is None and self.landmark_key == "hand_landmarks":
            lms = rec.get("landmarks")  # tolerate v1-style key in v2 files
        if type(lms) is not list:
            return None, (f"landmarks field is a {type(lms).__name__}, not a list" if lms is not None else "")
        if not lms:
            return None, ""
        if len(lms) != n_boxes:
            return None, f"{len(lms)} landmark sets for {n_boxes} boxes"
        return lms, ""

    def shared(self, value: object) -> str | None:
        """A user id or leading hand as one shared string (~15 images per person), None when empty."""
        if not value:
            return None
        return self.strings.setdefault(value, value) if type(value) is str else str(value)

    def handedness(self, uuid: str, rec: dict, n_boxes: int) -> list[str | None] | None:
        """The record's per-hand ``handedness`` list (None when absent or unusable: the image-level
        ``leading_hand`` then applies); a malformed list or entry is counted in ``degraded``."""
        raw = rec.get("handedness")
        if raw is None:
            return None
        if type(raw) is not list or len(raw) != n_boxes:
            what = f"{len(raw)} entries for {n_boxes} boxes" if type(raw) is list else f"a {type(raw).__name__}"
            self.degraded.add("malformed_handedness", self.source, uuid, f"handedness is {what}", n=n_boxes)
            return None
        out: list[str | None] = []
        for i, v in enumerate(raw):
            if v not in HANDEDNESS_VALUES or (v is not None and type(v) is not str):
                self.degraded.add("malformed_handedness", self.source, uuid,
                                  f"handedness {v!r} is not 'right', 'left' or null", hand=i)
                v = None
            out.append(v)
        return out

    def add_image(self, uuid: str, rec: dict, boxes: list, labels: list) -> None:
        """Add the hands of one image whose label is in the class set and whose box is usable."""
        source = self.source
        lms, lm_problem = self.landmark_lists(rec, len(boxes))
        user_id, leading = self.shared(rec.get("user_id")), self.shared(rec.get("leading_hand"))
        handed = self.handedness(uuid, rec, len(boxes)) if "handedness" in rec else None
        image_path = None
        for i, label in enumerate(labels):
            canon = self.names.get(label) if type(label) is str else None
            if canon is None:
                if type(label) is str and label in KNOWN_LABELS:
                    self.excluded.add(f"excluded_label:{label}", source, uuid, hand=i)
                else:
                    self.skipped.add("unknown_label", source, uuid, f"label {label!r}", hand=i)
                continue
            box = _parse_box(boxes[i])
            if type(box) is str:
                self.skipped.add(box, source, uuid, f"box {boxes[i]!r}", hand=i)
                continue
            if image_path is None:
                image_path = self.image_path_for(uuid, _file_name(rec.get("meta")))
            hand_side = handed[i] if handed is not None else leading if canon != NO_GESTURE else None
            r = HandRecord(uuid, image_path, self.split, canon, i, box, None, user_id, hand_side, self.src)
            self.out.append(r)
            if lms is not None:
                raw = lms[i]
                if raw:
                    self.lm_recs.append(r)
                    self.lm_raws.append(raw)
                elif raw is not None and type(raw) is not list:
                    self.degraded.add("malformed_landmarks", source, uuid, f"landmarks are a {type(raw).__name__}",
                                      hand=i)
            elif lm_problem:
                self.degraded.add("malformed_landmarks", source, uuid, lm_problem, hand=i)


def _file_name(meta: object) -> str | None:
    """``meta.file`` when it is a plain file name (no folder part), else None (``<uuid>.jpg``)."""
    if type(meta) is not dict:
        return None
    name = meta.get("file")
    if type(name) is not str or not name or name in (".", "..") or "/" in name or "\\" in name:
        return None
    return name


def with_image_sizes(records: Iterable[HandRecord], read_size: Callable[[Path], tuple[int, int]]
                     ) -> Iterator[tuple[HandRecord, tuple[int, int] | DataError]]:
    """Each record with its image's ``(width, height)`` from ``read_size`` (a header read, once per
    image), or the :class:`DataError` that says why the image cannot be read."""
    sizes: dict[Path, tuple[int, int] | DataError] = {}
    for r in records:
        wh = sizes.get(r.image_path)
        if wh is None:
            try:
                wh = read_size(r.image_path)
            except DataError as e:
                wh = e
            sizes[r.image_path] = wh
        yield r, wh


def unreadable_image_reason(error: DataError) -> str:
    """The skip reason of a hand whose image cannot be read: ``missing_image`` or ``corrupt_image``."""
    return "missing_image" if error.problem == IMAGE_NOT_FOUND else "corrupt_image"


# --------------------------------------------------------------------------- #
# public entry point
# --------------------------------------------------------------------------- #
@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC: building ~10M small containers otherwise triggers
    repeated full collections that make loading 3x slower (nothing here is cyclic)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


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
    split into train/val by ``user_id`` (``val_fraction``; each user's split is
    a seeded hash of the user_id alone, so it does not change with the classes
    loaded); a v1 ``ann_subsample`` alone is split into train/val/test the same way.
    ``v1_annotations`` picks ``"full"`` (train_val + test), ``"subsample"`` or
    ``"auto"`` (full when present). ``splits`` keeps only those splits (an
    unknown name raises :class:`DataError`).
    """
    with _gc_paused():
        return _load(root, class_set, splits=splits, val_fraction=val_fraction, test_fraction=test_fraction,
                     seed=seed, v1_annotations=v1_annotations)


def _load(root, class_set, *, splits, val_fraction, test_fraction, seed, v1_annotations) -> HagridAnnotations:
    root = Path(root)
    class_set = class_set or make_class_set()
    fmt = detect_format(root)
    # images are looked up for every class an annotation file may be named after
    file_classes = sorted(set(class_set.names) | KNOWN_LABELS)
    locator = _ImageLocator(root, file_classes)
    skipped, degraded, excluded = SkipLog(), SkipLog(), SkipLog(entries=None)
    seen: dict[str, str] = {}
    strings: dict[str, str] = {}
    records: list[HandRecord] = []
    warnings: list[str] = []

    def read_dir(ann_dir: Path, split: str, landmark_key: str) -> list[HandRecord]:
        out: list[HandRecord] = []
        files = sorted(ann_dir.glob("*.json"))
        if not files:
            warnings.append(f"{ann_dir}: no annotation files")
        for f in files:
            cls = f.stem
            if cls in KNOWN_LABELS and cls not in class_set and NO_GESTURE not in class_set:
                # every hand in it is `cls` or no_gesture, none wanted: do not parse it
                excluded.add(f"excluded_file:{cls}", f, detail="class not in the class set; file not read")
                continue
            out.extend(parse_records(
                read_annotation_file(f), source=f, image_class=cls, split=split, class_set=class_set,
                locator=locator, landmark_key=landmark_key, skipped=skipped, degraded=degraded,
                excluded=excluded, seen=seen, strings=strings,
            ))
        return out

    if fmt == "v2":
        ann_root = root / "hagrid_annotations"
        present = [s for s in SPLITS if (ann_root / s).is_dir()]
        if not present:
            raise DataError(ann_root, "no train/, val/ or test/ folder")
        _check_splits(root, splits, present)
        for split in present:
            if splits is None or split in splits:
                records.extend(read_dir(ann_root / split, split, "hand_landmarks"))
    else:
        have_full = (root / "ann_train_val").is_dir() or (root / "ann_test").is_dir()
        use = v1_annotations if v1_annotations != "auto" else ("full" if have_full else "subsample")
        if use == "full":
            _check_splits(root, splits, ["train", "val", "test"])
            if (root / "ann_train_val").is_dir() and (splits is None or {"train", "val"} & set(splits)):
                tv = read_dir(root / "ann_train_val", "train_val", "landmarks")
                warnings.extend(_assign_subject_splits(tv, {"train": 1 - val_fraction, "val": val_fraction}, seed))
                records.extend(tv)
            if (root / "ann_test").is_dir() and (splits is None or "test" in splits):
                records.extend(read_dir(root / "ann_test", "test", "landmarks"))
        elif use == "subsample":
            if not (root / "ann_subsample").is_dir():
                raise DataError(root, "v1_annotations='subsample' but ann_subsample/ is missing")
            _check_splits(root, splits, ["train", "val", "test"])
            sub = read_dir(root / "ann_subsample", "subsample", "landmarks")
            fr = {"train": 1 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction}
            warnings.extend(_assign_subject_splits(sub, fr, seed))
            records.extend(sub)
        else:
            raise ValueError(f"v1_annotations must be 'auto', 'full' or 'subsample', got {v1_annotations!r}")
        if splits is not None:
            records = [r for r in records if r.split in splits]
    warnings.extend(locator.unfound_warnings())
    found = {r.label for r in records}
    empty = [c for c in class_set.names if c not in found]
    if records and empty:
        warnings.append(f"no hands of class(es) {', '.join(empty)} were found")
    for w in warnings:
        log.warning(w)
    return HagridAnnotations(root=root, format=fmt, class_set=class_set, records=records,
                             skipped=skipped, degraded=degraded, warnings=warnings, excluded=excluded)


def _check_splits(root: Path, splits: Sequence[str] | None, available: Sequence[str]) -> None:
    if splits is None:
        return
    if isinstance(splits, str):
        raise TypeError("splits must be a sequence of split names, not a string")
    unknown = [s for s in splits if s not in available]
    if unknown:
        raise DataError(root, f"unknown split(s) {', '.join(unknown)}; this dataset has {', '.join(available)}")


def _assign_subject_splits(records: list[HandRecord], fractions: dict[str, float], seed: int) -> list[str]:
    """Set ``split`` on records in place, by subject (a function of user_id and seed); returns warnings."""
    assignment, n_unknown = split_by_subject([r.user_id for r in records], fractions, seed=seed)
    for r, s in zip(records, assignment):
        r.split = s
    warnings = []
    if n_unknown:
        n_images = len({r.uuid for r in records if r.user_id is None})
        warnings.append(f"{n_images} images ({n_unknown} hands) have no user_id; they form one group, "
                        f"kept in '{UNKNOWN_GROUP_SPLIT}' so they cannot leak into an evaluation split")
    got = set(assignment)
    n_users = len({r.user_id for r in records if r.user_id is not None})
    empty = [s for s, f in fractions.items() if f > 0 and s not in got]
    if records and empty:
        warnings.append(f"split(s) {', '.join(empty)} got no hands: each of the {n_users} user_ids is placed by "
                        f"a seeded hash (seed {seed}), too few users to fill every split")
    return warnings
