"""The one training engine: ``fit(TrainConfig)`` trains any registered model.

Adam + cross-entropy with the model's recipe (lr, batch size, epochs, schedule)
as defaults, early stopping on validation accuracy, a fixed seed that makes CPU
runs repeatable, atomic checkpoints every epoch (``<run>.last.pt`` to resume,
``<run>.pt`` for the best), a history CSV and curves in ``graphs/``,
TensorBoard when installed, and DDP under ``torchrun``.

Resuming is exact: the data order, augmentation and dropout of epoch ``e``
are seeded from ``(seed, e)``, so a run interrupted after epoch ``k`` and
resumed ends with the same weights as one that was never interrupted.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.errors import CheckpointMismatchError, UsageError
from common.files import atomic_write_text
from data_loaders.augment import IMAGENET_MEAN, IMAGENET_STD, AugmentConfig, BatchTransform
from data_loaders.batches import load_hand_table, make_batches, usable_rows
from data_loaders.classes import make_class_set
from model_classes import create_model, model_spec
from model_classes.registry import UnknownHyperparameterError, UnknownModelError

from .checkpoint import build_model, check_compatible, load_checkpoint, load_model, make_checkpoint, save_checkpoint
from .distributed import DistInfo, all_reduce_sum, barrier, cleanup_distributed, init_distributed, resolve_device
from .loop import autocast, predict, to_device
from .recipes import SCHEDULERS, recipe

log = logging.getLogger(__name__)

HISTORY_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "samples_per_s")
PLOT_EVERY_S = 10.0  # redraw the curves at most this often during a run (always at the end)


@dataclass
class TrainConfig:
    """Everything a run needs; ``None`` means "the model's recipe decides"."""

    model: str
    crops_dir: str = "data/crops"
    data_dir: str | None = None  # HaGRID root: landmark models can read it without crops
    out_dir: str = "final_models"
    graphs_dir: str = "graphs"
    run_name: str | None = None
    classes: str = "hagrid18"
    include_no_gesture: bool = False
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    scheduler: str | None = None
    patience: int | None = None  # epochs without a better val accuracy before stopping; 0 = never
    seed: int = 0
    device: str = "auto"
    landmark_norm: str = "wrist"
    hparams: dict = field(default_factory=dict)
    augment: bool = True
    num_workers: int = 2
    in_memory: str = "auto"
    amp: bool = True
    resume: bool = False
    max_train_batches: int | None = None  # cap per epoch, for smoke runs
    max_eval_batches: int | None = None
    init_from: dict = field(default_factory=dict)  # fusion: {"resnet34": ckpt, "gcn": ckpt}
    train_split: str = "train"
    val_split: str = "val"
    progress: bool = True
    tensorboard: bool = True

    @property
    def name(self) -> str:
        return self.run_name or self.model


@dataclass
class FitResult:
    best_checkpoint: Path
    last_checkpoint: Path
    history: list[dict]
    best_val_acc: float
    epochs_run: int
    stopped_early: bool


def resolved_settings(cfg: TrainConfig) -> dict[str, Any]:
    """Recipe defaults overridden by whatever the config sets."""
    defaults = recipe(cfg.model)
    out = {
        "epochs": cfg.epochs if cfg.epochs is not None else defaults["epochs"],
        "batch_size": cfg.batch_size if cfg.batch_size is not None else defaults["batch_size"],
        "lr": cfg.lr if cfg.lr is not None else defaults["lr"],
        "weight_decay": cfg.weight_decay if cfg.weight_decay is not None else defaults["weight_decay"],
        "scheduler": cfg.scheduler or defaults["scheduler"],
        "optimizer": defaults["optimizer"],
        "patience": cfg.patience if cfg.patience is not None else defaults["patience"],
    }
    if out["scheduler"] not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {out['scheduler']!r}; choose from {SCHEDULERS}")
    return out


def _scheduler(name: str, opt: torch.optim.Optimizer, lr: float, total_steps: int):
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total_steps, 1), pct_start=0.2)
    return None


RESUME_SETTINGS = ("epochs", "batch_size", "lr", "weight_decay", "scheduler", "optimizer", "seed",
                   "max_train_batches")


def _check_resume_settings(ckpt: dict, path: Path, now: dict) -> None:
    """A resumed run must continue the same schedule: refuse settings that change it, naming each."""
    was = ckpt.get("args", {})
    diffs = [f"{k}: checkpoint has {was[k]!r}, asked for {now[k]!r}" for k in RESUME_SETTINGS
             if k in was and k in now and was[k] != now[k]]
    if diffs:
        raise CheckpointMismatchError(f"{path}: cannot resume with other settings (start a new run "
                                      "without --resume, or use the same settings):\n  " + "\n  ".join(diffs))


def _build_model(cfg: TrainConfig, num_classes: int, class_names: Sequence[str]) -> nn.Module:
    if cfg.model == "fusion" and cfg.init_from:
        from model_classes.fusion import FusionModel

        parts = {}
        for key in ("resnet34", "gcn"):
            if key in cfg.init_from:
                expect = {"preprocessing": {"landmark_norm": cfg.landmark_norm}} if key == "gcn" else {}
                parts[key], _ = load_model(cfg.init_from[key], model_name=key, class_names=class_names, **expect)
        return FusionModel.from_unimodal(parts.get("resnet34"), parts.get("gcn"), num_classes, **cfg.hparams)
    try:
        return create_model(cfg.model, num_classes, **cfg.hparams)
    except (UnknownHyperparameterError, UnknownModelError) as e:
        raise UsageError(str(e)) from None


def _write_history(path: Path, history: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS)
    w.writeheader()
    for row in history:
        w.writerow({k: row.get(k) for k in HISTORY_FIELDS})
    atomic_write_text(path, buf.getvalue())


def fit(cfg: TrainConfig, callbacks: Sequence[Callable[[int, dict], None]] = ()) -> FitResult:
    """Train ``cfg.model``; returns where the checkpoints are and the history."""
    dist = init_distributed(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        return _fit(cfg, dist, callbacks)
    finally:
        cleanup_distributed()


def _fit(cfg: TrainConfig, dist: DistInfo, callbacks: Sequence[Callable[[int, dict], None]]) -> FitResult:
    device = resolve_device(cfg.device, dist)
    spec = model_spec(cfg.model)
    settings = resolved_settings(cfg)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    out_dir, graphs_dir = Path(cfg.out_dir), Path(cfg.graphs_dir)
    best_path, last_path = out_dir / f"{cfg.name}.pt", out_dir / f"{cfg.name}.last.pt"
    say = (lambda *a: print(*a, flush=True)) if (dist.is_main and cfg.progress) else (lambda *a: None)

    # ------------------------------------------------------------- data
    requested = make_class_set(cfg.classes, cfg.include_no_gesture).names
    table = load_hand_table(cfg.crops_dir, cfg.data_dir, class_names=requested,
                            need_images="image" in spec.inputs)
    table = usable_rows(table, spec.inputs)
    class_names = list(table.class_names)
    train_t, val_t = table.split_view(cfg.train_split), table.split_view(cfg.val_split)
    common = dict(inputs=spec.inputs, image_size=spec.image_size, landmark_norm=cfg.landmark_norm,
                  seed=cfg.seed, device=device, rank=dist.rank, world=dist.world,
                  num_workers=cfg.num_workers, in_memory=cfg.in_memory, progress=cfg.progress and dist.is_main)
    train_b = make_batches(train_t, batch_size=settings["batch_size"], shuffle=True, **common)
    val_b = make_batches(val_t, batch_size=max(settings["batch_size"], 256), shuffle=False, **common)
    augment = AugmentConfig.from_recipe(recipe(cfg.model)["augment"]) if cfg.augment else None
    transform = BatchTransform(cfg.landmark_norm, spec.image_size, augment, seed=cfg.seed, rank=dist.rank)
    eval_transform = BatchTransform(cfg.landmark_norm, spec.image_size, None)
    say(f"[{cfg.name}] {len(train_t)} train / {len(val_t)} val hands, {len(class_names)} classes, device {device}"
        + (f", {dist.world} processes" if dist.enabled else ""))

    # ------------------------------------------------------------- model
    resume_ckpt = None
    if cfg.resume:
        if last_path.is_file():
            resume_ckpt = load_checkpoint(last_path, map_location="cpu")
            check_compatible(resume_ckpt, last_path, model_name=cfg.model, class_names=class_names,
                             hparams={k: v for k, v in cfg.hparams.items() if k != "weights"},
                             preprocessing={"landmark_norm": cfg.landmark_norm})
            _check_resume_settings(resume_ckpt, last_path, {**settings, "seed": cfg.seed,
                                                            "max_train_batches": cfg.max_train_batches})
        elif dist.is_main:
            print(f"[{cfg.name}] --resume: nothing to resume at {last_path}, starting from the first epoch", flush=True)
    # a resumed model is rebuilt from its checkpoint: no ImageNet download, no unimodal checkpoints needed
    model = build_model(resume_ckpt, last_path) if resume_ckpt else _build_model(cfg, len(class_names), class_names)
    model = model.to(device)
    channels_last = device.type == "cuda" and "image" in spec.inputs
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    use_amp = cfg.amp and device.type == "cuda"
    preprocessing = {
        "inputs": list(spec.inputs), "image_size": spec.image_size, "landmark_norm": cfg.landmark_norm,
        "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
        "crop": {k: table.meta.get("crop_info", {}).get(k) for k in ("size", "box_scale", "fill", "resample")},
    }
    train_model: nn.Module = model
    if dist.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    params = [p for p in model.parameters() if p.requires_grad]
    opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[settings["optimizer"]]
    opt = opt_cls(params, lr=settings["lr"], weight_decay=settings["weight_decay"])
    steps_per_epoch = len(train_b) if cfg.max_train_batches is None else min(len(train_b), cfg.max_train_batches)
    sched = _scheduler(settings["scheduler"], opt, settings["lr"], steps_per_epoch * settings["epochs"])

    history: list[dict] = []
    start_epoch, best_acc, bad_epochs = 0, -math.inf, 0
    if resume_ckpt is not None:
        ckpt = resume_ckpt
        opt.load_state_dict(ckpt["optimizer"])
        if sched is not None and ckpt.get("scheduler"):
            sched.load_state_dict(ckpt["scheduler"])
        history = list(ckpt.get("history", []))
        start_epoch = ckpt["epoch"] + 1
        best_acc = ckpt["best_metric"] if ckpt["best_metric"] is not None else -math.inf
        bad_epochs = ckpt.get("bad_epochs", 0)
        say(f"[{cfg.name}] resuming from {last_path} after epoch {ckpt['epoch'] + 1}")

    writer = _tensorboard(cfg, dist)
    args = {**asdict(cfg), **settings}
    stopped_early = False
    last_plot = -math.inf
    epochs_done = start_epoch
    for epoch in range(start_epoch, settings["epochs"]):
        if settings["patience"] and bad_epochs >= settings["patience"]:
            stopped_early = True
            break
        t0 = time.perf_counter()
        train_b.set_epoch(epoch)
        transform.set_epoch(epoch, device)
        torch.manual_seed(cfg.seed * 1000 + epoch + 7919 * dist.rank)  # dropout etc.: same stream on resume
        train_model.train()
        loss_sum = correct = seen = 0.0
        it = train_b
        bar = None
        if cfg.progress and dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps_per_epoch, desc=f"{cfg.name} {epoch + 1}/{settings['epochs']}", unit="batch", leave=False,
                       mininterval=1.0, disable=None)  # off when not a terminal: the epoch lines remain
        for i, batch in enumerate(it):
            if i >= steps_per_epoch:
                break
            batch = transform(to_device(batch, device, channels_last), train=True)
            with autocast(device, use_amp):
                logits = train_model(batch)
                loss = F.cross_entropy(logits.float(), batch["label"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            n = batch["label"].shape[0]
            loss_sum += loss.item() * n
            correct += (logits.argmax(-1) == batch["label"]).sum().item()
            seen += n
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", samples_s=f"{seen * dist.world / (time.perf_counter() - t0):.0f}")
        if bar is not None:
            bar.close()
        train_seconds = time.perf_counter() - t0
        loss_sum, correct, seen = all_reduce_sum([loss_sum, correct, seen], device)
        preds = predict(model, val_b, eval_transform, device, amp=use_amp, channels_last=channels_last,
                        max_batches=cfg.max_eval_batches)
        v_loss, v_correct, v_n = all_reduce_sum(
            [preds.loss_sum, float((preds.y_true == preds.y_pred).sum()), float(preds.n)], device)
        row = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
            "val_loss": v_loss / max(v_n, 1), "val_acc": v_correct / max(v_n, 1),
            "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0,
            "samples_per_s": seen / max(train_seconds, 1e-9),
        }
        history.append(row)
        epochs_done = epoch + 1
        improved = row["val_acc"] > best_acc
        if improved:
            best_acc, bad_epochs = row["val_acc"], 0
        else:
            bad_epochs += 1
        if dist.is_main:
            ckpt = make_checkpoint(model, model_name=cfg.model, class_names=class_names, preprocessing=preprocessing,
                                   optimizer=opt, scheduler=sched, epoch=epoch, best_metric=best_acc, args=args,
                                   history=history, extra={"bad_epochs": bad_epochs, "val_acc": row["val_acc"]})
            if improved:
                save_checkpoint(best_path, ckpt)
            save_checkpoint(last_path, ckpt)
            _write_history(graphs_dir / f"{cfg.name}_history.csv", history)
            if time.perf_counter() - last_plot > PLOT_EVERY_S:  # tiny models run many epochs a second
                _plot_curves(graphs_dir, cfg.name, history)
                last_plot = time.perf_counter()
            if writer is not None:
                for k in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "samples_per_s"):
                    writer.add_scalar(k, row[k], epoch + 1)
            say(f"[{cfg.name}] epoch {epoch + 1}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} | "
                f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f} | {row['seconds']:.1f}s, "
                f"{row['samples_per_s']:.0f} samples/s" + ("  *best" if improved else ""))
        barrier()
        for cb in callbacks:
            cb(epoch, row)
    if writer is not None:
        writer.close()
    if dist.is_main and history:
        _plot_curves(graphs_dir, cfg.name, history)
    return FitResult(best_path, last_path, history, best_acc, epochs_done, stopped_early)


def _plot_curves(graphs_dir: Path, name: str, history: list[dict]) -> None:
    try:
        from .reporting.plots import plot_history
    except ImportError:  # plotting is optional for training
        return
    plot_history(history, graphs_dir / f"{name}_curves.png", title=name)


def _tensorboard(cfg: TrainConfig, dist: DistInfo):
    if not (cfg.tensorboard and dist.is_main):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: the history CSV and curves still exist
        return None
    return SummaryWriter(log_dir=str(Path(cfg.graphs_dir) / "tensorboard" / cfg.name))
