"""The ``predict`` loop: sources -> frames -> hands -> JSON lines, annotated copies and a summary.

Output: one JSON object per hand (``Hand.to_json`` with ``source`` and ``frame``: the index in a video or
camera stream, 0 for an image); a frame in which no hand is found gives one line ``{"source", "frame",
"hands": 0}``, so every frame read is accounted for. ``--jsonl FILE`` is written to a temporary file beside
it, line by line, and renamed into place when the run ends (also after Ctrl-C, with what was done); without
it the lines go to standard output. A file that cannot be read is named once on standard error, counted, and
the run goes on.

Detection: images are detected one by one (MediaPipe's static mode); videos and the camera with tracking
across frames (a fresh tracker per video), unless ``mode`` forces ``"static"`` or ``"video"`` for all.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from common.errors import DataError, UsageError, UserFacingError
from common.files import atomic_open

from .draw import draw_hands
from .predictor import GesturePredictor, Hand
from .sources import Frame, Source, VideoFile, camera_source, expand_inputs, read_frames

MODES = ("auto", "static", "video")
EXIT_OK, EXIT_SOME_UNREADABLE, EXIT_NOTHING_READ, EXIT_INTERRUPTED = 0, 1, 2, 130
JPEG_QUALITY = 95
#: Weight of the newest frame in the camera's smoothed FPS.
FPS_SMOOTHING = 0.1


@dataclass
class RunSummary:
    """What a run did; :meth:`lines` is the summary printed on standard error."""

    frames: int = 0
    images: int = 0
    videos: int = 0
    hands: int = 0
    no_hand_frames: int = 0
    unreadable: list[str] = field(default_factory=list)
    stopped_early: list[str] = field(default_factory=list)  # videos whose frames ran out before their count
    ignored: int = 0
    labels: Counter = field(default_factory=Counter)
    seconds: float = 0.0  # detection + classification
    interrupted: bool = False

    def lines(self) -> list[str]:
        out = [f"{self.frames} frames ({self.images} images, {self.videos} videos/streams), {self.hands} hands, "
               f"{self.no_hand_frames} frames with no hand, {len(self.unreadable)} unreadable files"
               + (f", {len(self.stopped_early)} videos stopped early" if self.stopped_early else "")
               + (f", {self.ignored} other files ignored" if self.ignored else "")
               + (" (interrupted)" if self.interrupted else "")]
        if self.labels:
            out.append("labels: " + ", ".join(f"{k} {v}" for k, v in self.labels.most_common()))
        if self.frames:
            out.append(f"{1000 * self.seconds / self.frames:.1f} ms per frame (detection + classification)")
        return out

    def exit_code(self) -> int:
        """0 all read; 1 some files unreadable (named), the rest predicted; 2 nothing read; 130 interrupted."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.frames == 0:
            return EXIT_NOTHING_READ
        return EXIT_SOME_UNREADABLE if self.unreadable else EXIT_OK


class Detectors:
    """The hand detectors of a run: one for images (kept), a fresh one per video or camera stream."""

    def __init__(self, config: Any, mode: str = "auto") -> None:
        if mode not in MODES:
            raise UsageError(f"unknown detection mode {mode!r}; choose from {', '.join(MODES)}")
        self.config, self.mode, self._images = config, mode, None

    def _make(self, static: bool) -> Any:
        from data_loaders.detect import DetectorConfig, HandDetector

        config = self.config if self.config is not None else DetectorConfig()
        return HandDetector(replace(config, static_image_mode=static))

    @property
    def images(self) -> Any:
        if self._images is None:
            self._images = self._make(self.mode != "video")
        return self._images

    @contextlib.contextmanager
    def stream(self) -> Iterator[Any]:
        det = self._make(self.mode == "static")
        try:
            yield det
        finally:
            det.close()

    def close(self) -> None:
        if self._images is not None:
            self._images.close()
            self._images = None


