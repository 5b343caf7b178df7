"""Time ``load_hagrid`` on annotations the size of full HaGRID (v2 format, no images).

Generates 18 class files of ~30.5k records (~550k images) with landmarks for
most hands and a second ``no_gesture`` hand on some images, then loads them in
a fresh process (so its peak RSS is the loader's alone) and prints seconds,
hand records per second and peak RSS.

    uv run python benchmarks/bench_annotation_loading.py [--images 550000] [--dir DIR] [--keep]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_loaders.classes import GESTURES_18  # noqa: E402


def generate(root: Path, n_images: int, seed: int = 0, p_landmarks: float = 0.9, p_second: float = 0.2) -> int:
    """Write ``hagrid_annotations/train/<class>.json`` under ``root``; returns the number of hands."""
    rng = np.random.default_rng(seed)
    ann = root / "hagrid_annotations" / "train"
    ann.mkdir(parents=True, exist_ok=True)
    per_class = n_images // len(GESTURES_18)
    users = [f"{rng.integers(2**63):016x}" * 4 for _ in range(max(1, n_images // 15))]
    hands = 0
    for cls in GESTURES_18:
        n = per_class
        second = rng.random(n) < p_second
        xy = rng.uniform(0.05, 0.7, (n, 2, 2))
        wh = rng.uniform(0.05, 0.25, (n, 2, 2))
        lms = np.round(rng.uniform(0, 1, (n, 2, 21, 2)), 6)
        has_lm = rng.random((n, 2)) < p_landmarks
        user = rng.integers(len(users), size=n)
        recs = {}
        for i in range(n):
            k = 2 if second[i] else 1
            recs[str(uuidlib.UUID(int=int(rng.integers(2**63)) << 64 | i))] = {
                "bboxes": [[round(float(v), 6) for v in (*xy[i, j], *wh[i, j])] for j in range(k)],
                "labels": [cls, "no_gesture"][:k],
                "united_bbox": None,
                "united_label": None,
                "user_id": users[user[i]],
                "hand_landmarks": [lms[i, j].tolist() if has_lm[i, j] else [] for j in range(k)],
                "meta": {"age": [30.0], "gender": ["female"], "race": ["White"]},
            }
            hands += k
        (ann / f"{cls}.json").write_bytes(orjson.dumps(recs))
    return hands


def load_once(root: str, include_no_gesture: bool) -> dict:
    """Runs in the child process: load and report."""
    import resource

    from data_loaders.classes import make_class_set
    from data_loaders.hagrid import load_hagrid

    t, c = time.perf_counter(), time.process_time()
    ann = load_hagrid(root, make_class_set("hagrid18", include_no_gesture=include_no_gesture))
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    n_images = len({r.uuid for r in ann.records})
    return {
        "seconds": dt,
        "cpu_seconds": cpu,  # robust to other processes sharing the CPUs
        "records": len(ann.records),
        "images": n_images,
        "records_per_s": len(ann.records) / dt,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "excluded": dict(ann.excluded.counts),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=550_000)
    ap.add_argument("--dir", type=Path, help="generate into (or reuse) this folder instead of a temp dir")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--include-no-gesture", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(load_once(args.child, args.include_no_gesture)))
        return
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench_hagrid_"))
    try:
        if not (root / "hagrid_annotations").is_dir():
            t = time.perf_counter()
            hands = generate(root, args.images)
            size = sum(p.stat().st_size for p in root.rglob("*.json"))
            print(f"generated {args.images} images, {hands} hands, {size / 2**20:.0f} MiB "
                  f"in {time.perf_counter() - t:.1f} s")
        for ng in (False, True):
            cmd = [sys.executable, __file__, "--child", str(root)] + (["--include-no-gesture"] if ng else [])
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            print(f"load_hagrid(hagrid18{' + no_gesture' if ng else ''}): {res['seconds']:.2f} s "
                  f"({res['cpu_seconds']:.2f} s CPU), "
                  f"{res['records']} hand records ({res['images']} images), "
                  f"{res['records_per_s']:,.0f} records/s, peak RSS {res['peak_rss_mib']:.0f} MiB"
                  + (f", excluded {res['excluded']}" if res["excluded"] else ""))
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
