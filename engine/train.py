"""The one training engine: ``fit(TrainConfig)`` trains any registered model.

Adam + cross-entropy with the model's recipe (lr, batch size, epochs, schedule)
as defaults, early stopping on validation accuracy, a fixed seed that makes CPU
runs repeatable, atomic checkpoints every epoch (``<run>.last.pt`` to resume,
``<run>.pt`` for the best), a history CSV and curves in ``graphs/``,
TensorBoard when installed, and DDP under ``torchrun``. When the epochs end, the
best checkpoint gets its temperature, fitted on the validation split
(:mod:`engine.calibration`), so its probabilities can drive a reject option.

Resuming is exact: the data order, augmentation and dropout of epoch ``e``
are seeded from ``(seed, e)``, so a run interrupted after epoch ``k`` and
resumed ends with the same weights as one that was never interrupted.
"""
from __future__ import annotations

import csv
import io
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from common.errors import CheckpointMismatchError, UsageError
from common.files import atomic_write_text
from data_loaders.augment import IMAGENET_MEAN, IMAGENET_STD, AugmentConfig, BatchTransform
from data_loaders.batches import load_hand_table, make_batches, usable_rows
from data_loaders.classes import DATASET_CLASSES, DEFAULT_CLASSES, make_class_set
from data_loaders.hagrid import dataset_labels
from data_loaders.hand_table import HANDEDNESS_FIX, MIN_HANDEDNESS_KNOWN
from data_loaders.landmarks import METHODS as LANDMARK_NORMS
from data_loaders.manifest import MANIFEST_NAME
from model_classes import create_model, list_models, model_spec
from model_classes.registry import UnknownHyperparameterError, UnknownModelError, model_inputs

from .calibration import calibrate_checkpoint, calibrate_training_run, describe
from .checkpoint import (
    FUSION_BRANCHES,
    CheckpointSaver,
    build_model,
    check_compatible,
    check_fusion_branches,
    fusion_from_checkpoints,
    load_checkpoint,
    make_checkpoint,
    recorded_inputs,
    unwrap,
)
from .distributed import DistInfo, barrier, check_device, cleanup_distributed, init_distributed, resolve_device
from .loop import evaluate, train_one_epoch
from .recipes import SCHEDULERS, recipe, uses_channels_last
from .reporting.plots import HISTORY_FIELDS, plot_history

PLOT_EVERY_S = 10.0  # redraw the curves at most this often during a run (always at the end)
IN_MEMORY = ("auto", "yes", "no")
MIN_IMAGE_SIZE = 32  # ResNet-34 halves its input five times


def _option(default: Any = None, help: str | None = None, **flag: Any) -> Any:
    """A :class:`TrainConfig` field that is also a ``hand-gestures train`` flag (see
    ``engine.cli``): ``--<name>`` unless ``flag`` says ``name=``; ``negate=True`` for a
    ``--no-...`` switch; other keys (``choices``, ``metavar``) go to argparse as they are.
    ``help`` may use ``%(default)s``; a ``dict`` field is read from repeated ``KEY=VALUE`` flags."""
    kw = {"default_factory": dict} if default is dict else {"default": default}
    return field(**kw, metadata={"flag": {"help": help, **flag}})