class VideoSink:
    """An annotated mp4 (OpenCV ``mp4v``), written to a hidden temporary file and renamed when whole."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps, self.writer, self.tmp = path, fps, None, None

    def write(self, rgb: Any) -> None:
        import cv2

        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = self.path.with_name(f".tmp-{self.path.stem}.{secrets.token_hex(4)}.mp4")
            h, w = rgb.shape[:2]
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise UserFacingError(f"{self.path}: cannot write an mp4 video here (OpenCV's mp4v encoder failed)")
        self.writer.write(rgb[:, :, ::-1].copy())

    def close(self, keep: bool) -> None:
        if self.writer is not None:
            self.writer.release()
            if keep:
                os.replace(self.tmp, self.path)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(self.tmp)
        self.writer = None


class Outputs:
    """Where results go: JSON lines (a file or a stream), annotated copies under ``save``, messages."""

    def __init__(self, lines: IO, save: Path | None, err: IO, progress: bool) -> None:
        self.lines, self.save, self.err, self.progress = lines, save, err, progress

    def say(self, msg: str) -> None:
        from tqdm import tqdm

        tqdm.write(msg, file=self.err)

    def emit(self, source: Source, index: int, hands: Sequence[Hand], summary: RunSummary) -> None:
        ctx = {"source": source.name, "frame": index}
        recs = [h.to_json(**ctx) for h in hands] or [{**ctx, "hands": 0}]
        self.lines.write("".join(json.dumps(r) + "\n" for r in recs))
        self.lines.flush()
        summary.frames += 1
        summary.hands += len(hands)
        summary.no_hand_frames += not hands
        summary.labels.update(h.label for h in hands)

    def save_image(self, source: Source, frame: Frame, hands: Sequence[Hand]) -> None:
        if self.save is None:
            return
        from PIL import Image

        target = self.save / source.rel
        fmt = Image.registered_extensions().get(target.suffix.lower(), "PNG")
        img = draw_hands(frame.rgb, hands)
        with atomic_open(target, "wb") as f:
            img.save(f, format=fmt, **({"quality": JPEG_QUALITY} if fmt == "JPEG" else {}))

    @contextlib.contextmanager
    def video(self, source: Source, fps: float) -> Iterator[VideoSink | None]:
        if self.save is None:
            yield None
            return
        sink = VideoSink((self.save / source.rel).with_suffix(".mp4"), fps)
        ok = False
        try:
            yield sink
            ok = True
        finally:
            sink.close(keep=ok)


def check_save_targets(sources: Sequence[Source], save: Path) -> None:
    """Refuse a ``--save`` folder that would overwrite an input."""
    for s in sources:
        target = save / (s.rel.with_suffix(".mp4") if s.kind == "video" else s.rel)
        if s.path is not None and target.resolve() == s.path.resolve():
            raise UsageError(f"--save {save}: would overwrite the input {s.path}; choose another folder")


def _timed_predict(predictor: GesturePredictor, rgb: Any, detector: Any, summary: RunSummary,
                   path: Path | None = None) -> list[Hand]:
    """``predictor.predict`` timed into the summary; ``path``: the image file ``rgb`` was read from."""
    t0 = time.perf_counter()
    hands = predictor.predict(rgb, detector=detector, path=path)
    summary.seconds += time.perf_counter() - t0
    return hands


def _image(source: Source, predictor: GesturePredictor, dets: Detectors, out: Outputs, summary: RunSummary) -> None:
    frame = next(read_frames(source))
    hands = _timed_predict(predictor, frame.rgb, dets.images, summary, path=source.path)
    summary.images += 1
    out.emit(source, 0, hands, summary)
    out.save_image(source, frame, hands)


def _video(source: Source, predictor: GesturePredictor, dets: Detectors, out: Outputs, summary: RunSummary) -> None:
    """Every frame of a video file (opened once), tracked by a fresh detector; one warning naming the file
    when its frames run out before the container's frame count (counted in the summary)."""
    from tqdm import tqdm

    with VideoFile(source) as video:
        bar = tqdm(total=video.total or None, desc=source.path.name, unit="frame", leave=False, file=out.err,
                   disable=None if out.progress else True)
        with bar, dets.stream() as det, out.video(source, video.fps) as sink:
            for frame in video.frames():
                hands = _timed_predict(predictor, frame.rgb, det, summary)
                out.emit(source, frame.index, hands, summary)
                if sink is not None:
                    sink.write(draw_hands(frame.rgb, hands))
                bar.update()
        if video.stopped_early:
            summary.stopped_early.append(str(source.path))
            out.say(f"warning: {source.path}: video {video.stopped_early} (truncated or damaged?); "
                    "the frames before were predicted")
    summary.videos += 1


