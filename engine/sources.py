"""Frames to predict on, from image files, folders (recursive), video files and a camera.

:func:`expand_inputs` turns the command line's inputs into :class:`Source` items, in order (a folder's
files sorted by path); :func:`read_frames` yields each source's frames as RGB. A file that cannot be read
(a corrupt image, a video that does not open or yields no frame) raises :class:`DataError` naming it, so
the caller can count it, say so in one line and go on with the rest. A video is opened once
(:class:`VideoFile`: its header's frame count and rate, then its frames); one that ends before the frame
count its container gives says so in :attr:`VideoFile.stopped_early`.

FFmpeg's own messages ("moov atom not found", decoder complaints) are silenced: importing this module sets
``OPENCV_FFMPEG_LOGLEVEL=-8`` (quiet) unless the environment already sets it; OpenCV reads it when the
process first opens or writes a video file. The one-line messages here say what went wrong instead.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import DataError, UserFacingError
from common.files import is_temp_file
from data_loaders.images import open_rgb

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
#: Frame rate assumed when a video does not say its own (for --save and the summary only).
DEFAULT_FPS = 30.0
#: FFmpeg's log level while OpenCV reads and writes videos: -8 = AV_LOG_QUIET.
FFMPEG_LOGLEVEL = "-8"

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", FFMPEG_LOGLEVEL)  # before OpenCV first starts FFmpeg


@dataclass(frozen=True)
class Source:
    """One input: an image file, a video file, or a camera. ``rel`` is where its annotated copy goes under
    ``--save DIR`` (relative to the folder given on the command line, or the file's own name)."""

    kind: str  # "image" | "video" | "camera"
    path: Path | None
    rel: Path
    camera: int | None = None

    @property
    def name(self) -> str:
        """How JSON lines and messages name it."""
        return f"camera:{self.camera}" if self.kind == "camera" else str(self.path)


@dataclass
class Frame:
    """One frame of a source: ``rgb`` (H, W, 3) uint8 (or a PIL image for image files, EXIF applied);
    ``index`` the frame number in a video or camera stream (None for an image file)."""

    source: Source
    rgb: object
    index: int | None = None
    fps: float | None = None


@dataclass
class Expanded:
    """What the inputs name: the sources in order, and the inputs that do not exist."""

    sources: list[Source]
    missing: list[str]
    ignored: int = 0  # files in folders that are neither images nor videos


def kind_of(path: Path) -> str | None:
    ext = path.suffix.lower()
    return "image" if ext in IMAGE_EXTENSIONS else "video" if ext in VIDEO_EXTENSIONS else None


def folder_files(folder: Path) -> tuple[list[Path], int]:
    """Images and videos under ``folder`` (recursive, sorted, hidden and temporary files skipped), and the
    number of other files left out."""
    found, other = [], 0
    for p in sorted(folder.rglob("*")):
        rel_parts = p.relative_to(folder).parts
        if not p.is_file() or any(part.startswith(".") for part in rel_parts) or is_temp_file(p.name):
            continue
        if kind_of(p):
            found.append(p)
        else:
            other += 1
    return found, other


def expand_inputs(inputs: Sequence[str | Path]) -> Expanded:
    """Sources named by ``inputs``: files as they are (a file of unknown type is read as an image),
    folders expanded to their images and videos; names that do not exist are listed in ``missing``."""
    out = Expanded([], [])
    used: set[Path] = set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files, other = folder_files(p)
            out.ignored += other
            pairs = [(f, f.relative_to(p)) for f in files]
        elif p.is_file():
            pairs = [(p, Path(p.name))]
        else:
            out.missing.append(str(p))
            continue
        for f, rel in pairs:
            out.sources.append(Source(kind_of(f) or "image", f, unique_rel(rel, used)))
    return out


def unique_rel(rel: Path, used: set[Path]) -> Path:
    """``rel``, or ``<stem>_2<suffix>`` ... when another input already took that name under ``--save``."""
    candidate, n = rel, 1
    while candidate in used:
        n += 1
        candidate = rel.with_name(f"{rel.stem}_{n}{rel.suffix}")
    used.add(candidate)
    return candidate


def camera_source(index: int) -> Source:
    return Source("camera", None, Path(f"camera{index}.mp4"), camera=index)


def read_frames(source: Source) -> Iterator[Frame]:
    """The frames of ``source``; :class:`DataError` naming it when it cannot be read at all."""
    if source.kind == "image":
        yield Frame(source, open_rgb(source.path))
    elif source.kind == "video":
        yield from video_frames(source)
    else:
        yield from camera_frames(source)


def _bgr_to_rgb(frame: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frame[:, :, 2::-1]) if frame.ndim == 3 else np.repeat(frame[:, :, None], 3, 2)


class VideoFile:
    """A video file opened once: ``total`` (the container's frame count, 0 when it gives none) and ``fps``
    from its header, then :meth:`frames`. A context manager; :class:`DataError` naming the file when it does
    not open. After the frames, ``read`` is how many came and :attr:`stopped_early` says whether that is
    fewer than the container promised (a truncated or damaged file)."""

    def __init__(self, source: Source) -> None:
        import cv2

        self.source, self.read = source, 0
        self._cap = cv2.VideoCapture(str(source.path))
        if not self._cap.isOpened():
            self._cap.release()
            raise DataError(source.path, "cannot open video (unsupported codec or container, or not a video)")
        self.total = max(int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0)
        self.fps = fps if fps > 0 else DEFAULT_FPS

    def frames(self) -> Iterator[Frame]:
        """Every frame, in order, as RGB with its index; :class:`DataError` when there is not even one."""
        while True:
            ok, frame = self._cap.read()
            if not ok or frame is None:
                break
            yield Frame(self.source, _bgr_to_rgb(frame), index=self.read, fps=self.fps)
            self.read += 1
        if self.read == 0:
            raise DataError(self.source.path, "video yields no frame (unsupported codec, or empty)")

    @property
    def stopped_early(self) -> str | None:
        """``"stopped at frame i of n"`` when the frames ran out before the container's count, else None."""
        return f"stopped at frame {self.read} of {self.total}" if 0 < self.read < self.total else None

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> VideoFile:  # noqa: PYI034 -- typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def video_frames(source: Source) -> Iterator[Frame]:
    """Every frame of a video file, in order, with its index and the video's fps."""
    with VideoFile(source) as video:
        yield from video.frames()


def camera_frames(source: Source) -> Iterator[Frame]:
    """Frames from camera ``source.camera`` until it stops giving them (``fps``: the camera's nominal rate)."""
    import cv2

    cap = cv2.VideoCapture(source.camera)
    try:
        if not cap.isOpened():
            raise UserFacingError(f"camera {source.camera} cannot be opened (no such device, or in use)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0) or DEFAULT_FPS
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                if i == 0:
                    raise UserFacingError(f"camera {source.camera} gives no frame")
                break
            yield Frame(source, _bgr_to_rgb(frame), index=i, fps=fps)
            i += 1
    finally:
        cap.release()
