"""The crop manifest (``manifest.jsonl``) and the crop settings (``crop_info.json``).

One JSON object per line, one line per cropped hand, in the schema of
docs/architecture.md. JSON lines rather than one big JSON document so a
reader can say exactly which line is broken, and so ~1.3M hands can be
written and read as a stream (:func:`iter_manifest`). Both files are written
atomically.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from itertools import chain
from pathlib import Path
from typing import Iterable, Iterator

import orjson

from common.errors import DataError
from common.files import atomic_open, atomic_write_bytes

from .hand_graph import NUM_NODES

MANIFEST_NAME = "manifest.jsonl"
CROP_INFO_NAME = "crop_info.json"
SKIPPED_NAME = "skipped.csv"
#: Keys every manifest line must have (``user_id``, ``landmarks``, ``leading_hand`` may be null).
MANIFEST_KEYS = (
    "key", "uuid", "hand", "split", "label", "user_id", "crop", "image", "image_size",
    "bbox", "crop_box", "landmarks", "leading_hand",
)
_REQUIRED_NON_NULL = ("key", "uuid", "hand", "split", "label", "crop", "image_size", "bbox", "crop_box")


def write_manifest(path: str | Path, entries: Iterable[dict]) -> int:
    """Write ``entries`` as JSON lines, atomically; returns the number of lines."""
    n = 0
    with atomic_open(path, "wb") as f:
        for e in entries:
            f.write(orjson.dumps(e))
            f.write(b"\n")
            n += 1
    return n


def iter_manifest(path: str | Path, *, line_numbers: bool = False) -> Iterator:
    """Yield a manifest's entries one line at a time, each checked by :func:`check_entry`.

    Streams: memory does not grow with the file (full HaGRID is ~1.3M lines of
    nested landmark lists, GBs as Python objects). A malformed line raises
    :class:`DataError` naming the file and the line number. With
    ``line_numbers``, yields ``(line number, entry)`` pairs.
    """
    path = Path(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise DataError(path, "crop manifest not found: run `hand-gestures crop` first") from None
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                e = orjson.loads(line)
            except orjson.JSONDecodeError as err:
                raise DataError(path, f"line {lineno}: malformed JSON ({err})") from None
            problem = check_entry(e)
            if problem:
                key = e.get("key") if isinstance(e, dict) and isinstance(e.get("key"), str) else None
                raise DataError(path, f"line {lineno}: {problem}", key)
            yield (lineno, e) if line_numbers else e


def read_manifest(path: str | Path) -> list[dict]:
    """Every entry of a manifest as a list (small manifests only: use :func:`iter_manifest` for HaGRID)."""
    return list(iter_manifest(path))


def count_manifest_lines(path: str | Path) -> int:
    """An upper bound on the number of entries (newline count, no parsing), to preallocate arrays."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def _numbers(v: object, n: int) -> bool:
    """``v`` is a list of ``n`` JSON numbers (bools are not numbers; orjson never yields NaN or inf)."""
    return type(v) is list and len(v) == n and all(type(x) is float or type(x) is int for x in v)


def _is_landmarks(v: object) -> bool:
    """``v`` is ``NUM_NODES`` ``[x, y]`` pairs of numbers (checked with C-level loops: ~1.3M lines)."""
    if type(v) is not list or len(v) != NUM_NODES:
        return False
    if set(map(type, v)) != {list} or set(map(len, v)) != {2}:
        return False
    return set(map(type, chain.from_iterable(v))) <= {float, int}


