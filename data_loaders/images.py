"""Reading images: a missing, corrupt or truncated file raises :class:`DataError` naming it,
instead of a decoder error deep in a worker."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from PIL import Image

from common.errors import DataError
from common.files import atomic_open

#: ``DataError.problem`` of a missing image (callers tell missing from corrupt by it).
IMAGE_NOT_FOUND = "image file not found"

DraftRequest = tuple[int, int] | Callable[[tuple[int, int]], "tuple[int, int] | None"] | None


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
