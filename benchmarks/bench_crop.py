"""Time the crop step on the real HaGRID sample (../shared/hagrid_sample) into a temp dir.

Prints crops/s for a fresh run and for a resumed run (every crop exists: only
JPEG headers are read), with the annotation loading included, as a user sees it.

    uv run python benchmarks/bench_crop.py [--data-dir DIR] [--workers 2] [--size 128] [--include-no-gesture]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_loaders.classes import make_class_set  # noqa: E402
from data_loaders.crop import crop_dataset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path,
                    default=Path(os.environ.get("HAGRID_SAMPLE", REPO.parent / "shared" / "hagrid_sample")))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--box-scale", type=float, default=1.5)
    ap.add_argument("--include-no-gesture", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="fresh runs; the best is reported too")
    args = ap.parse_args()
    cs = make_class_set("hagrid18", include_no_gesture=args.include_no_gesture)
    out_root = Path(tempfile.mkdtemp(prefix="bench_crop_"))
    try:
        rates = []
        for k in range(args.repeat):
            out = out_root / f"run{k}"
            t = time.perf_counter()
            s = crop_dataset(args.data_dir, out, class_set=cs, size=args.size, box_scale=args.box_scale,
                             workers=args.workers, progress=False)
            dt = time.perf_counter() - t
            rates.append(s.n_written / dt)
            print(f"fresh run {k + 1}: {s.n_written} crops in {dt:.2f} s = {s.n_written / dt:.0f} crops/s "
                  f"(workers={args.workers}, size={args.size}, skipped={s.skipped.total()})")
        t = time.perf_counter()
        s = crop_dataset(args.data_dir, out, class_set=cs, size=args.size, box_scale=args.box_scale,
                         workers=args.workers, progress=False)
        dt = time.perf_counter() - t
        print(f"resumed run: {s.n_reused} crops reused, {s.n_written} written in {dt:.2f} s "
              f"= {s.n_reused / dt:.0f} crops/s")
        print(f"fresh runs: median {sorted(rates)[len(rates) // 2]:.0f} crops/s, best {max(rates):.0f} crops/s "
              f"on {os.cpu_count()} CPUs")
    finally:
        shutil.rmtree(out_root, ignore_errors=True)


if __name__ == "__main__":
    main()
