"""Hand detection with MediaPipe Hands, offline: 21 landmarks, handedness and a HaGRID-like box per hand.

The default is the legacy ``mediapipe.solutions.hands`` of ``mediapipe==0.10.21``, whose wheel bundles the
palm-detection and hand-landmark models (no network). ``DetectorConfig.hand_model`` points at a MediaPipe Tasks
``.task`` bundle instead (``HandLandmarker``, the API of newer MediaPipe releases). ``mediapipe`` is imported
only when a :class:`HandDetector` is made, so everything else works where it is not installed (Python 3.13+).

Handedness convention: the person's own hand, as seen in a normal (not mirrored) photo. MediaPipe labels
hands as if the image were mirrored (a selfie camera), so its label is swapped unless ``mirrored=True``.
On the sample frame ``stop/0ae17593-...jpg`` a man raises his left hand (viewer's right): MediaPipe says
"Right", this module says "left".

The defaults are those the sample's landmarks were made with (static images, two hands, model complexity 1,
detection confidence 0.3), so the boxes and landmarks match what the models were trained on.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import DataError, UsageError, UserFacingError

from .box_model import landmark_box
from .hand_graph import NUM_NODES
from .landmarks import hand_size

#: Landmarks are degenerate (``landmarks_ok`` False) when the hand is smaller than this many pixels ...
MIN_HAND_SIZE_PX = 4.0
#: ... or when more than this share of the 21 points lies outside the image.
MAX_OUTSIDE_SHARE = 0.25
#: Frame interval assumed for video-mode timestamps when the caller gives none (~30 frames/s).
DEFAULT_FRAME_MS = 33
#: Native log lines MediaPipe/TFLite print when a graph starts or first meets a hand (any frame, not only the
#: first), which say nothing to a user; every other line is replayed.
_CHATTER = re.compile(r"Created TensorFlow Lite XNNPACK delegate|All log messages before absl::InitializeLog"
                      r"|inference_feedback_manager\.cc|landmark_projection_calculator\.cc|gl_context")


class DetectorUnavailable(UserFacingError):
    """MediaPipe cannot be imported here; the message says what to do."""


@dataclass(frozen=True)
class DetectorConfig:
    """Detection settings; the CLI's detector options map one to one onto these fields."""

    static_image_mode: bool = True  # False = video tracking (``--video-mode``): frames of one stream, in order
    max_num_hands: int = 2  # --max-hands
    model_complexity: int = 1  # --model-complexity: 0 (lite) or 1 (full); legacy model only
    min_detection_confidence: float = 0.3  # --min-detection-confidence: palm detector threshold
    min_tracking_confidence: float = 0.5  # --min-tracking-confidence: hand presence threshold while tracking
    mirrored: bool = False  # --mirrored: the input is a mirrored (selfie) image
    hand_model: str | None = None  # --hand-model: a MediaPipe Tasks .task file; None = the bundled legacy model

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """A value out of range is a :class:`UsageError` naming its command-line option."""
        for name, opt in (("static_image_mode", "--video-mode"), ("mirrored", "--mirrored")):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"{opt} is a switch (True/False), got {getattr(self, name)!r}")
        if isinstance(self.max_num_hands, bool) or not isinstance(self.max_num_hands, int) or self.max_num_hands < 1:
            raise UsageError(f"--max-hands must be a whole number >= 1, got {self.max_num_hands!r}")
        if self.model_complexity not in (0, 1) or isinstance(self.model_complexity, bool):
            raise UsageError(f"--model-complexity must be 0 or 1, got {self.model_complexity!r}")
        for name in ("min_detection_confidence", "min_tracking_confidence"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise UsageError(f"--{name.replace('_', '-')} must be a number in [0, 1], got {v!r}")
        if self.hand_model is not None and (not isinstance(self.hand_model, (str, os.PathLike))
                                            or not str(self.hand_model)):
            raise UsageError(f"--hand-model must be a path to a .task file, got {self.hand_model!r}")


@dataclass
class DetectedHand:
    """One detected hand; coordinates normalised to the image, top-left origin."""

    landmarks: np.ndarray  # (21, 3) float32: x, y normalised to the image, z relative depth
    handedness: str  # "left" | "right": the person's own hand (see the module docstring)
    handedness_score: float
    box: tuple[float, float, float, float]  # x, y, w, h from the box model
    landmarks_ok: bool  # False when the landmarks are degenerate (models then use the box only)


def import_mediapipe(version: tuple[int, ...] = tuple(sys.version_info[:3])):
    """The ``mediapipe`` module, or :class:`DetectorUnavailable` saying why not and what to do."""
    if version >= (3, 13):
        raise DetectorUnavailable(
            f"hand detection needs mediapipe 0.10.21, which has no wheels for Python "
            f"{'.'.join(map(str, version))}; recreate the environment with Python 3.10-3.12 "
            "(e.g. `uv sync --python 3.12`) to predict on photos, or pass hand boxes yourself")
    os.environ.setdefault("GLOG_minloglevel", "2")  # before the import: fewer native INFO lines
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return importlib.import_module("mediapipe")
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken native library (OSError, ...)
        raise DetectorUnavailable(f"cannot import mediapipe ({type(e).__name__}: {e}); it is a dependency of "
                                  "this project: run `uv sync` (Python 3.10-3.12)") from None


class _NativeStderrFilter:
    """Hold back what native code writes to fd 2 while a detector runs; replay every line but MediaPipe's chatter.

    fd 2 is process-wide, so this is shared and counted: the first of several overlapping calls (detectors on
    other threads) redirects fd 2 to a temporary file (one, reused), the last restores it and replays what was
    kept. Python
    writes to standard error meanwhile are held and replayed too, never lost; a redirection that cannot be set
    up is skipped (then the chatter shows, nothing else changes).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: int | None = None
        self._tmp = None

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        entered = self._enter()
        try:
            yield
        finally:
            if entered:
                self._leave()

    def _enter(self) -> bool:
        with self._lock:
            if self._users == 0:
                try:
                    sys.stderr.flush()
                    if self._tmp is None:
                        self._tmp = tempfile.TemporaryFile()  # noqa: SIM115 -- kept open, reused per call
                    self._saved = os.dup(2)
                except (OSError, ValueError, AttributeError, TypeError):
                    return False
                os.dup2(self._tmp.fileno(), 2)
            self._users += 1
            return True

    def _leave(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users:
                return
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(self._saved, 2)
            os.close(self._saved)
            self._saved = None
            self._tmp.seek(0)
            text = self._tmp.read().decode("utf-8", "replace")
            self._tmp.seek(0)
            self._tmp.truncate()
        kept = [ln for ln in text.splitlines() if ln.strip() and not _CHATTER.search(ln)]
        if kept:
            print("\n".join(kept), file=sys.stderr)


_QUIET = _NativeStderrFilter()


def own_handedness(mediapipe_label: str, mirrored: bool) -> str:
    """The project's "left"/"right" (the person's own hand) from MediaPipe's label (which assumes a mirror)."""
    label = mediapipe_label.strip().lower()
    if label not in ("left", "right"):
        return label
    return label if mirrored else {"left": "right", "right": "left"}[label]


