"""The report's methods, read from what the runs recorded: the checkpoints ``evaluation.json`` lists, the
crops folder's ``crop_info.json`` and ``data_summary.json``. Nothing is typed by hand: a setting a
checkpoint does not record shows as "not recorded".

:func:`read_runs` loads each checkpoint once (memory-mapped, weights only, the state dict reduced to a
parameter count) into a :class:`RunInfo`; :func:`methods_text` and :func:`model_table` turn them into the
sentences and the per-model table a reader can re-run any row from.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from data_loaders.augment import AugmentConfig
from engine.recipes import recipe
from engine.reporting.plots import read_history
from engine.reporting.tables import to_float

__all__ = ["RunInfo", "read_runs", "run_kinds", "read_crop_info", "methods_text", "model_table",
           "MODEL_TABLE_HEADERS", "NOT_RECORDED", "imagenet_weights"]

NOT_RECORDED = "not recorded"
#: Where a checkpoint is looked for when ``evaluation.json`` does not list it (or its file moved),
#: relative to the graphs folder's parent.
MODELS_DIR = "final_models"


@dataclass
class RunInfo:
    """What one checkpoint records, without its weights."""

    run: str
    path: Path
    model_name: str = ""
    hparams: dict = field(default_factory=dict)
    preprocessing: dict = field(default_factory=dict)
    args: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    n_params: int = 0
    device: str = ""
    error: str = ""


def _load(path: Path) -> dict:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # an old-style (non-zip) file cannot be memory-mapped
        return torch.load(path, map_location="cpu", weights_only=True)


def _run_info(run: str, path: Path) -> RunInfo:
    info = RunInfo(run, path)
    if not path.is_file():
        info.error = f"{path} not found"
        return info
    try:
        ck = _load(path)
    except Exception as e:  # noqa: BLE001 - a broken checkpoint must not stop the report
        info.error = f"{path.name} could not be read: {e}"
        return info
    state = ck.get("state_dict") or {}
    info.model_name = str(ck.get("model_name") or "")
    info.hparams, info.preprocessing = dict(ck.get("hparams") or {}), dict(ck.get("preprocessing") or {})
    info.args, info.history = dict(ck.get("args") or {}), list(ck.get("history") or [])
    info.n_params = int(sum(v.numel() for k, v in state.items() if hasattr(v, "numel") and "running_" not in k
                            and not k.endswith("num_batches_tracked")))
    info.device = str(ck.get("device") or (ck.get("environment") or {}).get("device") or "")
    return info


def read_runs(meta: Mapping, graphs_dir: str | Path) -> dict[str, RunInfo]:
    """A :class:`RunInfo` per run of ``evaluation.json`` (``meta``): its listed checkpoint, else
    ``<graphs>/../final_models/<run>.pt``; the history is ``<graphs>/<run>_history.csv`` when present."""
    g = Path(graphs_dir)
    listed = meta.get("checkpoints") if isinstance(meta.get("checkpoints"), dict) else {}
    runs = list(meta.get("models") or listed)
    out = {}
    for run in runs:
        path = Path(listed.get(run, "")) if listed.get(run) else None
        if path is None or not path.is_file():
            path = g.parent / MODELS_DIR / f"{run}.pt"
        out[run] = _run_info(run, path)
        hist = g / f"{run}_history.csv"
        if hist.is_file():  # the whole run; the best checkpoint's history stops at its epoch
            try:
                out[run].history = read_history(hist)
            except (OSError, ValueError):
                pass
    return out


def run_kinds(runs: Mapping[str, RunInfo]) -> dict[str, str]:
    """run -> the model name its checkpoint records (for :func:`engine.reporting.hypotheses.resolve_run`)."""
    return {r: i.model_name for r, i in runs.items() if i.model_name}


def read_crop_info(runs: Mapping[str, RunInfo]) -> tuple[dict, Path | None]:
    """The first readable ``crop_info.json`` of the runs' crops folders (``args["crops_dir"]``)."""
    for i in runs.values():
        folder = i.args.get("crops_dir")
        path = Path(folder) / "crop_info.json" if folder else None
        if path and path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8")), path
            except (OSError, ValueError):
                continue
    return {}, None


