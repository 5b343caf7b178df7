"""Evaluation and training figures (confusion matrices, training curves, orientation pairs, model
comparison, calibration: reliability diagram and accuracy against coverage). Every function draws on
its own Agg canvas (no pyplot, so nothing changes the backend of a notebook and no figure is left
open), saves a PNG atomically and returns its path."""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from common.files import atomic_open
from engine.reporting.tables import to_float

__all__ = [
    "HISTORY_FIELDS",
    "plot_confusion",
    "plot_history",
    "read_history",
    "plot_orientation_pairs",
    "plot_model_comparison",
    "plot_reliability",
    "plot_coverage",
]

DPI = 110


def _new_figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out_png: str | os.PathLike) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "wb") as f:
        fig.savefig(f, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    fig.clear()
    return out


# --------------------------------------------------------------------------- confusion


def plot_confusion(
    cm_counts: np.ndarray,
    class_names: Sequence[str],
    out_png: str | os.PathLike,
    title: str = "Confusion matrix",
) -> Path:
    """Counts (log colour scale, zeros blank) and row-normalised percentages side by side.
    Rows are true classes, columns predicted ones."""
    cm = np.asarray(cm_counts, dtype=np.int64)
    C = cm.shape[0]
    if cm.shape != (C, C) or len(class_names) != C:
        raise ValueError(f"confusion matrix {cm.shape} does not match {len(class_names)} class names")
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)
    side = max(3.5, 0.42 * C + 1.2)
    fig = _new_figure(2 * side + 2.5, side + 1.4)
    axes = fig.subplots(1, 2)
    fs = 9 if C <= 10 else (7 if C <= 20 else 5.5)
    labels = list(class_names)

    # counts
    ax = axes[0]
    masked = np.ma.masked_where(cm == 0, cm)
    vmax = max(int(cm.max()), 2)
    im = ax.imshow(masked, cmap="Blues", norm=LogNorm(vmin=1, vmax=vmax), interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03).set_label("hands (log scale)")
    thr = math.sqrt(vmax)
    for i in range(C):
        for j in range(C):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=fs,
                        color="white" if cm[i, j] > thr else "black")
    ax.set_title(f"counts (n = {int(cm.sum())})")

    # row-normalised
    ax = axes[1]
    im = ax.imshow(norm * 100, cmap="Blues", vmin=0, vmax=100, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03).set_label("% of true class")
    for i in range(C):
        for j in range(C):
            v = norm[i, j] * 100
            if v >= 0.5:
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=fs,
                        color="white" if v > 50 else "black")
    ax.set_title("row-normalised (% of each true class)")

    for ax in axes:
        ax.set_xticks(range(C))
        ax.set_yticks(range(C))
        ax.set_xticklabels(labels, rotation=60, ha="right", rotation_mode="anchor", fontsize=fs + 1)
        ax.set_yticklabels(labels, fontsize=fs + 1)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_xticks(np.arange(-0.5, C, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, C, 1), minor=True)
        ax.grid(which="minor", color="#dddddd", linewidth=0.5)
        ax.tick_params(which="minor", length=0)
    fig.suptitle(title, fontsize=13)
    return _save(fig, out_png)


# --------------------------------------------------------------------------- training history

#: Columns of ``<model>_history.csv``: written by training, read back here and by the report.
HISTORY_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "samples_per_s")


def read_history(history: str | os.PathLike | Sequence[Mapping]) -> list[dict]:
    """History rows as dicts of floats (NaN where empty), from a CSV path or a list of dicts."""
    if isinstance(history, (str, os.PathLike)):
        with open(history, newline="", encoding="utf-8") as f:
            raw = list(csv.DictReader(f))
    else:
        raw = [dict(r) for r in history]
    out = []
    for i, r in enumerate(raw):
        row = {k: to_float(v) for k, v in r.items() if k is not None}
        if math.isnan(row.get("epoch", float("nan"))):
            row["epoch"] = float(i + 1)
        out.append(row)
    return out


def _col(rows: list[dict], key: str) -> np.ndarray:
    return np.array([r.get(key, float("nan")) for r in rows], dtype=np.float64)