def landmarks_degenerate(landmarks: np.ndarray, image_wh: tuple[int, int]) -> bool:
    """True when a ``(21, 2|3)`` normalised landmark set cannot be trusted: non-finite values, a hand smaller
    than ``MIN_HAND_SIZE_PX`` or more than ``MAX_OUTSIDE_SHARE`` of the points outside the image."""
    xy = np.asarray(landmarks, dtype=np.float64)[:, :2]
    if not np.isfinite(xy).all():
        return True
    outside = ((xy < 0.0) | (xy > 1.0)).any(axis=1).mean()
    size = hand_size((xy * np.asarray(image_wh, dtype=np.float64))[None])[0]
    return bool(size < MIN_HAND_SIZE_PX or outside > MAX_OUTSIDE_SHARE)


class _Legacy:
    """``mediapipe.solutions.hands.Hands``: the models bundled in the wheel."""

    def __init__(self, mp, cfg: DetectorConfig) -> None:
        self.hands = mp.solutions.hands.Hands(
            static_image_mode=cfg.static_image_mode, max_num_hands=cfg.max_num_hands,
            model_complexity=cfg.model_complexity, min_detection_confidence=cfg.min_detection_confidence,
            min_tracking_confidence=cfg.min_tracking_confidence)

    def __call__(self, rgb: np.ndarray, timestamp_ms: int) -> list[tuple[np.ndarray, str, float]]:
        res = self.hands.process(rgb)
        out = []
        for lms, hd in zip(res.multi_hand_landmarks or [], res.multi_handedness or []):
            pts = np.array([(p.x, p.y, p.z) for p in lms.landmark], dtype=np.float32)
            out.append((pts, hd.classification[0].label, float(hd.classification[0].score)))
        return out

    def close(self) -> None:
        self.hands.close()


