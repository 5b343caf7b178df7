"""The crop manifest (``manifest.jsonl``) and the crop settings (``crop_info.json``).

One JSON object per line, one line per cropped hand, in the schema of
docs/architecture.md. JSON lines rather than one big JSON document so a
reader can say exactly which line is broken, and so 550k hands can be
written as a stream. Both files are written atomically.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable

import orjson

from .errors import DataError
from .image_io import atomic_open, atomic_write_bytes

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


def read_manifest(path: str | Path) -> list[dict]:
    """Read a manifest; a malformed line raises :class:`DataError` naming the file and line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "crop manifest not found: run `hand-gestures crop` first") from None
    out = []
    for lineno, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            e = orjson.loads(line)
        except orjson.JSONDecodeError as err:
            raise DataError(path, f"line {lineno}: malformed JSON ({err})") from None
        if not isinstance(e, dict):
            raise DataError(path, f"line {lineno}: expected a JSON object, got {type(e).__name__}")
        missing = [k for k in _REQUIRED_NON_NULL if e.get(k) is None]
        if missing:
            raise DataError(path, f"line {lineno}: missing {', '.join(missing)}", e.get("key"))
        out.append(e)
    return out


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
    counts: dict = field(default_factory=dict)  # crops per split, of the last run

    #: settings that change the pixels of a crop: a crops dir may only be resumed when they match
    PIXEL_SETTINGS = ("size", "box_scale", "resample", "fill", "quality")

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
        """Settings that differ in a way that makes existing crops unusable."""
        return [f"{k}: {getattr(self, k)!r} != {getattr(other, k)!r}"
                for k in self.PIXEL_SETTINGS if getattr(self, k) != getattr(other, k)]


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