def check_entry(e: object) -> str | None:
    """What is wrong with one manifest entry, or None when it has every field with the right type."""
    if not isinstance(e, dict):
        return f"expected a JSON object, got {type(e).__name__}"
    missing = [k for k in _REQUIRED_NON_NULL if e.get(k) is None]
    if missing:
        return f"missing {', '.join(missing)}"
    for k in ("key", "uuid", "split", "label", "crop"):
        if type(e[k]) is not str:
            return f"{k}: expected a string, got {e[k]!r}"
    for k in ("user_id", "image", "leading_hand"):
        if e.get(k) is not None and type(e[k]) is not str:
            return f"{k}: expected a string or null, got {e[k]!r}"
    if type(e["hand"]) is not int:
        return f"hand: expected an integer, got {e['hand']!r}"
    if not _numbers(e["image_size"], 2) or not all(v > 0 for v in e["image_size"]):
        return f"image_size: expected 2 positive numbers, got {e['image_size']!r}"
    if not _numbers(e["bbox"], 4):
        return f"bbox: expected 4 numbers, got {e['bbox']!r}"
    if not _numbers(e["crop_box"], 3):
        return f"crop_box: expected 3 numbers, got {e['crop_box']!r}"
    lm = e.get("landmarks")
    if lm is not None and not _is_landmarks(lm):
        return f"landmarks: expected null or {NUM_NODES}x2 numbers"
    return None


@dataclass
class CropInfo:
    """The settings a crops directory was made with; a resumed run must match them."""

    size: int
    box_scale: float
    class_names: list[str]
    source: str  # the HaGRID root
    format: str  # "v1" or "v2"
    quality: int = 95
    resample: str = "bicubic"
    fill: int = 0  # constant padding value where the square leaves the image
    splits: list[str] | None = None  # splits of the last run; None = all
    counts: dict = field(default_factory=dict)  # {split: {label: crops}} of the whole manifest
    box_source: str = "annotation"  # what each square is centred on (crop.BOX_SOURCES); older folders: annotation
    box_model: dict | None = None  # for "landmarks": the box model's radii (BoxModel.to_dict())
    context: str = "square"  # "box": the square outside the hand's box is filled (crop.CONTEXTS); older: square

    #: settings that change the pixels of a crop: a crops dir may only be resumed when they match
    PIXEL_SETTINGS = ("size", "box_scale", "resample", "fill", "quality", "box_source", "box_model", "context")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, path: str | Path = CROP_INFO_NAME) -> "CropInfo":
        names = {f.name for f in fields(cls)}
        missing = [k for k in ("size", "box_scale", "class_names", "source", "format") if k not in d]
        if missing:
            raise DataError(path, f"crop info lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in d.items() if k in names})

    def pixel_differences(self, other: "CropInfo") -> list[str]:
        """Pixel settings that differ in a way that makes existing crops unusable."""
        return [f"{k}: {getattr(self, k)!r} != {getattr(other, k)!r}"
                for k in self.PIXEL_SETTINGS if getattr(self, k) != getattr(other, k)]

    def reuse_differences(self, other: "CropInfo") -> list[str]:
        """Everything that stops crops made with ``self`` being reused by a run with ``other``:
        the pixel settings and the source dataset (the same uuid in another dataset is another image)."""
        diff = self.pixel_differences(other)
        if self.source != other.source:
            diff.insert(0, f"source dataset: {self.source} != {other.source}")
        return diff


def _info_path(path: str | Path) -> Path:
    path = Path(path)
    return path / CROP_INFO_NAME if path.is_dir() else path


def write_crop_info(path: str | Path, info: CropInfo) -> None:
    """Write ``crop_info.json`` (``path`` is the file or the crops directory), atomically."""
    atomic_write_bytes(_info_path(path), orjson.dumps(info.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")


def load_crop_info(path: str | Path) -> CropInfo:
    """Read ``crop_info.json`` (file or crops directory) as a :class:`CropInfo`."""
    p = _info_path(path)
    try:
        d = orjson.loads(p.read_bytes())
    except FileNotFoundError:
        raise DataError(p, "crop info not found: run `hand-gestures crop` first") from None
    except orjson.JSONDecodeError as e:
        raise DataError(p, f"malformed JSON ({e})") from None
    if not isinstance(d, dict):
        raise DataError(p, "expected a JSON object")
    return CropInfo.from_dict(d, p)


def read_crop_info(path: str | Path) -> dict:
    """``crop_info.json`` as a plain dict (checked), for callers that store it (e.g. in checkpoints)."""
    return load_crop_info(path).to_dict()
