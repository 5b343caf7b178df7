"""End-to-end accuracy: what a user would see when the models run on whole frames.

For every frame of a split of a HaGRID root: detect the hands (MediaPipe, static image mode, once per
frame, cached), match the detected hands to the annotated boxes, then classify each annotated gesture
hand with every checkpoint in two ways, through :meth:`engine.predictor.GesturePredictor.classify`:

* **annotated path**: the annotated box and the annotated landmarks (what the test-split accuracy of
  ``evaluate`` measures; a landmark model cannot score a hand whose annotation has no landmarks, so such a
  hand counts as an error here and the row says how many there were). A checkpoint trained on crops centred
  on landmark boxes gets, on both paths, the box ``predict`` would give it (its box model around the landmarks);
* **end-to-end path**: the box (from the box model) and landmarks of the detection matched to the hand; a
  gesture hand no detection was matched to is an error, as is a match whose landmarks are degenerate for a
  landmark-only model.

Matching: every (detection, annotated box) pair of a frame gets the IoU of the detection's box (the box
model's box around its landmarks) with the annotated box; pairs are taken greedily, highest IoU first, each
detection and each annotated box at most once, and only pairs with IoU >= ``iou_threshold`` (0.5). The
annotated boxes include the hands the models do not score (``no_gesture`` when the checkpoints lack it), so a
detection over such a hand is used up on it and never credited to a gesture hand beside it.

Intervals are 95% Wilson score intervals of a proportion (closed form, sensible at small n and near 100%,
where a percentile bootstrap collapses to a point); the paired test between the two paths is McNemar's
(:func:`engine.metrics.mcnemar_test`; exact below 25 discordant hands).

Cache: detections go to ``<graphs_dir>/.end_to_end_cache/<split>_<hash>.jsonl`` (``hash`` of the detector
settings, the box model and the MediaPipe version), one JSON line appended per frame in a single write, keyed
by the frame's uuid and checked against the image file's size and mtime. A run that is interrupted loses at
most the line being written (a torn last line is ignored when read); the next run detects only the frames
that have no valid line.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from scipy import stats

from common.errors import DataError, UserFacingError
from common.files import append_line, atomic_write_text
from data_loaders.box_model import DEFAULT_BOX_MODEL, MATCH_IOU, greedy_match
from data_loaders.classes import NO_GESTURE, ClassSet
from data_loaders.detect import DetectorConfig, HandDetector
from data_loaders.hagrid import HandRecord, load_hagrid
from data_loaders.images import open_rgb

from .checkpoint import load_checkpoint
from .evaluate import find_checkpoints, row_labels
from .metrics import mcnemar_test
from .predictor import GesturePredictor, HandInput
from .reporting.tables import (
    END_TO_END_HEADERS,
    END_TO_END_INTERVALS,
    END_TO_END_MATCHING,
    end_to_end_cells,
    markdown_table,
)

__all__ = ["CACHE_DIRNAME", "DEFAULT_DETECTOR", "DEFAULT_IOU_THRESHOLD", "DetectionCache", "EndToEndResult",
           "cache_file", "greedy_match", "run_end_to_end", "wilson_interval"]


DEFAULT_IOU_THRESHOLD = MATCH_IOU
DEFAULT_DETECTOR = DetectorConfig()  # the settings the sample's landmarks were made with
CONFIDENCE = 0.95  # of every interval reported
CACHE_DIRNAME = ".end_to_end_cache"
CACHE_FORMAT = 1  # bump when a cache line's meaning changes: old caches are then not read
MAX_NAMED = 10  # unreadable frames named in the result lines (all are in the markdown file)


# --------------------------------------------------------------------------- frames
@dataclass
class Frame:
    """One frame to score: its gesture hands (labels the checkpoints know) and the other annotated boxes."""

    uuid: str
    image: Path
    hands: list[HandRecord]
    others: list[tuple[float, float, float, float]] = field(default_factory=list)

    @property
    def boxes(self) -> np.ndarray:
        """``(A, 4)``: the scored hands' boxes first, then the others (all take part in matching)."""
        return np.array([h.bbox for h in self.hands] + list(self.others), dtype=np.float64).reshape(-1, 4)


