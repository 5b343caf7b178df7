"""Errors worth looking at: per-hand predictions, and thumbnails of the most-confused pairs' misclassified crops.

:func:`prediction_columns` (called by :func:`engine.evaluate.evaluate_checkpoints`) keeps, per model, each scored
hand's key, true and predicted class, probability of the predicted class (before temperature) and whether the
hand is one of the common hands; :func:`write_predictions` writes them as ``graphs/predictions.csv``. The report
then reads that file, ``confused_pairs.csv`` and the crops folder's ``manifest.jsonl`` (the crop of each key, its
``crop_box`` and landmarks) and draws ``<model>_errors.png``: for each of the model's top pairs (true -> predicted,
on the common hands), its most confident misclassified crops with the hand skeleton drawn over them, so a reader
sees what the models get wrong.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from engine.reporting.tables import csv_text, to_float

__all__ = ["PREDICTIONS_FIELDS", "PREDICTIONS_NAME", "TOP_PAIRS", "PER_PAIR", "ErrorRow", "prediction_columns",
           "write_predictions", "error_rows", "crops_folders", "crop_entries", "draw_error_grid"]

PREDICTIONS_NAME = "predictions.csv"
#: Columns of ``predictions.csv``: one row per (model, hand); ``probability`` of the predicted class, before
#: the model's temperature; ``common`` 1 for the hands every model scored (those the tables are computed on).
PREDICTIONS_FIELDS = ("model", "key", "true", "predicted", "probability", "common")
#: How many of each model's most-confused pairs get thumbnails, and how many crops per pair.
TOP_PAIRS = 3
PER_PAIR = 4
#: Thumbnail side in inches (the grid is PER_PAIR thumbnails wide).
THUMB_IN = 1.6
SKELETON_COLOUR, JOINT_COLOUR = "#00e0ff", "#ff3d7f"


# --------------------------------------------------------------------------- writing predictions.csv


def prediction_columns(preds: Mapping, keys: Mapping[str, np.ndarray], common_index: np.ndarray,
                       class_names: Sequence[str]) -> dict[str, dict]:
    """Per model the columns of ``predictions.csv`` (arrays, not row dicts: ~90k hands a model on HaGRID).
    ``preds``: model -> :class:`~engine.metrics.ModelPredictions`; ``keys``: model -> each scored hand's key
    (``<uuid>_<hand>``), aligned with its predictions."""
    names = np.asarray(list(class_names), dtype=object)
    out = {}
    for m, p in preds.items():
        prob = p.probs[np.arange(len(p)), p.y_pred] if p.probs is not None else np.full(len(p), np.nan)
        out[m] = {"key": np.asarray(keys[m], dtype=object), "true": names[p.y_true], "predicted": names[p.y_pred],
                  "probability": prob, "common": np.isin(p.index, common_index)}
    return out


def write_predictions(columns: Mapping[str, Mapping], path: Path) -> Path | None:
    """``predictions.csv`` from :func:`prediction_columns`' output; without columns an earlier file is
    removed (it would pass for this evaluation's) and ``None`` returned."""
    from common.files import atomic_write_text

    if not columns:
        path.unlink(missing_ok=True)
        return None
    rows = ({"model": m, "key": c["key"][i], "true": c["true"][i], "predicted": c["predicted"][i],
             "probability": f"{float(c['probability'][i]):.4f}", "common": int(bool(c["common"][i]))}
            for m, c in columns.items() for i in range(len(c["key"])))
    return atomic_write_text(path, csv_text(rows, PREDICTIONS_FIELDS))


# --------------------------------------------------------------------------- choosing the crops


@dataclass
class ErrorRow:
    """One row of a model's grid: a confused pair, how many hands it holds, and the crops shown."""

    true: str
    pred: str
    count: int
    keys: list = field(default_factory=list)
    probs: list = field(default_factory=list)

    @property
    def caption(self) -> str:
        return f"{self.true} → {self.pred} ({len(self.keys)} of {self.count})"


def error_rows(model: str, confused: Sequence[Mapping], predictions: Sequence[Mapping],
               top_pairs: int = TOP_PAIRS, per_pair: int = PER_PAIR) -> list[ErrorRow]:
    """The model's ``top_pairs`` most-confused pairs (``confused_pairs.csv`` rows), each with up to
    ``per_pair`` misclassified common hands of that pair from ``predictions.csv``, most confident first
    (the errors a reject option would not catch)."""
    pairs = sorted((x for x in confused if x.get("model") == model), key=lambda x: to_float(x.get("rank")))
    mine = [x for x in predictions if x.get("model") == model and str(x.get("common")) == "1"]
    rows = []
    for x in pairs[:top_pairs]:
        hits = [h for h in mine if h["true"] == x["true"] and h["predicted"] == x["pred"]]
        hits.sort(key=lambda h: (-_prob(h), h["key"]))
        rows.append(ErrorRow(x["true"], x["pred"], int(to_float(x.get("count"))),
                             [h["key"] for h in hits[:per_pair]], [_prob(h) for h in hits[:per_pair]]))
    return rows


def _prob(h: Mapping) -> float:
    v = to_float(h.get("probability"))
    return 0.0 if np.isnan(v) else v


# --------------------------------------------------------------------------- finding the crops


def crops_folders(meta: Mapping, runs: Mapping) -> dict[str, Path]:
    """model -> the crops folder it was scored on: ``evaluation.json``'s ``crops_dirs``, else the folder
    its checkpoint was trained on (``args["crops_dir"]``, older evaluations)."""
    listed = meta.get("crops_dirs") if isinstance(meta.get("crops_dirs"), dict) else {}
    out = {m: Path(f) for m, f in listed.items() if f}
    for m, info in runs.items():
        folder = getattr(info, "args", {}).get("crops_dir")
        if m not in out and folder:
            out[m] = Path(folder)
    return out


def crop_entries(folder: Path, keys: set[str]) -> dict[str, dict]:
    """The manifest entries of ``keys`` in ``folder`` (streamed: the manifest may hold ~1.3M hands), each
    with ``path`` (the crop file) added; keys not found are absent."""
    from data_loaders.manifest import MANIFEST_NAME, iter_manifest

    found = {}
    for e in iter_manifest(folder / MANIFEST_NAME):
        if e["key"] in keys:
            found[e["key"]] = {**e, "path": folder / e["crop"]}
            if len(found) == len(keys):
                break
    return found


def crop_landmarks(entry: Mapping) -> np.ndarray | None:
    """The entry's landmarks in crop coordinates (0..1 across the crop): ``(lm * image_size - crop_box[:2])
    / crop_box[2]`` (docs/architecture.md, crop manifest); ``None`` without landmarks."""
    if entry.get("landmarks") is None:
        return None
    lm = np.asarray(entry["landmarks"], np.float64) * np.asarray(entry["image_size"], np.float64)
    box = np.asarray(entry["crop_box"], np.float64)
    return (lm - box[:2]) / box[2]


# --------------------------------------------------------------------------- drawing


def draw_error_grid(rows: Sequence[ErrorRow], entries: Mapping[str, Mapping], out_png: str | os.PathLike,
                    title: str = "", per_pair: int = PER_PAIR) -> Path:
    """One row of thumbnails per confused pair: each crop with its skeleton, the probability of the wrong
    class above it; the row's caption on its left. A crop not found shows as an empty, labelled cell."""
    from engine.reporting.plots import _new_figure, _save

    fig = _new_figure(THUMB_IN * per_pair + 1.4, THUMB_IN * len(rows) + (0.5 if title else 0.1))
    axes = fig.subplots(len(rows), per_pair, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(per_pair):
            ax = axes[r][c]
            ax.set_xticks([]), ax.set_yticks([])
            if c < len(row.keys):
                _draw_thumb(ax, entries.get(row.keys[c]), row.probs[c])
            elif c:
                ax.axis("off")
            else:
                ax.text(0.5, 0.5, "not in\npredictions.csv", ha="center", va="center", fontsize=7,
                        transform=ax.transAxes)
        axes[r][0].set_ylabel(row.caption.replace(" (", "\n("), fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, out_png)


def _draw_thumb(ax, entry: Mapping | None, prob: float) -> None:
    """One crop with its landmarks; "crop not found" when the manifest or the file lacks it."""
    from PIL import Image

    ax.set_title(f"p = {prob:.2f}", fontsize=7, pad=2)
    path = Path(entry["path"]) if entry else None
    if path is None or not path.is_file():
        ax.text(0.5, 0.5, "crop not found", ha="center", va="center", fontsize=7, transform=ax.transAxes)
        return
    with Image.open(path) as im:
        img = np.asarray(im.convert("RGB"))
    ax.imshow(img, extent=(0, 1, 1, 0))
    lm = crop_landmarks(entry)
    if lm is not None:
        _draw_skeleton(ax, lm)
    ax.set_xlim(0, 1), ax.set_ylim(1, 0)


def _draw_skeleton(ax, lm: np.ndarray) -> None:
    from data_loaders.hand_graph import HAND_BONES

    for a, b in HAND_BONES:
        ax.plot(lm[[a, b], 0], lm[[a, b], 1], color=SKELETON_COLOUR, linewidth=0.9)
    ax.scatter(lm[:, 0], lm[:, 1], s=3, color=JOINT_COLOUR, zorder=3)
