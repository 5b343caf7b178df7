"""Atomic file writes: a write lands whole under its final name or not at all.

Every step that writes a file (crops, manifests, checkpoints, reports) goes through
:func:`atomic_open`: the data goes to a temporary file in the target's own folder and is moved
into place with ``os.replace``, so an interrupted run never leaves a half-written file under the
final name and a resumed run may trust any file it finds.
"""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import IO, Iterator

#: Prefix and suffix of temporary files; a stray one is the trace of an interrupted write.
TMP_PREFIX = ".tmp-"
TMP_SUFFIX = ".part"
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