class _Tasks:
    """MediaPipe Tasks ``HandLandmarker`` from a ``.task`` bundle (read here, so a bad file names itself)."""

    def __init__(self, mp, cfg: DetectorConfig) -> None:
        path = Path(cfg.hand_model).expanduser()
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DataError(path, "hand model file not found (--hand-model expects a MediaPipe .task file)") from None
        except OSError as e:
            raise DataError(path, f"cannot read the hand model ({e.strerror or e})") from None
        from mediapipe.tasks.python import BaseOptions, vision

        self.video = not cfg.static_image_mode
        opts = vision.HandLandmarkerOptions(
            base_options=BaseOptions(model_asset_buffer=data),
            running_mode=vision.RunningMode.VIDEO if self.video else vision.RunningMode.IMAGE,
            num_hands=cfg.max_num_hands, min_hand_detection_confidence=cfg.min_detection_confidence,
            min_hand_presence_confidence=cfg.min_tracking_confidence,
            min_tracking_confidence=cfg.min_tracking_confidence)
        try:
            self.landmarker = vision.HandLandmarker.create_from_options(opts)
        except Exception as e:  # noqa: BLE001 - MediaPipe raises RuntimeError/ValueError with a long status text
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DataError(path, f"not a usable MediaPipe hand landmarker .task model ({first})") from None
        self.mp = mp

    def __call__(self, rgb: np.ndarray, timestamp_ms: int) -> list[tuple[np.ndarray, str, float]]:
        image = self.mp.Image(image_format=self.mp.ImageFormat.SRGB, data=rgb)
        res = self.landmarker.detect_for_video(image, timestamp_ms) if self.video else self.landmarker.detect(image)
        out = []
        for lms, hd in zip(res.hand_landmarks, res.handedness):
            pts = np.array([(p.x, p.y, p.z) for p in lms], dtype=np.float32)
            out.append((pts, hd[0].category_name, float(hd[0].score)))
        return out

    def close(self) -> None:
        self.landmarker.close()


class HandDetector:
    """Find hands in RGB frames. A context manager; one per thread or video stream (video mode tracks)."""

    def __init__(self, config: DetectorConfig = DetectorConfig()) -> None:
        self.config = config
        mp = import_mediapipe()
        with _QUIET.hold():
            self._backend = (_Tasks if config.hand_model else _Legacy)(mp, config)
        self._frames = 0
        self._last_ts = -1

    def detect(self, rgb: np.ndarray, timestamp_ms: int | None = None) -> list[DetectedHand]:
        """Hands in an ``(H, W, 3)`` uint8 RGB frame, top to bottom (box centre y).

        ``timestamp_ms`` matters in video mode with a ``.task`` model only (it must increase); by default
        frames are taken as ``DEFAULT_FRAME_MS`` apart.
        """
        if self._backend is None:
            raise RuntimeError("HandDetector.detect() called after close()")
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
            raise ValueError(f"detect() expects an (H, W, 3) uint8 RGB array, got {rgb.dtype} {rgb.shape}")
        ts = self._frames * DEFAULT_FRAME_MS if timestamp_ms is None else int(timestamp_ms)
        ts = max(ts, self._last_ts + 1)  # MediaPipe refuses timestamps that do not increase
        with _QUIET.hold():  # every call: MediaPipe's chatter also comes when a hand first appears
            raw = self._backend(np.ascontiguousarray(rgb), ts)
        self._frames, self._last_ts = self._frames + 1, ts
        wh = (rgb.shape[1], rgb.shape[0])
        hands = [self._hand(pts, label, score, wh) for pts, label, score in raw if pts.shape == (NUM_NODES, 3)]
        return sorted(hands, key=lambda h: h.box[1] + h.box[3] / 2)

    def _hand(self, pts: np.ndarray, label: str, score: float, wh: tuple[int, int]) -> DetectedHand:
        ok = not landmarks_degenerate(pts, wh)
        xy = pts[:, :2] if ok else np.nan_to_num(pts[:, :2], nan=0.5, posinf=1.0, neginf=0.0)
        return DetectedHand(landmarks=pts, handedness=own_handedness(label, self.config.mirrored),
                            handedness_score=score, box=landmark_box(xy, wh), landmarks_ok=ok)

    def close(self) -> None:
        """Release MediaPipe's graph; safe to call twice."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def __enter__(self) -> HandDetector:  # noqa: PYI034 -- typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