def imagenet_weights(info: RunInfo) -> str:
    """Whether the run's ResNet branch started from ImageNet weights: the ``weights`` hparam
    (``resnet34``'s own, or a fusion model's ``resnet`` branch); "" for models without one."""
    hp = info.hparams.get("resnet") if isinstance(info.hparams.get("resnet"), dict) else info.hparams
    if "weights" not in hp:
        return ""
    w = hp["weights"]
    return "no (trained from scratch)" if not w else f"yes ({w})"


# --------------------------------------------------------------------------- sentences


def _splits_sentence(ds: Mapping) -> str:
    splits = ds.get("splits") or {}
    totals = ds.get("split_totals") or {}
    parts = []
    for s, per_class in splits.items():
        hands = sum(int(to_float((c or {}).get("hands")) or 0) for c in per_class.values()
                    if not math.isnan(to_float((c or {}).get("hands"))))
        users = (totals.get(s) or {}).get("users")
        parts.append(f"{s} {hands:,} hands" + (f" / {int(users):,} subjects" if users not in (None, "") else ""))
    return "; ".join(parts)


def _data_paragraph(ds: Mapping, crop: Mapping, split: str) -> str:
    classes = list(ds.get("class_names") or crop.get("class_names") or [])
    where = ds.get("dataset") or crop.get("source") or NOT_RECORDED
    leaks = ds.get("subject_leaks")
    leak_text = ("no subject found in two splits" if leaks == {} else
                 "subjects shared between splits: see Data" if leaks else "subject overlap not checked")
    text = (f"Data: {where} (HaGRID format {ds.get('format') or crop.get('format') or NOT_RECORDED}). "
            f"Splits: {_splits_sentence(ds) or NOT_RECORDED}; {leak_text}. Evaluated on the {split} split. ")
    text += (f"{len(classes)} classes: {', '.join(classes)}." if classes else "Classes: not recorded.")
    return text + (" (0 subjects: that split's annotations carry no user_id.)" if "/ 0 subjects" in text else "")


def _preprocessing_paragraph(crop: Mapping, pre: Mapping) -> str:
    box = crop.get("box_source") or "annotation"
    box_text = ("the annotated HaGRID box" if box == "annotation"
                else "the box model's box around the landmarks (as prediction centres it)")
    mean, std = pre.get("mean"), pre.get("std")
    return (f"Preprocessing: each hand cut as a square around {box_text}, side = {crop.get('box_scale', NOT_RECORDED)}"
            f" x the box's longer side, context '{crop.get('context') or 'square'}', padded with "
            f"{crop.get('fill', NOT_RECORDED)}, saved at {crop.get('size', NOT_RECORDED)} px "
            f"(JPEG quality {crop.get('quality', NOT_RECORDED)}, {crop.get('resample', NOT_RECORDED)}); image models "
            f"resize it to their input size and normalise with the ImageNet mean {mean} and std {std}. Landmarks "
            f"('{pre.get('landmark_norm', NOT_RECORDED)}' normalisation): converted to pixels with each frame's own "
            "width and height (never an assumed size: an unknown size is refused), centred on the wrist and "
            "divided by the hand size, so the hand's aspect ratio is kept and no box is needed at prediction time.")


def _augment_paragraph(runs: Mapping[str, RunInfo]) -> str:
    on = sorted(r for r, i in runs.items() if i.args.get("augment"))
    off = sorted(r for r, i in runs.items() if i.args and not i.args.get("augment"))
    parts = []
    for r in on:
        try:
            cfg = AugmentConfig.from_recipe(recipe(runs[r].model_name or r)["augment"])
        except (KeyError, ValueError):
            parts.append(f"{r}: on (settings not recorded)")
            continue
        parts.append(f"{r}: flip p={cfg.flip_p}, rotation ±{cfg.rotation_deg:g}°, scale {cfg.scale_range}"
                     + (f", translate {cfg.translate}, colour jitter {cfg.brightness}" if "image"
                        in runs[r].preprocessing.get("inputs", ()) else f", landmark jitter {cfg.landmark_jitter}"))
    text = "Augmentation (on the device, one flip/rotation/scale per hand shared by its image and landmarks; " \
           "the recipe's settings, engine/recipes.py): " + ("; ".join(parts) or "none")
    return text + (f"; off for {', '.join(off)}." if off else ".")