def run_predict(predictor: GesturePredictor, inputs: Sequence[str | Path], *, detector_config: Any = None,
                mode: str = "auto", jsonl: str | Path | None = None, save: str | Path | None = None,
                progress: bool = True, out: IO | None = None, err: IO | None = None) -> RunSummary:
    """Predict every image and video that ``inputs`` name; see the module docstring for what goes where."""
    from tqdm import tqdm

    err = err or sys.stderr
    expanded = expand_inputs(inputs)
    summary = RunSummary(ignored=expanded.ignored)
    save = Path(save) if save is not None else None
    if save is not None:
        check_save_targets(expanded.sources, save)
    with contextlib.ExitStack() as stack:
        lines = stack.enter_context(atomic_open(jsonl, "w")) if jsonl else (out or sys.stdout)
        outputs, dets = Outputs(lines, save, err, progress), Detectors(detector_config, mode)
        stack.callback(dets.close)
        for name in expanded.missing:
            summary.unreadable.append(name)
            outputs.say(f"warning: {name}: no such file or folder")
        many = len(expanded.sources) > 1
        bar = tqdm(expanded.sources, desc="predict", unit="file", file=err, disable=None if progress and many else True)
        try:
            for source in bar:
                try:
                    (_image if source.kind == "image" else _video)(source, predictor, dets, outputs, summary)
                except DataError as e:
                    summary.unreadable.append(str(source.path))
                    outputs.say(f"warning: {e} (skipped)")
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            bar.close()
    return summary


def check_display() -> None:
    """A window needs a display: a clear error instead of OpenCV's (or Qt's abort) when there is none."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise UserFacingError("--camera shows a window, and there is no display here (DISPLAY is not set); "
                              "record a video and run `hand-gestures predict VIDEO --save DIR` instead")


def _open_window(title: str) -> None:
    import cv2

    try:
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)
    except cv2.error as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise UserFacingError(f"--camera cannot open a window ({msg}); "
                              "OpenCV without GUI support (opencv-python-headless?) or no display") from None


def run_camera(predictor: GesturePredictor, index: int, *, detector_config: Any = None, mode: str = "auto",
               jsonl: str | Path | None = None, save: str | Path | None = None, out: IO | None = None,
               err: IO | None = None) -> RunSummary:
    """Live prediction from camera ``index`` in a window (box, skeleton, label, probability, FPS); ``q`` or
    Esc quits. JSON lines and ``--save`` (``camera<N>.mp4``) work as for videos."""
    import cv2

    check_display()
    source, summary, title = camera_source(index), RunSummary(), f"hand-gestures camera {index} (q quits)"
    with contextlib.ExitStack() as stack:
        lines = stack.enter_context(atomic_open(jsonl, "w")) if jsonl else (out or sys.stdout)
        outputs, dets = Outputs(lines, Path(save) if save else None, err or sys.stderr, False), Detectors(
            detector_config, mode)
        stack.callback(dets.close)
        det = stack.enter_context(dets.stream())
        sink = stack.enter_context(outputs.video(source, 30.0))
        _open_window(title)
        stack.callback(cv2.destroyWindow, title)
        fps, last = None, time.perf_counter()
        try:
            for frame in read_frames(source):
                hands = _timed_predict(predictor, frame.rgb, det, summary)
                now = time.perf_counter()
                rate, last = 1.0 / max(now - last, 1e-6), now  # the whole loop: capture, predict, draw, show
                fps = rate if fps is None else (1 - FPS_SMOOTHING) * fps + FPS_SMOOTHING * rate
                outputs.emit(source, frame.index, hands, summary)
                img = draw_hands(frame.rgb, hands, fps)
                if sink is not None:
                    sink.write(img)
                cv2.imshow(title, img[:, :, ::-1])
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    break
        except KeyboardInterrupt:
            summary.interrupted = True
        summary.videos = 1
    return summary
