"""Evaluation of checkpoints: one module for the notebook, ``hand-gestures evaluate`` and the tests.

Each checkpoint is rebuilt from what it records (model, classes, preprocessing),
run over the test split of the same hand table, and the predictions of all
models are compared on the same hands (see :func:`engine.metrics.compare_models`).
Rows are named by the run name the checkpoint records, not by its file name, so a
renamed file cannot pass one model off as another.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from common.errors import CheckpointMismatchError
from data_loaders.batches import load_hand_table, make_batches, usable_rows
from data_loaders.hand_table import HANDEDNESS_FIX, MIN_HANDEDNESS_KNOWN, HandTable

from .checkpoint import build_model, check_compatible, checkpoint_temperature, comparable, load_checkpoint
from .distributed import resolve_device
from .loop import predict
from .metrics import Comparison, ModelPredictions, compare_calibration, compare_models
from .reporting.errors import prediction_columns
from .reporting.tables import MODEL_ORDER, check_readme, order_models, readme_markdown, update_readme

__all__ = ["MODEL_ORDER", "find_checkpoints", "check_crop_settings", "predict_checkpoint", "evaluate_checkpoints",
           "run_name", "row_labels", "checkpoint_temperature"]

log = logging.getLogger(__name__)


def find_checkpoints(models_dir: str | Path) -> list[Path]:
    """Best checkpoints in ``models_dir`` (``*.pt`` without the ``.last`` resume files), in display order."""
    paths = {p.stem: p for p in Path(models_dir).glob("*.pt") if not p.name.endswith(".last.pt")}
    return [paths[name] for name in order_models(paths)]


def run_name(ckpt: dict, path: str | Path) -> str:
    """The name a checkpoint's run was trained under: ``args["run_name"]`` (or ``args["name"]``), else
    its ``model_name``; the file's stem only when none is recorded or the name cannot name a file."""
    args = ckpt.get("args") or {}
    name = str(args.get("run_name") or args.get("name") or ckpt.get("model_name") or "")
    if not name or name.startswith(".") or any(ch in name for ch in "/\\"):
        return Path(path).stem
    return name


def row_labels(ckpts: Mapping[Path, dict]) -> dict[Path, str]:
    """One distinct table label per checkpoint: its :func:`run_name`; names shared by several
    checkpoints get the file name added (``"gcn (mlp.pt)"``), and a number if that is shared too."""
    names = {p: run_name(c, p) for p, c in ckpts.items()}
    shared = Counter(names.values())
    labels = {p: n if shared[n] == 1 else f"{n} ({p.name})" for p, n in names.items()}
    seen: Counter = Counter()
    twice = Counter(labels.values())
    for p, label in labels.items():
        if twice[label] > 1:
            seen[label] += 1
            labels[p] = f"{label} #{seen[label]}"
    return labels


def check_crop_settings(ckpt: dict, path: str | Path, table: HandTable) -> None:
    """An image model must be scored on crops made as its training crops were.

    Compares the checkpoint's ``preprocessing["crop"]`` with the crops folder's
    ``crop_info.json`` (``table.meta["crop_info"]``) on the keys both record (``size``,
    ``box_scale``, ``fill``, ``resample``, ...), skipping values that are ``None`` on
    either side; raises :class:`CheckpointMismatchError` naming the checkpoint, the crops
    folder and every difference. Landmark-only models do not read crops: no check.
    """
    if "image" not in ckpt["preprocessing"].get("inputs", ()):
        return
    trained: Mapping = {"context": "square", **(ckpt["preprocessing"].get("crop") or {})}  # older: square
    have: Mapping = table.meta.get("crop_info") or {}
    diffs = [
        f"{k} {trained[k]!r} in training, {have[k]!r} here"
        for k in sorted(set(trained) & set(have))
        if trained[k] is not None and have[k] is not None and comparable(trained[k]) != comparable(have[k])
    ]
    if diffs:
        crops = table.crops_dir if table.crops_dir is not None else table.meta.get("source", "the crops folder")
        raise CheckpointMismatchError(
            f"{path}: trained on crops made with other settings than those in {crops}: " + "; ".join(diffs)
            + " (score it on crops made with the training settings: `hand-gestures crop` with the same options)"
        )


