"""Prediction speed per 512p frame on this CPU: the detector, the classifiers, and the whole path on a video.

Prints, for frames of the HaGRID sample (``../shared/hagrid_sample``):

* detector ms per frame (MediaPipe Hands, the project's settings) in static image mode and in video (tracking)
  mode;
* classifier ms per hand for each model with the PyTorch backend and the onnxruntime backend (the checkpoint
  exported with ``engine.export.export_checkpoint`` into a temp dir): ``GesturePredictor.classify`` on one
  detected hand (crop, landmark normalisation and batch transform included), and the model call alone on the
  prepared batch;
* end-to-end frames/s on a video written from sample frames (a few frames of one class, each held for a
  quarter of the clip, like a person holding a gesture): decode, detect in video mode, classify;

then a markdown table beside the targets of issue 10. Trained checkpoints come from ``--models-dir``; without
it every model is an untrained (random) checkpoint, which runs as fast as a trained one.

    uv run python benchmarks/bench_predict.py [--models-dir final_models] [--data-dir DIR] [--frames 20]
        [--video-frames 60] [--reps 5] [--models mlp,cnn,...] [--threads N] [--quick]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_loaders.classes import GESTURES_18
from data_loaders.detect import DetectorConfig, HandDetector
from data_loaders.images import open_rgb
from engine.evaluate import find_checkpoints
from engine.predictor import GesturePredictor, HandInput
from model_classes import list_models

SAMPLE = Path(os.environ.get("HAGRID_SAMPLE", REPO.parent / "shared" / "hagrid_sample"))
VIDEO_CLASS = "palm"  # the class whose frames make the video
VIDEO_SHOTS = 4  # distinct frames in the video, each held for an equal share of it
VIDEO_FPS = 30
LANDMARK_MODELS = ("mlp", "gcn")
TARGETS = {  # (model, backend or None for any) -> frames/s end to end in video mode
    ("mlp", None): 30, ("gcn", None): 30, ("fusion", "onnxruntime"): 20}
TARGET_LINES = (
    ("targets (issue 10): landmark models (mlp, gcn) >= 30 frames/s end to end in video mode; "
     "fusion >= 20 frames/s with onnxruntime"),
    "anchors: HaGRID authors' demo ~9 FPS (a user's report); kinivi keypoint classifier 0.7 ms per call",
)
QUICK = {"frames": 2, "video_frames": 8, "reps": 2, "models": "mlp,cnn"}


def median_ms(fn: Callable[[], object], reps: int) -> float:
    """Median wall time of ``fn()`` over ``reps`` calls, after one warm-up call, in ms."""
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def sample_frames(data_dir: Path, n: int, cls: str | None = None) -> list[Path]:
    """``n`` frames spread evenly over the sample's images (of class ``cls`` when given), in a fixed order."""
    paths = sorted((data_dir / "hagrid_dataset_512").glob(f"{cls or '*'}/*.jpg"))
    if not paths:
        raise SystemExit(f"error: no frames under {data_dir / 'hagrid_dataset_512'} (pass --data-dir)")
    step = max(len(paths) // n, 1)
    return paths[::step][:n]


def write_video(data_dir: Path, n_frames: int, path: Path) -> Path:
    """An mp4 of ``n_frames`` frames: ``VIDEO_SHOTS`` frames of ``VIDEO_CLASS`` (same size), each held in turn."""
    import cv2

    candidates = sample_frames(data_dir, 40, VIDEO_CLASS)
    size = open_rgb(candidates[0]).size
    shots = [np.asarray(im) for im in map(open_rgb, candidates) if im.size == size][:VIDEO_SHOTS]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS, size)
    for k in range(n_frames):
        writer.write(cv2.cvtColor(shots[k * len(shots) // n_frames], cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def video_frames(path: Path):
    """The RGB frames of a video file, decoded one by one."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def bench_detector(frames: list[np.ndarray], video: Path, reps: int, video_cfg: DetectorConfig) -> dict[str, float]:
    """Median ms per frame: static mode over ``frames`` (``reps`` rounds), video mode (``video_cfg``) over the
    video's frames."""
    with HandDetector(DetectorConfig()) as det:
        det.detect(frames[0])
        static = [median_ms(lambda f=f: det.detect(f), reps) for f in frames]
    clip = list(video_frames(video))
    with HandDetector(video_cfg) as det:
        det.detect(clip[0])
        times = []
        for f in clip:
            t = time.perf_counter()
            det.detect(f)
            times.append((time.perf_counter() - t) * 1e3)
    return {"static": statistics.median(static), "video": statistics.median(times), "video_frames": len(clip)}


def detected_hands(frames: list[np.ndarray]) -> list[tuple[np.ndarray, HandInput]]:
    """One detected hand per frame (frames without one are left out), as the classifier input."""
    out = []
    with HandDetector(DetectorConfig()) as det:
        for f in frames:
            found = det.detect(f)
            if found:
                h = found[0]
                out.append((f, HandInput(h.box, h.landmarks, h.handedness, h.handedness_score, h.landmarks_ok)))
    if not out:
        raise SystemExit("error: the detector found no hand in the sample frames chosen")
    return out


def bench_classifier(pred: GesturePredictor, hands: list[tuple[np.ndarray, HandInput]], reps: int
                     ) -> tuple[float, float]:
    """Median ms per hand: ``classify`` (preprocessing included) and the model call alone on its batch."""
    from PIL import Image

    full, call = [], []
    for rgb, hand in hands:
        img = Image.fromarray(rgb)
        full.append(median_ms(lambda img=img, hand=hand: pred.classify(img, [hand]), reps))
        batch = pred.batch(img, [hand.box], [hand.landmarks], np.array([hand.landmarks_ok]))
        call.append(median_ms(lambda b=batch: pred._logits(b), reps))  # the backend alone (torch or onnxruntime)
    return statistics.median(full), statistics.median(call)


def bench_end_to_end(pred: GesturePredictor, video: Path, video_cfg: DetectorConfig) -> float:
    """Frames/s over the video: decode, detect (video mode, a fresh tracker), classify every hand found."""
    with HandDetector(video_cfg) as det:
        det.detect(np.zeros((64, 64, 3), np.uint8))  # MediaPipe's first call builds its graph: not timed
        n, t = 0, time.perf_counter()
        for rgb in video_frames(video):
            pred.predict(rgb, detector=det)
            n += 1
        return n / (time.perf_counter() - t)


def checkpoints(models_dir: Path | None, tmp: Path, models: Sequence[str]) -> tuple[dict[str, Path], bool]:
    """``{model: checkpoint}``: the trained ones in ``models_dir``, else untrained ones written to ``tmp``;
    and whether they are untrained."""
    if models_dir is not None:
        found = {p.stem: p for p in find_checkpoints(models_dir)}
        return {m: found[m] for m in models if m in found}, False
    sys.path.insert(0, str(REPO / "tests"))
    from checkpoint_fixtures import random_checkpoints

    return random_checkpoints(tmp, models, class_names=GESTURES_18), True


def bench_model(name: str, ckpt: Path, hands, video: Path, reps: int, tmp: Path, video_cfg: DetectorConfig
                ) -> list[dict]:
    """One row per backend: classify ms, model call ms, end-to-end frames/s."""
    from engine.export import export_checkpoint

    onnx = export_checkpoint(ckpt, tmp / f"{name}.onnx").path
    rows = []
    for backend in ("torch", "onnxruntime"):
        pred = GesturePredictor.from_checkpoint(ckpt, backend=backend, onnx_path=onnx)
        classify_ms, call_ms = bench_classifier(pred, hands, reps)
        fps = bench_end_to_end(pred, video, video_cfg)
        rows.append({"model": name, "backend": backend, "classify_ms": classify_ms, "model_call_ms": call_ms,
                     "frames_per_s": fps, "target": target(name, backend, fps)})
        print(f"{name:9s} {backend:12s} classify {classify_ms:7.2f} ms/hand (model call {call_ms:7.2f} ms), "
              f"end to end {fps:6.1f} frames/s", flush=True)
    return rows


def target(model: str, backend: str, fps: float) -> str:
    """``">= 30: met"`` / ``"missed"`` for a model and backend with a target, else ``""``."""
    want = TARGETS.get((model, backend), TARGETS.get((model, None)))
    if want is None:
        return ""
    return f">= {want}: {'met' if fps >= want else 'missed'}"


def print_table(res: dict) -> None:
    det = res["detector_ms"]
    print()
    v = res["video_config"]
    print(f"detector (MediaPipe Hands): static image mode (project defaults) {det['static']:.1f} ms/frame; video "
          f"(tracking) mode, model complexity {v.model_complexity}, max {v.max_num_hands} hands, "
          f"{det['video']:.1f} ms/frame (median over {det['video_frames']} frames)")
    print("| model | backend | classify ms/hand (with preprocessing) | model call ms | end-to-end frames/s "
          "(video mode) | target |")
    print("|---|---|---|---|---|---|")
    for r in res["rows"]:
        print(f"| {r['model']} | {r['backend']} | {r['classify_ms']:.2f} | {r['model_call_ms']:.2f} | "
              f"{r['frames_per_s']:.1f} | {r['target']} |")
    for line in TARGET_LINES:
        print(line)
    print(res["note"])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", type=Path, help="trained checkpoints (<model>.pt); default: random ones")
    ap.add_argument("--data-dir", type=Path, default=SAMPLE, help="the HaGRID sample (v2 layout)")
    ap.add_argument("--frames", type=int, default=20, help="sample frames timed for the detector and classifiers")
    ap.add_argument("--video-frames", type=int, default=60, help="frames in the test video")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per frame (median)")
    ap.add_argument("--models", default=",".join(list_models()), help="comma-separated model names")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--max-hands", type=int, default=DetectorConfig.max_num_hands,
                    help="video mode: hands tracked at most (MediaPipe runs palm detection on every frame while "
                         "fewer are tracked, so 1 is much faster with one hand in view)")
    ap.add_argument("--model-complexity", type=int, default=DetectorConfig.model_complexity, choices=(0, 1),
                    help="video mode: 0 = lite landmark model")
    ap.add_argument("--quick", action="store_true",
                    help=f"a smoke run: {QUICK['frames']} frames, a {QUICK['video_frames']}-frame video, "
                         f"models {QUICK['models']} unless --models is given")
    args = ap.parse_args(argv)
    if args.quick:
        args.frames, args.video_frames, args.reps = QUICK["frames"], QUICK["video_frames"], QUICK["reps"]
        if "--models" not in (argv if argv is not None else sys.argv[1:]):
            args.models = QUICK["models"]
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp_s:
        tmp = Path(tmp_s)
        frames = [np.asarray(open_rgb(p)) for p in sample_frames(args.data_dir, args.frames)]
        video = write_video(args.data_dir, args.video_frames, tmp / "clip.mp4")
        ckpts, random = checkpoints(args.models_dir, tmp / "checkpoints", models)
        note = (f"{'random (untrained) checkpoints' if random else f'checkpoints from {args.models_dir}'}; "
                f"{len(frames)} sample frames x {args.reps} reps, a {args.video_frames}-frame video of "
                f"{VIDEO_SHOTS} {VIDEO_CLASS} frames; {os.cpu_count()} CPUs, torch {torch.get_num_threads()} threads, "
                f"load average {os.getloadavg()[0]:.1f} at the start (other jobs slow every figure)")
        print(note, flush=True)
        video_cfg = DetectorConfig(static_image_mode=False, max_num_hands=args.max_hands,
                                   model_complexity=args.model_complexity)
        res = {"detector_ms": bench_detector(frames, video, args.reps, video_cfg), "rows": [], "random": random,
               "note": note, "video_config": video_cfg}
        print(f"detector: static {res['detector_ms']['static']:.1f} ms/frame, "
              f"video {res['detector_ms']['video']:.1f} ms/frame", flush=True)
        hands = detected_hands(frames)
        for name, ckpt in ckpts.items():
            res["rows"] += bench_model(name, ckpt, hands, video, args.reps, tmp, video_cfg)
    print_table(res)
    return res


if __name__ == "__main__":
    main()
