"""The crop step: one square crop per annotated hand, plus the manifest.

Every image model reads these crops, so the expensive work (decoding 1080p
JPEGs) happens once. For each hand the square is centred on the annotated box
(or, with ``box_source="landmarks"``, on the box :mod:`~data_loaders.box_model`
derives from its landmarks, as prediction on a new photo must), its side
``max(w, h) * box_scale`` in pixels, padded with a constant where it
leaves the image, and resized to ``size``. Hands are grouped by image so each
image is decoded once, at the smallest JPEG draft scale that still gives the
crop at least ``size`` pixels per side.

Resumable: a crop file that exists and is a whole JPEG (:func:`crop_is_whole`,
no decoding) is kept, only its image header is read to fill the manifest line;
a damaged one is written again. Every file is written atomically. One run at a
time writes a folder (its lock file, ``.crop.lock``), and a crops folder is only
resumed from the same dataset (``source``) with the same pixel settings. A run
over some splits (``--splits val``) keeps the manifest lines of the other splits
and replaces those of its own; the manifest is written as a stream, never held
whole in memory.

Workers never raise and never grow without bound: a missing, corrupt or
truncated image (any exception PIL raises for it), a box with no pixel in the
image, or a box reaching implausibly far past it (which would otherwise mean a
padded square of GBs) becomes a counted skip naming the file and uuid, listed in
``skipped.csv`` and in the summary; any other exception in a worker (e.g. a full
disk) is a ``crop_error`` skip of the hands concerned; a run that crops no hand
at all is an error, not an empty success. :func:`cut_square` copies only the
part of the square inside the image, so a worker's memory is bounded by the
decoded image and the output, whatever the box.
"""
from __future__ import annotations

import csv
import io
import itertools
import logging
import math
import os
import shlex
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from common.errors import DataError, UsageError
from common.files import atomic_write_text, exclusive_lock, is_temp_file
from common.parallel import mapped, usable_cpus

from .box_model import DEFAULT_BOX_MODEL, BoxModel, landmark_box
from .classes import GESTURES_18, GESTURES_33, NO_GESTURE, ClassSet, make_class_set
from .hagrid import (
    SPLITS,
    HagridAnnotations,
    HandRecord,
    SkipLog,
    box_far_outside,
    load_hagrid,
)
from .images import IMAGE_NOT_FOUND, atomic_save_jpeg, image_size, open_rgb
from .manifest import (
    CROP_INFO_NAME,
    MANIFEST_NAME,
    SKIPPED_NAME,
    CropInfo,
    iter_manifest,
    load_crop_info,
    write_crop_info,
    write_manifest,
)

DEFAULT_SIZE = 128
DEFAULT_BOX_SCALE = 1.5
JPEG_QUALITY = 95
RESAMPLE = "bicubic"
FILL = 0  # PIL's crop pads with 0 (black) outside the image
#: What each square is centred on: the annotated box, or the box model's box around the landmarks.
BOX_SOURCES = ("annotation", "landmarks")
#: What a crop shows around the hand: the whole square ("square", the default), or only the box itself, the
#: rest of the square filled (``"box"``: how HaGRID crop sets such as ../shared/hagrid_crops are framed, so
#: models trained on them can be scored on, and predict from, full frames framed the same way).
CONTEXTS = ("square", "box")
NO_LANDMARKS_FOR_BOX = "no_landmarks_for_box"  # skip reason of a hand without landmarks, box_source landmarks

WRITTEN, REUSED, SKIPPED = "written", "reused", "skipped"
REPAIRED = "damaged_crop"  # the reason of a written result that replaced a damaged crop (detail: its path)
LOCK_NAME = ".crop.lock"  # held while a run writes the folder: one writer at a time

log = logging.getLogger(__name__)


def default_workers() -> int:
    """min(usable CPUs, 8): decoding scales with cores, more only adds memory."""
    return min(usable_cpus(), 8)


def crop_path(record: HandRecord) -> str:
    """Path of a hand's crop, relative to the crops directory."""
    return f"{record.split}/{record.label}/{record.key}.jpg"