@dataclass
class TrainConfig:
    """Everything a run needs; ``None`` means "the model's recipe decides" (engine/recipes.py).

    The fields made with :func:`_option` are the ``train`` command's flags, in its order."""

    model: str = field(metadata={"flag": {"help": None, "choices": list_models}})
    data_dir: str | None = _option(None, "HaGRID root (landmark models can train from annotations without crops)")
    crops_dir: str = _option("data/crops", "output of `hand-gestures crop` (default: %(default)s)")
    out_dir: str = _option("final_models")
    graphs_dir: str = _option("graphs")
    run_name: str | None = _option(None, "checkpoint/graph name (default: the model name)")
    classes: str = _option(DEFAULT_CLASSES, shared=True)  # --classes/--include-no-gesture: engine.cli.add_class_arguments
    include_no_gesture: bool = _option(False, shared=True)
    epochs: int | None = _option()
    batch_size: int | None = _option()
    lr: float | None = _option()
    weight_decay: float | None = _option()
    scheduler: str | None = _option(None, choices=SCHEDULERS)
    patience: int | None = _option(None, "early stopping: epochs without a better val accuracy (0: off)")
    seed: int = _option(0)
    device: str = _option("auto")
    landmark_norm: str = _option("wrist", choices=LANDMARK_NORMS)
    image_size: int | None = _option(None, "image models: input side in pixels (default: the model's own, 128 for "
                                     "resnet34; fusion: its --init-from resnet34 checkpoint's)", metavar="PX")
    hparams: dict = _option(dict, "model hyperparameter (JSON value)", name="hparam", metavar="KEY=VALUE")
    init_from: dict = _option(dict, "fusion: resnet34=... gcn=...", metavar="MODEL=CKPT")  # {"gcn": ckpt, ...}
    augment: bool = _option(True, name="no_augment", negate=True)
    num_workers: int = _option(2, name="workers")
    in_memory: str = _option("auto", choices=IN_MEMORY)
    decoded_cache: bool = _option(True, "crops too large for memory: decode the JPEGs every epoch instead of "
                                  "once into <crops-dir>/.decoded/ (a memory-mapped cache)",
                                  name="no_decoded_cache", negate=True)
    amp: bool = _option(True, name="no_amp", negate=True)
    resume: bool = _option(False, "continue from <run>.last.pt")
    max_train_batches: int | None = _option()  # cap per epoch, for smoke runs
    progress: bool = _option(True, name="no_progress", negate=True)
    max_eval_batches: int | None = None
    train_split: str = "train"
    val_split: str = "val"
    tensorboard: bool = True

    @property
    def name(self) -> str:
        return self.run_name or self.model

    def validate(self) -> None:
        """Refuse settings that cannot train, before any work: one-line :class:`UsageError`s naming the flag."""
        if self.model not in list_models():
            raise UsageError(f"--model {self.model!r}: unknown model; choose from {', '.join(list_models())}")
        settings = resolved_settings(self)
        for name, low in (("epochs", 1), ("batch_size", 1), ("patience", 0)):
            _check_at_least(name, settings[name], low)
        for name, low in (("num_workers", 0), ("max_train_batches", 1), ("max_eval_batches", 1),
                          ("image_size", MIN_IMAGE_SIZE)):
            _check_at_least(name, getattr(self, name), low)
        if not 0 <= self.seed < 2**32:
            raise UsageError(f"--seed must be in [0, 2**32), got {self.seed}")
        lr, wd = settings["lr"], settings["weight_decay"]
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise UsageError(f"--lr must be a finite number > 0, got {lr}")
        if not (isinstance(wd, (int, float)) and math.isfinite(wd) and wd >= 0):
            raise UsageError(f"--weight-decay must be a finite number >= 0, got {wd}")
        for name, allowed in (("landmark_norm", LANDMARK_NORMS), ("in_memory", IN_MEMORY)):
            if getattr(self, name) not in allowed:
                raise UsageError(f"{flag_name(name)} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        check_device(self.device)
        if self.image_size is not None and "image" not in model_spec(self.model).inputs:
            raise UsageError(f"--image-size is for image models; {self.model} reads no image")
        if self.init_from and self.model != "fusion":
            raise UsageError(f"--init-from is only for --model fusion (it starts the fusion branches "
                             f"{' and '.join(FUSION_BRANCHES)} from trained checkpoints), not for {self.model}")
        check_fusion_branches(self.init_from)


def flag_name(field_name: str) -> str:
    """The ``train`` flag of a :class:`TrainConfig` field: ``num_workers`` -> ``--workers``."""
    meta = next(f.metadata.get("flag", {}) for f in fields(TrainConfig) if f.name == field_name)
    return "--" + meta.get("name", field_name).replace("_", "-")


def _check_at_least(name: str, value: Any, low: int) -> None:
    if value is not None and not (isinstance(value, int) and value >= low):
        raise UsageError(f"{flag_name(name)} must be an integer >= {low}, got {value!r}")


def check_writable(folder: str | Path, option: str) -> None:
    """Create ``folder`` and write a scratch file there, so that a bad output folder stops the run
    before any work (not after the first epoch)."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UsageError(f"{option} {folder}: cannot write there ({e.strerror or e})") from None


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
    out = {k: getattr(cfg, k) if getattr(cfg, k) is not None else defaults[k]
           for k in ("epochs", "batch_size", "lr", "weight_decay", "scheduler", "patience")}
    out["scheduler"] = cfg.scheduler or defaults["scheduler"]
    out["optimizer"] = defaults["optimizer"]
    if out["scheduler"] not in SCHEDULERS:
        raise UsageError(f"unknown scheduler {out['scheduler']!r}; choose from {SCHEDULERS}")
    return {k: out[k] for k in ("epochs", "batch_size", "lr", "weight_decay", "scheduler", "optimizer", "patience")}


RESUME_SETTINGS = ("epochs", "batch_size", "lr", "weight_decay", "scheduler", "optimizer", "seed",
                   "max_train_batches", "image_size")


def _check_resume_settings(ckpt: dict, path: Path, now: dict) -> None:
    """A resumed run must continue the same schedule: refuse settings that change it, naming each."""
    was = ckpt.get("args", {})
    diffs = [f"{k}: checkpoint has {was[k]!r}, asked for {now[k]!r}" for k in RESUME_SETTINGS
             if k in was and k in now and was[k] != now[k]]
    if diffs:
        raise CheckpointMismatchError(f"{path}: cannot resume with other settings (start a new run "
                                      "without --resume, or use the same settings):\n  " + "\n  ".join(diffs))


# --------------------------------------------------------------------------- setup steps
@dataclass
class _Data:
    class_names: list[str]
    train: Any  # batches
    val: Any
    transform: BatchTransform
    eval_transform: BatchTransform
    preprocessing: dict
    handedness_known: float = 0.0  # share of the training hands whose handedness is known


def _requested_classes(cfg: TrainConfig) -> tuple[str, ...] | None:
    """The class names to train on; for ``--classes dataset`` the crops folder's own (None) or, training
    from annotations, the labels the dataset holds."""
    if cfg.classes != DATASET_CLASSES:
        return make_class_set(cfg.classes, cfg.include_no_gesture).names
    if (Path(cfg.crops_dir) / MANIFEST_NAME).is_file() or not cfg.data_dir:
        return None
    return make_class_set(dataset_labels(cfg.data_dir), cfg.include_no_gesture).names


def _setup_data(cfg: TrainConfig, settings: dict, device: torch.device, dist: DistInfo) -> _Data:
    """The hand table, its train/val batches and transforms, and the preprocessing to record."""
    spec = model_spec(cfg.model)
    size = input_image_size(cfg)
    requested = _requested_classes(cfg)
    table = load_hand_table(cfg.crops_dir, cfg.data_dir, class_names=requested, need_images="image" in spec.inputs)
    table = usable_rows(table, spec.inputs)
    train_t, val_t = table.split_view(cfg.train_split), table.split_view(cfg.val_split)
    if "handedness" in model_inputs(cfg.model, cfg.hparams):  # refuse before any crop is read
        _check_handedness(cfg, train_t.handedness_known)
    common = dict(inputs=spec.inputs, image_size=size, landmark_norm=cfg.landmark_norm,
                  seed=cfg.seed, device=device, rank=dist.rank, world=dist.world,
                  num_workers=cfg.num_workers, in_memory=cfg.in_memory, progress=cfg.progress and dist.is_main,
                  decoded_cache=cfg.decoded_cache)
    train_b = make_batches(train_t, batch_size=settings["batch_size"], shuffle=True, split=cfg.train_split, **common)
    val_b = make_batches(val_t, batch_size=max(settings["batch_size"], 256), shuffle=False, split=cfg.val_split,
                         **common)
    augment = AugmentConfig.from_recipe(recipe(cfg.model)["augment"]) if cfg.augment else None
    preprocessing = {
        "inputs": list(model_inputs(cfg.model, cfg.hparams)), "image_size": size,
        "landmark_norm": cfg.landmark_norm,
        "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
        "crop": _crop_settings(table.meta.get("crop_info") or {}),
    }
    data = _Data(list(table.class_names), train_b, val_b,
                 BatchTransform(cfg.landmark_norm, size, augment, seed=cfg.seed, rank=dist.rank),
                 BatchTransform(cfg.landmark_norm, size, None), preprocessing, train_t.handedness_known)
    _say(cfg, dist, f"[{cfg.name}] {len(train_t)} train / {len(val_t)} val hands, {len(data.class_names)} classes, "
         f"device {device}" + (f", {dist.world} processes" if dist.enabled else ""))
    return data


def input_image_size(cfg: TrainConfig) -> int | None:
    """The side the model's images are resized to: ``--image-size``, else (fusion started from a ResNet-34)
    the size that branch was trained at, else the model's own; None for landmark models."""
    spec = model_spec(cfg.model)
    if spec.image_size is None or cfg.image_size is not None:
        return cfg.image_size
    branch = cfg.init_from.get("resnet34") if cfg.model == "fusion" else None
    if branch and Path(branch).is_file():
        return load_checkpoint(branch).get("preprocessing", {}).get("image_size") or spec.image_size
    return spec.image_size


def _check_handedness(cfg: TrainConfig, known: float) -> None:
    """A model reading handedness needs training hands that know theirs (HaGRID v1's ``leading_hand``, or
    ``hand-gestures annotate``): a one-line :class:`UsageError` naming the fix when too few do."""
    if known < MIN_HANDEDNESS_KNOWN:
        raise UsageError(f"handedness input (--hparam handedness=true): only {known:.1%} of the "
                         f"{cfg.train_split!r} hands know their handedness (at least {MIN_HANDEDNESS_KNOWN:.0%} "
                         f"needed); {HANDEDNESS_FIX}")


def _record_inputs(cfg: TrainConfig, dist: DistInfo, model: nn.Module, data: _Data) -> None:
    """The inputs the built model reads go into the checkpoint's preprocessing (a resumed model, or fusion
    started from a GCN trained with handedness, may read more than ``--hparam`` says); a model reading
    handedness is checked against the data and the share known is logged."""
    inputs = recorded_inputs(unwrap(model), data.preprocessing["inputs"])
    data.preprocessing["inputs"] = inputs
    if "handedness" in inputs:
        _check_handedness(cfg, data.handedness_known)
        _say(cfg, dist, f"[{cfg.name}] handedness is an input: known for {data.handedness_known:.1%} of the "
             f"{cfg.train_split} hands (unknown ones read 0)")


def _crop_settings(crop_info: dict) -> dict:
    """What a checkpoint records of its crops (``preprocessing["crop"]``), so prediction can cut the same
    squares: pixel settings and the box they were centred on (crop folders older than ``box_source``
    were all cut around the annotated box), with the box model when it was landmark-derived."""
    crop = {k: crop_info.get(k) for k in ("size", "box_scale", "fill", "resample", "quality")}
    crop["box_source"] = crop_info.get("box_source") or "annotation"
    crop["context"] = crop_info.get("context") or "square"
    if crop_info.get("box_model") is not None:
        crop["box_model"] = crop_info["box_model"]
    return crop


def _load_resume(cfg: TrainConfig, last: Path, class_names: list[str], settings: dict, dist: DistInfo) -> dict | None:
    """The ``--resume`` checkpoint after checking it continues this run; None to start afresh."""
    if not cfg.resume:
        return None
    if not last.is_file():
        if dist.is_main:
            print(f"[{cfg.name}] --resume: nothing to resume at {last}, starting from the first epoch", flush=True)
        return None
    ckpt = load_checkpoint(last, map_location="cpu")
    check_compatible(ckpt, last, model_name=cfg.model, class_names=class_names,
                     hparams={k: v for k, v in cfg.hparams.items() if k != "weights"},
                     preprocessing={"landmark_norm": cfg.landmark_norm})
    _check_resume_settings(ckpt, last, {**settings, "seed": cfg.seed, "max_train_batches": cfg.max_train_batches,
                                        "image_size": cfg.image_size})
    return ckpt


def _build_model(cfg: TrainConfig, class_names: Sequence[str], resume: dict | None, last: Path) -> nn.Module:
    """A resumed model is rebuilt from its checkpoint (no ImageNet download, no branch checkpoints);
    fusion may start from trained branches; anything else is a fresh model."""
    if resume is not None:
        return build_model(resume, last)
    if cfg.model == "fusion" and cfg.init_from:
        return fusion_from_checkpoints(cfg.init_from, len(class_names), class_names,
                                       landmark_norm=cfg.landmark_norm, hparams=cfg.hparams)
    try:
        return create_model(cfg.model, len(class_names), **cfg.hparams)
    except (UnknownHyperparameterError, UnknownModelError) as e:
        raise UsageError(str(e)) from None
    except (TypeError, ValueError) as e:  # a hyperparameter value the model refuses
        raise UsageError(f"--hparam {', '.join(f'{k}={v!r}' for k, v in cfg.hparams.items())}: {e}") from None


def _scheduler(name: str, opt: torch.optim.Optimizer, lr: float, total_steps: int):
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total_steps, 1), pct_start=0.2)
    return None


