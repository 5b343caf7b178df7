"""The seed's input pipeline against ours, side by side in one process on the same crops; prints the ratios.

(a) GCN training samples/s. Seed: one ``torch_geometric.data.Data`` per hand (21 nodes, the 42 directed bone
    edges), a PyG ``DataLoader`` (batch 64) and a 3-layer ``GCNConv`` network (64 channels) with global mean
    pooling, Adam. Ours: ``engine.train.fit`` on the ``gcn`` model (dense ``(B, 21, 2)`` tensors held in
    memory, recipe batch size, on-device augmentation); its per-epoch training samples/s from the history.
(b) Crop loading images/s. Seed: a ``Dataset`` that opens each crop with PIL, resizes it and turns it into a
    normalised float tensor in ``__getitem__``, through a ``DataLoader`` (``--seed-workers``), every epoch.
    Ours: ``data_loaders.batches.load_crops`` decodes the split once into a ``uint8`` tensor; each later
    epoch indexes that tensor and normalises the batch (as ``TensorBatches`` + ``BatchTransform`` do).
(c) CNN and ResNet-34 training samples/s. Seed: the same models trained from (b)'s per-sample PIL loader.
    Ours: ``engine.train.fit`` with the crops held in memory (``in_memory="yes"``) and the recipe's
    on-device augmentation (the seed-style side does none). Same batch size on both sides (the recipe's).

Data: the crops in ``--crops-dir`` (default /tmp/ratio_crops); when it has no manifest they are made with
``hand-gestures crop`` from ``--data-dir`` (default ../shared/hagrid_sample), or, when that is absent, from a
small synthetic set (``hand-gestures synth``). Only the train split is used.

    uv run hand-gestures crop --data-dir ../shared/hagrid_sample --out /tmp/ratio_crops
    uv run python benchmarks/bench_seed_ratio.py [--crops-dir /tmp/ratio_crops] [--device cpu] [--out DIR]
    uv run python benchmarks/bench_seed_ratio.py --tiny          # seconds (tests)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from data_loaders.batches import load_crops  # noqa: E402
from data_loaders.hand_table import HandTable  # noqa: E402
from engine.recipes import recipe  # noqa: E402
from engine.train import TrainConfig, fit  # noqa: E402
from model_classes import create_model, model_spec  # noqa: E402

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SEED_GCN_BATCH = 64
#: MediaPipe HAND_CONNECTIONS: 21 bones, used in both directions (42 directed edges), as the seed's graph.
HAND_BONES = ((0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (9, 10), (10, 11), (11, 12),
              (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20), (5, 9), (9, 13), (13, 17))


# --------------------------------------------------------------------------- #
# data
# --------------------------------------------------------------------------- #
def _cli(*argv: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    proc = subprocess.run([sys.executable, "-m", "engine.cli", *argv], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"hand-gestures {' '.join(argv)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def ensure_crops(crops_dir: Path, data_dir: Path | None, say) -> str:
    """Crops to benchmark on; returns a description of where they came from."""
    if (crops_dir / "manifest.jsonl").is_file():
        return f"existing crops {crops_dir}"
    if data_dir is not None and (data_dir / "hagrid_annotations").is_dir():
        say(f"cropping {data_dir} -> {crops_dir}")
        _cli("crop", "--data-dir", str(data_dir), "--out", str(crops_dir), "--no-progress")
        return f"crops of {data_dir}"
    synth = Path(tempfile.mkdtemp(prefix="ratio_synth_"))
    say(f"no HaGRID sample: synthetic set in {synth}, cropped to {crops_dir}")
    _cli("synth", "--out", str(synth), "--subjects", "12", "--images-per-subject", "6", "--no-progress")
    _cli("crop", "--data-dir", str(synth), "--out", str(crops_dir), "--no-progress")
    shutil.rmtree(synth, ignore_errors=True)
    return "synthetic set (hand-gestures synth --subjects 12 --images-per-subject 6)"


# --------------------------------------------------------------------------- #
# the seed's way
# --------------------------------------------------------------------------- #
class SeedGCN(nn.Module):
    """Three GCNConv layers, global mean pooling, a linear head (the seed's graph network)."""

    def __init__(self, num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.convs = nn.ModuleList([GCNConv(2, hidden), GCNConv(hidden, hidden), GCNConv(hidden, hidden)])
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x, edge_index, batch):
        from torch_geometric.nn import global_mean_pool

        for conv in self.convs:
            x = F.relu(conv(x, edge_index))
        return self.head(global_mean_pool(x, batch))


class SeedCropDataset(Dataset):
    """Opens, resizes and normalises one crop per ``__getitem__`` with PIL (the seed's image pipeline)."""

    def __init__(self, paths, labels, size: int) -> None:
        self.paths, self.labels, self.size = list(paths), np.asarray(labels), size
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with Image.open(self.paths[i]) as im:
            im = im.convert("RGB").resize((self.size, self.size), Image.BILINEAR)
            x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - self.mean) / self.std, int(self.labels[i])


