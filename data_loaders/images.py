"""Reading images as displayed: EXIF orientation applied, any bit depth to 8-bit RGB.

A missing, corrupt or truncated file raises :class:`DataError` naming it, instead of a
decoder error deep in a worker. HaGRID's boxes and landmarks refer to the image as a viewer
shows it, so :func:`open_rgb` and :func:`image_size` both apply the EXIF orientation tag (as
``PIL.ImageOps.exif_transpose`` does), read from the file header in both so they always agree.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from common.errors import DataError
from common.files import atomic_open

#: ``DataError.problem`` of a missing image (callers tell missing from corrupt by it).
IMAGE_NOT_FOUND = "image file not found"

DraftRequest = tuple[int, int] | Callable[[tuple[int, int]], "tuple[int, int] | None"] | None

_ORIENTATION_TAG = 0x0112
#: EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose)
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def atomic_save_jpeg(img: Image.Image, path: str | Path, quality: int = 95) -> None:
    """Save ``img`` as a JPEG atomically (no partial crop survives an interruption)."""
    with atomic_open(path, "wb") as f:
        img.save(f, format="JPEG", quality=quality)


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1-8; 1 when absent or unreadable), from the header only.

    The base ``Image.getexif`` reads what the header parsing put in ``im.info`` (PNG's own
    override would decode the pixels to look for a late eXIf chunk), so sizes stay cheap.
    """
    try:
        value = Image.Image.getexif(im).get(_ORIENTATION_TAG, 1)
        return value if value in _TRANSPOSE else 1
    except Exception:  # noqa: BLE001 -- a broken EXIF block means no orientation, as in exif_transpose
        return 1


def _displayed(wh: tuple[int, int], orientation: int) -> tuple[int, int]:
    """``(w, h)`` as displayed: orientations 5-8 turn the image by 90 degrees."""
    return (wh[1], wh[0]) if orientation >= 5 else wh


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` as displayed (EXIF orientation applied), from the file header only."""
    try:
        with Image.open(path) as im:
            return _displayed(im.size, _orientation(im))
    except FileNotFoundError:
        raise DataError(path, IMAGE_NOT_FOUND) from None
    except Exception as e:  # noqa: BLE001 -- see open_rgb
        raise DataError(path, f"cannot read image header ({type(e).__name__}: {e})") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB. 16/32-bit integer grey (``I;16``, ``I``) is scaled to 0-255, where PIL's own
    conversion would clip every value above 255 to white."""
    if im.mode == "RGB":
        return im
    if im.mode == "I" or im.mode.startswith("I;16"):
        a = np.asarray(im).astype(np.float64)
        top = float(a.max(initial=0.0))
        div = 257.0 if im.mode.startswith("I;16") or 255 < top <= 65535 else max(top / 255.0, 1.0)
        return Image.fromarray(np.rint(a / div).clip(0, 255).astype(np.uint8), "L").convert("RGB")
    return im.convert("RGB")


def open_rgb(path: str | Path, draft_to: DraftRequest = None) -> Image.Image:
    """Decode an image fully into 8-bit RGB as displayed, or raise :class:`DataError` naming the file.

    Any exception from PIL while opening, decoding or converting becomes a
    :class:`DataError`: a bad file makes PIL raise OSError (truncated data,
    ``UnidentifiedImageError``), ValueError, SyntaxError (broken PNG chunks),
    ``DecompressionBombError``, EOFError, ``struct.error``, IndexError,
    MemoryError (absurd declared sizes) and more, depending on the plugin.
    ``IMAGE_NOT_FOUND`` is the problem of a missing file.

    ``draft_to`` asks a JPEG decoder for a reduced scale (1/2, 1/4, 1/8), never
    smaller than the size given, so big images are not decoded at full size
    only to be shrunk; it may be a function of the full displayed ``(w, h)``
    returning that size or None (decode at full scale). Because drafting changes
    ``img.size``, ``img.info`` gets ``"original_size"`` (full displayed ``(w, h)``,
    as :func:`image_size`) and ``"scale"`` (decoded pixels per original pixel,
    1.0 without drafting). The EXIF orientation is applied after the draft decode.
    """
    try:
        im = Image.open(path)
    except FileNotFoundError:
        raise DataError(path, IMAGE_NOT_FOUND) from None
    except Exception as e:  # noqa: BLE001 -- every PIL failure on a bad file
        raise DataError(path, f"corrupt or truncated image ({type(e).__name__}: {e})") from None
    with im:
        orientation, stored = _orientation(im), im.size
        full = _displayed(stored, orientation)
        want = draft_to(full) if callable(draft_to) else draft_to  # our code: its errors are not the file's
        try:
            scale = 1.0
            if want is not None and im.format == "JPEG":
                want = _displayed((max(1, int(want[0])), max(1, int(want[1]))), orientation)  # stored axes
                res = im.draft("RGB", want)
                if res is not None:
                    scale = res[1][2] / stored[0]
            im.load()  # force the decode here, where errors are caught
            img = _to_rgb(im)  # loaded: usable after close
            if orientation != 1:
                img = img.transpose(_TRANSPOSE[orientation])
        except Exception as e:  # noqa: BLE001
            raise DataError(path, f"corrupt or truncated image ({type(e).__name__}: {e})") from None
    img.info["original_size"] = full
    img.info["scale"] = scale
    return img