def load_frames(data_dir: str | Path, class_names: Sequence[str], split: str, *, uuids: Iterable[str] | None = None,
                limit: int | None = None) -> tuple[list[Frame], list[str]]:
    """The frames of ``split`` that hold at least one hand labelled with one of ``class_names`` (in the
    annotation files' order), restricted to ``uuids`` and the first ``limit`` when given; and notes on the
    hands the loader skipped. ``no_gesture`` boxes are read too, as boxes to match but not to score."""
    names = tuple(class_names)
    load_set = ClassSet(names if NO_GESTURE in names else (*names, NO_GESTURE))
    ann = load_hagrid(data_dir, load_set, splits=[split])
    frames: dict[str, Frame] = {}
    for r in ann.records:
        f = frames.setdefault(r.uuid, Frame(r.uuid, r.image_path, []))
        if r.label in names:
            f.hands.append(r)
        else:
            f.others.append(r.bbox)
    chosen = [f for f in frames.values() if f.hands]
    notes = [f"{ann.skipped.total()} annotated hands skipped by the loader ({', '.join(ann.skipped.counts)})"] \
        if ann.skipped.total() else []
    if uuids is not None:
        wanted = set(uuids)
        chosen = [f for f in chosen if f.uuid in wanted]
        if len(chosen) < len(wanted):
            notes.append(f"{len(wanted) - len(chosen)} of the {len(wanted)} frames asked for are not frames of split "
                         f"{split!r} with a hand of the checkpoints' classes")
    if limit is not None:
        chosen = chosen[:limit]
    return chosen, notes


# --------------------------------------------------------------------------- detection cache
def _mediapipe_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mediapipe")
    except PackageNotFoundError:
        return "absent"