def square_box(bbox: Sequence[float], image_wh: tuple[int, int], box_scale: float) -> tuple[int, int, int]:
    """``(x0, y0, side)`` in source pixels: the square centred on the box, side ``max(w, h) * box_scale``.

    Integers, so the manifest's ``crop_box`` describes the crop exactly.
    """
    x, y, w, h = bbox
    W, H = image_wh
    side = max(1, round(max(w * W, h * H) * box_scale))
    cx, cy = (x + w / 2) * W, (y + h / 2) * H
    return round(cx - side / 2), round(cy - side / 2), side


def box_problem(bbox: Sequence[float], image_wh: tuple[int, int]) -> tuple[str, str] | None:
    """``(reason, detail)`` when a box cannot be cropped: less than one pixel inside the image, or
    reaching implausibly far past it (:func:`~data_loaders.hagrid.box_far_outside`); else None.

    The loader already rejects such boxes; this guards the worker against records from anywhere.
    """
    x, y, w, h = bbox
    W, H = image_wh
    if w * W < 1 or h * H < 1:
        return "zero_size_box", f"box is {w * W:.2f}x{h * H:.2f} px in a {W}x{H} image"
    far = box_far_outside(x, y, w, h)
    if far:
        return "box_outside_image", f"box {list(bbox)}: {far}"
    ix = min(W, (x + w) * W) - max(0.0, x * W)
    iy = min(H, (y + h) * H) - max(0.0, y * H)
    if ix < 1 or iy < 1:
        return "box_outside_image", f"box {list(bbox)} has no pixel inside the {W}x{H} image"
    return None


def draft_request(image_wh: tuple[int, int], sides: Iterable[int], size: int) -> tuple[int, int] | None:
    """Smallest decode size at which every square of ``sides`` px still has >= ``size`` px.

    JPEG draft picks the largest 1/2^k scale that keeps the image at least this big.
    """
    smallest = min(sides, default=0)
    if smallest <= size:
        return None
    f = size / smallest
    return math.ceil(image_wh[0] * f), math.ceil(image_wh[1] * f)