def predict_checkpoint(
    path: str | Path,
    table: HandTable,
    *,
    split: str = "test",
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    max_batches: int | None = None,
    ckpt: dict | None = None,
) -> ModelPredictions:
    """Predictions of one checkpoint on ``split`` of ``table`` (the hands it can score).

    ``ckpt`` is the already-loaded checkpoint, to avoid reading the file twice. The
    predictions are named by the checkpoint's :func:`run_name`.
    """
    device = torch.device(device)
    path = Path(path)
    if ckpt is None:
        ckpt = load_checkpoint(path)
    check_compatible(ckpt, path, class_names=list(table.class_names))
    check_crop_settings(ckpt, path, table)
    model = build_model(ckpt, path)
    model.to(device)
    pre = ckpt["preprocessing"]
    inputs = tuple(pre["inputs"])
    rows = usable_rows(table.split_view(split), inputs)
    if len(rows) == 0:
        raise CheckpointMismatchError(f"{path}: no hands of split {split!r} that this model can score")
    if "handedness" in inputs and rows.handedness_known < MIN_HANDEDNESS_KNOWN:  # it would read 0 for every hand
        raise CheckpointMismatchError(f"{path}: reads handedness, which only {rows.handedness_known:.0%} of the "
                                      f"{split!r} hands here know; {HANDEDNESS_FIX}")
    batches = make_batches(rows, inputs=inputs, image_size=pre.get("image_size"),
                           landmark_norm=pre["landmark_norm"], batch_size=batch_size, shuffle=False,
                           seed=0, device=device)
    from data_loaders.augment import BatchTransform

    transform = BatchTransform(pre["landmark_norm"], pre.get("image_size"), None)
    preds = predict(model, batches, transform, device, max_batches=max_batches)
    return ModelPredictions(
        name=run_name(ckpt, path), index=preds.index, y_true=preds.y_true, y_pred=preds.y_pred, probs=preds.probs,
        n_params=sum(p.numel() for p in model.parameters()),
        ms_per_sample=1000.0 * preds.seconds / max(preds.n, 1), device=str(device),
    )