def seed_loader(table: HandTable, size: int, batch_size: int, workers: int, seed: int = 0) -> DataLoader:
    return DataLoader(SeedCropDataset(table.crop_paths, table.labels, size), batch_size=batch_size, shuffle=True,
                      num_workers=workers, generator=torch.Generator().manual_seed(seed))


def seed_gcn(table: HandTable, device: torch.device, epochs: int, num_classes: int) -> dict:
    from torch_geometric.data import Data
    from torch_geometric.loader import DataLoader as PygDataLoader

    torch.manual_seed(0)
    rows = np.flatnonzero(table.has_landmarks)
    lms = table.normalized_landmarks("bbox")  # the seed's landmark normalisation (any would time the same)
    edge_index = torch.tensor([[a for a, b in HAND_BONES] + [b for a, b in HAND_BONES],
                               [b for a, b in HAND_BONES] + [a for a, b in HAND_BONES]], dtype=torch.long)
    t0 = time.perf_counter()
    data = [Data(x=torch.tensor(lms[i], dtype=torch.float32), edge_index=edge_index,
                 y=torch.tensor([int(table.labels[i])])) for i in rows]
    build_s = time.perf_counter() - t0
    loader = PygDataLoader(data, batch_size=SEED_GCN_BATCH, shuffle=True)
    model = SeedGCN(num_classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def epoch() -> float:
        t = time.perf_counter()
        model.train()
        for b in loader:
            b = b.to(device)
            loss = F.cross_entropy(model(b.x, b.edge_index, b.batch), b.y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
        return time.perf_counter() - t

    epoch()  # warm-up
    secs = [epoch() for _ in range(epochs)]
    return {"hands": len(data), "build_s": build_s, "samples_s": len(data) / statistics.median(secs),
            "epoch_s": statistics.median(secs), "batch_size": SEED_GCN_BATCH}


def seed_image_training(name: str, table: HandTable, device: torch.device, batch_size: int, steps: int,
                        workers: int, num_classes: int, warmup: int = 2) -> dict:
    size = model_spec(name).image_size
    torch.manual_seed(0)
    model = create_model(name, num_classes, **({"weights": None} if name == "resnet34" else {})).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(recipe(name)["lr"]))
    loader = seed_loader(table, size, batch_size, workers)
    it = iter(loader)

    def step() -> int:
        nonlocal it
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model({"image": x, "label": y}), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        return len(y)

    model.train()
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    n = sum(step() for _ in range(steps))
    secs = time.perf_counter() - t0
    return {"samples_s": n / secs, "samples": n, "seconds": secs}


# --------------------------------------------------------------------------- #
# ours
# --------------------------------------------------------------------------- #
def ours_fit(name: str, crops_dir: Path, work: Path, device: torch.device, *, epochs: int,
             max_train_batches: int | None, batch_size: int | None) -> dict:
    """``fit`` as the engine trains; training samples/s of every epoch but the first (warm-up)."""
    cfg = TrainConfig(model=name, crops_dir=str(crops_dir), out_dir=str(work / "models"), graphs_dir=str(work / "graphs"),
                      run_name=f"ratio_{name}", device=str(device), epochs=epochs, patience=0, batch_size=batch_size,
                      hparams={"weights": None} if name == "resnet34" else {}, in_memory="yes",
                      max_train_batches=max_train_batches, max_eval_batches=1, progress=False, tensorboard=False)
    res = fit(cfg)
    sps = [r["samples_per_s"] for r in res.history[1:]] or [r["samples_per_s"] for r in res.history]
    return {"samples_s": statistics.median(sps), "epochs_timed": len(sps),
            "batch_size": batch_size or recipe(name)["batch_size"]}


def crop_loading(table: HandTable, size: int, batch_size: int, workers: int) -> dict:
    """Seed: one DataLoader pass (PIL per sample, what every seed epoch pays). Ours: load_crops once, then
    the per-epoch pass over the held uint8 tensor (index + normalise to float)."""
    n = len(table)
    t0 = time.perf_counter()
    seen = sum(len(y) for _, y in seed_loader(table, size, batch_size, workers))
    seed_s = time.perf_counter() - t0
    assert seen == n
    t0 = time.perf_counter()
    held = load_crops(table, size)
    load_s = time.perf_counter() - t0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    t0 = time.perf_counter()
    order = torch.randperm(n)
    for b in range(math.ceil(n / batch_size)):
        x = held[order[b * batch_size:(b + 1) * batch_size]].float().div_(255.0)
        x = (x - mean) / std
    epoch_s = time.perf_counter() - t0
    return {"images": n, "size": size, "seed_images_s": n / seed_s, "ours_load_images_s": n / load_s,
            "ours_epoch_images_s": n / epoch_s, "seed_pass_s": seed_s, "ours_load_s": load_s, "ours_epoch_s": epoch_s}


# --------------------------------------------------------------------------- #
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--crops-dir", type=Path, default=Path("/tmp/ratio_crops"))
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "hagrid_sample",
                    help="HaGRID-layout folder cropped when --crops-dir has no manifest")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gcn-epochs", type=int, default=None, help="timed GCN epochs per side (default 3; --tiny 1)")
    ap.add_argument("--image-steps", type=int, default=None,
                    help="timed CNN/ResNet-34 batches per side (default 8; --tiny 1)")
    ap.add_argument("--image-models", nargs="*", default=["cnn", "resnet34"])
    ap.add_argument("--batch-size", type=int, default=None, help="image models' batch size (default: recipe)")
    ap.add_argument("--seed-workers", type=int, default=2, help="DataLoader workers of the seed's image loader")
    ap.add_argument("--skip", nargs="*", default=[], choices=["gcn", "loading", "training"])
    ap.add_argument("--tiny", action="store_true", help="1 epoch / 1 step, batch 8: seconds (tests)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    ap.add_argument("--out", type=Path, help="write seed_ratio.json and seed_ratio.md here")
    return ap.parse_args(argv)


def main(argv=None) -> dict:
    threads = torch.get_num_threads()
    try:
        return _main(parse_args(argv))
    finally:
        torch.set_num_threads(threads)  # --threads must not outlive main() (tests call it in-process)


def _main(args) -> dict:
    say = lambda *a: print(*a, flush=True)  # noqa: E731
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gcn_epochs = args.gcn_epochs or (1 if args.tiny else 3)
    image_steps = args.image_steps or (1 if args.tiny else 8)
    batch_size = args.batch_size or (8 if args.tiny else None)
    source = ensure_crops(args.crops_dir, args.data_dir, say)
    table = HandTable.from_manifest(args.crops_dir).split_view("train")
    num_classes = len(table.class_names)
    say(f"data: {source}; train split: {len(table)} hands, {int(table.has_landmarks.sum())} with landmarks, "
        f"{num_classes} classes; device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    res: dict = {"source": source, "train_hands": len(table), "device": str(device), "torch": torch.__version__,
                 "threads": torch.get_num_threads(), "seed_workers": args.seed_workers, "argv": sys.argv[1:]}
    rows: list[tuple[str, str, str, str, float]] = []  # what, unit, seed, ours, ratio
    work = Path(tempfile.mkdtemp(prefix="seed_ratio_"))
    try:
        if "gcn" not in args.skip:
            s = seed_gcn(table, device, gcn_epochs, num_classes)
            o = ours_fit("gcn", args.crops_dir, work, device, epochs=gcn_epochs + (0 if args.tiny else 1),
                         max_train_batches=None,
                         batch_size=None)
            res["gcn"] = {"seed": s, "ours": o}
            say(f"(a) GCN: seed {s['samples_s']:,.0f} samples/s (PyG Data x{s['hands']}, built in {s['build_s']:.2f} s, "
                f"batch 64) | ours {o['samples_s']:,.0f} samples/s (fit, batch {o['batch_size']})")
            rows.append(("(a) GCN training", "samples/s", f"{s['samples_s']:,.0f} (PyG, batch 64)",
                         f"{o['samples_s']:,.0f} (dense, batch {o['batch_size']})", o["samples_s"] / s["samples_s"]))
        if "loading" not in args.skip:
            res["loading"] = {}
            for name in args.image_models:
                size = model_spec(name).image_size
                bs = batch_size or recipe(name)["batch_size"]
                c = crop_loading(table, size, bs, args.seed_workers)
                res["loading"][f"{size}px"] = c
                runs = recipe(name)["epochs"]
                seed_run = runs * c["seed_pass_s"]
                ours_run = c["ours_load_s"] + runs * c["ours_epoch_s"]
                c["run_epochs"], c["run_ratio"] = runs, seed_run / ours_run
                say(f"(b) crop loading {size}px: seed {c['seed_images_s']:,.0f} img/s per epoch | ours load_crops "
                    f"{c['ours_load_images_s']:,.0f} img/s once, then {c['ours_epoch_images_s']:,.0f} img/s per epoch")
                rows.append((f"(b) crop loading {size}px, first epoch", "images/s", f"{c['seed_images_s']:,.0f}",
                             f"{c['ours_load_images_s']:,.0f} (load_crops)", c["ours_load_images_s"] / c["seed_images_s"]))
                rows.append((f"(b) crop loading {size}px, each later epoch", "images/s", f"{c['seed_images_s']:,.0f}",
                             f"{c['ours_epoch_images_s']:,.0f} (held uint8)",
                             c["ours_epoch_images_s"] / c["seed_images_s"]))
                rows.append((f"(b) crop loading {size}px, {runs}-epoch {name} recipe", "seconds",
                             f"{seed_run:.1f}", f"{ours_run:.1f}", c["run_ratio"]))
        if "training" not in args.skip:
            res["training"] = {}
            for name in args.image_models:
                bs = batch_size or recipe(name)["batch_size"]
                s = seed_image_training(name, table, device, bs, image_steps, args.seed_workers, num_classes,
                                        warmup=1 if args.tiny else 2)
                o = ours_fit(name, args.crops_dir, work, device, epochs=1 if args.tiny else 2,
                             max_train_batches=image_steps,
                             batch_size=batch_size)
                res["training"][name] = {"seed": s, "ours": o}
                say(f"(c) {name} training: seed {s['samples_s']:,.1f} samples/s (PIL per sample) | ours "
                    f"{o['samples_s']:,.1f} samples/s (held crops + on-device augmentation), batch {bs}")
                rows.append((f"(c) {name} training ({model_spec(name).image_size}px, batch {bs})", "samples/s",
                             f"{s['samples_s']:,.1f}", f"{o['samples_s']:,.1f}", o["samples_s"] / s["samples_s"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res["rows"] = [dict(zip(("what", "unit", "seed", "ours", "ratio"), r)) for r in rows]
    lines = ["| what | unit | seed's way | ours | ours / seed |", "|---|---|---:|---:|---:|"]
    for what, unit, s, o, ratio in rows:
        # for seconds, lower is better: the ratio is seed / ours so that > 1 always means ours is faster
        lines.append(f"| {what} | {unit} | {s} | {o} | {ratio:.2f}x |")
    table_md = "\n".join(lines)
    say("")
    say(table_md)
    say("(ratio > 1: ours is faster; for the seconds row it is seed seconds / our seconds)")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "seed_ratio.json").write_text(json.dumps(res, indent=1, default=str))
        (args.out / "seed_ratio.md").write_text(table_md + "\n")
    return res


if __name__ == "__main__":
    main()
