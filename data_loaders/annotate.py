"""``hand-gestures annotate``: an image folder becomes a HaGRID v2 dataset the rest of the pipeline reads.

Three modes (docs/annotate.md):

* photos (default): ``<root>/[<split>/]<label>/<name>.(jpg|jpeg|png)``; MediaPipe finds the hands, the box
  model gives each a box; the gesture hand is picked by :data:`DEFAULT_GESTURE_HAND_RULE` (the others are
  ``no_gesture``); an image with no hand gets no record (counted and listed);
* crops (``crops=True``): each image is one hand; its box is the whole image, and the landmarks come from a
  detection on a canvas padded around the crop (the palm detector needs context); no hand found -> the
  record is kept with empty landmarks (image models use it), counted per class;
* hagrid (``hagrid=ROOT``): an existing HaGRID v2 dataset gets a per-hand ``handedness`` list (detections
  matched to the official boxes) and nothing else; its image folders are linked.

Output: ``<out>/hagrid_annotations/<split>/<label>.json`` and ``<out>/hagrid_dataset/<label>/<uuid><ext>``
(symlinks to the originals; a hard link, then a copy with a warning, when the file system refuses), plus
``annotate_report.csv`` (every image skipped or without a hand, with the reason) and ``annotate_info.json``
(settings and counts). Detections are cached per image in ``<out>/.annotate_cache/<mode>_<hash>.jsonl``
(one line per image, keyed by the relative path, size and mtime; a torn last line is ignored), so a rerun
detects only new or changed images.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import orjson

from common.errors import DataError, UsageError
from common.files import append_line, atomic_write_bytes, atomic_write_text

from .box_model import DEFAULT_BOX_MODEL, box_iou, greedy_match
from .classes import NO_GESTURE
from .detect import DetectorConfig
from .hagrid import SPLITS, _ImageLocator, detect_format, read_annotation_file
from .images import open_rgb
from .splits import split_by_subject

# --------------------------------------------------------------------------- defaults (all in one place)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.1
DEFAULT_SEED = 0
DEFAULT_MAX_HANDS = 2
#: How the gesture hand is picked among several detected hands (the smallest key wins):
#: wrist = wrist landmark y, top = box top, centre = box centre y (all "the higher hand"), largest = box area.
GESTURE_HAND_RULES = ("wrist", "top", "centre", "largest")
DEFAULT_GESTURE_HAND_RULE = "centre"  # measured: docs/annotate.md (tools/measure_gesture_hand_rule.py)
#: Crops mode: the crop is centred on a square canvas this many times its longer side, filled with "edge"
#: (the crop's border pixels replicated) or "grey" (128). Tried on the first 10 crops of each class of
#: ../shared/hagrid_crops (190): a hand with IoU >= 0.3 found in 69.5 % (grey) / 88.9 % (edge) at 2x,
#: 79.5 / 91.1 % at 3x, edge 94.7 % at 4x, 92.1 % at 5x, 90.0 % at 6x.
CANVAS_SCALE = 4.0
CANVAS_FILLS = ("edge", "grey")
DEFAULT_CANVAS_FILL = "edge"
#: Crops mode: a detection is the crop's hand when its box overlaps the crop by at least this IoU.
CROP_MIN_IOU = 0.3
#: hagrid mode matches detections to official boxes with box_model.greedy_match at box_model.MATCH_IOU.
ANNOTATIONS_DIRNAME = "hagrid_annotations"
IMAGES_DIRNAME = "hagrid_dataset"
CACHE_DIRNAME = ".annotate_cache"
CACHE_FORMAT = 1  # bump when a cache line's meaning changes
REPORT_NAME = "annotate_report.csv"
INFO_NAME = "annotate_info.json"
LEAK_WARNING = ("warning: no --user-ids or --group-by: images are split one by one, so one person's photos land in "
                "several splits; this leaks subjects and overstates accuracy")


@dataclass(frozen=True)
class AnnotateConfig:
    """Every setting of an annotate run; the CLI's options map one to one onto these fields."""

    out: Path
    images: Path | None = None  # --images ROOT (photos, or crops with crops=True)
    hagrid: Path | None = None  # --hagrid ROOT: add handedness to an existing HaGRID v2 dataset
    crops: bool = False  # --crops
    split: str | None = None  # --split: everything in one split
    user_ids: Path | None = None  # --user-ids CSV: path-or-stem,user_id
    group_by: str | None = None  # --group-by REGEX: its first capture group on the relative path
    val_fraction: float = DEFAULT_VAL_FRACTION
    test_fraction: float = DEFAULT_TEST_FRACTION
    seed: int = DEFAULT_SEED
    max_hands: int = DEFAULT_MAX_HANDS
    gesture_hand: str = DEFAULT_GESTURE_HAND_RULE
    canvas_fill: str = DEFAULT_CANVAS_FILL
    workers: int | None = None  # None: one per CPU core
    detector: DetectorConfig = DetectorConfig()
    progress: bool = True

    @property
    def mode(self) -> str:
        return "hagrid" if self.hagrid is not None else "crops" if self.crops else "photos"

    def validate(self) -> None:
        """A bad combination or value is a :class:`UsageError` naming the option."""
        if (self.images is None) == (self.hagrid is None):
            raise UsageError("give --images ROOT or --hagrid ROOT (one of the two)")
        if self.hagrid is not None and (self.crops or self.split or self.user_ids or self.group_by):
            raise UsageError("--hagrid keeps the dataset's own splits and user ids: --crops, --split, --user-ids "
                             "and --group-by do not apply")
        if self.user_ids is not None and self.group_by is not None:
            raise UsageError("give --user-ids or --group-by, not both")
        if self.split is not None and self.split not in SPLITS:
            raise UsageError(f"--split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1):
            raise UsageError("--val-fraction and --test-fraction must be in [0, 1) and sum to less than 1")
        if self.gesture_hand not in GESTURE_HAND_RULES:
            raise UsageError(f"--gesture-hand must be one of {', '.join(GESTURE_HAND_RULES)}")
        if self.canvas_fill not in CANVAS_FILLS:
            raise UsageError(f"--canvas-fill must be one of {', '.join(CANVAS_FILLS)}")
        if self.max_hands < 1:
            raise UsageError("--max-hands must be at least 1")
        if self.group_by is not None:
            try:
                re.compile(self.group_by)
            except re.error as e:
                raise UsageError(f"--group-by is not a regular expression ({e})") from None

    def detector_config(self) -> DetectorConfig:
        """Static image mode; one hand more than ``max_hands`` in photos mode, so crowded images are seen."""
        extra = 1 if self.mode == "photos" else 0
        return dataclasses.replace(self.detector, static_image_mode=True, max_num_hands=self.max_hands + extra)


# --------------------------------------------------------------------------- input images
@dataclass
class ImageItem:
    """One input image and what annotate learns about it."""

    rel: str  # path relative to the input root, "/"-separated (the cache key, the record's meta.source)
    path: Path
    label: str
    split: str | None  # from a split folder, else assigned
    uuid: str = ""
    user_id: str | None = None
    record: dict | None = None  # hagrid mode: the official record


@dataclass
class Issue:
    """One line of ``annotate_report.csv``."""

    file: str
    label: str
    split: str
    issue: str  # unreadable | no_hand | too_many_hands | no_landmarks | ignored | copied
    detail: str = ""


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _subdirs(d: Path) -> list[os.DirEntry]:
    return sorted((e for e in os.scandir(d) if e.is_dir() and not e.name.startswith(".")), key=lambda e: e.name)


def scan_images(root: Path, skip: Path | None = None) -> tuple[list[ImageItem], list[Issue]]:
    """The images of ``<root>/<label>/`` or ``<root>/<split>/<label>/`` (split folders when every top folder is
    a split name), sorted; images elsewhere are listed as ignored. ``skip``: a folder not to enter (the output)."""
    if not root.is_dir():
        raise DataError(root, "image folder does not exist")
    tops = [e for e in _subdirs(root) if skip is None or Path(e.path).resolve() != skip]
    names = {e.name for e in tops}
    if names & set(SPLITS) and not names <= set(SPLITS):
        raise DataError(root, f"mixes split folders ({', '.join(sorted(names & set(SPLITS)))}) with label folders "
                        f"({', '.join(sorted(names - set(SPLITS)))}); use <root>/<label>/ or <root>/<split>/<label>/")
    layout = [(e.name, Path(e.path)) for e in tops] if names and names <= set(SPLITS) else [(None, root)]
    items, issues = [], []
    for split, base in layout:
        issues += [Issue(_rel(root, base / f), "", split or "", "ignored", "not in a label folder")
                   for f in sorted(os.listdir(base)) if _is_image(f)]
        for lab in _subdirs(base):
            for e in sorted(os.scandir(lab.path), key=lambda e: e.name):
                if e.is_file() and _is_image(e.name):
                    items.append(ImageItem(_rel(root, Path(e.path)), Path(e.path), lab.name, split))
                elif e.is_dir():
                    issues.append(Issue(_rel(root, Path(e.path)), lab.name, split or "", "ignored",
                                        "a folder inside a label folder (not searched)"))
    if not items:
        raise DataError(root, "no images (.jpg, .jpeg, .png) in <root>/<label>/ or <root>/<split>/<label>/")
    return items, issues


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def assign_uuids(items: Sequence[ImageItem]) -> None:
    """uuid = the file stem; a stem used by two images anywhere (uuids must be unique across labels: the
    reader skips a uuid it has seen) gets ``_<8 hex of a hash of the relative path>`` on every image."""
    stems = Counter(Path(it.rel).stem for it in items)
    for it in items:
        stem = Path(it.rel).stem
        it.uuid = stem if stems[stem] == 1 else f"{stem}_{hashlib.blake2b(it.rel.encode(), digest_size=4).hexdigest()}"


def read_user_ids(path: Path) -> dict[str, str]:
    """``{path-or-stem: user_id}`` from a two-column CSV (a header row ``...,user_id`` is skipped)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DataError(path, f"cannot read the user id file ({e.strerror or e})") from None
    out = {}
    for n, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) < 2 or not row[0].strip():
            raise DataError(path, f"line {n}: expected path-or-stem,user_id, got {row!r}")
        if n == 1 and row[1].strip().lower() == "user_id":
            continue
        out[row[0].strip().replace("\\", "/")] = row[1].strip() or None
    return out


def _lookup(mapping: dict[str, str], item: ImageItem) -> str | None:
    """An image's entry: by relative path, path without the split folder, file name, then stem."""
    parts = item.rel.split("/")
    for key in (item.rel, "/".join(parts[1:]), parts[-1], Path(parts[-1]).stem):
        if key in mapping:
            return mapping[key]
    return None


def assign_splits(items: Sequence[ImageItem], cfg: AnnotateConfig) -> list[str]:
    """Set ``split`` and ``user_id`` (see docs/annotate.md, "Splits"); returns the warnings to print."""
    mapping = read_user_ids(cfg.user_ids) if cfg.user_ids is not None else None
    pattern = re.compile(cfg.group_by) if cfg.group_by is not None else None
    warnings = []
    for it in items:
        it.user_id = _lookup(mapping, it) if mapping is not None else _group(pattern, it.rel) if pattern else None
    if (mapping is not None or pattern is not None) and (n := sum(it.user_id is None for it in items)):
        how = "have no entry in --user-ids" if mapping is not None else "do not match --group-by"
        warnings.append(f"{n} of {len(items)} images {how}; they go to the train split")
    if any(it.split for it in items):
        if cfg.split is not None:
            raise UsageError("the images are already in split folders; drop --split")
        return warnings
    if cfg.split is not None:
        for it in items:
            it.split = cfg.split
        return warnings
    fractions = {"train": 1 - cfg.val_fraction - cfg.test_fraction, "val": cfg.val_fraction,
                 "test": cfg.test_fraction}
    grouped = mapping is not None or pattern is not None
    groups = [it.user_id for it in items] if grouped else [it.rel for it in items]
    for it, s in zip(items, split_by_subject(groups, fractions, seed=cfg.seed)[0]):
        it.split = s
    warnings += _fill_empty_splits(items, groups) if grouped else []
    return warnings + ([] if grouped else [LEAK_WARNING])


def _fill_empty_splits(items: Sequence[ImageItem], groups: Sequence[str | None]) -> list[str]:
    """With a few people, hashing each to a split often leaves val or test without anyone, and training
    then has nothing to validate on: move the smallest train group into each empty evaluation split (needs
    3 groups or more), and say so."""
    sizes = Counter(g for g in groups if g is not None)
    if len(sizes) < 3:
        return [f"only {len(sizes)} group(s) of people: val/test cannot be subject-disjoint; use split folders"]
    split_of = {g: it.split for it, g in zip(items, groups) if g is not None}  # one split per group
    out = []
    for split in ("val", "test"):
        train = sorted((n, g) for g, n in sizes.items() if split_of[g] == "train")
        if split in split_of.values() or len(train) < 2:
            continue
        n, moved = train[0]
        split_of[moved] = split
        for it, g in zip(items, groups):
            if g == moved:
                it.split = split
        out.append(f"split {split} got no group by hashing; group {moved!r} ({n} images) moved there")
    return out


def _group(pattern: re.Pattern, rel: str) -> str | None:
    m = pattern.search(rel)
    if m is None:
        return None
    return m.group(1) if m.re.groups else m.group(0)


# --------------------------------------------------------------------------- the gesture-hand rule
def gesture_hand_order(hands: Sequence[dict], rule: str = DEFAULT_GESTURE_HAND_RULE) -> list[int]:
    """Indices of ``hands`` (cache entries: ``box``, ``landmarks``), the gesture hand first, by ``rule``
    (:data:`GESTURE_HAND_RULES`; ties keep the detector's order)."""
    def key(i: int) -> float:
        x, y, w, h = hands[i]["box"]
        if rule == "wrist":
            return float(hands[i]["landmarks"][0][1])
        if rule == "top":
            return float(y)
        if rule == "centre":
            return float(y + h / 2)
        if rule == "largest":
            return -float(w * h)
        raise ValueError(f"unknown gesture-hand rule {rule!r}; rules: {', '.join(GESTURE_HAND_RULES)}")
    return sorted(range(len(hands)), key=key)


# --------------------------------------------------------------------------- detection (in workers)
_WORKER: dict = {}


def _init_worker(settings: dict) -> None:
    """Each worker process owns one detector, made on its first image."""
    _WORKER.clear()
    _WORKER.update(settings=settings, detector=None)


def _detector():
    if _WORKER.get("detector") is None:
        from .detect import HandDetector

        _WORKER["detector"] = HandDetector(DetectorConfig(**_WORKER["settings"]["detector"]))
    return _WORKER["detector"]


def _hand_entry(h, to_crop=None) -> dict | None:
    """A detected hand as plain JSON numbers (None when its landmarks are not finite); ``to_crop`` maps
    canvas-normalised points to crop-normalised ones."""
    lm = np.asarray(h.landmarks, dtype=np.float64)
    if not np.isfinite(lm).all():
        return None
    box = np.asarray(h.box, dtype=np.float64)
    if to_crop is not None:
        lm[:, :2] = to_crop(lm[:, :2])
        corners = to_crop(np.array([box[:2], box[:2] + box[2:]]))
        box = np.concatenate([corners[0], corners[1] - corners[0]])
    return {"box": np.round(box, 6).tolist(), "landmarks": np.round(lm, 6).tolist(), "handedness": h.handedness,
            "score": round(float(h.handedness_score), 4), "ok": bool(h.landmarks_ok)}


def _canvas(rgb: np.ndarray, fill: str) -> tuple[np.ndarray, int, int]:
    """The crop centred on a square canvas :data:`CANVAS_SCALE` times its longer side; and its offset."""
    h, w = rgb.shape[:2]
    side = max(int(round(CANVAS_SCALE * max(w, h))), w, h)
    ox, oy = (side - w) // 2, (side - h) // 2
    pad = ((oy, side - h - oy), (ox, side - w - ox), (0, 0))
    canvas = np.pad(rgb, pad, mode="edge") if fill == "edge" else np.pad(rgb, pad, constant_values=128)
    return canvas, ox, oy


def detect_image(path: str) -> dict:
    """One image's cache entry: ``{"size": [W, H], "hands": [...]}`` or ``{"error": reason}`` (unreadable)."""
    try:
        rgb = np.asarray(open_rgb(path))
    except DataError as e:
        return {"error": e.problem}
    settings = _WORKER["settings"]
    h, w = rgb.shape[:2]
    if not settings["crops"]:
        hands = [_hand_entry(d) for d in _detector().detect(rgb)]
    else:
        canvas, ox, oy = _canvas(rgb, settings["canvas_fill"])
        side = canvas.shape[0]
        scale = np.array([side / w, side / h])
        offset = np.array([ox / w, oy / h])
        hands = [_hand_entry(d, lambda p: p * scale - offset) for d in _detector().detect(canvas)]
    return {"size": [w, h], "hands": [x for x in hands if x is not None]}


def _work(task: tuple[str, str]) -> tuple[str, dict]:
    rel, path = task
    return rel, detect_image(path)


# --------------------------------------------------------------------------- the result cache
def _file_id(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _mediapipe_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mediapipe")
    except PackageNotFoundError:
        return "absent"


def cache_path(out: Path, cfg: AnnotateConfig) -> Path:
    """``<out>/.annotate_cache/<mode>_<hash>.jsonl``; the hash covers everything that changes a detection."""
    key = {"format": CACHE_FORMAT, "mode": "crops" if cfg.crops else "frames",
           "detector": dataclasses.asdict(cfg.detector_config()), "box_model": DEFAULT_BOX_MODEL.to_dict(),
           "mediapipe": _mediapipe_version(), "canvas": [CANVAS_SCALE, cfg.canvas_fill] if cfg.crops else None}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return out / CACHE_DIRNAME / f"{key['mode']}_{digest}.jsonl"


class ResultCache:
    """Per-image results in an append-only JSONL file: one line per image, written in one ``os.write``."""

    def __init__(self, path: Path) -> None:
        self.path, self.entries, self._torn = path, {}, False
        if path.exists():
            raw = path.read_bytes()
            self._torn = bool(raw) and not raw.endswith(b"\n")
            for line in raw.splitlines():
                try:
                    e = orjson.loads(line)
                    self.entries[e["rel"]] = e
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue  # a torn or foreign line: that image is detected again

    def get(self, rel: str, file_id: list[int] | None) -> dict | None:
        e = self.entries.get(rel)
        return e["result"] if e is not None and file_id is not None and e.get("file") == file_id else None

    def add(self, rel: str, file_id: list[int] | None, result: dict) -> None:
        e = {"rel": rel, "file": file_id, "result": result}
        data = orjson.dumps(e) + b"\n"
        if self._torn:
            data, self._torn = b"\n" + data, False
        append_line(self.path, data)
        self.entries[rel] = e


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def detect_all(items: Sequence[ImageItem], cfg: AnnotateConfig, cache: ResultCache) -> tuple[dict[str, dict], int]:
    """Every image's result, from the cache or detected now (in ``cfg.workers`` processes, each with its own
    detector); returns ``{rel: result}`` and how many images were detected now."""
    from tqdm import tqdm

    results, todo = {}, []
    for it in items:
        fid = _file_id(it.path)
        hit = cache.get(it.rel, fid)
        if hit is not None:
            results[it.rel] = hit
        else:
            todo.append((it.rel, str(it.path), fid))
    settings = {"detector": dataclasses.asdict(cfg.detector_config()), "crops": cfg.crops,
                "canvas_fill": cfg.canvas_fill}
    n = min(default_workers() if cfg.workers is None else max(1, cfg.workers), max(1, len(todo)))
    pool = None
    if n > 1:
        import multiprocessing

        # fork where there is one (no re-import of torch/mediapipe per worker: ~10 s on 2 busy cores), before
        # the progress bar's thread starts; each worker makes its own MediaPipe graph (never a forked copy)
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods and _WORKER.get("detector") is None else "spawn")
        pool = ctx.Pool(n, initializer=_init_worker, initargs=(settings,))
    else:
        _init_worker(settings)
    fids = {rel: fid for rel, _, fid in todo}
    bar = tqdm(total=len(items), initial=len(results), unit="img", desc="annotate",
               disable=None if cfg.progress else True, smoothing=0.05)
    try:
        tasks = [(rel, path) for rel, path, _ in todo]
        done = map(_work, tasks) if pool is None else pool.imap_unordered(_work, tasks, chunksize=4)
        for rel, res in done:
            cache.add(rel, fids[rel], res)
            results[rel] = res
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
        elif _WORKER.get("detector") is not None:
            _WORKER["detector"].close()
            _WORKER["detector"] = None
    return results, len(todo)


# --------------------------------------------------------------------------- records
@dataclass
class Counts:
    """What an annotate run found; ``lines()`` is the printed summary."""

    mode: str
    images: int = 0
    detected_now: int = 0
    annotated: int = 0
    hands: int = 0
    no_hand: int = 0
    too_many_hands: int = 0
    unreadable: int = 0
    ignored: int = 0
    links: Counter = field(default_factory=Counter)  # symlink / hardlink / copy
    per_split: dict = field(default_factory=lambda: defaultdict(Counter))  # split -> label -> images
    crops_with_landmarks: Counter = field(default_factory=Counter)  # crops mode: label -> crops with landmarks
    crops_total: Counter = field(default_factory=Counter)
    hands_with_handedness: int = 0  # hagrid mode
    warnings: list[str] = field(default_factory=list)

    def landmark_share(self) -> dict[str, float]:
        return {c: round(self.crops_with_landmarks[c] / n, 4) for c, n in sorted(self.crops_total.items()) if n}

    def lines(self) -> list[str]:
        out = [f"images: {self.images} ({self.detected_now} detected now, {self.images - self.detected_now} from the "
               f"cache); annotated: {self.annotated}; hands written: {self.hands}"]
        if self.mode == "photos":
            out.append(f"images with no hand: {self.no_hand}; with more hands than --max-hands: {self.too_many_hands}")
        if self.mode == "crops":
            n, k = sum(self.crops_total.values()), sum(self.crops_with_landmarks.values())
            out.append(f"crops with landmarks: {k}/{n} ({k / max(n, 1):.1%}); per class: "
                       + ", ".join(f"{c} {s:.1%}" for c, s in self.landmark_share().items()))
        if self.mode == "hagrid":
            out.append(f"hands with a handedness: {self.hands_with_handedness}/{self.hands}")
        out.append(f"unreadable images (skipped): {self.unreadable}; ignored files: {self.ignored}")
        if self.links.get("copy"):
            out.append(f"warning: {self.links['copy']} images were copied (the file system refused links)")
        out.append("per split: " + "; ".join(f"{s} {sum(c.values())} images" for s, c in sorted(self.per_split.items())))
        return out


def _points(landmarks: list) -> list:
    return [[p[0], p[1]] for p in landmarks]


def photo_record(it: ImageItem, hands: list[dict], cfg: AnnotateConfig) -> dict:
    """The v2 record of a photo: the gesture hand (by the rule) first, the others ``no_gesture``."""
    order = gesture_hand_order(hands, cfg.gesture_hand)[:cfg.max_hands]
    chosen = [hands[i] for i in order]
    return {"bboxes": [h["box"] for h in chosen],
            "labels": [it.label] + [NO_GESTURE] * (len(chosen) - 1),
            "hand_landmarks": [_points(h["landmarks"]) if h["ok"] else [] for h in chosen],
            "handedness": [h["handedness"] if h["handedness"] in ("left", "right") else None for h in chosen],
            "handedness_score": [h["score"] for h in chosen],
            "user_id": it.user_id, "meta": {"source": it.rel, "file": it.uuid + it.path.suffix.lower()}}


def crop_record(it: ImageItem, hands: list[dict]) -> tuple[dict, bool]:
    """The v2 record of a crop (box = the whole image) and whether a hand (landmarks) was found in it."""
    ious = [float(box_iou(h["box"], [0, 0, 1, 1])[0]) for h in hands]
    best = int(np.argmax(ious)) if ious else -1
    h = hands[best] if best >= 0 and ious[best] >= CROP_MIN_IOU and hands[best]["ok"] else None
    rec = {"bboxes": [[0.0, 0.0, 1.0, 1.0]], "labels": [it.label],
           "hand_landmarks": [_points(h["landmarks"]) if h else []],
           "handedness": [h["handedness"] if h and h["handedness"] in ("left", "right") else None],
           "handedness_score": [h["score"] if h else None],
           "user_id": it.user_id, "meta": {"source": it.rel, "file": it.uuid + it.path.suffix.lower()}}
    return rec, h is not None


def build_records(items: Sequence[ImageItem], results: dict[str, dict], cfg: AnnotateConfig, counts: Counts
                  ) -> tuple[list[tuple[ImageItem, dict]], list[Issue]]:
    """``(item, record)`` of every image that gets one, and the issues of the others."""
    out, issues = [], []
    for it in items:
        res = results[it.rel]
        if "error" in res:
            counts.unreadable += 1
            issues.append(Issue(it.rel, it.label, it.split or "", "unreadable", res["error"]))
            continue
        hands = [h for h in res["hands"] if h["box"][2] > 0 and h["box"][3] > 0]
        if cfg.mode == "crops":
            rec, found = crop_record(it, hands)
            counts.crops_total[it.label] += 1
            counts.crops_with_landmarks[it.label] += found
            if not found:
                issues.append(Issue(it.rel, it.label, it.split or "", "no_landmarks", f"{len(hands)} detections"))
        elif not hands:
            counts.no_hand += 1
            issues.append(Issue(it.rel, it.label, it.split or "", "no_hand"))
            continue
        else:
            if len(hands) > cfg.max_hands:
                counts.too_many_hands += 1
                issues.append(Issue(it.rel, it.label, it.split or "", "too_many_hands",
                                    f"{len(hands)} hands found, {cfg.max_hands} kept"))
            rec = photo_record(it, hands, cfg)
        out.append((it, rec))
    return out, issues


# --------------------------------------------------------------------------- hagrid mode
def hagrid_items(root: Path) -> list[ImageItem]:
    """Every image record of a HaGRID v2 root (its official record kept), with its image path."""
    if detect_format(root) != "v2":
        raise DataError(root, "--hagrid needs a HaGRID v2 dataset (hagrid_annotations/{train,val,test}/)")
    ann = root / ANNOTATIONS_DIRNAME
    files = [(s, f) for s in SPLITS if (ann / s).is_dir() for f in sorted((ann / s).glob("*.json"))]
    locator = _ImageLocator(root, sorted({f.stem for _, f in files}))
    items = []
    for split, f in files:
        resolve = locator.resolver(f.stem)
        for uuid, rec in read_annotation_file(f).items():
            path = resolve(uuid)
            items.append(ImageItem(os.path.relpath(path, root).replace(os.sep, "/"), path, f.stem, split,
                                   uuid=uuid, user_id=rec.get("user_id") if isinstance(rec, dict) else None,
                                   record=rec))
    return items


def _official_boxes(rec: dict) -> list[list[float] | None]:
    out = []
    for b in rec.get("bboxes") or []:
        try:
            box = [float(v) for v in b]
            out.append(box if len(box) == 4 and all(np.isfinite(box)) else None)
        except (TypeError, ValueError):
            out.append(None)
    return out


def hagrid_record(it: ImageItem, res: dict, counts: Counts) -> dict:
    """A copy of the official record with ``handedness`` added: the matched detection's, null where none."""
    rec = dict(it.record) if isinstance(it.record, dict) else {}
    boxes = _official_boxes(rec)
    hands = res.get("hands", [])
    usable = [i for i, b in enumerate(boxes) if b is not None]
    match = greedy_match([h["box"] for h in hands], [boxes[i] for i in usable])
    handed: list[str | None] = [None] * len(boxes)
    for i, m in zip(usable, match.tolist()):
        if m >= 0 and hands[m]["handedness"] in ("left", "right"):
            handed[i] = hands[m]["handedness"]
    rec["handedness"] = handed
    counts.hands += len(boxes)
    counts.hands_with_handedness += sum(h is not None for h in handed)
    return rec


def link_hagrid_images(root: Path, out: Path) -> list[Path]:
    """``<out>/hagrid_dataset_<name>`` -> each folder that holds the root's class folders (symlinks)."""
    locator = _ImageLocator(root, sorted({p.stem for p in (root / ANNOTATIONS_DIRNAME).glob("*/*.json")}))
    made = []
    for parent in locator.image_parents():
        rel = os.path.relpath(parent, root)
        name = parent.name if rel != "." and parent.name.startswith(IMAGES_DIRNAME) else \
            f"{IMAGES_DIRNAME}_{'root' if rel == '.' else rel.replace(os.sep, '_')}"
        link = out / name
        if link.is_symlink() or link.exists():
            if link.is_symlink() and os.path.realpath(link) == os.path.realpath(parent):
                made.append(link)
                continue
            raise DataError(link, f"exists and is not a link to {parent}; remove it or choose another --out")
        try:
            os.symlink(os.path.abspath(parent), link, target_is_directory=True)
        except OSError as e:
            raise DataError(link, f"cannot link the image folder {parent} here ({e.strerror or e})") from None
        made.append(link)
    return made


# --------------------------------------------------------------------------- outputs
def link_image(src: Path, dst: Path) -> str:
    """``dst`` -> ``src``: a symlink, else a hard link, else a copy; returns which. An existing correct link
    is kept; anything else at ``dst`` is replaced."""
    target = os.path.abspath(src)
    if dst.is_symlink() and os.readlink(dst) == target:
        return "symlink"
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    for kind, make in (("symlink", os.symlink), ("hardlink", os.link)):
        try:
            make(target, dst)
            return kind
        except OSError:
            continue
    shutil.copy2(target, dst)
    return "copy"


def _prepare_out(out: Path, inputs: Sequence[Path]) -> None:
    """Refuse an output folder that is an input, or a HaGRID dataset annotate did not write."""
    real = out.resolve()
    for p in inputs:
        if real == p.resolve():
            raise UsageError(f"--out {out} is the input folder; choose a new folder")
    if (out / ANNOTATIONS_DIRNAME).exists() and not (out / INFO_NAME).exists() and not (out / CACHE_DIRNAME).exists():
        raise DataError(out, f"holds {ANNOTATIONS_DIRNAME}/ not written by annotate (no {INFO_NAME}); "
                        "choose a new --out folder")
    out.mkdir(parents=True, exist_ok=True)


def write_annotations(out: Path, records: Iterable[tuple[ImageItem, dict]]) -> dict[str, Counter]:
    """``hagrid_annotations/<split>/<label>.json`` (atomic), replacing every file of an earlier run; returns
    the images per split and label."""
    files: dict[tuple[str, str], dict] = defaultdict(dict)
    for it, rec in records:
        files[it.split, it.label][it.uuid] = rec
    ann = out / ANNOTATIONS_DIRNAME
    for old in ann.glob("*/*.json"):
        if (old.parent.name, old.stem) not in files:
            old.unlink()
    per_split: dict[str, Counter] = defaultdict(Counter)
    for (split, label), recs in sorted(files.items()):
        atomic_write_bytes(ann / split / f"{label}.json", orjson.dumps(recs))
        per_split[split][label] = len(recs)
    return per_split


def write_report(out: Path, issues: Sequence[Issue]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "label", "split", "issue", "detail"])
    w.writerows([i.file, i.label, i.split, i.issue, i.detail] for i in issues)
    return atomic_write_text(out / REPORT_NAME, buf.getvalue())


