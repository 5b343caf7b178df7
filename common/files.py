"""Atomic file writes (a write lands whole under its final name or not at all) and lock files.

Every step that writes a file (crops, manifests, checkpoints, reports) goes through
:func:`atomic_open`: the data goes to a temporary file in the target's own folder and is moved
into place with ``os.replace``, so an interrupted run never leaves a half-written file under the
final name and a resumed run may trust any file it finds. :func:`exclusive_lock` makes a folder
single-writer, so two runs never mix their files in it.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import IO, Iterator

from .errors import DataError

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


def atomic_copy(src: str | Path, dst: str | Path) -> Path:
    """Give ``dst`` the contents of ``src`` atomically: a hard link when the file system has them (no bytes
    written; replacing either path later leaves the other as it was), else a copy. Returns ``dst``."""
    dst = Path(dst)
    fd, tmp = _create_temp(dst.parent, dst.name)
    os.close(fd)
    try:
        try:
            os.unlink(tmp)
            os.link(src, tmp)
        except OSError:  # no hard links here (or across devices): copy the bytes
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return dst


def append_line(path: str | Path, data: bytes) -> None:
    """Append one record (bytes ending in a newline) with a single ``write``: an append-only log that a
    crash leaves with at most a torn last line (the caches of annotate and end-to-end evaluation)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _read_lock(path: Path) -> tuple[str, dict] | None:
    """The text and fields of a lock file; None when it vanished; fields empty when unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        fields = json.loads(text)
    except ValueError:
        fields = {}
    return text, fields if isinstance(fields, dict) else {}


def _is_stale(holder: dict) -> bool:
    """True when the holder ran on this host and its process is gone (a killed run)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False  # another host (or an unreadable lock): we cannot tell, so it is held
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):  # alive under another user; an absurd pid is not ours to judge
        return False
    return False


def _remove_if_mine(path: Path, text: str) -> bool:
    """Delete the lock file only while it still holds ``text`` (never another run's lock)."""
    current = _read_lock(path)
    if current is None or current[0] != text:
        return False
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return True


def _describe(path: Path, holder: dict) -> str:
    if not holder:
        return f"an unreadable lock file {path}"
    return f"pid {holder.get('pid')} on host {holder.get('host')}, since {holder.get('started')}"


@contextlib.contextmanager
def exclusive_lock(path: str | Path, what: str) -> Iterator[str | None]:
    """Hold the lock file ``path`` while the block runs; ``what`` (e.g. "crop run") names the holder's work.

    The file is created with ``O_CREAT | O_EXCL`` and holds the pid, host and start time; it is
    removed on every exit path. A lock whose process is gone on this host (a killed run) is taken
    over, and the block gets a warning saying so (else None). A live holder, or one on another
    host, is a :class:`DataError` naming it and how to clear a stale lock. Two runs taking over
    the same stale lock in the same instant is the one race left.
    """
    path = Path(path)
    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%d %H:%M:%S %z")})
    warning = None
    for _ in range(5):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            current = _read_lock(path)
            if current is None:
                continue  # released meanwhile: try again
            if not _is_stale(current[1]):
                raise DataError(path, f"another {what} holds this folder ({_describe(path, current[1])}); wait "
                                f"for it to finish, or, if no such run is alive, delete {path}") from None
            if _remove_if_mine(path, current[0]):
                warning = f"took over the stale lock {path} of a {what} that is no longer alive " \
                          f"({_describe(path, current[1])})"
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        break
    else:
        raise DataError(path, f"could not take the lock: other runs keep taking it; delete {path} "
                        f"if no {what} is alive")
    try:
        yield warning
    finally:
        _remove_if_mine(path, text)