def _optimizer(model: nn.Module, settings: dict, steps_per_epoch: int):
    """The recipe's optimiser over the trainable parameters and its per-step scheduler."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[settings["optimizer"]]
    opt = opt_cls(params, lr=settings["lr"], weight_decay=settings["weight_decay"])
    return opt, _scheduler(settings["scheduler"], opt, settings["lr"], steps_per_epoch * settings["epochs"])


@dataclass
class _Progress:
    """Where a run stands: restored from a resume checkpoint, advanced every epoch."""

    history: list[dict] = field(default_factory=list)
    start_epoch: int = 0
    best_acc: float = -math.inf
    bad_epochs: int = 0

    @classmethod
    def restore(cls, ckpt: dict | None, opt: torch.optim.Optimizer, sched: Any) -> "_Progress":
        if ckpt is None:
            return cls()
        opt.load_state_dict(ckpt["optimizer"])
        if sched is not None and ckpt.get("scheduler"):
            sched.load_state_dict(ckpt["scheduler"])
        best = ckpt["best_metric"] if ckpt["best_metric"] is not None else -math.inf
        return cls(list(ckpt.get("history", [])), ckpt["epoch"] + 1, best, ckpt.get("bad_epochs", 0))

    def update(self, row: dict) -> bool:
        """Record an epoch; True when its validation accuracy is the best so far."""
        self.history.append(row)
        improved = row["val_acc"] > self.best_acc
        self.best_acc, self.bad_epochs = (row["val_acc"], 0) if improved else (self.best_acc, self.bad_epochs + 1)
        return improved


# --------------------------------------------------------------------------- fit
def fit(cfg: TrainConfig, callbacks: Sequence[Callable[[int, dict], None]] = ()) -> FitResult:
    """Train ``cfg.model``; returns where the checkpoints are and the history."""
    cfg.validate()
    check_writable(cfg.out_dir, "--out-dir")
    check_writable(cfg.graphs_dir, "--graphs-dir")
    dist = init_distributed(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        return _fit(cfg, dist, callbacks)
    finally:
        cleanup_distributed()


def _fit(cfg: TrainConfig, dist: DistInfo, callbacks: Sequence[Callable[[int, dict], None]]) -> FitResult:
    """The steps of a run: settings, data, resume state, model, optimiser, then the epochs."""
    device = resolve_device(cfg.device, dist)
    settings = resolved_settings(cfg)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    saver = CheckpointSaver(cfg.out_dir, cfg.name)
    data = _setup_data(cfg, settings, device, dist)
    resume = _load_resume(cfg, saver.last, data.class_names, settings, dist)
    model = _build_model(cfg, data.class_names, resume, saver.last).to(device)
    _record_inputs(cfg, dist, model, data)
    channels_last = uses_channels_last(cfg.model, device.type)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_model = model
    if dist.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    steps = len(data.train) if cfg.max_train_batches is None else min(len(data.train), cfg.max_train_batches)
    opt, sched = _optimizer(model, settings, steps)
    progress = _Progress.restore(resume, opt, sched)
    if resume is not None:
        _say(cfg, dist, f"[{cfg.name}] resuming from {saver.last} after epoch {resume['epoch'] + 1}")
    run = _Run(cfg, settings, dist, device, data, saver, model, train_model, opt, sched, steps,
               amp=cfg.amp and device.type == "cuda", channels_last=channels_last)
    stopped_early = run.epochs(progress, callbacks)
    if dist.is_main:
        run.calibrate()
    barrier()  # the other ranks wait while rank 0 calibrates
    return FitResult(saver.best, saver.last, progress.history, progress.best_acc,
                     progress.start_epoch, stopped_early)


@dataclass
class _Run:
    """The epoch loop of one run and what it writes after each epoch (main process only)."""

    cfg: TrainConfig
    settings: dict
    dist: DistInfo
    device: torch.device
    data: _Data
    saver: CheckpointSaver
    model: nn.Module
    train_model: nn.Module  # the model, or its DDP wrapper
    opt: torch.optim.Optimizer
    sched: Any
    steps: int
    amp: bool
    channels_last: bool

    def epochs(self, progress: _Progress, callbacks: Sequence[Callable[[int, dict], None]]) -> bool:
        """Train from ``progress.start_epoch`` (advanced as epochs finish); True when stopped early."""
        writer = _tensorboard(self.cfg, self.dist)
        last_plot, stopped_early = -math.inf, False
        for epoch in range(progress.start_epoch, self.settings["epochs"]):
            if self.settings["patience"] and progress.bad_epochs >= self.settings["patience"]:
                stopped_early = True
                break
            row = self.one_epoch(epoch)
            improved = progress.update(row)
            progress.start_epoch = epoch + 1
            if self.dist.is_main:
                self.save(epoch, progress, row, improved, writer)
                if time.perf_counter() - last_plot > PLOT_EVERY_S:  # tiny models run many epochs a second
                    _plot_curves(self.cfg, progress.history)
                    last_plot = time.perf_counter()
            barrier()
            for cb in callbacks:
                cb(epoch, row)
        if writer is not None:
            writer.close()
        if self.dist.is_main and progress.history:
            _plot_curves(self.cfg, progress.history)
        return stopped_early

    def calibrate(self) -> None:
        """Fit the best checkpoint's temperature on the whole validation split and store it there
        (engine.calibration); one line says how much it changed the NLL and the ECE. One process reuses the
        validation batches it holds; under DDP they are a shard, so rank 0 reads the whole split again."""
        cfg = self.cfg
        if self.dist.enabled and self.saver.best.is_file():
            calib = calibrate_checkpoint(self.saver.best, crops_dir=cfg.crops_dir, data_dir=cfg.data_dir,
                                         split=cfg.val_split, device=self.device)
        else:
            calib = calibrate_training_run(self.saver.best, self.data.val, self.data.eval_transform, self.device,
                                           split=cfg.val_split, max_batches=cfg.max_eval_batches)
        if calib is None:
            _say(self.cfg, self.dist, f"[{self.cfg.name}] temperature not fitted: no validation hands")
        else:
            _say(self.cfg, self.dist, f"[{self.cfg.name}] {describe(calib)}")

    def one_epoch(self, epoch: int) -> dict:
        """Train and validate one epoch; its history row."""
        cfg, t0 = self.cfg, time.perf_counter()
        self.data.train.set_epoch(epoch)
        self.data.transform.set_epoch(epoch, self.device)
        torch.manual_seed(cfg.seed * 1000 + epoch + 7919 * self.dist.rank)  # dropout etc.: same stream on resume
        bar = None
        if cfg.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.steps, desc=f"{cfg.name} {epoch + 1}/{self.settings['epochs']}", unit="batch",
                       leave=False, mininterval=1.0, disable=None)  # off when not a terminal: the epoch lines remain
        train = train_one_epoch(self.train_model, self.data.train, self.data.transform, self.opt, self.sched,
                                self.device, steps=self.steps, amp=self.amp, channels_last=self.channels_last,
                                bar=bar, world=self.dist.world)
        if bar is not None:
            bar.close()
        val = evaluate(self.model, self.data.val, self.data.eval_transform, self.device, amp=self.amp,
                       channels_last=self.channels_last, max_batches=cfg.max_eval_batches)
        return {"epoch": epoch + 1, "train_loss": train["train_loss"], "train_acc": train["train_acc"],
                "val_loss": val["val_loss"], "val_acc": val["val_acc"], "lr": self.opt.param_groups[0]["lr"],
                "seconds": time.perf_counter() - t0, "samples_per_s": train["samples_per_s"]}

    def save(self, epoch: int, progress: _Progress, row: dict, improved: bool, writer: Any) -> None:
        """Checkpoints (best and last), the history CSV, TensorBoard scalars and the epoch line."""
        cfg = self.cfg
        ckpt = make_checkpoint(self.model, model_name=cfg.model, class_names=self.data.class_names,
                               preprocessing=self.data.preprocessing, optimizer=self.opt, scheduler=self.sched,
                               epoch=epoch, best_metric=progress.best_acc, args={**asdict(cfg), **self.settings},
                               history=progress.history,
                               extra={"bad_epochs": progress.bad_epochs, "val_acc": row["val_acc"]})
        self.saver.save(ckpt, improved)
        _write_history(Path(cfg.graphs_dir) / f"{cfg.name}_history.csv", progress.history)
        if writer is not None:
            for k in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "samples_per_s"):
                writer.add_scalar(k, row[k], epoch + 1)
        _say(cfg, self.dist, f"[{cfg.name}] epoch {epoch + 1}: train loss {row['train_loss']:.4f} acc "
             f"{row['train_acc']:.4f} | val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f} | "
             f"{row['seconds']:.1f}s, {row['samples_per_s']:.0f} samples/s" + ("  *best" if improved else ""))


# --------------------------------------------------------------------------- outputs
def _say(cfg: TrainConfig, dist: DistInfo, line: str) -> None:
    """A progress line, from the main process, unless progress output is off."""
    if dist.is_main and cfg.progress:
        print(line, flush=True)


def _write_history(path: Path, history: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS)
    w.writeheader()
    for row in history:
        w.writerow({k: row.get(k) for k in HISTORY_FIELDS})
    atomic_write_text(path, buf.getvalue())


def _plot_curves(cfg: TrainConfig, history: list[dict]) -> None:
    plot_history(history, Path(cfg.graphs_dir) / f"{cfg.name}_curves.png", title=cfg.name)


def _tensorboard(cfg: TrainConfig, dist: DistInfo):
    if not (cfg.tensorboard and dist.is_main):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra: the history CSV and curves still exist
        return None
    return SummaryWriter(log_dir=str(Path(cfg.graphs_dir) / "tensorboard" / cfg.name))