def write_info(out: Path, cfg: AnnotateConfig, counts: Counts, cache: Path) -> Path:
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()
                if k not in ("progress",)}
    settings["detector"] = dataclasses.asdict(cfg.detector_config())
    info = {"format": 1, "mode": cfg.mode, "settings": settings, "cache": str(cache.relative_to(out)),
            "counts": {k: getattr(counts, k) for k in ("images", "detected_now", "annotated", "hands", "no_hand",
                                                       "too_many_hands", "unreadable", "ignored",
                                                       "hands_with_handedness")},
            "links": dict(counts.links), "images_per_split": {s: dict(c) for s, c in sorted(counts.per_split.items())},
            "warnings": counts.warnings}
    if cfg.mode == "crops":
        info["crops_with_landmarks"] = {c: [counts.crops_with_landmarks[c], n] for c, n in sorted(counts.crops_total.items())}
        info["share_with_landmarks"] = counts.landmark_share()
    return atomic_write_text(out / INFO_NAME, json.dumps(info, indent=2) + "\n")


# --------------------------------------------------------------------------- the run
def run_annotate(cfg: AnnotateConfig, log=print) -> Counts:
    """Annotate ``cfg.images`` (or add handedness to ``cfg.hagrid``) into ``cfg.out``; see the module docstring.
    ``log`` gets each warning and summary line."""
    cfg.validate()
    out = Path(cfg.out)
    source = Path(cfg.images if cfg.images is not None else cfg.hagrid)
    _prepare_out(out, [source])
    counts = Counts(cfg.mode)
    if cfg.mode == "hagrid":
        items, issues = hagrid_items(source), []
    else:
        items, issues = scan_images(source, skip=out.resolve())
        assign_uuids(items)
        counts.warnings += assign_splits(items, cfg)
    for w in counts.warnings:
        log(w)
    counts.images, counts.ignored = len(items), sum(i.issue == "ignored" for i in issues)
    cache = ResultCache(cache_path(out, cfg))
    results, counts.detected_now = detect_all(items, cfg, cache)
    records = _records(items, results, cfg, counts, issues)
    issues += _links(out, records, cfg, counts)
    counts.per_split = write_annotations(out, records)
    counts.annotated = len(records)
    write_report(out, issues)
    write_info(out, cfg, counts, cache.path)
    for line in counts.lines():
        log(line)
    log(f"wrote {out / ANNOTATIONS_DIRNAME}/, {out / REPORT_NAME}, {out / INFO_NAME}")
    return counts


