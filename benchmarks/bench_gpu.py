"""Throughput of every model on a GPU (or the CPU): training and inference samples/s, torch.compile, peak memory.

Per model, on synthetic random inputs in the dict-batch format (docs/architecture.md) at the recipe's batch
size: training samples/s (forward + backward + Adam step; bf16 autocast and channels-last for image models on
CUDA, as ``engine.train`` does), inference samples/s (eval mode, ``torch.inference_mode``), each eager and
under ``torch.compile``, and the peak memory of each phase (``torch.cuda.max_memory_allocated``; n/a on CPU).
ResNet-34 (and the fusion model's ResNet branch) use ``weights=None``: no ImageNet download, throughput is the
same. Synthetic inputs skip the engine's on-device augmentation; the end-to-end part below runs the real one.

Optionally (``--sample-dir`` and/or ``--crops-dir``) the wall time to train all five models through the real
pipeline: crop a HaGRID-layout folder once with the ``hand-gestures crop`` CLI (``--sample-dir``; or reuse the
crops of ``--crops-dir``), then ``engine.train.fit`` each model with its recipe (``--epochs`` shortens it;
fusion starts from the ResNet-34 and GCN just trained).

    uv run python benchmarks/bench_gpu.py --device cuda --out /tmp/bench_gpu
    uv run python benchmarks/bench_gpu.py --tiny --device cpu --no-compile        # seconds, on a CPU
    uv run python benchmarks/bench_gpu.py --no-synthetic --sample-dir ../shared/hagrid_sample --device cuda
    uv run python benchmarks/bench_gpu.py --summarize a.json b.json               # one table from several runs
    torchrun --standalone --nproc_per_node=1 benchmarks/bench_gpu.py --ddp-check --crops-dir C --device cuda

``--ddp-check`` (under torchrun): one ``fit`` run that writes a checkpoint, the checkpoint reloaded, and a
DDP-wrapped ResNet-34 trained a few steps on an explicitly initialised NCCL (gloo on CPU) process group.

``--out DIR`` writes ``DIR/bench_gpu.json`` (rewritten after every model, so a run cut short keeps what it
measured) and ``DIR/bench_gpu.md``. The table printed last puts the targets of issue 12 beside the figures.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script (also under torchrun) from a checkout or a snapshot of one
    sys.path.insert(0, str(REPO))

from engine.loop import autocast  # noqa: E402
from engine.recipes import recipe, uses_channels_last  # noqa: E402
from model_classes import create_model, list_models, model_spec  # noqa: E402

NUM_CLASSES = 18
#: Targets of issue 12 (an H100/H200-class GPU).
TARGETS = {
    "resnet34": ("train", 10_000, ">= 10,000 train img/s (bf16, 128 px)"),
    "mlp": ("train", 1_000_000, ">= 1M samples/s"),
}
E2E_TARGET_S = 120.0
WEIGHTS_NOTE = "resnet34 and fusion use weights=None (no ImageNet download: offline; throughput is unaffected)"
#: compile order: the models with targets first, so a run cut short has measured those
COMPILE_ORDER = ("resnet34", "mlp", "gcn", "cnn", "fusion")


def _hparams(name: str) -> dict:
    if name == "resnet34":
        return {"weights": None}
    if name == "fusion":
        return {"resnet": {"weights": None}}
    return {}


def build(name: str) -> torch.nn.Module:
    return create_model(name, NUM_CLASSES, **_hparams(name))


def synthetic_batch(name: str, batch_size: int, device: torch.device, channels_last: bool,
                    seed: int = 0, image_size: int | None = None) -> dict[str, torch.Tensor]:
    """Random inputs in the dict-batch format; an image (``image_size``, default the model's) only for
    models that take one."""
    spec = model_spec(name)
    g = torch.Generator().manual_seed(seed)
    b = {
        "landmarks": (torch.rand(batch_size, 21, 2, generator=g) - 0.5),
        "has_landmarks": torch.ones(batch_size, dtype=torch.bool),
        "label": torch.randint(0, NUM_CLASSES, (batch_size,), generator=g),
        "index": torch.arange(batch_size),
    }
    if spec.image_size is not None:
        s = image_size or spec.image_size
        b["image"] = torch.randn(batch_size, 3, s, s, generator=g)
    b = {k: v.to(device) for k, v in b.items()}
    if channels_last and "image" in b:
        b["image"] = b["image"].contiguous(memory_format=torch.channels_last)
    return b


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def _timed(fn, steps: int, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return time.perf_counter() - t0


def bench_model(name: str, *, device: torch.device, batch_size: int | None, steps: int, warmup: int,
                compile_: bool, compile_mode: str | None, amp: bool, image_size: int | None = None) -> dict:
    """Train and inference throughput of one model, eager or compiled; image models at ``image_size``
    (default: the model's), channels-last where the training engine uses it."""
    spec = model_spec(name)
    rec = recipe(name)
    bs = batch_size or int(rec.get("batch_size", 64))
    channels_last = uses_channels_last(name, device.type)
    size = (image_size or spec.image_size) if spec.image_size is not None else None
    row: dict = {"model": name, "compile": compile_, "batch_size": bs, "image_size": size,
                 "device": device.type, "amp_bf16": amp and device.type == "cuda", "channels_last": channels_last}
    torch.manual_seed(0)
    model = build(name).to(device)
    row["params"] = sum(p.numel() for p in model.parameters())
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    run_model = torch.compile(model, mode=compile_mode) if compile_ else model
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=float(rec.get("lr", 1e-3)),
                           weight_decay=float(rec.get("weight_decay", 0.0)))
    batch = synthetic_batch(name, bs, device, channels_last, image_size=size)

    def train_step() -> None:
        with autocast(device, amp):
            logits = run_model(batch)
            loss = F.cross_entropy(logits.float(), batch["label"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer_step() -> None:
        with torch.inference_mode(), autocast(device, amp):
            run_model(batch)

    # ---- training
    model.train()
    _reset_peak(device)
    first = _timed(train_step, 1, device)  # compiles when compiled
    _timed(train_step, max(warmup - 1, 0), device)
    dt = _timed(train_step, steps, device)
    row["train_samples_s"] = bs * steps / dt
    row["train_step_ms"] = 1000 * dt / steps
    row["train_first_step_s"] = first
    row["train_peak_mib"] = _peak_mib(device)
    # ---- inference
    model.eval()
    _reset_peak(device)
    first = _timed(infer_step, 1, device)
    _timed(infer_step, max(warmup - 1, 0), device)
    dt = _timed(infer_step, steps, device)
    row["infer_samples_s"] = bs * steps / dt
    row["infer_step_ms"] = 1000 * dt / steps
    row["infer_first_step_s"] = first
    row["infer_peak_mib"] = _peak_mib(device)
    del model, run_model, opt, batch
    return row


def _free(device: torch.device, compiled: bool) -> None:
    if compiled:
        torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- #
# end to end: crop once, train all five models
# --------------------------------------------------------------------------- #
def crop_with_cli(sample_dir: Path, crops_dir: Path) -> float:
    """``hand-gestures crop`` in a subprocess (the installed CLI, or ``python -m engine.cli`` in a snapshot)."""
    cmd = [sys.executable, "-m", "engine.cli", "crop", "--data-dir", str(sample_dir), "--out", str(crops_dir),
           "--no-progress"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"crop failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return seconds


def _manifest_lines(crops_dir: Path) -> int:
    with open(crops_dir / "manifest.jsonl", "rb") as f:
        return sum(1 for line in f if line.strip())


def end_to_end(*, sample_dir: Path | None, crops_dir: Path | None, work_dir: Path, device: str,
               epochs: int | None, models: list[str], tiny: bool, say) -> dict:
    """Crop (when ``sample_dir``) then ``fit`` every model in ``models`` on the crops; wall times."""
    from engine.train import TrainConfig, fit

    out: dict = {"source": str(sample_dir or crops_dir), "device": device, "epochs": epochs, "models": {}}
    t_start = time.perf_counter()
    if sample_dir is not None:
        crops_dir = work_dir / "crops"
        out["crop_s"] = crop_with_cli(sample_dir, crops_dir)
        say(f"e2e: cropped {sample_dir} in {out['crop_s']:.1f} s ({_manifest_lines(crops_dir)} crops)")
    else:
        out["crop_s"] = None
        say(f"e2e: training on the existing crops of {crops_dir} ({_manifest_lines(crops_dir)} crops)")
    out["crops"] = _manifest_lines(crops_dir)
    models_dir, graphs_dir = work_dir / "models", work_dir / "graphs"
    order = [m for m in ("mlp", "gcn", "cnn", "resnet34", "fusion") if m in models]
    for name in order:
        hparams = _hparams(name)
        init_from = {}
        if name == "fusion":
            parts = {m: models_dir / f"{m}.pt" for m in ("resnet34", "gcn")}
            if all(p.is_file() for p in parts.values()):  # as the demo: fusion starts from the trained branches
                init_from, hparams = {m: str(p) for m, p in parts.items()}, {}
        extra = dict(max_train_batches=2, max_eval_batches=1, epochs=epochs or 1) if tiny else dict(epochs=epochs)
        cfg = TrainConfig(model=name, crops_dir=str(crops_dir), out_dir=str(models_dir), graphs_dir=str(graphs_dir),
                          device=device, hparams=hparams, init_from=init_from, progress=False, tensorboard=False,
                          **extra)
        t0 = time.perf_counter()
        res = fit(cfg)
        secs = time.perf_counter() - t0
        sps = [r["samples_per_s"] for r in res.history[1:]] or [r["samples_per_s"] for r in res.history]
        out["models"][name] = {
            "seconds": secs, "epochs_run": res.epochs_run, "best_val_acc": res.best_val_acc,
            "train_samples_s_median": statistics.median(sps) if sps else None,
            "epoch_s_median": statistics.median(r["seconds"] for r in res.history) if res.history else None,
            "init_from": sorted(init_from),
        }
        m = out["models"][name]
        say(f"e2e: {name}: {m['epochs_run']} epochs in {secs:.1f} s, median {m['train_samples_s_median'] or 0:,.0f} "
            f"train samples/s, best val acc {res.best_val_acc:.4f}")
    out["train_s"] = sum(m["seconds"] for m in out["models"].values())
    out["total_s"] = time.perf_counter() - t_start
    return out


# --------------------------------------------------------------------------- #
# torchrun: fit + checkpoint + an explicit NCCL/DDP check
# --------------------------------------------------------------------------- #
def ddp_check(args) -> int:
    import torch.distributed as dist

    from engine.checkpoint import load_model
    from engine.train import TrainConfig, fit

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="ddp_check_"))
    say = print if rank == 0 else (lambda *a, **k: None)
    say(f"ddp-check: RANK={rank} WORLD_SIZE={world} LOCAL_RANK={local} "
        f"torchrun={'TORCHELASTIC_RUN_ID' in os.environ} device={args.device}", flush=True)
    seen: dict = {}

    def cb(epoch: int, row: dict) -> None:
        init = dist.is_available() and dist.is_initialized()
        seen[epoch] = dist.get_backend() if init else None

    model_name = args.ddp_model
    cfg = TrainConfig(model=model_name, crops_dir=str(args.crops_dir), out_dir=str(work / "models"),
                      graphs_dir=str(work / "graphs"), device=args.device, epochs=2, patience=0,
                      hparams=_hparams(model_name), progress=False, tensorboard=False,
                      max_train_batches=4 if args.tiny else None, max_eval_batches=1 if args.tiny else None)
    t0 = time.perf_counter()
    res = fit(cfg, callbacks=[cb])
    backend = next(iter(seen.values()), None)
    say(f"ddp-check: fit({model_name}) {res.epochs_run} epochs in {time.perf_counter() - t0:.1f} s, "
        f"best val acc {res.best_val_acc:.4f}, checkpoint {res.best_checkpoint}", flush=True)
    say(f"ddp-check: engine process group during fit: {backend or 'none'}"
        + ("" if backend else f" (engine.distributed.init_distributed skips it at WORLD_SIZE={world})"), flush=True)
    ok = True
    if rank == 0:
        if not res.best_checkpoint.is_file():
            say(f"ddp-check: FAIL no checkpoint at {res.best_checkpoint}")
            return 1
        model, ckpt = load_model(res.best_checkpoint, model_name=model_name)
        dev = torch.device("cuda", local) if args.device.startswith("cuda") else torch.device("cpu")
        model = model.to(dev).eval()
        with torch.inference_mode():
            logits = model(synthetic_batch(model_name, 4, dev, False))
        ok = tuple(logits.shape) == (4, ckpt["num_classes"]) and bool(torch.isfinite(logits).all())
        say(f"ddp-check: checkpoint reloaded ({ckpt['model_name']}, epoch {ckpt['epoch'] + 1}, "
            f"{ckpt['num_classes']} classes), forward {tuple(logits.shape)}: {'OK' if ok else 'FAIL'}", flush=True)

    # explicit process group + DDP (the engine's wrapping needs WORLD_SIZE > 1)
    dev = torch.device("cuda", local) if args.device.startswith("cuda") else torch.device("cpu")
    want = "nccl" if dev.type == "cuda" else "gloo"
    created = False
    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=want, device_id=dev if dev.type == "cuda" else None)
        created = True
    name = "cnn" if args.tiny else "resnet34"
    m = build(name).to(dev)
    cl = dev.type == "cuda"
    if cl:
        m = m.to(memory_format=torch.channels_last)
    ddp = torch.nn.parallel.DistributedDataParallel(m, device_ids=[local] if dev.type == "cuda" else None)
    opt = torch.optim.Adam(ddp.parameters(), lr=1e-3)
    batch = synthetic_batch(name, 8 if args.tiny else 64, dev, cl, seed=rank)
    for _ in range(3):
        with autocast(dev, True):
            loss = F.cross_entropy(ddp(batch).float(), batch["label"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    t = torch.ones(1, device=dev) * (rank + 1)
    dist.all_reduce(t)
    expect = world * (world + 1) / 2
    ddp_ok = abs(t.item() - expect) < 1e-6 and bool(torch.isfinite(loss))
    say(f"ddp-check: explicit process group backend={dist.get_backend()} world={dist.get_world_size()}, "
        f"DDP({name}) 3 steps loss {loss.item():.4f}, all_reduce {t.item():.0f} (expect {expect:.0f}): "
        f"{'OK' if ddp_ok else 'FAIL'}", flush=True)
    if created:
        dist.destroy_process_group()
    if rank == 0:
        summary = {"engine_backend": backend, "explicit_backend": want, "fit_epochs": res.epochs_run,
                   "checkpoint": str(res.best_checkpoint), "reload_ok": ok, "ddp_ok": ddp_ok, "world": world}
        print("ddp-check summary: " + json.dumps(summary), flush=True)
    return 0 if (ok and ddp_ok) else 1


# --------------------------------------------------------------------------- #
# tables
# --------------------------------------------------------------------------- #
def _fmt(v, spec: str = ",.0f") -> str:
    return "n/a" if v is None else format(v, spec)


def _target_cell(r: dict) -> str:
    """The issue's target beside the figure: ResNet-34's is for training; the MLP's is shown for both."""
    t = TARGETS.get(r["model"])
    if t is None:
        return ""
    kind, goal, text = t
    parts = [f"train {'met' if r['train_samples_s'] >= goal else 'NOT met'} ({r['train_samples_s'] / goal:.2f}x)"]
    if r["model"] == "mlp":
        parts.append(f"infer {'met' if r['infer_samples_s'] >= goal else 'NOT met'} ({r['infer_samples_s'] / goal:.2f}x)")
    return f"{text}: " + ", ".join(parts)


def markdown(results: dict) -> str:
    rows = results.get("rows", [])
    lines = []
    meta = results.get("meta", {})
    if meta:
        lines.append(f"device: {meta.get('device_name')} | torch {meta.get('torch')} | "
                     f"{meta.get('weights_note', WEIGHTS_NOTE)}")
        lines.append("")
    if rows:
        lines += ["| model | compile | batch | img | train samples/s | train ms/step | infer samples/s | infer ms/step "
                  "| peak MiB train / infer | first step s (train / infer) | target |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {'yes' if r.get('compile') else 'no'} | {r.get('batch_size', '')} | | "
                         f"error: {r['error'][:80]} | | | | | | |")
            continue
        peak = (f"{_fmt(r['train_peak_mib'], ',.0f')} / {_fmt(r['infer_peak_mib'], ',.0f')}"
                if r.get("train_peak_mib") is not None else "n/a")
        lines.append(
            f"| {r['model']} | {'yes' if r['compile'] else 'no'} | {r['batch_size']} | {r['image_size'] or '-'} "
            f"| {_fmt(r['train_samples_s'])} | {r['train_step_ms']:.2f} | {_fmt(r['infer_samples_s'])} "
            f"| {r['infer_step_ms']:.2f} | {peak} | {r['train_first_step_s']:.1f} / {r['infer_first_step_s']:.1f} "
            f"| {_target_cell(r)} |")
    for e in results.get("e2e", []):
        lines += ["", f"End to end on {e['source']} ({e['crops']} crops, device {e['device']}, "
                      f"epochs {e['epochs'] or 'recipe'}):", "",
                  "| step | epochs | seconds | median train samples/s | best val acc |", "|---|---:|---:|---:|---:|"]
        if e.get("crop_s") is not None:
            lines.append(f"| crop (CLI) | | {e['crop_s']:.1f} | | |")
        for name, m in e["models"].items():
            lines.append(f"| {name}{' (from ' + '+'.join(m['init_from']) + ')' if m['init_from'] else ''} "
                         f"| {m['epochs_run']} | {m['seconds']:.1f} | {_fmt(m['train_samples_s_median'])} "
                         f"| {m['best_val_acc']:.4f} |")
        verdict = "met" if e["total_s"] < E2E_TARGET_S else "NOT met"
        lines.append(f"| **total** | | **{e['total_s']:.1f}** | | target < {E2E_TARGET_S:.0f} s: {verdict} |")
    return "\n".join(lines)


def _meta(args, device: torch.device) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    return {"device_name": name, "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "argv": sys.argv[1:],
            "weights_note": WEIGHTS_NOTE, "threads": torch.get_num_threads()}


def _write(out: Path | None, results: dict) -> None:
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "bench_gpu.json.tmp"
    tmp.write_text(json.dumps(results, indent=1, default=str))
    os.replace(tmp, out / "bench_gpu.json")
    (out / "bench_gpu.md").write_text(markdown(results) + "\n")


def summarize(paths: list[str]) -> int:
    merged: dict = {"meta": {}, "rows": [], "e2e": []}
    for p in paths:
        try:
            r = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as e:
            print(f"({p}: {e})")
            continue
        merged["meta"] = merged["meta"] or r.get("meta", {})
        merged["rows"] += r.get("rows", [])
        merged["e2e"] += r.get("e2e", [])
    order = {m: i for i, m in enumerate(("mlp", "cnn", "gcn", "resnet34", "fusion"))}
    merged["rows"].sort(key=lambda r: (order.get(r["model"], 99), bool(r.get("compile")), r.get("batch_size", 0)))
    print(markdown(merged))
    return 0


# --------------------------------------------------------------------------- #
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto (default: cuda when available)")
    ap.add_argument("--models", nargs="+", default=None, help="default: all registered models")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per phase (default 50; --tiny 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10; --tiny 1)")
    ap.add_argument("--batch-size", type=int, default=None, help="override every model's recipe batch size")
    ap.add_argument("--image-size", type=int, default=None, help="image models' input side (default: each model's)")
    ap.add_argument("--tiny", action="store_true", help="batch 4, 2 steps: runs on a CPU in seconds (tests)")
    ap.add_argument("--no-compile", action="store_true", help="eager only (skip torch.compile)")
    ap.add_argument("--compile-only", action="store_true", help="torch.compile only (skip the eager runs)")
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode (default: torch's default)")
    ap.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    ap.add_argument("--no-synthetic", action="store_true", help="skip the synthetic throughput part")
    ap.add_argument("--sample-dir", type=Path, help="HaGRID-layout folder: crop it with the CLI, train all five")
    ap.add_argument("--crops-dir", type=Path, help="existing crops (manifest.jsonl): train all five on them")
    ap.add_argument("--epochs", type=int, default=None, help="end-to-end epochs per model (default: the recipe's)")
    ap.add_argument("--work-dir", type=Path, help="end-to-end / ddp-check outputs (default: a temp dir)")
    ap.add_argument("--out", type=Path, help="write bench_gpu.json and bench_gpu.md here")
    ap.add_argument("--ddp-check", action="store_true", help="under torchrun: fit + reload + explicit DDP steps")
    ap.add_argument("--ddp-model", default="cnn", help="model trained by --ddp-check (default cnn)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    ap.add_argument("--summarize", nargs="+", metavar="JSON", help="print one table from bench_gpu.json files")
    args = ap.parse_args(argv)
    if args.no_compile and args.compile_only:
        ap.error("--no-compile and --compile-only exclude each other")
    return args


def resolve(device: str) -> torch.device:
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    if dev.type == "cuda" and dev.index is None:  # torch.cuda.set_device and friends want an index
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def main(argv=None) -> dict:
    threads = torch.get_num_threads()
    try:
        return _main(parse_args(argv))
    finally:
        torch.set_num_threads(threads)  # --threads must not outlive main() (tests call it in-process)


def _main(args) -> dict:
    if args.summarize:
        summarize(args.summarize)
        return {}
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve(args.device)
    args.device = str(device)
    if args.ddp_check:
        if args.crops_dir is None:
            raise SystemExit("--ddp-check needs --crops-dir")
        rc = ddp_check(args)
        if rc:
            raise SystemExit(rc)
        return {}
    if device.type == "cuda":
        torch.cuda.set_device(device)
    steps = args.steps or (2 if args.tiny else 50)
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 10)
    batch_size = args.batch_size or (4 if args.tiny else None)
    models = args.models or list_models()
    unknown = sorted(set(models) - set(list_models()))
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; valid: {list_models()}")
    say = lambda *a: print(*a, flush=True)  # noqa: E731
    results = {"meta": _meta(args, device), "rows": [], "e2e": [],
               "targets": {"train_samples_s": {k: v[1] for k, v in TARGETS.items()}, "e2e_s": E2E_TARGET_S}}
    say(f"bench_gpu: {results['meta']['device_name']}, torch {torch.__version__}; {WEIGHTS_NOTE}")
    if not args.no_synthetic:
        variants = ([] if args.compile_only else [False]) + ([] if args.no_compile else [True])
        for compiled in variants:
            order = [m for m in COMPILE_ORDER if m in models] if compiled else models
            for name in order:
                try:
                    row = bench_model(name, device=device, batch_size=batch_size, steps=steps, warmup=warmup,
                                      compile_=compiled, compile_mode=args.compile_mode, amp=not args.no_amp,
                                      image_size=args.image_size)
                except Exception as e:  # one model's failure (a compile error, say) must not lose the others
                    traceback.print_exc()
                    row = {"model": name, "compile": compiled, "batch_size": batch_size,
                           "error": f"{type(e).__name__}: {e}".replace("\n", " ")}
                results["rows"].append(row)
                _free(device, compiled)
                if "error" not in row:
                    say(f"{name} ({'compiled' if compiled else 'eager'}, batch {row['batch_size']}): train "
                        f"{row['train_samples_s']:,.0f} samples/s, infer {row['infer_samples_s']:,.0f} samples/s, "
                        f"peak {_fmt(row['train_peak_mib'])} / {_fmt(row['infer_peak_mib'])} MiB, first step "
                        f"{row['train_first_step_s']:.1f} s / {row['infer_first_step_s']:.1f} s")
                _write(args.out, results)
    sources = []
    if args.crops_dir is not None:
        sources.append((None, args.crops_dir))
    if args.sample_dir is not None:
        sources.append((args.sample_dir, None))
    for sample_dir, crops_dir in sources:
        if args.work_dir:
            args.work_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="bench_gpu_e2e_", dir=args.work_dir))
        try:
            e = end_to_end(sample_dir=sample_dir, crops_dir=crops_dir, work_dir=work, device=str(device),
                           epochs=args.epochs, models=models, tiny=args.tiny, say=say)
            results["e2e"].append(e)
            say(f"e2e: all {len(e['models'])} models in {e['total_s']:.1f} s "
                f"(crop {_fmt(e['crop_s'], '.1f')} s, training {e['train_s']:.1f} s); target < {E2E_TARGET_S:.0f} s")
        finally:
            if args.work_dir is None:
                shutil.rmtree(work, ignore_errors=True)
        _write(args.out, results)
    say("")
    say(markdown(results))
    _write(args.out, results)
    return results


if __name__ == "__main__":
    main()
