"""Image reading and atomic file writes.

Every step that writes a file (crops, manifests, checkpoints, reports) goes
through :func:`atomic_open`: the data is written to a temporary file in the
target's own folder and moved into place with ``os.replace``, so an
interrupted run never leaves a half-written file under the final name (a
resumed run may trust any file it finds). Images are opened so that a
missing, corrupt or truncated file raises :class:`DataError` naming it,
instead of a decoder error deep in a worker.
"""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import IO, Callable, Iterator

from PIL import Image

from .errors import DataError

#: Prefix and suffix of temporary files; a stray one is the trace of an interrupted write.
TMP_PREFIX = ".tmp-"
TMP_SUFFIX = ".part"
#: ``DataError.problem`` of a missing image (callers tell missing from corrupt by it).
IMAGE_NOT_FOUND = "image file not found"

DraftRequest = tuple[int, int] | Callable[[tuple[int, int]], "tuple[int, int] | None"] | None


def is_temp_file(name: str) -> bool:
    """True for the name of a temporary file left by an interrupted :func:`atomic_open`."""
    return name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX)


def _create_temp(folder: Path, name: str) -> tuple[int, str]:
    """Create a new temporary file beside the target; mode 0666 minus umask, like a plain open()."""
    while True:
        tmp = os.path.join(folder, f"{TMP_PREFIX}{name}.{secrets.token_hex(4)}{TMP_SUFFIX}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes only ('wb' or 'w'), got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path.parent, path.name)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8", "newline": ""} if mode == "w" else {})) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_jpeg(img: Image.Image, path: str | Path, quality: int = 95) -> None:
    """Save ``img`` as a JPEG atomically (no partial crop survives an interruption)."""
    with atomic_open(path, "wb") as f:
        img.save(f, format="JPEG", quality=quality)


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from the file header only (no pixel decoding)."""
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        raise DataError(path, IMAGE_NOT_FOUND) from None
    except Exception as e:  # noqa: BLE001 -- see open_rgb
        raise DataError(path, f"cannot read image header ({type(e).__name__}: {e})") from None


def open_rgb(path: str | Path, draft_to: DraftRequest = None) -> Image.Image:
    """Decode an image fully into RGB, or raise :class:`DataError` naming the file.

    Any exception from PIL while opening, decoding or converting becomes a
    :class:`DataError`: a bad file makes PIL raise OSError (truncated data,
    ``UnidentifiedImageError``), ValueError, SyntaxError (broken PNG chunks),
    ``DecompressionBombError``, EOFError, ``struct.error``, IndexError,
    MemoryError (absurd declared sizes) and more, depending on the plugin.
    ``IMAGE_NOT_FOUND`` is the problem of a missing file.

    ``draft_to`` asks a JPEG decoder for a reduced scale (1/2, 1/4, 1/8), never
    smaller than the size given, so big images are not decoded at full size
    only to be shrunk; it may be a function of the full ``(w, h)`` returning
    that size or None (decode at full scale). Because drafting changes
    ``img.size``, ``img.info`` gets ``"original_size"`` (full ``(w, h)``) and
    ``"scale"`` (decoded pixels per original pixel, 1.0 without drafting).
    """
    try:
        im = Image.open(path)
    except FileNotFoundError:
        raise DataError(path, IMAGE_NOT_FOUND) from None
    except Exception as e:  # noqa: BLE001 -- every PIL failure on a bad file
        raise DataError(path, f"corrupt or truncated image ({type(e).__name__}: {e})") from None
    with im:
        full = im.size
        want = draft_to(full) if callable(draft_to) else draft_to  # our code: its errors are not the file's
        try:
            scale = 1.0
            if want is not None and im.format == "JPEG":
                res = im.draft("RGB", (max(1, int(want[0])), max(1, int(want[1]))))
                if res is not None:
                    scale = res[1][2] / full[0]
            im.load()  # force the decode here, where errors are caught
            img = im if im.mode == "RGB" else im.convert("RGB")  # loaded: usable after close
        except Exception as e:  # noqa: BLE001
            raise DataError(path, f"corrupt or truncated image ({type(e).__name__}: {e})") from None
    img.info["original_size"] = full
    img.info["scale"] = scale
    return img