def methods_text(runs: Mapping[str, RunInfo], crop: Mapping, data_summary: Mapping, split: str = "test") -> list[str]:
    """The methods paragraphs: data and split, preprocessing, augmentation."""
    pre = next((i.preprocessing for i in runs.values() if "image" in i.preprocessing.get("inputs", ())),
               next((i.preprocessing for i in runs.values() if i.preprocessing), {}))
    return [_data_paragraph(data_summary or {}, crop, split), _preprocessing_paragraph(crop, pre),
            _augment_paragraph(runs)]


# --------------------------------------------------------------------------- the per-model table

MODEL_TABLE_HEADERS = ("run", "architecture", "inputs", "params", "optimiser", "lr", "weight decay", "scheduler",
                       "batch", "epochs run (planned)", "early stopping", "best val acc (epoch)",
                       "training s", "samples/s", "device")


def _hparams_text(model: str, hp: Mapping) -> str:
    def flat(d: Mapping) -> str:
        return ", ".join(f"{k} {flat(v) if isinstance(v, Mapping) else v}" for k, v in d.items())

    return f"{model or NOT_RECORDED}" + (f" ({flat(hp)})" if hp else "")


def _history_cells(hist: Sequence[Mapping]) -> list[str]:
    val = [(to_float(h.get("val_acc")), h.get("epoch")) for h in hist if not math.isnan(to_float(h.get("val_acc")))]
    best = max(val, key=lambda t: t[0]) if val else None
    secs = [to_float(h.get("seconds")) for h in hist]
    sps = [x for x in (to_float(h.get("samples_per_s")) for h in hist) if not math.isnan(x)]
    return [f"{100 * best[0]:.1f}% ({int(to_float(best[1]))})" if best else NOT_RECORDED,
            f"{sum(s for s in secs if not math.isnan(s)):.0f}" if hist else NOT_RECORDED,
            f"{sum(sps) / len(sps):,.0f}" if sps else NOT_RECORDED]


def _early_stopping(patience) -> str:
    p = to_float(patience)
    if math.isnan(p):
        return NOT_RECORDED
    return "none (all epochs)" if p <= 0 else f"after {int(p)} epochs without a better val accuracy"


def _device(info: RunInfo) -> str:
    if info.device:
        return info.device
    asked = info.args.get("device")
    return f"{NOT_RECORDED} (asked: {asked})" if asked else NOT_RECORDED


def model_table(runs: Mapping[str, RunInfo], n_params: Mapping[str, float] | None = None) -> list[list[str]]:
    """One row per run (:data:`MODEL_TABLE_HEADERS`); ``n_params``: the evaluation's counts (results.csv)."""
    rows = []
    for r, i in runs.items():
        if i.error:
            rows.append([r, f"checkpoint {i.error}"] + [NOT_RECORDED] * (len(MODEL_TABLE_HEADERS) - 2))
            continue
        a = i.args
        count = to_float((n_params or {}).get(r))
        count = i.n_params if math.isnan(count) else count
        get = (lambda k: NOT_RECORDED if a.get(k) in (None, "") else f"{a[k]:g}" if isinstance(a[k], float)
               else str(a[k]))
        rows.append([r, _hparams_text(i.model_name, i.hparams), " + ".join(i.preprocessing.get("inputs", ()))
                     or NOT_RECORDED, f"{int(count):,}" if count else NOT_RECORDED, get("optimizer"), get("lr"),
                     get("weight_decay"), get("scheduler"), get("batch_size"),
                     f"{len(i.history)} ({get('epochs')})" if i.history else f"{NOT_RECORDED} ({get('epochs')})",
                     _early_stopping(a.get("patience")), *_history_cells(i.history), _device(i)])
    return rows
