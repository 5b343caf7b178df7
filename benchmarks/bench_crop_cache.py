"""Image batches with and without the decoded crop cache: images/s of one epoch of data, the cache's build
time, and optionally one training epoch of an image model each way.

Without the cache a split too large for memory goes through a ``DataLoader`` that decodes (and resizes)
every JPEG every epoch (``--workers`` processes); with it (:mod:`data_loaders.crop_cache`) the crops are
decoded once into ``<crops>/.decoded/`` and every epoch reads a memory-mapped ``uint8`` array. Both paths
are forced here (``in_memory="no"``) whatever the split's size, and give the same batches.

Data: ``--crops-dir`` (the output of ``hand-gestures crop``: its manifest; the split's cache there is deleted
first, to time its build), or ``--image-folder`` (per-class
folders of crops without a manifest, e.g. ``../shared/hagrid_crops``: labels from the folder names, no
landmarks; its cache goes to ``--work-dir``). ``--limit N`` takes a seeded random N of the split's hands.

    uv run python benchmarks/bench_crop_cache.py --crops-dir data/crops [--size 128] [--model cnn]
    uv run python benchmarks/bench_crop_cache.py --image-folder ../shared/hagrid_crops --limit 8000 --model cnn
    uv run python benchmarks/bench_crop_cache.py --tiny          # seconds (tests)
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from data_loaders.augment import AugmentConfig, BatchTransform  # noqa: E402
from data_loaders.batches import load_hand_table, make_batches  # noqa: E402
from data_loaders.crop_cache import cache_paths, decoded_crops  # noqa: E402
from data_loaders.hand_table import HandTable  # noqa: E402
from engine.loop import train_one_epoch  # noqa: E402
from engine.recipes import recipe  # noqa: E402
from model_classes import create_model, model_spec  # noqa: E402

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def folder_table(root: Path, work_dir: Path) -> HandTable:
    """A table of per-class crop folders (``<root>/<label>/*.jpg``): train split, no landmarks, cache in ``work_dir``."""
    labels = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    paths, y = [], []
    for k, c in enumerate(labels):
        files = sorted(str(p) for p in (root / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        y += [k] * len(files)
    n = len(paths)
    obj = lambda xs: np.array(xs, dtype=object)  # noqa: E731
    return HandTable(
        class_names=tuple(labels), keys=obj([Path(p).stem for p in paths]), split=obj(["train"] * n),
        labels=np.array(y, np.int64), landmarks=np.zeros((n, 21, 2), np.float32), has_landmarks=np.zeros(n, bool),
        image_size=np.ones((n, 2), np.float32), bbox=np.zeros((n, 4), np.float32), user_id=obj([None] * n),
        index=np.arange(n, dtype=np.int64), crop_paths=obj(paths), crops_dir=work_dir,
        meta={"source": str(root)})


def pick(table: HandTable, limit: int | None, seed: int) -> HandTable:
    if not limit or limit >= len(table):
        return table
    rows = np.sort(np.random.default_rng(seed).choice(len(table), size=limit, replace=False))
    return table.subset(rows)


def batches(table: HandTable, args, cached: bool):
    return make_batches(table, inputs=("image", "landmarks"), image_size=args.size, landmark_norm="wrist",
                        batch_size=args.batch_size, shuffle=True, seed=0, device=torch.device(args.device),
                        num_workers=args.workers, in_memory="no", decoded_cache=cached)


def data_epoch(b) -> float:
    """Images/s of one shuffled epoch, batches only (moved to the device, nothing computed)."""
    t0, n = time.perf_counter(), 0
    for batch in b:
        n += len(batch["label"])
    return n / (time.perf_counter() - t0)


def train_epoch(table: HandTable, b, args) -> float:
    """Training images/s of one epoch of ``args.model`` (its recipe's augmentation and optimiser settings)."""
    torch.manual_seed(0)
    dev = torch.device(args.device)
    model = create_model(args.model, len(table.class_names)).to(dev)
    rec = recipe(args.model)
    opt = torch.optim.AdamW(model.parameters(), lr=rec["lr"], weight_decay=rec["weight_decay"])
    tf = BatchTransform("wrist", args.size, AugmentConfig.from_recipe(rec["augment"]), seed=0)
    out = train_one_epoch(model, b, tf, opt, None, dev, steps=len(b))
    return out["samples_per_s"]


def run(args) -> dict:
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_crop_cache_"))
    if args.image_folder:
        table = folder_table(Path(args.image_folder), work)
    else:
        table = load_hand_table(args.crops_dir).split_view(args.split)
    table = pick(table, args.limit, args.seed)
    res = {"n": len(table), "size": args.size, "batch_size": args.batch_size, "workers": args.workers,
           "device": args.device, "model": args.model}
    data, side = cache_paths(table, args.size)
    for p in (data, side):
        p.unlink(missing_ok=True)  # measure the build from scratch
    res["jpeg_data_img_s"] = data_epoch(batches(table, args, cached=False))
    t0 = time.perf_counter()
    decoded_crops(table, args.size, workers=args.workers, progress=args.progress)
    res["cache_build_s"] = time.perf_counter() - t0
    res["cache_bytes"] = data.stat().st_size
    t0 = time.perf_counter()
    cached = batches(table, args, cached=True)
    res["cache_open_s"] = time.perf_counter() - t0
    res["cache_data_img_s"] = data_epoch(cached)
    if args.model:
        res["jpeg_train_img_s"] = train_epoch(table, batches(table, args, cached=False), args)
        res["cache_train_img_s"] = train_epoch(table, cached, args)
    if not args.work_dir and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return res


def report(res: dict) -> str:
    lines = [f"{res['n']} crops at {res['size']} px, batch {res['batch_size']}, {res['workers']} worker(s), "
             f"device {res['device']}",
             f"  cache build (decode once): {res['cache_build_s']:.1f} s ({res['n'] / res['cache_build_s']:.0f} img/s), "
             f"{res['cache_bytes'] / 2**20:.0f} MiB; reopen {res['cache_open_s'] * 1000:.0f} ms",
             f"  data epoch, JPEG DataLoader: {res['jpeg_data_img_s']:.0f} img/s",
             f"  data epoch, decoded cache:   {res['cache_data_img_s']:.0f} img/s "
             f"({res['cache_data_img_s'] / res['jpeg_data_img_s']:.1f}x)"]
    if res.get("model"):
        lines += [f"  {res['model']} training epoch, JPEG DataLoader: {res['jpeg_train_img_s']:.0f} img/s",
                  f"  {res['model']} training epoch, decoded cache:   {res['cache_train_img_s']:.0f} img/s "
                  f"({res['cache_train_img_s'] / res['jpeg_train_img_s']:.2f}x)"]
    return "\n".join(lines)


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--crops-dir", help="output of `hand-gestures crop` (its manifest)")
    src.add_argument("--image-folder", help="per-class crop folders without a manifest")
    ap.add_argument("--split", default="train")
    ap.add_argument("--size", type=int, help="image side (default: --model's input size, else 128)")
    ap.add_argument("--limit", type=int, help="a seeded random subset of this many hands")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader and cache-building processes")
    ap.add_argument("--model", choices=["cnn", "resnet34"], help="also one training epoch each way")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work-dir", help="for --image-folder's cache (default: a temporary folder, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    ap.add_argument("--out", help="write the figures as JSON here")
    ap.add_argument("--tiny", action="store_true", help="a synthetic set made here, 64 px, cnn: seconds")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    args = ap.parse_args(argv)
    if not (args.crops_dir or args.image_folder or args.tiny):
        ap.error("give --crops-dir, --image-folder or --tiny")
    if args.tiny:
        args.size, args.batch_size, args.model, args.workers = 64, 16, args.model or "cnn", min(args.workers, 1)
    args.size = args.size or (model_spec(args.model).image_size if args.model else 128)
    return args


def tiny_crops(work: Path) -> Path:
    """A small synthetic set cropped with the CLI (the benchmark's smoke test)."""
    from engine.cli import main as cli

    raw, crops = work / "raw", work / "crops"
    assert cli(["synth", "--out", str(raw), "--subjects", "6", "--images-per-subject", "4", "--no-progress"]) == 0
    assert cli(["crop", "--data-dir", str(raw), "--out", str(crops), "--workers", "1", "--no-progress"]) == 0
    return crops


def main(argv=None) -> dict:
    args = parse(argv)
    tiny_work = None
    if args.tiny:
        tiny_work = Path(tempfile.mkdtemp(prefix="bench_crop_cache_tiny_", dir=args.work_dir))
        args.crops_dir = str(tiny_crops(tiny_work))
    try:
        res = run(args)
    finally:
        if tiny_work is not None and not args.keep:
            shutil.rmtree(tiny_work, ignore_errors=True)
    print(report(res))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return res


if __name__ == "__main__":
    main()