def _block_means(a: np.ndarray, axis: int, v0: int, i0: int, i1: int, k: int, fill: int) -> tuple[np.ndarray, int]:
    """Means of ``a`` (the image pixels ``[v0, v0 + len)`` along ``axis``) over the blocks ``[i0 + j*k,
    i0 + (j+1)*k)`` that hold any of them, each cut at ``i1`` (the square's end), pixels outside the image
    counted as ``fill``. Returns the means and the first block's index ``j``."""
    v1 = v0 + a.shape[axis]
    j = np.arange((v0 - i0) // k, -(-(v1 - i0) // k))
    lo, hi = i0 + j * k, np.minimum(i0 + (j + 1) * k, i1)  # each block, cut by the square
    inside = np.minimum(hi, v1) - np.maximum(lo, v0)  # of which image pixels
    sums = np.add.reduceat(a, np.maximum(lo, v0) - v0, axis=axis, dtype=np.float64)
    shape = [1] * a.ndim
    shape[axis] = len(j)
    width, inside = (hi - lo).reshape(shape), inside.reshape(shape)
    return (sums + fill * (width - inside)) / width, int(j[0])


def _kept_pixels(keep: tuple[float, float, float, float], s: float, W: int, H: int) -> tuple[int, int, int, int]:
    """``keep`` (source pixels) in decoded pixels, rounded to whole pixels and clipped to the image."""
    x0, y0, x1, y1 = (round(v * s) for v in keep)
    return min(max(x0, 0), W), min(max(y0, 0), H), min(max(x1, 0), W), min(max(y1, 0), H)


def box_pixels(bbox: Sequence[float], image_wh: tuple[int, int]) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` source pixels of a normalised ``[x, y, w, h]`` box (``keep`` of context "box")."""
    x, y, w, h = bbox
    W, H = image_wh
    return x * W, y * H, (x + w) * W, (y + h) * H


def cut_square(img: Image.Image, box: tuple[int, int, int], size: int, fill: int = FILL,
               keep: tuple[float, float, float, float] | None = None) -> Image.Image:
    """Crop the square ``box`` (source pixels) from ``img`` (decoded at ``img.info['scale']``), padded, resized.

    Only the part of the square inside the image (and inside ``keep``, ``(x0, y0, x1, y1)`` source pixels,
    when given: context ``"box"``) is copied; it is pasted onto a
    ``fill`` canvas, which is then resized with sub-pixel box coordinates. When
    the square is more than ``4 * size`` decoded pixels wide (a JPEG cannot be
    drafted below 1/8, or is not a JPEG), the visible part is first averaged
    over ``k x k`` blocks of the square's grid (outside pixels counted as
    ``fill``), so the canvas stays under ``~4 * size`` per side: memory is
    bounded by the visible part and the output, never by the padded square (a
    huge box would otherwise allocate GBs in a worker).
    """
    s = img.info.get("scale", 1.0)
    x0, y0, side = box
    fx0, fy0, fx1, fy1 = x0 * s, y0 * s, (x0 + side) * s, (y0 + side) * s
    ix0, iy0, ix1, iy1 = math.floor(fx0), math.floor(fy0), math.ceil(fx1), math.ceil(fy1)
    W, H = img.size
    k = max(1, math.floor((fx1 - fx0) / (2 * size)))  # block side; 1 unless the square is >= 4*size px
    canvas = Image.new("RGB", (math.ceil((ix1 - ix0) / k), math.ceil((iy1 - iy0) / k)), (fill,) * 3)
    lo_x, lo_y, hi_x, hi_y = (0, 0, W, H) if keep is None else _kept_pixels(keep, s, W, H)
    vx0, vy0 = min(max(ix0, lo_x), hi_x), min(max(iy0, lo_y), hi_y)  # the part of the square inside the image
    vx1, vy1 = min(max(ix1, lo_x), hi_x), min(max(iy1, lo_y), hi_y)
    if vx1 > vx0 and vy1 > vy0:
        part = img.crop((vx0, vy0, vx1, vy1))
        at = (vx0 - ix0, vy0 - iy0)
        if k > 1:
            a, jx = _block_means(np.asarray(part), 1, vx0, ix0, ix1, k, fill)
            a, jy = _block_means(a, 0, vy0, iy0, iy1, k, fill)
            part = Image.fromarray(np.rint(a).clip(0, 255).astype(np.uint8), "RGB")
            at = (jx, jy)
        canvas.paste(part, at)
    return canvas.resize((size, size), Image.Resampling.BICUBIC,
                         box=((fx0 - ix0) / k, (fy0 - iy0) / k, (fx1 - ix0) / k, (fy1 - iy0) / k))


# --------------------------------------------------------------------------- #
# worker side: one image, all its hands; never raises
# --------------------------------------------------------------------------- #
_SETTINGS: dict = {}

# one hand of a task: (row index, absolute crop path, bbox, landmarks when the box comes from them, else None)
Hand = tuple[int, str, tuple[float, float, float, float], "np.ndarray | None"]
# one hand's result: (row index, status, image_size | None, crop_box | None, reason, detail)
Result = tuple[int, str, "tuple[int, int] | None", "tuple[int, int, int] | None", str, str]


def _init_worker(settings: dict) -> None:
    _SETTINGS.clear()
    _SETTINGS.update(settings)


def crop_image(task: tuple[str, list[Hand]]) -> list[Result]:
    """Crop every hand of one image. Any failure becomes a skip result, never an exception."""
    path, hands = task
    try:
        return _crop_image(path, hands, **_SETTINGS)
    except Exception as e:  # a worker must never die with a traceback
        return [(i, SKIPPED, None, None, "crop_error", f"{type(e).__name__}: {e}") for i, *_ in hands]


def _image_problem(e: DataError) -> str:
    return "missing_image" if e.problem == IMAGE_NOT_FOUND else "corrupt_image"


def crop_is_whole(path: str | Path) -> bool:
    """Whether a crop file is a complete JPEG: SOI (FF D8) first, EOI (FF D9) last, a readable header.

    Cheap (two small reads and a header parse, no decoding), so a resumed run can check every crop it keeps:
    it catches the empty and truncated files a full disk or an interrupted copy leaves.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(-2, os.SEEK_END)  # OSError for a file under 2 bytes
            if not (head == b"\xff\xd8" and f.read(2) == b"\xff\xd9"):
                return False
        with Image.open(path) as im:  # the header parses (no pixel decoding): catches a zeroed middle
            return im.size[0] > 0 and im.size[1] > 0
    except Exception:  # noqa: BLE001 - OSError, UnidentifiedImageError, SyntaxError...: not whole
        return False


def _centre_box(bbox, landmarks, wh: tuple[int, int], box_model: dict | None) -> tuple[float, float, float, float]:
    """The box a hand's square is centred on: the annotated one, or the box model's around the landmarks."""
    return bbox if box_model is None else landmark_box(landmarks, wh, BoxModel.from_dict(box_model))


def _crop_image(path: str, hands: list[Hand], *, size: int, box_scale: float, quality: int,
                overwrite: bool, box_model: dict | None = None, context: str = "square") -> list[Result]:
    out: list[Result] = [(i, SKIPPED, None, None, NO_LANDMARKS_FOR_BOX,
                          "the hand has no landmarks to derive its box from (--box-source landmarks)") for i, _, _, lm in hands
                         if box_model is not None and lm is None]
    hands = [h for h in hands if box_model is None or h[3] is not None]
    if not hands:
        return out
    damaged = {i for i, dest, *_ in hands if not overwrite and os.path.exists(dest) and not crop_is_whole(dest)}
    todo = [h for h in hands if overwrite or h[0] in damaged or not os.path.exists(h[1])]
    todo_idx = {h[0] for h in todo}
    img = None
    try:
        if todo:
            def want(wh: tuple[int, int]) -> tuple[int, int] | None:
                return draft_request(wh, (square_box(_centre_box(b, lm, wh, box_model), wh, box_scale)[2]
                                          for _, _, b, lm in todo), size)
            img = open_rgb(path, draft_to=want)
            wh = img.info["original_size"]
        else:
            wh = image_size(path)  # header only: the crops exist
    except DataError as e:
        return out + [(i, SKIPPED, None, None, _image_problem(e), e.problem) for i, *_ in hands]
    for i, dest, bbox, lm in hands:
        bbox = _centre_box(bbox, lm, wh, box_model)
        bad = box_problem(bbox, wh)
        if bad:
            out.append((i, SKIPPED, wh, None, *bad))
            continue
        box = square_box(bbox, wh, box_scale)
        if i not in todo_idx:
            out.append((i, REUSED, wh, box, "", ""))
            continue
        try:
            keep = box_pixels(bbox, wh) if context == "box" else None
            atomic_save_jpeg(cut_square(img, box, size, keep=keep), dest, quality)
        except Exception as e:  # e.g. disk full: this hand only, the others may still be fine
            out.append((i, SKIPPED, wh, None, "crop_error", f"{type(e).__name__}: {e}"))
            continue
        out.append((i, WRITTEN, wh, box, *((REPAIRED, dest) if i in damaged else ("", ""))))
    return out


# --------------------------------------------------------------------------- #
# main side
# --------------------------------------------------------------------------- #
@dataclass
class CropSummary:
    """What a crop run produced and everything it left out, by reason."""

    out_dir: Path
    splits: list[str]
    class_names: list[str]
    written: Counter = field(default_factory=Counter)  # (split, label) -> crops written
    reused: Counter = field(default_factory=Counter)  # (split, label) -> existing crops kept
    skipped: SkipLog = field(default_factory=SkipLog)  # hands whose image could not be cropped
    annotation_skipped: SkipLog = field(default_factory=SkipLog)  # from load_hagrid
    annotation_degraded: SkipLog = field(default_factory=SkipLog)  # kept without landmarks
    excluded: SkipLog = field(default_factory=lambda: SkipLog(entries=None))  # outside the class set
    kept: Counter = field(default_factory=Counter)  # (split, label) -> manifest lines kept from earlier runs
    repaired: list[str] = field(default_factory=list)  # damaged crops (truncated, empty) written again
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_written(self) -> int:
        return sum(self.written.values())

    @property
    def n_reused(self) -> int:
        return sum(self.reused.values())

    @property
    def n_crops(self) -> int:
        return self.n_written + self.n_reused

    def crops(self, split: str, label: str) -> int:
        return self.written[split, label] + self.reused[split, label]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {label: crops}}`` (written + reused), every class listed."""
        return {s: {c: self.crops(s, c) for c in self.class_names} for s in self.splits}

    def lines(self) -> list[str]:
        rate = self.n_written / self.seconds if self.seconds > 0 else 0.0
        out = [f"crops in {self.out_dir}: {self.n_crops} (written {self.n_written}, reused {self.n_reused}) "
               f"in {self.seconds:.1f} s ({rate:.0f} written/s)"]
        width = max([len(c) for c in self.class_names] + [5])
        head = f"  {'class':<{width}}" + "".join(f" {s + ' new':>11} {s + ' kept':>11}" for s in self.splits)
        out.append(head)
        for c in self.class_names:
            out.append(f"  {c:<{width}}" + "".join(f" {self.written[s, c]:>11} {self.reused[s, c]:>11}"
                                                    for s in self.splits))
        out.append(f"  {'total':<{width}}" + "".join(
            f" {sum(self.written[s, c] for c in self.class_names):>11}"
            f" {sum(self.reused[s, c] for c in self.class_names):>11}" for s in self.splits))
        for title, log in (("hands skipped while cropping", self.skipped),
                           ("hands skipped in the annotations", self.annotation_skipped),
                           ("hands kept without landmarks", self.annotation_degraded),
                           ("excluded by the class set (not errors)", self.excluded)):
            if log.counts:
                out.append(f"{title}: {log.total()}")
                out.extend("  " + line for line in log.summary_lines())
        if not self.skipped.counts and not self.annotation_skipped.counts:
            out.append("skipped hands: none")
        if self.kept:
            by_split = Counter()
            for (split, _), n in self.kept.items():
                by_split[split] += n
            out.append("manifest lines kept from earlier runs (splits not cropped now): "
                       + ", ".join(f"{sp} {n}" for sp, n in by_split.items()))
        if self.repaired:
            out.append(f"damaged crops written again: {len(self.repaired)} (e.g. {self.repaired[0]})")
        out.extend(f"warning: {w}" for w in self.warnings)
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def _check_settings(out_dir: Path, info: CropInfo, overwrite: bool) -> CropInfo | None:
    """The settings of the crops already in ``out_dir`` when this run may keep them, else None.

    Crops made from another dataset (``source``) or with other pixel settings
    are refused (a :class:`DataError` suggesting ``--overwrite`` or another
    ``--out``); with ``overwrite`` nothing old is kept.
    """
    path = out_dir / CROP_INFO_NAME
    if not path.is_file():
        return None
    try:
        old = load_crop_info(out_dir)
    except DataError:
        if overwrite:
            return None
        raise
    diff = old.reuse_differences(info)
    if not diff:
        return old
    if overwrite:
        return None
    what = []
    if old.source != info.source:
        what.append(f"from another dataset ({old.source}, not {info.source})")
    pixels = old.pixel_differences(info)
    if pixels:
        what.append(f"with other settings ({'; '.join(pixels)})")
    raise DataError(path, f"existing crops were made {' and '.join(what)}; "
                    "use --overwrite to redo them or choose another --out")


def _kept_lines(manifest: Path, redo: set[str] | None, new_keys: set[str]) -> Iterator[dict]:
    """Lines of an earlier manifest that a run over the splits ``redo`` keeps: those of other splits
    (None: all splits are redone, nothing is kept), minus hands this run crops again."""
    if redo is None or not manifest.is_file():
        return
    try:
        for e in iter_manifest(manifest):
            if e["split"] not in redo and e["key"] not in new_keys:
                yield e
    except DataError as err:
        raise DataError(err.path, f"{err.problem}; this run keeps the lines of the splits it does not crop: "
                        "fix or delete the manifest (then crop every split), or choose another --out",
                        err.uuid) from None


def _remove_stray_temp_files(dirs: Iterable[Path]) -> int:
    """Delete temporary files left by an interrupted run (never complete crops)."""
    n = 0
    for d in dirs:
        try:
            entries = list(os.scandir(d))
        except FileNotFoundError:
            continue
        for e in entries:
            if is_temp_file(e.name):
                os.unlink(e.path)
                n += 1
    return n


def _manifest_entry(r: HandRecord, wh: tuple[int, int], box: tuple[int, int, int]) -> dict:
    lm = None if r.landmarks is None else np.round(r.landmarks.astype(np.float64), 6).tolist()
    return {
        "key": r.key, "uuid": r.uuid, "hand": r.hand, "split": r.split, "label": r.label,
        "user_id": r.user_id, "crop": crop_path(r), "image": str(r.image_path), "image_size": list(wh),
        "bbox": list(r.bbox), "crop_box": list(box), "landmarks": lm, "leading_hand": r.leading_hand,
    }


def write_skipped_csv(path: Path, summary: CropSummary) -> int:
    """Every hand that got no crop, and every hand kept without its landmarks, one row each."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "uuid", "hand", "reason", "outcome", "detail"])
    n = 0
    for log, outcome in ((summary.annotation_skipped, "skipped"), (summary.skipped, "skipped"),
                         (summary.annotation_degraded, "kept_without_landmarks")):
        for e in log.entries or ():
            w.writerow([e.file, e.uuid or "", "" if e.hand is None else e.hand, e.reason, outcome, e.detail])
            n += 1
    atomic_write_text(path, buf.getvalue())
    return n


def repair_command(crop_info: Mapping, crops_dir: str | Path) -> str:
    """The ``hand-gestures crop`` command that resumes ``crops_dir`` with its own settings (from its
    ``crop_info``): it keeps the good crops and rebuilds missing or damaged ones."""
    names = [c for c in crop_info.get("class_names", ()) if c != NO_GESTURE]
    args = ["hand-gestures", "crop", "--data-dir", str(crop_info.get("source") or "<HaGRID root>"),
            "--out", str(crops_dir)]
    if tuple(names) != GESTURES_18:
        args += ["--classes", "hagrid33" if tuple(names) == GESTURES_33 else ",".join(names)]
    if NO_GESTURE in crop_info.get("class_names", ()):
        args.append("--include-no-gesture")
    if crop_info.get("size", DEFAULT_SIZE) != DEFAULT_SIZE:
        args += ["--size", str(crop_info["size"])]
    if crop_info.get("box_scale", DEFAULT_BOX_SCALE) != DEFAULT_BOX_SCALE:
        args += ["--box-scale", str(crop_info["box_scale"])]
    if crop_info.get("box_source", "annotation") != "annotation":
        args += ["--box-source", str(crop_info["box_source"])]
    if crop_info.get("context", "square") != "square":
        args += ["--context", str(crop_info["context"])]
    return " ".join(shlex.quote(a) for a in args)


def _box_settings(box_source: str) -> dict:
    """``crop_info``'s record of what the squares are centred on (so training records it and prediction derives
    the same boxes): for landmark boxes ``box_source`` and the box model's radii; for annotated boxes nothing,
    ``CropInfo``'s defaults (``"annotation"``, no box model), which is also what older crop folders mean."""
    return {"box_source": box_source, "box_model": DEFAULT_BOX_MODEL.to_dict()} if box_source == "landmarks" else {}


def _check_arguments(size: int, box_scale: float, box_source: str = "annotation", context: str = "square") -> None:
    """Refuse settings that can crop nothing (an infinite square overflows, a NaN compares false)."""
    if context not in CONTEXTS:
        raise UsageError(f"--context must be one of {', '.join(CONTEXTS)}, got {context!r}")
    if box_source not in BOX_SOURCES:
        raise UsageError(f"--box-source must be one of {', '.join(BOX_SOURCES)}, got {box_source!r}")
    if isinstance(size, bool) or not isinstance(size, Integral) or size < 1:
        raise UsageError(f"--size must be a whole number >= 1, got {size!r}")
    if not 0 < box_scale < math.inf:
        raise UsageError(f"--box-scale must be a finite number > 0, got {box_scale!r}")


@dataclass
class _Plan:
    """What a run keeps of the folder's earlier runs, decided under its lock."""

    info: CropInfo  # this run's settings; written before any crop
    redo: set[str] | None  # splits whose manifest lines this run replaces (None: it replaces the manifest)
    new_keys: set[str]  # hands this run crops, when it keeps other lines
    kept: Counter  # (split, label) -> manifest lines kept
    warnings: list[str]


def _prepare(out_dir: Path, info: CropInfo, ann: HagridAnnotations, splits: Sequence[str] | None,
             overwrite: bool) -> _Plan:
    """Check the folder's settings, count the manifest lines this run keeps, write ``crop_info``.

    A run over some splits keeps the other splits' lines (read here once, so a broken manifest
    fails now, not after the cropping); a run over all splits replaces the manifest.
    """
    previous = _check_settings(out_dir, info, overwrite)
    redo = set(splits) if splits and previous is not None else None
    new_keys = {r.key for r in ann.records} if redo is not None else set()
    kept: Counter = Counter()
    for e in _kept_lines(out_dir / MANIFEST_NAME, redo, new_keys):
        kept[e["split"], e["label"]] += 1
    warnings = list(ann.warnings) + _missing_splits(ann, splits)
    if splits and previous is None and (out_dir / MANIFEST_NAME).is_file():
        warnings.append(f"the manifest's lines of splits other than {', '.join(splits)} were dropped: "
                        "they were made from another dataset or with other settings")
    extra = [c for c in dict.fromkeys(c for _, c in kept) if c not in info.class_names]
    if extra:  # kept splits were cropped with a wider class set: crop_info must still list their labels
        order = [*(previous.class_names if previous else []), *extra]
        info.class_names += [c for c in dict.fromkeys(order) if c in extra]
        warnings.append(f"manifest lines kept from earlier runs hold class(es) {', '.join(extra)} outside this "
                        f"run's class set; {CROP_INFO_NAME} lists them after it")
    if previous is not None:
        info.counts = previous.counts  # the old manifest stays in place until this run replaces it
    write_crop_info(out_dir, info)  # first, so an interrupted run is checked on resume
    return _Plan(info, redo, new_keys, kept, warnings)


def _missing_splits(ann: HagridAnnotations, splits: Sequence[str] | None) -> list[str]:
    """A warning for each split asked for (every standard split when none is named) that got no hands."""
    got = set(ann.splits)
    return [f"split {s}: no hands of the class set found under {ann.root} (its annotation folder or file is "
            "missing or empty); the crops have no such split" for s in (splits or SPLITS) if s not in got]


def _make_tasks(records: Sequence[HandRecord], out_dir: Path, with_landmarks: bool = False
                ) -> list[tuple[str, list[Hand]]]:
    """One task per image (each image is decoded once), its crop folders made, stray temp files gone;
    each hand's landmarks go with it when its box is derived from them."""
    by_image: dict[Path, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_image[r.image_path].append(i)
    dirs = {out_dir / r.split / r.label for r in records}
    _remove_stray_temp_files([out_dir, *dirs])
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    return [(str(p), [(i, str(out_dir / crop_path(records[i])), records[i].bbox,
                       records[i].landmarks if with_landmarks else None) for i in idx])
            for p, idx in by_image.items()]


def _run_tasks(tasks: list[tuple[str, list[Hand]]], n_hands: int, settings: dict, workers: int | None,
               progress: bool) -> list[Result]:
    """Every task through :func:`crop_image` (in a process pool when more than one worker); results by hand."""
    results: list[Result | None] = [None] * n_hands
    n_workers = default_workers() if workers is None else max(1, workers)
    chunk = max(1, min(64, len(tasks) // (n_workers * 16)))
    # the pool forks before the progress bar starts its monitor thread (fork with threads is unsafe)
    with mapped(crop_image, tasks, n_workers, ordered=False, chunksize=chunk, initializer=_init_worker,
                initargs=(settings,)) as done, \
            tqdm(total=len(tasks), unit="img", desc="crop", disable=None if progress else True,  # None: off when not a terminal
                 smoothing=0.05) as bar:
        for out in done:
            for res in out:
                results[res[0]] = res
            bar.update()
    return results


def _write_outputs(out_dir: Path, records: Sequence[HandRecord], results: Sequence[Result], plan: _Plan,
                   summary: CropSummary) -> None:
    """The manifest (streamed, kept lines first), ``skipped.csv`` and the final ``crop_info`` counts."""
    def new_lines() -> Iterator[dict]:  # counts each hand in the summary as its line is written
        for r, (_, status, wh, box, reason, detail) in zip(records, results):
            if status == SKIPPED:
                summary.skipped.add(reason, r.image_path, r.uuid, detail, hand=r.hand)
                continue
            if reason == REPAIRED:
                summary.repaired.append(detail)
            (summary.written if status == WRITTEN else summary.reused)[r.split, r.label] += 1
            yield _manifest_entry(r, wh, box)

    write_manifest(out_dir / MANIFEST_NAME, itertools.chain(
        _kept_lines(out_dir / MANIFEST_NAME, plan.redo, plan.new_keys), new_lines()))  # replaced atomically
    write_skipped_csv(out_dir / SKIPPED_NAME, summary)
    info = plan.info
    info.counts = {}  # of the whole manifest: kept splits, then this run's
    for (sp, c), n in plan.kept.items():
        info.counts.setdefault(sp, dict.fromkeys(info.class_names, 0))[c] = n
    info.counts.update({sp: {c: summary.crops(sp, c) for c in info.class_names} for sp in summary.splits})
    write_crop_info(out_dir, info)


def _fail_if_empty(summary: CropSummary, data_dir: Path) -> None:
    """A run that had hands to crop and produced no crop is a failure, not an empty success."""
    if summary.n_crops:
        return
    log = summary.skipped
    reasons = ", ".join(f"{reason} {n}" for reason, n in log.counts.most_common())
    example = next((ex[0] for ex in log.examples.values() if ex), "")
    raise DataError(data_dir, f"nothing was cropped: all {log.total()} hands were skipped ({reasons}"
                    + (f"; e.g. {example}" if example else "") + f"); every hand is listed in "
                    f"{summary.out_dir / SKIPPED_NAME}")


def crop_dataset(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    class_set: ClassSet | None = None,
    size: int = DEFAULT_SIZE,
    box_scale: float = DEFAULT_BOX_SCALE,
    workers: int | None = None,
    splits: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    annotations: HagridAnnotations | None = None,
    box_source: str = "annotation",
    context: str = "square",
) -> CropSummary:
    """Crop every hand of ``class_set`` in ``data_dir`` into ``out_dir``; see the module docstring.

    Writes ``<out>/<split>/<label>/<uuid>_<hand>.jpg``, ``manifest.jsonl``,
    ``crop_info.json`` and ``skipped.csv``, holding ``<out>/.crop.lock`` meanwhile.
    ``annotations`` may be passed when already loaded (same class set and splits).
    ``box_source`` ``"landmarks"`` centres each square on the box :data:`~data_loaders.box_model.DEFAULT_BOX_MODEL`
    derives from the hand's landmarks (as prediction on new photos does) instead of the annotated box; hands
    without landmarks are then skipped (``no_landmarks_for_box``). ``context`` ``"box"`` fills the square
    outside the hand's box (:data:`CONTEXTS`).
    Returns the summary; a run that crops no hand at all raises :class:`DataError`.
    """
    _check_arguments(size, box_scale, box_source, context)
    t0 = time.perf_counter()
    data_dir, out_dir = Path(data_dir).resolve(), Path(out_dir)
    class_set = class_set or make_class_set()
    ann = annotations if annotations is not None else load_hagrid(data_dir, class_set, splits=splits)
    if not ann.records:
        raise DataError(data_dir, f"no hands of the class set ({', '.join(class_set.names)}) found"
                        + (f" in split(s) {', '.join(splits)}" if splits else ""))
    info = CropInfo(size=size, box_scale=float(box_scale), class_names=class_set.to_list(), source=str(data_dir),
                    format=ann.format, quality=JPEG_QUALITY, resample=RESAMPLE, fill=FILL,
                    splits=list(splits) if splits else None, context=context,
                    **_box_settings(box_source))
    out_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out_dir / LOCK_NAME, "crop run") as took_over:
        plan = _prepare(out_dir, info, ann, splits, overwrite)  # under the lock: no other run changes them
        if took_over:
            log.warning(took_over)
            plan.warnings.append(took_over)
        tasks = _make_tasks(ann.records, out_dir, with_landmarks=box_source == "landmarks")
        settings = {"size": size, "box_scale": float(box_scale), "quality": JPEG_QUALITY, "overwrite": overwrite,
                    "box_model": _box_settings(box_source).get("box_model"), "context": context}
        results = _run_tasks(tasks, len(ann.records), settings, workers, progress)
        summary = CropSummary(out_dir=out_dir, splits=ann.splits, class_names=class_set.to_list(),
                              annotation_skipped=ann.skipped, annotation_degraded=ann.degraded,
                              excluded=ann.excluded, kept=plan.kept, warnings=plan.warnings)
        _write_outputs(out_dir, ann.records, results, plan, summary)
    summary.seconds = time.perf_counter() - t0
    _fail_if_empty(summary, data_dir)
    return summary
