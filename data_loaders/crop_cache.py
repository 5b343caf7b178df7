"""Reading crops: one crop file (:func:`load_crop`), or a table's crops decoded once into an on-disk cache.

A split too large for memory (46,821 crops are 2.3 GB as 128x128 ``uint8``) would otherwise decode every
JPEG again every epoch. :func:`decoded_crops` decodes them once into
``<crops_dir>/.decoded/crops_<size>px_<digest>.u8``, a raw ``(N, 3, size, size)`` ``uint8`` array in the
table's row order, and later runs open it read-only as a ``np.memmap`` (the OS page cache then holds it).

* The digest covers what the pixels depend on: the size and every crop's path (relative to the crops
  folder), byte size and modification time, in row order. So another table, split, class set or
  crop run, or a crop rewritten since (a repaired or a damaged one), never reuses a wrong file; the
  ``stat`` of 46,821 crops takes ~0.2 s. A rebuild deletes the older versions of the same cache (same
  rows and size, older crop files); the caches of other tables stay.
* Written atomically: the array goes to a temporary file, moved into place with ``os.replace``, then the
  sidecar ``<name>.json`` (shape, digests) is written, so a sidecar means a whole array. A file of the
  wrong length or a sidecar that does not match is rebuilt.
* Concurrent readers (DDP ranks, two runs) are safe: the first process to take ``<name>.lock``
  (``fcntl.flock``) builds, the others wait for it and then open what it built.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from common.errors import DataError
from common.files import TMP_PREFIX, TMP_SUFFIX, atomic_open, atomic_write_text
from common.parallel import mapped

from .crop import repair_command
from .hand_table import HandTable
from .images import IMAGE_NOT_FOUND, open_rgb

log = logging.getLogger(__name__)

CACHE_DIR = ".decoded"  # inside the crops folder
FORMAT_VERSION = 1
CHUNK = 64  # crops per decoding task


# --------------------------------------------------------------------------- #
# one crop
# --------------------------------------------------------------------------- #
def load_crop(path: str, size: int, repair: str | None = None) -> np.ndarray:
    """Read one crop as ``(3, size, size)`` uint8.

    A missing or damaged file is a :class:`DataError` naming it and ``repair``, the command that
    rebuilds it (:func:`~data_loaders.crop.repair_command`; by default one for the crop's folder).
    """
    try:
        im = open_rgb(path)
    except DataError as e:
        what = "crop file missing" if e.problem == IMAGE_NOT_FOUND else f"damaged crop ({e.problem})"
        p = Path(path)
        fix = repair or f"hand-gestures crop --data-dir <HaGRID root> --out {p.parents[min(2, len(p.parents) - 1)]}"
        raise DataError(path, f"{what}: `{fix}` rebuilds missing and damaged crops and keeps the others") from None
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))


def table_repair_command(table: HandTable) -> str | None:
    """The command that rebuilds ``table``'s crops with their own settings, when it came from a crops folder."""
    info = table.meta.get("crop_info")
    return repair_command(info, table.crops_dir) if info and table.crops_dir is not None else None


# --------------------------------------------------------------------------- #
# the decoded cache
# --------------------------------------------------------------------------- #
def cache_paths(table: HandTable, size: int) -> tuple[Path, Path]:
    """``(array file, sidecar)`` of ``table``'s decoded crops at ``size``; the name encodes both."""
    return _paths(table, _identity(table, size))


def _paths(table: HandTable, ident: dict) -> tuple[Path, Path]:
    stem = f"crops_{ident['shape'][-1]}px_{ident['digest']}"
    folder = Path(table.crops_dir) / CACHE_DIR
    return folder / f"{stem}.u8", folder / f"{stem}.json"


def _identity(table: HandTable, size: int) -> dict:
    """The sidecar of ``table``'s cache: shape and two digests. ``digest`` (in the file name) covers
    what the pixels depend on: format (decoding, resizing), size, and each crop's path (relative to
    the crops folder), byte size and modification time, in row order; ``rows`` the paths and size
    alone, so a rebuild can tell the older versions of the same cache from other tables' caches."""
    if table.crop_paths is None or table.crops_dir is None:
        raise ValueError("this hand table has no crops folder; build it from a crop manifest")
    head = f"format {FORMAT_VERSION} size {size}".encode()
    pixels, rows = hashlib.sha256(head), hashlib.sha256(head)
    root = str(table.crops_dir).rstrip(os.sep) + os.sep
    for p in table.crop_paths:
        try:
            st = os.stat(p)
            stamp = f"{st.st_size} {st.st_mtime_ns}"
        except OSError:
            stamp = "missing"  # the build then stops on it with load_crop's error
        rel = "\n" + p.removeprefix(root)
        rows.update(rel.encode())
        pixels.update(f"{rel} {stamp}".encode())
    return {"format": FORMAT_VERSION, "shape": [len(table), 3, size, size], "dtype": "uint8",
            "digest": pixels.hexdigest()[:20], "rows": rows.hexdigest()[:20]}


def _remove_older_versions(side: Path, ident: dict) -> None:
    """Delete the caches of the same rows and size built from earlier versions of the crop files."""
    for other in side.parent.glob("crops_*.json"):
        try:
            meta = json.loads(other.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if other != side and meta.get("rows") == ident["rows"] and meta.get("shape") == ident["shape"]:
            other.with_suffix(".u8").unlink(missing_ok=True)
            other.unlink(missing_ok=True)


def _open_valid(data: Path, side: Path, want: dict) -> np.memmap | None:
    """The cached array read-only, or None when it is absent, short or not the one ``want`` describes."""
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
        nbytes = data.stat().st_size
    except (OSError, ValueError):
        return None
    if meta != want or nbytes != int(np.prod(want["shape"])):
        return None
    if nbytes == 0:
        return np.zeros(want["shape"], np.uint8)  # mmap cannot map an empty file
    return np.memmap(data, dtype=np.uint8, mode="r", shape=tuple(want["shape"]))


def decoded_crops(table: HandTable, size: int, *, workers: int = 1, progress: bool = False) -> np.memmap | None:
    """``table``'s crops as a read-only ``(N, 3, size, size)`` uint8 memmap in row order, built once.

    ``workers`` > 1 decodes in a process pool. Returns None (with a warning) when the crops folder
    cannot hold the cache (read-only, disk full): the caller then reads the JPEGs. A missing or damaged crop is
    the :class:`DataError` of :func:`load_crop`, and no cache is left behind.
    """
    want = _identity(table, size)
    data, side = _paths(table, want)
    found = _open_valid(data, side, want)
    if found is not None:
        return found
    try:
        data.parent.mkdir(parents=True, exist_ok=True)
        with open(data.with_suffix(".lock"), "a+b") as lock, _locked(lock):
            found = _open_valid(data, side, want)  # built by another process while we waited
            if found is None:
                _build(table, size, data, workers, progress)
                atomic_write_text(side, json.dumps(want, indent=1) + "\n")
                _remove_older_versions(side, want)
                found = _open_valid(data, side, want)
    except OSError as e:  # read-only folder, disk full: the temporary file is gone, the JPEGs still work
        log.warning("%s: cannot write the decoded crop cache there (%s); reading the JPEGs instead",
                    data.parent, e.strerror or e)
        return None
    if found is None:
        raise DataError(data, "the decoded crop cache just written does not read back; delete the folder")
    return found


@contextlib.contextmanager
def _locked(f) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``f`` (waiting for it); a no-op where ``fcntl`` does not exist."""
    try:
        import fcntl
    except ImportError:  # Windows: concurrent builders each write and os.replace a whole file
        yield
        return
    fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _build(table: HandTable, size: int, data: Path, workers: int, progress: bool) -> None:
    """Decode every crop in row order and write the array atomically (stale temporary files removed first)."""
    for stray in data.parent.glob(f"{TMP_PREFIX}{data.name}.*{TMP_SUFFIX}"):
        stray.unlink(missing_ok=True)  # a killed build's; only the lock holder writes these
    paths, repair = list(table.crop_paths), table_repair_command(table)
    tasks = [(paths[i:i + CHUNK], size, repair) for i in range(0, len(paths), CHUNK)]
    from tqdm.auto import tqdm

    with mapped(_decode_chunk, tasks, workers) as blocks, \
            tqdm(total=len(paths), desc=f"decoding {len(paths)} crops once ({data.parent})", unit="img",
                 disable=None if progress else True, leave=False) as bar, atomic_open(data, "wb") as f:
        for block in blocks:  # in row order
            f.write(block.tobytes())
            bar.update(len(block))


def _decode_chunk(task: tuple[list[str], int, str | None]) -> np.ndarray:
    paths, size, repair = task
    out = np.empty((len(paths), 3, size, size), np.uint8)
    for i, p in enumerate(paths):
        out[i] = load_crop(p, size, repair)
    return out