def _records(items, results, cfg: AnnotateConfig, counts: Counts, issues: list[Issue]) -> list[tuple[ImageItem, dict]]:
    if cfg.mode != "hagrid":
        records, more = build_records(items, results, cfg, counts)
        issues += more
        counts.hands = sum(len(r["bboxes"]) for _, r in records)
        return records
    records = []
    for it in items:
        res = results[it.rel]
        if "error" in res:
            counts.unreadable += 1
            issues.append(Issue(it.rel, it.label, it.split or "", "unreadable", res["error"]))
        records.append((it, hagrid_record(it, res, counts) if isinstance(it.record, dict) else it.record))
    return records


def _links(out: Path, records: Sequence[tuple[ImageItem, dict]], cfg: AnnotateConfig, counts: Counts) -> list[Issue]:
    """Link every annotated image into ``hagrid_dataset/<label>/`` (hagrid mode: link the image folders)."""
    if cfg.mode == "hagrid":
        counts.links["folder_symlink"] = len(link_hagrid_images(Path(cfg.hagrid), out))
        return []
    issues = []
    for label in {it.label for it, _ in records}:
        (out / IMAGES_DIRNAME / label).mkdir(parents=True, exist_ok=True)
    for it, rec in records:
        kind = link_image(it.path, out / IMAGES_DIRNAME / it.label / rec["meta"]["file"])
        counts.links[kind] += 1
        if kind == "copy":
            issues.append(Issue(it.rel, it.label, it.split or "", "copied", "symlink and hard link refused"))
    return issues


def exit_code(counts: Counts) -> int:
    """0, or 1 when some inputs were unreadable (as ``predict``)."""
    return 1 if counts.unreadable else 0