def plot_history(
    history: str | os.PathLike | Sequence[Mapping],
    out_png: str | os.PathLike,
    title: str = "Training history",
) -> Path:
    """Train/val loss and accuracy per epoch from a history CSV (:data:`HISTORY_FIELDS`)
    or a list of such dicts. The epoch with the best validation accuracy is marked."""
    rows = read_history(history)
    fig = _new_figure(11, 4.2)
    ax_loss, ax_acc = fig.subplots(1, 2)
    if not rows:
        for ax in (ax_loss, ax_acc):
            ax.text(0.5, 0.5, "no epochs recorded", ha="center", va="center", transform=ax.transAxes)
        fig.suptitle(title)
        return _save(fig, out_png)
    ep = _col(rows, "epoch")
    marker = "o" if len(rows) <= 30 else None
    for ax, key, label in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
        for split, color in (("train", "tab:blue"), ("val", "tab:orange")):
            y = _col(rows, f"{split}_{key}")
            ok = ~np.isnan(y)
            if ok.any():
                ax.plot(ep[ok], y[ok], marker=marker, ms=3, color=color, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    val_acc = _col(rows, "val_acc")
    if (~np.isnan(val_acc)).any():
        b = int(np.nanargmax(val_acc))
        ax_acc.axvline(ep[b], color="grey", ls="--", lw=0.8)
        ax_acc.annotate(f"best val {val_acc[b]:.3f}\n(epoch {ep[b]:g})", (ep[b], val_acc[b]),
                        textcoords="offset points", xytext=(6, -28), fontsize=8)
    ax_loss.set_title("loss")
    ax_acc.set_title("accuracy")
    for ax in (ax_loss, ax_acc):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    secs = _col(rows, "seconds")
    sps = _col(rows, "samples_per_s")
    sub = []
    if (~np.isnan(secs)).any():
        sub.append(f"{np.nansum(secs):.0f} s total")
    if (~np.isnan(sps)).any():
        sub.append(f"{np.nanmean(sps):,.0f} samples/s")
    fig.suptitle(title + (f"  ({', '.join(sub)})" if sub else ""))
    return _save(fig, out_png)


# --------------------------------------------------------------------------- orientation pairs


def plot_orientation_pairs(
    pair_confusions: Mapping[str, Sequence[Mapping]] | Sequence[Mapping],
    out_png: str | os.PathLike,
    title: str = "Orientation pairs: confusion within each pair",
) -> Path:
    """A grid (models x pairs) of 2x2 within-pair confusions, as produced by
    :func:`engine.metrics.orientation_pair_confusion`; each cell shows the count and
    the % of the true class, and the title gives the cross-error rate. A plain list
    is drawn as a single model."""
    if not isinstance(pair_confusions, Mapping):
        pair_confusions = {"": list(pair_confusions)}
    models = list(pair_confusions)
    pairs: list[tuple[str, str]] = []
    for m in models:
        for p in pair_confusions[m]:
            if (p["a"], p["b"]) not in pairs:
                pairs.append((p["a"], p["b"]))
    nr, nc = max(len(models), 1), max(len(pairs), 1)
    fig = _new_figure(2.6 * nc + 0.8, 2.5 * nr + 0.8)
    axes = np.atleast_2d(fig.subplots(nr, nc, squeeze=False))
    if not pairs:
        axes[0, 0].text(0.5, 0.5, "no orientation pair is in the class set", ha="center", va="center")
        axes[0, 0].axis("off")
        fig.suptitle(title)
        return _save(fig, out_png)
    short = {"peace_inverted": "peace_inv", "stop_inverted": "stop_inv", "two_up_inverted": "two_up_inv"}
    for r, m in enumerate(models):
        by_pair = {(p["a"], p["b"]): p for p in pair_confusions[m]}
        for c, key in enumerate(pairs):
            ax = axes[r, c]
            p = by_pair.get(key)
            if p is None:
                ax.axis("off")
                continue
            mat = np.asarray(p["matrix"])
            nm = np.asarray(p["matrix_norm"], dtype=np.float64)
            ax.imshow(nm * 100, cmap="Blues", vmin=0, vmax=100)
            for i in range(2):
                for j in range(2):
                    v = nm[i, j] * 100
                    ax.text(j, i, f"{mat[i, j]}\n{v:.1f}%", ha="center", va="center", fontsize=8,
                            color="white" if v > 50 else "black")
            a, b = key
            ticks = [short.get(a, a), short.get(b, b)]
            ax.set_xticks([0, 1])
            ax.set_xticklabels(ticks, fontsize=7)
            ax.set_yticks([0, 1])
            ax.set_yticklabels(ticks, fontsize=7, rotation=90, va="center")
            ax.set_title(f"cross-error {p['cross_error_rate'] * 100:.1f}%", fontsize=8)
            if c == 0 and m:
                ax.set_ylabel(f"{m}\ntrue", fontsize=9, fontweight="bold")
            if r == nr - 1:
                ax.set_xlabel("predicted", fontsize=8)
    fig.suptitle(title + "\n(count and % of all hands of the true class)", fontsize=11)
    return _save(fig, out_png)


# --------------------------------------------------------------------------- model comparison


def plot_model_comparison(
    rows: Sequence[Mapping],
    out_png: str | os.PathLike,
    title: str | None = None,
) -> Path:
    """Accuracy and macro F1 (over the classes present) per model with their bootstrap intervals: filled
    dots on the common subset of hands, hollow dots on all hands each model can score.
    ``rows`` are :attr:`Comparison.rows` or rows read back from ``results.csv``."""
    models = [str(r.get("model", "")) for r in rows]
    fig = _new_figure(max(7.0, 1.3 * len(models) + 4.0), 4.4)
    axes = fig.subplots(1, 2)
    x = np.arange(len(models))
    specs = (
        ("accuracy", ("acc", "acc_low", "acc_high"), ("acc_all", "acc_all_low", "acc_all_high")),
        ("macro F1", ("macro_f1", "f1_low", "f1_high"), ("f1_all", "f1_all_low", "f1_all_high")),
    )
    lows = []
    for ax, (label, common, alls) in zip(axes, specs):
        for keys, dx, face, name in ((common, -0.12, "tab:blue", "common hands"),
                                     (alls, 0.12, "white", "all hands of the model")):
            v = np.array([to_float(r.get(keys[0])) for r in rows]) * 100
            lo = np.array([to_float(r.get(keys[1])) for r in rows]) * 100
            hi = np.array([to_float(r.get(keys[2])) for r in rows]) * 100
            ok = ~np.isnan(v)
            if not ok.any():
                continue
            err = np.vstack([np.where(np.isnan(lo), 0, v - lo), np.where(np.isnan(hi), 0, hi - v)])
            ax.errorbar(x[ok] + dx, v[ok], yerr=err[:, ok], fmt="o", ms=7, capsize=4,
                        color="tab:blue", mfc=face, mec="tab:blue", label=name)
            lows.append(np.nanmin(np.where(np.isnan(lo), v, lo)))
            if name == "common hands":
                for xi, vi in zip(x[ok], v[ok]):
                    ax.annotate(f"{vi:.1f}", (xi - 0.12, vi), textcoords="offset points",
                                xytext=(-8, 0), ha="right", va="center", fontsize=8)
        ax.set_xticks(x)
        ax.set_xticklabels(models)
        ax.set_xlim(-0.6, len(models) - 0.4)
        ax.set_ylabel(f"{label} (%)")
        k = rows[0].get("n_classes") if rows else None
        ax.set_title(f"{label} (mean over the {k} classes present)" if label == "macro F1" and k not in (None, "")
                     else label, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    if lows:
        bottom = max(0.0, math.floor((min(lows) - 3) / 5) * 5)
        for ax in axes:
            ax.set_ylim(bottom, 100.5)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=8, loc="lower left")
    if title is None:
        n = rows[0].get("n_common", "") if rows else ""
        title = f"Models compared on the {n} common test hands (95% bootstrap intervals)"
    fig.suptitle(title, fontsize=11)
    return _save(fig, out_png)


# --------------------------------------------------------------------------- calibration


def plot_reliability(
    bins: Mapping[str, Mapping[str, Mapping]],
    out_png: str | os.PathLike,
    title: str = "Reliability: accuracy against confidence",
) -> Path:
    """One panel per model: accuracy against mean confidence per confidence bin, before (hollow) and
    after (filled) temperature scaling, the diagonal being perfect calibration; a dot's area grows with
    its bin's hands. ``bins[model]`` = ``{"before": reliability_bins(...), "after": ...}``
    (:func:`engine.metrics.reliability_bins`; ``"after"`` may be absent)."""
    models = list(bins)
    nc = max(1, min(len(models), 3))
    nr = max(1, math.ceil(len(models) / nc))
    fig = _new_figure(3.6 * nc + 0.4, 3.5 * nr + 0.6)
    axes = np.atleast_1d(fig.subplots(nr, nc, squeeze=False)).ravel()
    for ax in axes[len(models):]:
        ax.axis("off")
    for ax, m in zip(axes, models):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        for key, face, label in (("before", "white", "before"), ("after", "tab:blue", "after T")):
            b = bins[m].get(key)
            if b is None:
                continue
            count = np.asarray(b["count"], dtype=np.float64)
            ok = count > 0
            size = 12 + 150 * count[ok] / max(count.sum(), 1)
            ax.scatter(np.asarray(b["confidence"])[ok], np.asarray(b["accuracy"])[ok], s=size, facecolors=face,
                       edgecolors="tab:blue", label=label, zorder=3)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("confidence (top probability)")
        ax.set_ylabel("accuracy")
        ax.set_title(m, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=11)
    return _save(fig, out_png)


def plot_coverage(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    out_png: str | os.PathLike,
    title: str = "Reject option: accuracy of the hands kept against the share kept",
    marks: Sequence[float] = (),
) -> Path:
    """Accuracy against coverage, one line per model (:func:`engine.metrics.coverage_curve`: the most
    confident hands kept, the rest rejected); ``marks`` draws vertical lines at those coverages."""
    fig = _new_figure(7.5, 4.6)
    ax = fig.subplots()
    lows = []
    for m, (cov, acc) in curves.items():
        cov, acc = np.asarray(cov, dtype=np.float64), np.asarray(acc, dtype=np.float64)
        if not len(cov):
            continue
        ax.plot(cov * 100, acc * 100, marker="o" if len(cov) <= 30 else None, ms=3, label=m)
        lows.append(float(np.nanmin(acc)) * 100)
    for c in marks:
        ax.axvline(c * 100, color="grey", lw=0.8, ls=":")
    ax.set_xlim(0, 100.5)
    if lows:
        ax.set_ylim(max(0.0, math.floor((min(lows) - 2) / 5) * 5), 100.5)
    ax.set_xlabel("coverage: hands kept (%)")
    ax.set_ylabel("accuracy of the hands kept (%)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower left")
    else:
        ax.text(0.5, 0.5, "no predictions", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title, fontsize=11)
    return _save(fig, out_png)