def evaluate_checkpoints(
    checkpoints: Sequence[str | Path],
    *,
    crops_dir: str | Path = "data/crops",
    data_dir: str | Path | None = None,
    split: str = "test",
    device: str = "auto",
    graphs_dir: str | Path | None = "graphs",
    caption: str = "",
    readme: str | Path | None = None,
    crops_dirs: Mapping[str | Path, str | Path] | None = None,
) -> Comparison:
    """Score every checkpoint on the same test hands; write tables and figures when ``graphs_dir`` is set.

    The checkpoints must share one class set (in one order); hands of the crops folder with
    labels outside it are left out, and the caption says how many. Rows are labelled by
    :func:`row_labels`; ``comparison.extra["checkpoints"]`` (and ``evaluation.json``) maps each
    label to its file; ``comparison.extra["calibration"]`` holds each model's calibration on the
    common hands before and after its stored temperature (:func:`engine.metrics.compare_calibration`);
    ``extra["predictions"]`` each hand's key, true and predicted class (``graphs/predictions.csv``) and
    ``extra["crops_dirs"]`` each label's crops folder, so the report can show misclassified crops.
    ``readme`` is checked before any work, so a bad one costs nothing; it gets the results and McNemar
    tables (the calibration table is in ``results.md`` only).
    ``crops_dirs`` maps some checkpoints to crops folders of their own (models trained on crops framed
    another way, scored on the same hands cut their way): hands then pair across folders by their key
    (``<uuid>_<hand>``), and a key whose label differs between folders is an error.
    """
    if not checkpoints:
        raise FileNotFoundError("no checkpoints to evaluate (train a model first: `hand-gestures train`)")
    if graphs_dir is not None and readme is not None:
        check_readme(readme)
    dev = resolve_device(device)
    ckpts = {Path(p): load_checkpoint(p) for p in checkpoints}
    temperatures = {p: checkpoint_temperature(c, p) for p, c in ckpts.items()}
    class_names = _common_class_names(ckpts)
    folders = {p: Path((crops_dirs or {}).get(p) or (crops_dirs or {}).get(str(p)) or crops_dir) for p in ckpts}
    tables = {}
    for folder in dict.fromkeys(folders.values()):
        need_images = any("image" in ckpts[p]["preprocessing"]["inputs"] for p in ckpts if folders[p] == folder)
        tables[folder] = load_hand_table(folder, data_dir, need_images=need_images, class_names=class_names)
        note = dropped_note(tables[folder])
        if note:
            log.warning(note)
            caption = f"{caption.rstrip()} {note}".strip()
    labels = row_labels(ckpts)
    key_ids = _key_ids(tables.values()) if len(tables) > 1 else None
    preds, hand_keys = {}, {}
    for p, c in ckpts.items():
        table = tables[folders[p]]
        mp = predict_checkpoint(p, table, split=split, device=dev, ckpt=c)
        mp.name = labels[p]
        hand_keys[mp.name] = table.keys[mp.index]  # before the index becomes a key id: predictions.csv names hands
        if key_ids is not None:  # rows of different folders: one id per hand key, so models pair by hand
            mp.index = np.array([key_ids[k] for k in table.keys[mp.index]], dtype=np.int64)
        preds[mp.name] = mp
    comparison = compare_models(preds, list(class_names))
    comparison.extra["checkpoints"] = {labels[p]: str(p) for p in ckpts}
    comparison.extra["calibration"] = compare_calibration(
        preds, comparison.common_index, {labels[p]: t for p, t in temperatures.items()})
    comparison.extra["split"] = split
    comparison.extra["crops_dirs"] = {labels[p]: str(folders[p]) for p in ckpts}
    comparison.extra["predictions"] = prediction_columns(preds, hand_keys, comparison.common_index, class_names)
    if graphs_dir is not None:
        from .reporting.html import write_evaluation_artefacts

        write_evaluation_artefacts(comparison, graphs_dir, list(class_names), caption)
        if readme is not None:
            update_readme(readme, readme_markdown(comparison, caption))
    return comparison


def _key_ids(tables: Sequence[HandTable] | Mapping) -> dict[str, int]:
    """One id per hand key over several tables (first seen first), so predictions on different crops
    folders of the same hands can be compared on common hands."""
    ids: dict[str, int] = {}
    for t in tables:
        for k in t.keys:
            ids.setdefault(k, len(ids))
    return ids


def _common_class_names(ckpts: Mapping[Path, dict]) -> list[str]:
    """The class names every checkpoint was trained on; a clear error when they differ."""
    (first_path, first), *rest = ckpts.items()
    names = list(first["class_names"])
    diffs = []
    for p, c in rest:
        other = list(c["class_names"])
        if other == names:
            continue
        extra = [n for n in other if n not in names]
        lacks = [n for n in names if n not in other]
        what = (f"extra {extra}" if extra else "") + ("; " if extra and lacks else "") + (f"lacks {lacks}" if lacks else "")
        diffs.append(f"{p} has {len(other)} classes (" + (what or "same classes in another order") + ")")
    if diffs:
        raise CheckpointMismatchError(
            f"checkpoints trained on different class sets cannot be compared on the same hands: "
            f"{first_path} has {len(names)} classes {names}; " + "; ".join(diffs)
        )
    return names


def dropped_note(table: HandTable) -> str:
    """A sentence on the hands left out because their label is not one of the class names
    (``table.meta["dropped_labels"]``: a count, or counts per label); ``""`` when none were."""
    dropped = table.meta.get("dropped_labels")
    if not dropped:
        return ""
    if isinstance(dropped, Mapping):
        n = sum(int(v) for v in dropped.values())
        detail = ": " + ", ".join(f"{k} ({int(v)})" for k, v in sorted(dropped.items()))
    else:
        n, detail = int(dropped), ""
    where = table.crops_dir if table.crops_dir is not None else table.meta.get("source", "the data")
    return (f"{n} hand{'s' if n != 1 else ''} in {where} with labels outside the checkpoints' "
            f"{len(table.class_names)} classes left out{detail}.")