def _file_id(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def cache_file(cache_dir: str | Path, split: str, config: DetectorConfig) -> Path:
    """``<cache_dir>/<split>_<hash>.jsonl``; the hash covers everything that changes a detection."""
    key = {"format": CACHE_FORMAT, "detector": dataclasses.asdict(config), "box_model": DEFAULT_BOX_MODEL.to_dict(),
           "mediapipe": _mediapipe_version()}
    if config.hand_model:
        key["hand_model_file"] = _file_id(Path(config.hand_model))
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{split}_{digest}.jsonl"


class DetectionCache:
    """Detections per frame uuid, read from and appended to one JSONL file (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.entries: dict[str, dict] = {}
        self.n_bad_lines = 0
        self._torn = False
        if self.path.exists():
            raw = self.path.read_bytes()
            self._torn = bool(raw) and not raw.endswith(b"\n")
            for line in raw.splitlines():
                try:
                    e = json.loads(line)
                    self.entries[e["uuid"]] = e
                except (ValueError, KeyError, TypeError):
                    self.n_bad_lines += 1

    def get(self, uuid: str, image: Path) -> list[dict] | None:
        """The cached hands of a frame, or None when absent or made from another version of the file."""
        e = self.entries.get(uuid)
        if e is None or e.get("file") != _file_id(image):
            return None
        return e["hands"]

    def add(self, uuid: str, image: Path, hands: list[dict]) -> None:
        """Append one frame's line with a single write (a torn previous line is closed first)."""
        e = {"uuid": uuid, "file": _file_id(image), "hands": hands}
        data = json.dumps(e, separators=(",", ":")).encode() + b"\n"
        if self._torn:
            data, self._torn = b"\n" + data, False
        append_line(self.path, data)
        self.entries[uuid] = e


def _hand_entry(h) -> dict:
    """A :class:`data_loaders.detect.DetectedHand` as a cache entry (plain JSON numbers)."""
    return {"box": [round(float(v), 6) for v in h.box], "landmarks": np.round(np.asarray(h.landmarks, float), 6).tolist(),
            "handedness": h.handedness, "score": round(float(h.handedness_score), 4),
            "landmarks_ok": bool(h.landmarks_ok)}


class _LazyDetector:
    """A :class:`HandDetector` made on first use, so a fully cached run never starts MediaPipe."""

    def __init__(self, config: DetectorConfig) -> None:
        self.config, self.detector, self.calls = config, None, 0

    def __call__(self, rgb: np.ndarray) -> list[dict]:
        if self.detector is None:
            self.detector = HandDetector(self.config)
        self.calls += 1
        return [_hand_entry(h) for h in self.detector.detect(rgb)]

    def close(self) -> None:
        if self.detector is not None:
            self.detector.close()


# --------------------------------------------------------------------------- models
@dataclass
class _Model:
    """One checkpoint's predictor and its predictions so far (class index, -1 = no prediction = error)."""

    name: str
    path: Path
    predictor: GesturePredictor
    to_common: np.ndarray  # predictor's class index -> index in the common class names
    needs_landmarks: bool  # a landmark-only model: no landmarks, no prediction
    ann_pred: list[int] = field(default_factory=list)
    e2e_pred: list[int] = field(default_factory=list)
    no_landmarks: list[int] = field(default_factory=lambda: [0, 0])  # hands left unscored: annotated, detected

    def score(self, img: Image.Image, frame: Frame, dets: list[dict], match: np.ndarray) -> None:
        """Classify the frame's gesture hands both ways (one ``classify`` call) and append the predictions."""
        n = len(frame.hands)
        preds = ([-1] * n, [-1] * n)  # path 0: annotated, path 1: end to end
        inputs: list[HandInput] = []
        slots: list[tuple[int, int]] = []  # (path, hand) of each input
        for j, rec in enumerate(frame.hands):
            sources = [(0, _Found(rec.bbox, _xyz(rec.landmarks), rec.leading_hand, None, rec.landmarks is not None))]
            if match[j] >= 0:
                d = dets[match[j]]
                lm = np.asarray(d["landmarks"], dtype=np.float32)
                sources.append((1, _Found(tuple(d["box"]), lm, d["handedness"], d["score"], d["landmarks_ok"])))
            for path, found in sources:
                if self.needs_landmarks and not found.landmarks_ok:
                    self.no_landmarks[path] += 1
                    continue
                # end to end: the box `predict` would make (the checkpoint's box model when its crops were
                # centred on landmark boxes); annotated: the annotated box itself
                inputs.append(self.predictor.hand_input(found, img) if path else
                              HandInput(box=found.box, landmarks=found.landmarks, landmarks_ok=found.landmarks_ok,
                                        handedness=found.handedness))
                slots.append((path, j))
        if inputs:
            for (path, j), hand in zip(slots, self.predictor.classify(img, inputs, path=frame.image), strict=True):
                if hand.top3:  # empty when the predictor could not score the hand (unusable landmarks)
                    preds[path][j] = int(self.to_common[int(np.argmax(hand.probs))])
                else:
                    self.no_landmarks[path] += 1
        self.ann_pred += preds[0]
        self.e2e_pred += preds[1]


class _Found(NamedTuple):
    """A hand as the predictor's ``hand_input`` reads a detection (annotations are put in the same form)."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None
    handedness: str | None
    handedness_score: float | None
    landmarks_ok: bool


def _xyz(landmarks: np.ndarray | None) -> np.ndarray | None:
    """Annotated ``(21, 2)`` landmarks as the detector's ``(21, 3)`` (depth 0; models read x, y only)."""
    if landmarks is None:
        return None
    return np.concatenate([landmarks, np.zeros((len(landmarks), 1), landmarks.dtype)], axis=1).astype(np.float32)


def _checkpoint_paths(checkpoints) -> dict[str, Path]:
    """``{row label: path}`` from a models folder, one checkpoint, a list of them or a ``{label: path}`` map."""
    if isinstance(checkpoints, Mapping):
        if not checkpoints:
            raise UserFacingError("no checkpoints given")
        return {str(k): Path(v) for k, v in checkpoints.items()}
    if isinstance(checkpoints, (str, os.PathLike)):
        p = Path(checkpoints)
        paths = find_checkpoints(p) if p.is_dir() else [p]
        if not paths:
            raise DataError(p, "no checkpoints (*.pt) in this folder")
    else:
        paths = [Path(p) for p in checkpoints]
    if not paths:
        raise UserFacingError("no checkpoints given")
    labels = row_labels({p: load_checkpoint(p) for p in paths})
    return {labels[p]: p for p in paths}


def _load_models(checkpoints, backend: str, device: str) -> tuple[list[_Model], list[str]]:
    """The predictors and the class names they share (same set, any order); an error naming those that differ."""
    preds = {name: (p, GesturePredictor.from_checkpoint(p, backend=backend, device=device))
             for name, p in _checkpoint_paths(checkpoints).items()}
    (first_path, first), *_ = preds.values()
    names = list(first.class_names)
    odd = [f"{p} ({len(g.class_names)} classes)" for p, g in preds.values() if set(g.class_names) != set(names)]
    if odd:
        raise UserFacingError(f"checkpoints trained on different class sets cannot be scored on the same hands: "
                              f"{first_path} has {len(names)} classes {names}; differ: {'; '.join(odd)}")
    models = []
    for name, (p, g) in preds.items():
        inputs = (g.preprocessing or {}).get("inputs", ())
        models.append(_Model(name, p, g, np.array([names.index(c) for c in g.class_names]),
                             needs_landmarks="image" not in inputs))
    return models, names


# --------------------------------------------------------------------------- figures
def wilson_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of the proportion ``k / n`` (NaNs when ``n == 0``)."""
    if n == 0:
        return float("nan"), float("nan")
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def _proportion(prefix: str, k: int, n: int) -> dict:
    lo, hi = wilson_interval(k, n)
    return {prefix: k / n if n else float("nan"), f"{prefix}_ci_low": lo, f"{prefix}_ci_high": hi}


def model_row(m: _Model, y: np.ndarray, matched: np.ndarray) -> dict:
    """One model's figures (see the module docstring): counts, proportions with intervals, McNemar."""
    ann_ok, e2e_ok = np.asarray(m.ann_pred) == y, np.asarray(m.e2e_pred) == y
    mc = mcnemar_test(ann_ok, e2e_ok)
    row = {"model": m.name, "checkpoint": str(m.path), "n_hands": len(y), "detected": int(matched.sum())}
    row |= _proportion("detection_recall", int(matched.sum()), len(y))
    row |= _proportion("e2e_accuracy", int(e2e_ok.sum()), len(y))
    row |= _proportion("annotated_accuracy", int(ann_ok.sum()), len(y))
    row |= _proportion("e2e_accuracy_detected", int(e2e_ok[matched].sum()), int(matched.sum()))
    row |= {"annotated_no_landmarks": m.no_landmarks[0], "detected_no_landmarks": m.no_landmarks[1],
            "mcnemar_b": mc["b"], "mcnemar_c": mc["c"], "mcnemar_p": mc["p_value"], "mcnemar_method": mc["method"]}
    return row


# --------------------------------------------------------------------------- result
@dataclass
class EndToEndResult:
    """Per-model rows (see :func:`model_row`) and how they were obtained."""

    rows: list[dict]
    split: str
    data_dir: Path
    iou_threshold: float
    detector: DetectorConfig
    n_frames: int  # frames scored
    n_detections: int
    unmatched_detections: int  # detections matched to no annotated box (false or unannotated hands)
    detected_now: int  # frames run through the detector in this run (the rest came from the cache)
    cache_path: Path | None
    unreadable: list[str] = field(default_factory=list)  # "<path>: <problem>" of frames skipped
    notes: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    # per gesture hand, in frame order: "<uuid>_<hand>", true class index, whether a detection matched it, and
    # per model the predicted class index on each path ({"annotated": ..., "end_to_end": ...}; -1 = none)
    hand_keys: list[str] = field(default_factory=list)
    y_true: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    matched: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    predictions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def _summary(self) -> str:
        n_hands = self.rows[0]["n_hands"] if self.rows else 0
        return (f"end-to-end on split {self.split!r} of {self.data_dir}: {self.n_frames} frames, {n_hands} gesture "
                f"hands, {self.n_detections} detections ({self.unmatched_detections} matched no annotated box); "
                f"detector run on {self.detected_now} frames, {self.n_frames - self.detected_now} from the cache")

    def _table(self) -> list[str]:
        return markdown_table(END_TO_END_HEADERS, [end_to_end_cells(r) for r in self.rows]).splitlines()

    def _unreadable_lines(self, limit: int | None) -> list[str]:
        if not self.unreadable:
            return []
        shown = self.unreadable if limit is None else self.unreadable[:limit]
        more = len(self.unreadable) - len(shown)
        return ([f"{len(self.unreadable)} unreadable frames skipped:"] + [f"    {u}" for u in shown]
                + ([f"    ... and {more} more (all named in end_to_end.md)"] if more else []))

    def lines(self) -> list[str]:
        """What the command line prints."""
        cfg = self.detector
        det = (f"detector: static image mode, max {cfg.max_num_hands} hands, model complexity {cfg.model_complexity}, "
               f"min detection confidence {cfg.min_detection_confidence:g}")
        return ([self._summary(), det] + self._table() + [END_TO_END_MATCHING.format(iou=self.iou_threshold), END_TO_END_INTERVALS]
                + self.notes + self._unreadable_lines(MAX_NAMED) + [f"wrote {p}" for p in self.written])

    def markdown(self) -> str:
        """The table and how it was made, for ``end_to_end.md``."""
        body = [f"# End-to-end accuracy ({self.split} split)", "", self._summary() + ".", "", *self._table(), "",
                END_TO_END_MATCHING.format(iou=self.iou_threshold), "", END_TO_END_INTERVALS,
                "", f"Detector: `{dataclasses.asdict(self.detector)}`."]
        extra = self.notes + self._unreadable_lines(None)
        return "\n".join(body + ([""] + extra if extra else [])) + "\n"

    def csv_text(self) -> str:
        buf = io.StringIO()
        if self.rows:
            rows = [{**r, "split": self.split, "iou_threshold": self.iou_threshold} for r in self.rows]
            w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
            w.writeheader()
            w.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
        return buf.getvalue()

    def write(self, graphs_dir: str | Path) -> list[Path]:
        """``end_to_end.md`` and ``end_to_end.csv`` in ``graphs_dir``, atomically."""
        md, cs = Path(graphs_dir) / "end_to_end.md", Path(graphs_dir) / "end_to_end.csv"
        self.written = [md, cs]
        atomic_write_text(md, self.markdown())
        atomic_write_text(cs, self.csv_text())
        return self.written


# --------------------------------------------------------------------------- the run
@dataclass
class _Tally:
    keys: list[str] = field(default_factory=list)
    y: list[int] = field(default_factory=list)
    matched: list[bool] = field(default_factory=list)
    n_frames: int = 0
    n_detections: int = 0
    unmatched: int = 0
    unreadable: list[str] = field(default_factory=list)


def _run_frame(frame: Frame, names: list[str], models: list[_Model], cache: DetectionCache,
               detect: _LazyDetector, iou_threshold: float, tally: _Tally) -> None:
    """Detect (or read the cache), match and classify one frame; an unreadable frame is only counted."""
    try:
        img = open_rgb(frame.image)
    except DataError as e:
        tally.unreadable.append(str(e))
        return
    dets = cache.get(frame.uuid, frame.image)
    if dets is None:
        dets = detect(np.asarray(img))
        cache.add(frame.uuid, frame.image, dets)
    match = greedy_match([d["box"] for d in dets], frame.boxes, iou_threshold)
    scored = match[:len(frame.hands)]
    tally.n_frames += 1
    tally.n_detections += len(dets)
    tally.unmatched += len(dets) - int((match >= 0).sum())
    tally.keys += [r.key for r in frame.hands]
    tally.y += [names.index(r.label) for r in frame.hands]
    tally.matched += (scored >= 0).tolist()
    for m in models:
        m.score(img, frame, dets, scored)


def _static(config: DetectorConfig) -> tuple[DetectorConfig, list[str]]:
    """The frames of a split are unrelated photos: detection always runs in static image mode."""
    if config.static_image_mode:
        return config, []
    return (dataclasses.replace(config, static_image_mode=True),
            [("video (tracking) mode was asked for; the frames of a split are unrelated photos, so the detector "
              "ran in static image mode")])


def run_end_to_end(checkpoints, data_dir: str | Path, *, split: str = "test", graphs_dir: str | Path | None = "graphs",
                   detector: DetectorConfig = DEFAULT_DETECTOR, iou_threshold: float = DEFAULT_IOU_THRESHOLD,
                   cache_dir: str | Path | None = None, progress: bool = True, backend: str = "torch",
                   device: str = "cpu", uuids: Iterable[str] | None = None, limit: int | None = None
                   ) -> EndToEndResult:
    """Score ``checkpoints`` (a models folder, a checkpoint, a list, or ``{row label: path}``) end to end on
    ``split`` of the HaGRID root ``data_dir`` (see the module docstring), restricted to the frames ``uuids``
    and the first ``limit`` when given. Writes ``end_to_end.{md,csv}`` into ``graphs_dir`` (None: no files)."""
    if not 0 < iou_threshold <= 1:
        raise UserFacingError(f"the IoU threshold must be in (0, 1], got {iou_threshold}")
    models, names = _load_models(checkpoints, backend, device)
    frames, notes = load_frames(data_dir, names, split, uuids=uuids, limit=limit)
    if not frames:
        raise DataError(data_dir, f"no frame of split {split!r} has a hand of the checkpoints' classes")
    config, more = _static(detector)
    if cache_dir is None:
        cache_dir = Path(graphs_dir if graphs_dir is not None else ".") / CACHE_DIRNAME
    cache = DetectionCache(cache_file(cache_dir, split, config))
    detect, tally = _LazyDetector(config), _Tally()
    from tqdm import tqdm

    try:
        for frame in tqdm(frames, desc="end-to-end", unit="frame", disable=None if progress else True):
            _run_frame(frame, names, models, cache, detect, iou_threshold, tally)
    finally:
        detect.close()
    y, matched = np.asarray(tally.y, dtype=np.int64), np.asarray(tally.matched, dtype=bool)
    result = EndToEndResult(
        rows=[model_row(m, y, matched) for m in models], split=split, data_dir=Path(data_dir),
        iou_threshold=iou_threshold, detector=config, n_frames=tally.n_frames, n_detections=tally.n_detections,
        unmatched_detections=tally.unmatched, detected_now=detect.calls, cache_path=cache.path,
        unreadable=tally.unreadable, notes=notes + more, hand_keys=tally.keys, y_true=y, matched=matched,
        predictions={m.name: {"annotated": np.asarray(m.ann_pred, np.int64),
                              "end_to_end": np.asarray(m.e2e_pred, np.int64)} for m in models})
    if graphs_dir is not None:
        result.write(graphs_dir)
    return result
