"""Measure annotate's gesture-hand rules against HaGRID's official labels.

    nice uv run python tools/measure_gesture_hand_rule.py --data-dir ../shared/hagrid_sample

On the val/test frames with at least two official hands (one gesture hand, the others no_gesture): detect
the hands (MediaPipe, ``DetectorConfig`` defaults, static images; detections cached as ``evaluate
--end-to-end`` caches them, so the two share a cache), match detections to the official boxes (greedy, IoU
>= 0.5, as ``engine.end_to_end``), and count how often each rule of
``data_loaders.annotate.GESTURE_HAND_RULES`` picks the detection matched to the official gesture hand.
Frames where the detector found fewer than two hands are counted apart (no rule is needed there).
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_loaders.annotate import GESTURE_HAND_RULES, gesture_hand_order
from data_loaders.box_model import greedy_match
from data_loaders.classes import NO_GESTURE, make_class_set
from data_loaders.hagrid import load_hagrid
from data_loaders.images import open_rgb
from engine.end_to_end import DEFAULT_DETECTOR, DetectionCache, _LazyDetector, cache_file


def two_hand_frames(data_dir: Path, split: str) -> list[tuple[Path, np.ndarray, int]]:
    """``(image, official boxes (A, 4), index of the gesture box)`` of the frames with >= 2 official hands,
    exactly one of them a gesture."""
    ann = load_hagrid(data_dir, make_class_set("hagrid33", include_no_gesture=True), splits=[split])
    frames = defaultdict(list)
    for r in ann.records:
        frames[r.image_path].append(r)
    out = []
    for path, recs in frames.items():
        gestures = [i for i, r in enumerate(recs) if r.label != NO_GESTURE]
        if len(recs) >= 2 and len(gestures) == 1:
            out.append((path, np.array([r.bbox for r in recs]), gestures[0]))
    return out


def measure(data_dir: Path, split: str, cache_dir: Path) -> dict:
    """Counts for one split: frames, frames with >= 2 detections, gesture hand unmatched, agreement per rule."""
    frames = two_hand_frames(data_dir, split)
    cache = DetectionCache(cache_file(cache_dir, split, DEFAULT_DETECTOR))
    detect = _LazyDetector(DEFAULT_DETECTOR)
    n = {"frames": len(frames), "two_plus": 0, "one": 0, "none": 0, "gesture_unmatched": 0,
         "one_is_gesture": 0, "one_is_other": 0,
         **{r: 0 for r in GESTURE_HAND_RULES}, **{f"{r}_all": 0 for r in GESTURE_HAND_RULES}}
    try:
        for path, boxes, g in tqdm(frames, desc=split, unit="frame"):
            dets = cache.get(path.stem, path)
            if dets is None:
                dets = detect(np.asarray(open_rgb(path)))
                cache.add(path.stem, path, dets)
            match = greedy_match([d["box"] for d in dets], boxes)
            n["two_plus" if len(dets) >= 2 else "one" if dets else "none"] += 1
            n["gesture_unmatched"] += int(match[g] < 0 and len(dets) >= 2)
            if len(dets) == 1:  # no rule needed: is the one hand found the gesture hand or the other one?
                n["one_is_gesture"] += int(match[g] == 0)
                n["one_is_other"] += int(match[g] != 0 and (match == 0).any())
            for rule in GESTURE_HAND_RULES:
                pick = gesture_hand_order(dets, rule)[0] if dets else -2
                hit = int(pick == match[g])
                n[f"{rule}_all"] += hit
                n[rule] += hit if len(dets) >= 2 else 0
    finally:
        detect.close()
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/hagrid_sample"))
    ap.add_argument("--splits", nargs="+", default=["val", "test"])
    ap.add_argument("--cache-dir", type=Path, default=Path("graphs/.end_to_end_cache"))
    args = ap.parse_args()
    for split in args.splits:
        n = measure(args.data_dir, split, args.cache_dir)
        print(f"{split}: {n['frames']} frames with >= 2 official hands (1 gesture); detections: >= 2 in "
              f"{n['two_plus']}, 1 in {n['one']}, 0 in {n['none']}; gesture hand unmatched in {n['gesture_unmatched']} "
              "of the >= 2 frames")
        print(f"  frames with 1 detection: it is the gesture hand in {n['one_is_gesture']}, the no_gesture hand in "
              f"{n['one_is_other']}, no official hand (IoU < 0.5) in {n['one'] - n['one_is_gesture'] - n['one_is_other']}")
        for rule in GESTURE_HAND_RULES:
            print(f"  rule {rule:8s} agree {n[rule]}/{n['two_plus']} on frames with >= 2 detections; "
                  f"{n[rule + '_all']}/{n['frames']} on all")


if __name__ == "__main__":
    main()
