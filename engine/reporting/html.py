"""The evaluation artefacts in ``graphs/`` and the report built from them.

:func:`write_evaluation_artefacts` turns a :class:`~engine.metrics.Comparison` into
files in ``graphs/``; :func:`build_report` reads whatever is in ``graphs/`` and
writes ``reports/report.html`` (self-contained: images embedded as base64 data
URIs, inline CSS, no external resources) and its Markdown twin ``reports/report.md``
(images referenced by relative path). The report is always regenerated, never
edited by hand; a missing artefact shows as "not available".

Artefacts read (all optional)::

    data_summary.json        the data set: splits x classes x {images, hands, hands_with_landmarks, users}
    <model>_history.csv      epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds,samples_per_s
    <model>_curves.png       training curves (drawn from the history CSV when absent)
    evaluation.json          caption, class names, n_common, n_boot, alpha, models, checkpoints (row -> file), split,
                             crops_dirs (row -> the crops folder it was scored on)
    results.csv / results.md one row per model (engine.metrics.ROW_FIELDS)
    pairwise.csv             McNemar tests (engine.metrics.PAIR_FIELDS)
    per_class.csv            model,class,precision,recall,f1,support on the common hands
    confused_pairs.csv       model,rank,true,pred,count,rate
    predictions.csv          model,key,true,predicted,probability,common: one row per model and hand
    <model>_errors.png       misclassified crops of the top confused pairs (drawn by the report from
                             predictions.csv and the crops folders' manifests)
    orientation_pairs.csv    model,a,b,n_a,n_b,a_as_a,a_as_b,b_as_a,b_as_b,a_as_b_rate,b_as_a_rate,cross_error_rate
    <model>_confusion.png    confusion on the common hands (counts and row-normalised)
    orientation_pairs.png    within-pair confusion of the orientation pairs, per model
    model_comparison.png     accuracy / macro F1 with intervals per model
    calibration.csv          engine.metrics.CALIBRATION_FIELDS per model (ECE before/after T, reject option)
    end_to_end.csv           engine.end_to_end rows: detection recall, end-to-end and annotated-box accuracy
    reliability.png          reliability diagram per model, before and after its temperature
    coverage.png             accuracy against coverage (the reject option), one line per model
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from common.errors import DataError
from common.files import atomic_write_text
from data_loaders.classes import ORIENTATION_PAIRS
from engine.metrics import REPORT_COVERAGES, Comparison
from engine.reporting import plots
from engine.reporting.errors import (
    PER_PAIR,
    PREDICTIONS_NAME,
    TOP_PAIRS,
    crop_entries,
    crops_folders,
    draw_error_grid,
    error_rows,
    write_predictions,
)
from engine.reporting.hypotheses import (
    HYPOTHESIS_ALIGN,
    HYPOTHESIS_HEADERS,
    hypotheses_cells,
    hypotheses_explanation,
    hypotheses_from_graphs,
)
from engine.reporting.methods import (
    MODEL_TABLE_HEADERS,
    imagenet_weights,
    methods_text,
    model_table,
    read_crop_info,
    read_runs,
    run_kinds,
)
from engine.reporting.reference import SEED_ACCURACY, SEED_SETUP, fusion_caveat
from engine.reporting.speed import (
    SPEED_ALIGN,
    SPEED_COMMAND,
    SPEED_HEADERS,
    fps_columns,
    speed_cells,
    speed_explanation,
)
from engine.reporting.tables import (
    CALIBRATION_ALIGN,
    CALIBRATION_HEADERS,
    END_TO_END_HEADERS,
    END_TO_END_INTERVALS,
    END_TO_END_MATCHING,
    MODEL_ORDER,
    PAIRWISE_ALIGN,
    PAIRWISE_HEADERS,
    RESULTS_ALIGN,
    RESULTS_HEADERS,
    calibration_cells,
    calibration_explanation,
    csv_text,
    end_to_end_cells,
    markdown_table,
    order_models,
    pairwise_cells,
    pairwise_explanation,
    read_csv_rows,
    results_cells,
    results_explanation,
    to_float,
    write_results,
)

__all__ = ["write_evaluation_artefacts", "build_report", "MODEL_ORDER"]

DEFAULT_TITLE = "Hand-gesture classifiers: evaluation report"
#: Tables with more columns than this print in a smaller font (class "wide"), so they fit an A4 page.
WIDE_TABLE_COLUMNS = 10

CONFUSED_FIELDS = ("model", "rank", "true", "pred", "count", "rate")
ORIENTATION_FIELDS = ("model", "a", "b", "n_a", "n_b", "a_as_a", "a_as_b", "b_as_a", "b_as_b",
                      "a_as_b_rate", "b_as_a_rate", "cross_error_rate")
PER_CLASS_FIELDS = ("model", "class", "precision", "recall", "f1", "support")


def _check_model_name(name: str) -> str:
    if not name or any(ch in name for ch in "/\\") or name.startswith("."):
        raise ValueError(f"model name {name!r} cannot be used in a file name")
    return name


# =========================================================================== artefacts


def write_evaluation_artefacts(
    comparison: Comparison,
    graphs_dir: str | os.PathLike = "graphs",
    class_names: Sequence[str] | None = None,
    caption: str | None = None,
) -> dict[str, Path]:
    """Write every evaluation artefact of ``comparison`` into ``graphs_dir``:
    ``results.csv``, ``results.md`` (headed by ``caption``, e.g. which data set the
    numbers come from), ``pairwise.csv``, ``per_class.csv``, ``confused_pairs.csv``,
    ``orientation_pairs.csv``, ``evaluation.json``, ``<model>_confusion.png`` (on
    the common hands), ``orientation_pairs.png`` and ``model_comparison.png``; with
    ``comparison.extra["calibration"]`` (:func:`engine.metrics.compare_calibration`) also
    ``calibration.csv`` (and its table in ``results.md``), ``reliability.png`` and ``coverage.png``; with
    ``comparison.extra["predictions"]`` (:func:`engine.reporting.errors.prediction_columns`) ``predictions.csv``.
    Returns the paths by name."""
    g = Path(graphs_dir)
    g.mkdir(parents=True, exist_ok=True)
    names = list(comparison.class_names)
    if class_names is not None and list(class_names) != names:
        raise ValueError(f"class_names {list(class_names)} differ from the comparison's {names}")
    models = [_check_model_name(m) for m in comparison.models]
    out = dict(write_results(comparison, g, caption))

    per_class = [
        {"model": m, "class": c, **comparison.metrics[m]["per_class"][c]} for m in models for c in names
    ]
    out["per_class_csv"] = atomic_write_text(g / "per_class.csv", csv_text(per_class, PER_CLASS_FIELDS))
    confused = [
        {"model": m, "rank": k + 1, **p} for m in models for k, p in enumerate(comparison.confused_pairs[m])
    ]
    out["confused_pairs_csv"] = atomic_write_text(g / "confused_pairs.csv", csv_text(confused, CONFUSED_FIELDS))
    out["orientation_pairs_csv"] = atomic_write_text(
        g / "orientation_pairs.csv", csv_text(_orientation_rows(comparison, models), ORIENTATION_FIELDS))
    meta = {
        "caption": caption or "",
        "class_names": names,
        "models": models,
        "n_common": comparison.n_common,
        "n_boot": comparison.n_boot,
        "alpha": comparison.alpha,
        "checkpoints": dict(comparison.extra.get("checkpoints") or {}),
        "split": comparison.extra.get("split", "test"),
        "crops_dirs": dict(comparison.extra.get("crops_dirs") or {}),
        "written": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    predictions = write_predictions(comparison.extra.get("predictions") or {}, g / PREDICTIONS_NAME)
    if predictions is not None:
        out["predictions_csv"] = predictions
    out["evaluation_json"] = atomic_write_text(g / "evaluation.json", json.dumps(meta, indent=2) + "\n")

    for m in models:
        out[f"{m}_confusion_png"] = plots.plot_confusion(
            comparison.confusion[m], names, g / f"{m}_confusion.png",
            title=f"{m}: confusion on the {comparison.n_common} common test hands",
        )
    out["orientation_pairs_png"] = plots.plot_orientation_pairs(
        {m: comparison.orientation[m] for m in models}, g / "orientation_pairs.png",
        title=f"Orientation pairs on the {comparison.n_common} common test hands",
    )
    out["model_comparison_png"] = plots.plot_model_comparison(comparison.rows, g / "model_comparison.png")
    out.update(_calibration_figures(comparison, g))
    return out


def _orientation_rows(comparison: Comparison, models: Sequence[str]) -> list[dict]:
    """The rows of ``orientation_pairs.csv`` (:data:`ORIENTATION_FIELDS`): each model's within-pair counts."""
    rows = []
    for m in models:
        for p in comparison.orientation[m]:
            mat = p["matrix"]
            rows.append({
                "model": m, "a": p["a"], "b": p["b"], "n_a": p["n_a"], "n_b": p["n_b"],
                "a_as_a": int(mat[0][0]), "a_as_b": int(mat[0][1]), "b_as_a": int(mat[1][0]),
                "b_as_b": int(mat[1][1]), "a_as_b_rate": p["a_as_b"], "b_as_a_rate": p["b_as_a"],
                "cross_error_rate": p["cross_error_rate"],
            })
    return rows


def _calibration_figures(comparison: Comparison, g: Path) -> dict[str, Path]:
    """``reliability.png`` and ``coverage.png`` from ``comparison.extra["calibration"]``; without it,
    those of an earlier evaluation are removed (they would pass for this one's)."""
    curves = (comparison.extra.get("calibration") or {}).get("curves") or {}
    if not curves:
        for name in ("reliability.png", "coverage.png"):
            (g / name).unlink(missing_ok=True)
        return {}
    n, split = comparison.n_common, comparison.extra.get("split", "test")
    return {
        "reliability_png": plots.plot_reliability(
            {m: {"before": c["bins_before"], "after": c["bins_after"]} for m, c in curves.items()},
            g / "reliability.png", title=f"Reliability on the {n} common {split} hands, before and after T"),
        "coverage_png": plots.plot_coverage(
            {m: c["curve"] for m, c in curves.items()}, g / "coverage.png", marks=REPORT_COVERAGES,
            title=f"Reject option on the {n} common {split} hands: accuracy of the hands kept"),
    }


# =========================================================================== report blocks


@dataclass
class _Heading:
    level: int
    text: str


@dataclass
class _Para:
    text: str
    kind: str = ""  # "", "note", "warning", "missing", "caption"


@dataclass
class _Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    align: Sequence[str] | None = None


@dataclass
class _Image:
    path: Path
    alt: str


@dataclass
class _Report:
    blocks: list = field(default_factory=list)
    used: list = field(default_factory=list)
    missing: list = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(_Heading(level, text))

    def p(self, text: str, kind: str = "") -> None:
        self.blocks.append(_Para(text, kind))

    def table(self, headers, rows, align=None) -> None:
        self.blocks.append(_Table(list(headers), [list(map(str, r)) for r in rows], align))

    def not_available(self, what: str, path: Path, why: str = "") -> None:
        self.missing.append(path.name)
        self.p(f"{what}: not available ({path.name} {why or 'missing'}).", "missing")

    def artefact(self, what: str, path: Path, loaded: tuple | None = None, *, empty_ok: bool = True):
        """The rows of a CSV artefact, marked used; ``None``, shown as not available with the reason,
        when it is missing, unreadable, or empty and not ``empty_ok``. ``loaded`` is the ``(value, why)``
        of an earlier :func:`_load` of the file (another reader, or read before its section)."""
        value, why = loaded if loaded is not None else _load(path, read_csv_rows)
        if value is not None and not value and not empty_ok:
            value, why = None, "is empty"
        if value is None:
            self.not_available(what, path, why)
        else:
            self.used.append(path.name)
        return value

    def image(self, path: Path, alt: str) -> bool:
        if path.is_file():
            self.used.append(path.name)
            self.blocks.append(_Image(path, alt))
            return True
        self.not_available(alt, path)
        return False


# =========================================================================== helpers


def _load(path: Path, reader) -> tuple:
    """``(reader(path), "")``, or ``(None, why not)`` when the file is missing or unreadable
    (a broken artefact must not stop the report)."""
    if not path.is_file():
        return None, "missing"
    try:
        return reader(path), ""
    except Exception as e:  # noqa: BLE001
        return None, f"could not be read: {e}"


def _pct(x, digits: int = 1) -> str:
    v = to_float(x)
    return "n/a" if math.isnan(v) else f"{v * 100:.{digits}f}%"


def _int(x) -> str:
    v = to_float(x)
    return "n/a" if math.isnan(v) else f"{int(v):,}"


def _discover_models(g: Path, results: list[dict] | None) -> list[str]:
    found = []
    if results:
        found += [r.get("model", "") for r in results if r.get("model")]
    for suffix in ("_history.csv", "_curves.png", "_confusion.png"):
        for p in g.glob(f"*{suffix}"):
            found.append(p.name[: -len(suffix)])
    found = [m for m in found if m]
    if results:  # results order first, then models that only have training artefacts
        head = list(dict.fromkeys(r.get("model", "") for r in results if r.get("model")))
        return head + order_models(m for m in found if m not in head)
    return order_models(found)


def _read_json(path: Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _read_data_summary(path: Path) -> dict:
    ds = _read_json(path)
    if not isinstance(ds, dict) or not isinstance(ds.get("splits") or {}, dict):
        raise ValueError("expected an object with a 'splits' object")
    return ds


def _is_synthetic(*texts) -> bool:
    return any("synthetic" in str(t).lower() for t in texts if t)


# =========================================================================== sections

QUESTION = ("Question: which way of reading a hand — its 21 landmarks (MLP, GCN on the hand skeleton), its "
            "image crop (small CNN, ResNet-34), or both (late fusion) — recognises the gestures best? The seed "
            "project's three hypotheses are tested below on this evaluation's test hands, each verdict computed "
            "from the numbers beside it.")


def _section_hypotheses(r: _Report, g: Path, kinds: dict, alpha: float) -> None:
    """The question, and the verdict table (:mod:`engine.reporting.hypotheses`) from pairwise.csv."""
    r.h(2, "Question and hypotheses")
    r.p(QUESTION)
    loaded = _load(g / "pairwise.csv", lambda p: hypotheses_from_graphs(g, kinds))
    hyps = r.artefact("Hypotheses", g / "pairwise.csv", loaded, empty_ok=False)
    if hyps:
        r.p(hypotheses_explanation(alpha))
        r.table(HYPOTHESIS_HEADERS, hypotheses_cells(hyps), HYPOTHESIS_ALIGN)


def _split_hands(ds: dict | None, split: str) -> str:
    per_class = ((ds or {}).get("splits") or {}).get(split) or {}
    n = sum(_count({split: per_class}, split, c, "hands") for c in per_class)
    return _int(n) if per_class else "n/a"


def _section_seed(r: _Report, g: Path, results: list | None, ds: dict | None, runs: dict, crop: dict,
                  split: str) -> None:
    """The seed's HaGRID accuracies beside ours, what differs, and the caveat on its fusion claim."""
    r.h(2, "The seed's figures beside ours")
    by = {row.get("model"): row for row in results or []}
    rows = []
    for m, acc in SEED_ACCURACY.items():
        x = by.get(m) or {}
        ours = (f"{100 * to_float(x['acc']):.1f} [{100 * to_float(x['acc_low']):.1f}, "
                f"{100 * to_float(x['acc_high']):.1f}]") if x else "not evaluated"
        rows.append([m, f"{acc:.2f}", ours, str(x.get("n_common", "n/a"))])
    r.table(["model", "seed: HaGRID test accuracy %", "this evaluation: accuracy % [95% CI]", "n (common hands)"],
            rows, ["l", "r", "r", "r"])
    r.p("What differs, so that nobody reads a result of this run as a HaGRID result:")
    r.table(["aspect", "seed", "this run"], _differences(g, ds, runs, crop, split, results))
    r.p(fusion_caveat(), "note")


def _differences(g: Path, ds: dict | None, runs: dict, crop: dict, split: str, results: list | None) -> list:
    widths = [100 * (to_float(x.get("acc_high")) - to_float(x.get("acc_low"))) / 2 for x in results or []]
    widths = [w for w in widths if not math.isnan(w)]
    n = (results or [{}])[0].get("n_common", "n/a")
    data = (f"{(ds or {}).get('dataset') or crop.get('source') or 'n/a'}: train {_split_hands(ds, 'train')} hands, "
            f"{split} {_split_hands(ds, split)} hands ({n} scored by every model"
            + (f"; 95% intervals ±{min(widths):.1f} to ±{max(widths):.1f} pt)" if widths else ")"))
    box = crop.get("box_source") or ("annotation" if crop else "n/a")
    boxes = ("annotated boxes" if box == "annotation" else f"box source: {box}") + (
        "; detected boxes end to end also measured (end_to_end.csv)" if (g / "end_to_end.csv").is_file() else "")
    users = ((ds or {}).get("split_totals") or {}).get(split, {}).get("users")
    split_text = f"the {split} split" + (f" ({int(to_float(users)):,} subjects)" if users not in (None, "") else "")
    weights = "; ".join(f"{m}: {w}" for m, i in runs.items() if (w := imagenet_weights(i))) or "no ResNet evaluated"
    return [["data", SEED_SETUP["data"], data], ["boxes", SEED_SETUP["boxes"], boxes],
            ["split", SEED_SETUP["split"], split_text], ["ImageNet weights", SEED_SETUP["ImageNet weights"], weights]]


def _section_methods(r: _Report, g: Path, runs: dict, crop: tuple, ds: dict | None, results: list | None,
                     split: str) -> None:
    """Data, preprocessing, augmentation and one row per model, from the checkpoints and crop_info.json."""
    r.h(2, "Methods")
    info, path = crop
    if path is not None:
        r.used.append(f"{path.parent.name}/crop_info.json")
    for text in methods_text(runs, info, ds or {}, split):
        r.p(text)
    if not runs:
        r.p("Models: not available (evaluation.json lists no checkpoints).", "missing")
        return
    r.h(3, "Models and training")
    params = {x.get("model"): x.get("n_params") for x in results or []}
    r.table(MODEL_TABLE_HEADERS, model_table(runs, params), ["l", "l", "l", "r", "l", "r", "r", "l", "r", "r", "l",
                                                             "r", "r", "r", "l"])
    r.p("Checkpoints: " + "; ".join(f"{m} = {i.path}" for m, i in runs.items()) + ". Epochs and times from "
        "<run>_history.csv (else the checkpoint's history); device as the checkpoint records it.", "note")



def _number_sections(r: _Report) -> None:
    """Number the level-2 headings in order (the closing "Artefacts" list stays unnumbered)."""
    k = 0
    for b in r.blocks:
        if isinstance(b, _Heading) and b.level == 2 and b.text != "Artefacts":
            k += 1
            b.text = f"{k}. {b.text}"


def _section_data(r: _Report, g: Path) -> dict | None:
    r.h(2, "Data")
    path = g / "data_summary.json"
    ds = r.artefact("Data summary", path, _load(path, _read_data_summary))
    if ds is None:
        return None
    splits: dict = ds.get("splits", {}) or {}
    classes = list(ds.get("class_names") or [])
    for s in splits.values():
        classes += [c for c in s if c not in classes]
    r.p(f"Dataset: {ds.get('dataset', 'n/a')} (HaGRID annotation format {ds.get('format', 'n/a')}), "
        f"{len(classes)} classes.")
    _data_splits(r, ds, splits, classes)
    _data_classes(r, splits, classes)
    _data_skipped(r, ds.get("skipped") or {})
    _data_leaks(r, ds.get("subject_leaks"))
    return ds


def _count(splits: dict, split: str, cls: str, key: str) -> float:
    """One count of data_summary.json's ``splits[split][cls][key]``; 0 when absent or not a number."""
    v = to_float((splits.get(split, {}).get(cls) or {}).get(key))
    return 0.0 if math.isnan(v) else v


def _data_splits(r: _Report, ds: dict, splits: dict, classes: list[str]) -> None:
    """Images, hands, landmarks and users per split, with a total row."""
    totals = ds.get("split_totals") or {}  # distinct images/users per split (newer summaries)
    rows = []
    tot = {"images": 0.0, "hands": 0.0, "hands_with_landmarks": 0.0}
    for s in splits:
        vals = {k: sum(_count(splits, s, c, k) for c in classes) for k in tot}
        if s in totals:
            vals["images"] = to_float(totals[s].get("images"))
            users = to_float(totals[s].get("users"))
        else:
            users = max((_count(splits, s, c, "users") for c in classes), default=0.0)
        for k in tot:
            tot[k] += vals[k]
        lm = vals["hands_with_landmarks"] / vals["hands"] if vals["hands"] else float("nan")
        rows.append([s, _int(vals["images"]), _int(vals["hands"]), _int(vals["hands_with_landmarks"]),
                     _pct(lm), _int(users)])
    lm = tot["hands_with_landmarks"] / tot["hands"] if tot["hands"] else float("nan")
    rows.append(["total", _int(tot["images"]), _int(tot["hands"]), _int(tot["hands_with_landmarks"]), _pct(lm), ""])
    r.h(3, "Splits")
    headers = ["split", "images", "hands", "hands with landmarks", "% with landmarks"]
    if totals:
        r.table(headers + ["users"], rows, ["l", "r", "r", "r", "r", "r"])
        r.p("Distinct images and distinct known user_ids per split (0 users: the split has no user_ids).", "note")
    else:
        r.table(headers + ["users (largest class)"], rows, ["l", "r", "r", "r", "r", "r"])
        r.p("Images are counted per class (an image with hands of two classes counts in both). This summary "
            "holds users per class, so the last column is the largest per-class count, a lower bound on the "
            "split's distinct users.", "note")


def _data_classes(r: _Report, splits: dict, classes: list[str]) -> None:
    """Hands (and users) per class and split, with each class's share of hands with landmarks."""
    r.h(3, "Hands per class")
    crow = []
    for c in classes:
        cells = [c]
        total_h = total_lm = 0.0
        for s in splits:
            h, u = _count(splits, s, c, "hands"), _count(splits, s, c, "users")
            total_h += h
            total_lm += _count(splits, s, c, "hands_with_landmarks")
            cells.append(f"{int(h):,} ({int(u):,})")
        cells += [_int(total_h), _pct(total_lm / total_h if total_h else float("nan"))]
        crow.append(cells)
    r.table(["class"] + [f"{s}: hands (users)" for s in splits] + ["hands", "% with landmarks"],
            crow, ["l"] + ["r"] * (len(splits) + 2))


def _data_skipped(r: _Report, skipped: dict) -> None:
    r.h(3, "Skipped while reading")
    if skipped:
        r.table(["reason", "count"], [[k, _int(v)] for k, v in skipped.items()], ["l", "r"])
    else:
        r.p("Nothing was skipped.")


def _data_leaks(r: _Report, leaks) -> None:
    """Users found in more than one split (``None``: the summary does not record it)."""
    r.h(3, "Subject leaks between splits")
    if leaks is None:
        r.p("Not recorded in data_summary.json.", "missing")
        return
    if not leaks or (isinstance(leaks, dict) and not any(leaks.values())):
        r.p("No user appears in more than one split.")
        return
    rows = []
    items = leaks.items() if isinstance(leaks, dict) else enumerate(leaks)
    for k, v in items:
        if isinstance(v, (list, tuple, set)):
            v = list(v)
            shown = ", ".join(map(str, v[:5])) + (", ..." if len(v) > 5 else "")
            rows.append([str(k), f"{len(v)}: {shown}"])
        else:
            rows.append([str(k), json.dumps(v) if isinstance(v, (dict, list)) else str(v)])
    r.table(["splits", "users"], rows)
    r.p("Users shared between splits make test numbers optimistic.", "warning")


def _section_training(r: _Report, g: Path, models: list[str]) -> None:
    r.h(2, "Training")
    if not models:
        r.p("Training curves: not available (no <model>_history.csv or <model>_curves.png in graphs/).", "missing")
        return
    summary = []
    for m in models:
        hist = g / f"{m}_history.csv"
        rows = None
        if hist.is_file():
            try:
                rows = plots.read_history(hist)
                r.used.append(hist.name)
            except Exception:  # noqa: BLE001
                rows = None
        if rows:
            va = [x.get("val_acc", float("nan")) for x in rows]
            va_ok = [(v, -i) for i, v in enumerate(va) if not math.isnan(v)]
            best = max(va_ok) if va_ok else None  # the first epoch of the best, as the curves mark it
            best = (best[0], -best[1]) if best else None
            secs = [x.get("seconds", float("nan")) for x in rows]
            sps = [x.get("samples_per_s", float("nan")) for x in rows if not math.isnan(x.get("samples_per_s", float("nan")))]
            summary.append([
                m, str(len(rows)),
                f"{best[0]:.4f} (epoch {rows[best[1]]['epoch']:g})" if best else "n/a",
                f"{rows[-1].get('train_loss', float('nan')):.4f}",
                f"{rows[-1].get('val_loss', float('nan')):.4f}",
                f"{sum(s for s in secs if not math.isnan(s)):.0f}",
                f"{sum(sps) / len(sps):,.0f}" if sps else "n/a",
            ])
        else:
            summary.append([m, "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"])
    r.table(["model", "epochs", "best val accuracy", "last train loss", "last val loss", "seconds", "samples/s"],
            summary, ["l", "r", "r", "r", "r", "r", "r"])
    for m in models:
        r.h(3, m)
        png = g / f"{m}_curves.png"
        hist = g / f"{m}_history.csv"
        if not png.is_file() and hist.is_file():
            try:
                plots.plot_history(hist, png, title=f"{m}: training history")
            except Exception as e:  # noqa: BLE001
                r.not_available(f"{m} training curves", png, f"could not be drawn from {hist.name}: {e}")
                continue
        r.image(png, f"{m} training curves")


def _section_results(r: _Report, g: Path, meta: dict, results: tuple, note: str) -> None:
    r.h(2, "Results")
    alpha = to_float(meta.get("alpha", 0.05))
    alpha = 0.05 if math.isnan(alpha) else alpha
    if meta.get("caption") and meta["caption"] != note:
        r.p(meta["caption"], "caption")
    results = r.artefact("Results table", g / "results.csv", results, empty_ok=False)
    if results:
        r.p(results_explanation(results[0].get("n_common", ""), alpha, results[0].get("n_classes")))
        r.table(RESULTS_HEADERS, results_cells(results), RESULTS_ALIGN)
    sources = meta.get("checkpoints")
    if isinstance(sources, dict) and sources:
        r.p("Checkpoints: " + "; ".join(f"{m} = {f}" for m, f in sources.items()) + ".", "note")
    r.image(g / "model_comparison.png", "Model comparison")

    r.h(3, "Pairwise McNemar tests")
    pw = r.artefact("Pairwise tests", g / "pairwise.csv")
    if pw == []:
        r.p("No pairs to test (fewer than two models).")
    elif pw:
        r.p(pairwise_explanation(alpha))
        r.table(PAIRWISE_HEADERS, pairwise_cells(pw), PAIRWISE_ALIGN)

    r.h(3, "Per-class F1 on the common hands")
    pc = r.artefact("Per-class F1", g / "per_class.csv", empty_ok=False)
    if not pc:
        return
    models = list(dict.fromkeys(x["model"] for x in pc))
    classes = list(dict.fromkeys(x["class"] for x in pc))
    by = {(x["model"], x["class"]): x for x in pc}
    rows = []
    for c in classes:
        sup = next((by[(m, c)].get("support", "") for m in models if (m, c) in by), "")
        rows.append([c, _int(sup)] + [_pct(by[(m, c)]["f1"]) if (m, c) in by else "n/a" for m in models])
    r.table(["class", "support"] + models, rows, ["l", "r"] + ["r"] * len(models))


def _section_calibration(r: _Report, g: Path, meta: dict) -> None:
    """Calibration and the reject option, when the evaluation wrote ``calibration.csv``."""
    path = g / "calibration.csv"
    if not path.is_file():
        return
    r.h(2, "Calibration and the reject option")
    rows = r.artefact("Calibration table", path, empty_ok=False)
    if rows:
        r.p(calibration_explanation(rows[0].get("n", ""), meta.get("split") or "test"))
        r.table(CALIBRATION_HEADERS, calibration_cells(rows), CALIBRATION_ALIGN)
    r.image(g / "reliability.png", "Reliability diagram")
    r.image(g / "coverage.png", "Accuracy against coverage")


def _section_end_to_end(r: _Report, g: Path) -> None:
    """What a user would see (``hand-gestures evaluate --end-to-end``), when ``end_to_end.csv`` exists."""
    path = g / "end_to_end.csv"
    if not path.is_file():
        return
    r.h(2, "End to end: detector, box model and classifier on full frames")
    rows = r.artefact("End-to-end table", path, empty_ok=False)
    if rows:
        split, iou = rows[0].get("split") or "test", to_float(rows[0].get("iou_threshold"))
        r.p(f"Every gesture hand of the {split} split: found by MediaPipe Hands on the full frame, boxed by the box "
            "model, cropped and classified (end to end), beside the same model on the annotated box and landmarks. "
            + END_TO_END_MATCHING.format(iou=0.5 if math.isnan(iou) else iou) + " " + END_TO_END_INTERVALS)
        r.table(END_TO_END_HEADERS, [end_to_end_cells(row) for row in rows], ["l"] + ["r"] * 7)


def _section_confusion(r: _Report, g: Path, models: list[str]) -> None:
    r.h(2, "Confusion matrices")
    if not models:
        r.p("Confusion matrices: not available (no models found).", "missing")
    for m in models:
        r.h(3, m)
        r.image(g / f"{m}_confusion.png", f"{m} confusion matrix")


def _section_confused_pairs(r: _Report, g: Path) -> None:
    r.h(2, "Most-confused pairs")
    rows = r.artefact("Most-confused pairs", g / "confused_pairs.csv")
    if rows is None:
        return
    if not rows:
        r.p("No confusions: every model classified every common hand correctly.")
        return
    models = list(dict.fromkeys(x["model"] for x in rows))
    by = {(x["model"], int(to_float(x["rank"]))): x for x in rows}
    k = max(int(to_float(x["rank"])) for x in rows)
    table = []
    for rank in range(1, k + 1):
        cells = [str(rank)]
        for m in models:
            x = by.get((m, rank))
            cells.append(f"{x['true']} → {x['pred']}: {_int(x['count'])} ({_pct(x['rate'])})" if x else "")
        table.append(cells)
    r.p("Largest off-diagonal cells on the common hands: true → predicted, count (% of the true class).")
    r.table(["#"] + models, table, ["r"] + ["l"] * len(models))


def _section_orientation(r: _Report, g: Path) -> None:
    r.h(2, "Orientation pairs")
    r.p("Classes that differ only by orientation or a small detail ("
        + ", ".join(f"{a} / {b}" for a, b in ORIENTATION_PAIRS) + "): how often a hand of one is "
        "given to the other. Cross-error = (a→b + b→a) / (hands of a + hands of b).")
    rows = r.artefact("Orientation-pair table", g / "orientation_pairs.csv")
    if rows == []:
        r.p("No orientation pair is in the class set.")
    elif rows:
        models = list(dict.fromkeys(x["model"] for x in rows))
        pairs = list(dict.fromkeys((x["a"], x["b"]) for x in rows))
        by = {(x["model"], x["a"], x["b"]): x for x in rows}
        table = []
        for a, b in pairs:
            cells = [f"{a} / {b}"]
            for m in models:
                x = by.get((m, a, b))
                cells.append(
                    f"{_pct(x['cross_error_rate'])} ({_int(x['a_as_b'])} + {_int(x['b_as_a'])})" if x else "n/a")
            table.append(cells)
        r.table(["pair"] + [f"{m}: cross-error (a→b + b→a)" for m in models], table,
                ["l"] + ["r"] * len(models))
    r.image(g / "orientation_pairs.png", "Orientation-pair confusion")


ERRORS_INTRO = ("For each model's {pairs} most-confused pairs on the common hands (true → predicted), up to {per} "
                "misclassified test crops, the most confident first (p: the probability the model gave the wrong "
                "class, before its temperature), with the 21 landmarks drawn as the hand skeleton (the landmark "
                "models read those points, the image models the crop). Each row: true → predicted (crops shown "
                "of the pair's hands).")


def _section_errors(r: _Report, g: Path, meta: dict, runs: dict) -> None:
    """Errors worth looking at: ``<model>_errors.png`` drawn from predictions.csv, confused_pairs.csv and the
    crops folders' manifests (each folder read once); skipped, saying why, when an input is missing."""
    r.h(2, "Errors worth looking at")
    confused, _ = _load(g / "confused_pairs.csv", read_csv_rows)
    preds = r.artefact("Misclassified crops", g / PREDICTIONS_NAME, empty_ok=False)
    if preds is None or confused is None:
        r.p("(predictions.csv is written by `hand-gestures evaluate`; re-run it to get the thumbnails.)", "note")
        return
    r.p(ERRORS_INTRO.format(pairs=TOP_PAIRS, per=PER_PAIR))
    models = list(dict.fromkeys(x["model"] for x in confused))
    rows = {m: error_rows(m, confused, preds) for m in models}
    folders = crops_folders(meta, runs)
    entries = _error_crops(rows, folders)
    for m in models:
        r.h(3, m)
        if isinstance(entries.get(m), str):
            r.p(f"{m}: thumbnails not available ({entries[m]}); its pairs: "
                + "; ".join(row.caption for row in rows[m]) + ".", "missing")
            continue
        png = draw_error_grid(rows[m], entries[m], g / f"{m}_errors.png", title=f"{m}: misclassified test crops")
        r.image(png, f"{m}: " + "; ".join(row.caption for row in rows[m]))
    if not models:
        r.p("No confusions: every model classified every common hand correctly.")


def _error_crops(rows: dict, folders: dict) -> dict:
    """model -> {key: manifest entry} of the crops its rows show, or a string saying why there are none.
    A folder's manifest is streamed once for every model scored on it."""
    wanted: dict = {}
    for m, model_rows in rows.items():
        folder = folders.get(m)
        if folder is not None:
            wanted.setdefault(folder, set()).update(k for row in model_rows for k in row.keys)
    found, why = {}, {}
    for folder, keys in wanted.items():
        if not (folder / "manifest.jsonl").is_file():
            why[folder] = f"no crops folder at {folder}"
            continue
        try:
            found[folder] = crop_entries(folder, keys)
        except Exception as e:  # noqa: BLE001 - a broken manifest must not stop the report
            why[folder] = f"{folder / 'manifest.jsonl'} could not be read: {e}"
    return {m: ("the evaluation records no crops folder for it" if folders.get(m) is None
                else why.get(folders[m]) or found[folders[m]]) for m in rows}


def _section_speed(r: _Report, g: Path, results: list | None, split: str) -> None:
    """ms per hand per model (results.csv), and frames/s end to end where an artefact holds them."""
    if not results:
        return
    r.h(2, "Speed")
    r.p(speed_explanation(split))
    r.table(SPEED_HEADERS, speed_cells(results), SPEED_ALIGN)
    e2e, _ = _load(g / "end_to_end.csv", read_csv_rows)
    cols = fps_columns(e2e or [])
    if cols:
        r.table(["model"] + cols, [[x.get("model", "")] + [x.get(c, "") for c in cols] for x in e2e],
                ["l"] + ["r"] * len(cols))
    else:
        r.p(f"Frames/s end to end (decode, detect, box, classify) and one-hand latency are not in these "
            f"artefacts; `{SPEED_COMMAND}` measures them (figures and the machine they were measured on: "
            "benchmarks/README.md).", "note")


# =========================================================================== rendering

_CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
     max-width:1200px;margin:2em auto;padding:0 1.2em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #333;padding-bottom:.2em}
h2{border-bottom:1px solid #ccc;padding-bottom:.15em;margin-top:2em}
h3{margin-top:1.4em}
table{border-collapse:collapse;margin:.8em 0;font-size:.88em}
th,td{border:1px solid #d0d0d0;padding:.3em .6em;vertical-align:top}
th{background:#f0f3f6}
tr:nth-child(even) td{background:#fafafa}
td.r,th.r{text-align:right;font-variant-numeric:tabular-nums}
td.c,th.c{text-align:center}
figure{margin:1em 0}
img{max-width:100%;height:auto;border:1px solid #e4e4e4}
figcaption{font-size:.85em;color:#555}
.note{color:#555;font-size:.9em}
.caption{font-style:italic}
.missing{color:#8a5a00;background:#fff8e6;border-left:4px solid #e0a800;padding:.3em .6em}
.warning{background:#fdecea;border-left:4px solid #d93025;padding:.5em .8em}
.banner{background:#fff3cd;border:2px solid #e0a800;padding:.8em 1em;font-weight:600;margin:1em 0}
.meta{color:#666;font-size:.85em}
.table-wrap{overflow-x:auto}
@page{size:A4;margin:14mm 12mm 16mm 12mm}
@media print{
  body{max-width:none;margin:0;padding:0;font-size:10pt}
  table.wide{font-size:6.5pt}
  table.wide th,table.wide td{padding:.1em .2em}
  img{max-height:100mm;width:auto}
  h2{page-break-before:always;break-before:page}
  h2:first-of-type{page-break-before:avoid;break-before:avoid}
  h2,h3{page-break-after:avoid;break-after:avoid}
  .table-wrap{overflow:visible}
  table{width:100%;table-layout:auto;font-size:8pt;page-break-inside:auto}
  tr,figure,img{page-break-inside:avoid;break-inside:avoid}
  th,td{padding:.15em .3em;word-break:break-word}
  img{max-width:100%!important;height:auto;border:none}
  .banner,.warning,.missing{border-width:1px}
}
"""


def _render_html(title: str, r: _Report, banner: str | None, meta_line: str) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{e(title)}</title><style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1>",
           f'<p class="meta">{e(meta_line)}</p>']
    if banner:
        out.append(f'<div class="banner">{e(banner)}</div>')
    for b in r.blocks:
        if isinstance(b, _Heading):
            out.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, _Para):
            cls = f' class="{b.kind}"' if b.kind else ""
            out.append(f"<p{cls}>{e(b.text)}</p>")
        elif isinstance(b, _Table):
            al = b.align or ["l"] * len(b.headers)
            cl = [f' class="{a}"' if a in ("r", "c") else "" for a in al]
            head = "".join(f"<th{c}>{e(str(h))}</th>" for h, c in zip(b.headers, cl))
            wide = ' class="wide"' if len(b.headers) > WIDE_TABLE_COLUMNS else ""
            out.append(f'<div class="table-wrap"><table{wide}><thead><tr>' + head
                       + "</tr></thead><tbody>")
            for row in b.rows:
                out.append("<tr>" + "".join(f"<td{c}>{e(str(v))}</td>" for v, c in zip(row, cl)) + "</tr>")
            out.append("</tbody></table></div>")
        elif isinstance(b, _Image):
            data = base64.b64encode(b.path.read_bytes()).decode("ascii")
            out.append(f'<figure><img src="data:image/png;base64,{data}" alt="{e(b.alt)}">'
                       f"<figcaption>{e(b.alt)} ({e(b.path.name)})</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _render_md(title: str, r: _Report, banner: str | None, meta_line: str, out_dir: Path) -> str:
    out = [f"# {title}", "", f"_{meta_line}_", ""]
    if banner:
        out += [f"> **{banner}**", ""]
    for b in r.blocks:
        if isinstance(b, _Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, _Para):
            text = b.text
            if b.kind == "warning":
                text = f"> **Warning:** {text}"
            elif b.kind == "missing":
                text = f"> {text}"
            elif b.kind in ("caption",):
                text = f"*{text}*"
            out += [text, ""]
        elif isinstance(b, _Table):
            out += [markdown_table(b.headers, b.rows, b.align), ""]
        elif isinstance(b, _Image):
            rel = Path(os.path.relpath(b.path.resolve(), out_dir.resolve())).as_posix()
            out += [f"![{b.alt}]({rel})", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def build_report(
    graphs_dir: str | os.PathLike = "graphs",
    out_dir: str | os.PathLike = "reports",
    title: str = DEFAULT_TITLE,
    dataset_note: str | None = None,
    models: Sequence[str] | None = None,
) -> tuple[Path, Path]:
    """Build ``<out_dir>/report.html`` (self-contained) and ``<out_dir>/report.md``
    from the artefacts in ``graphs_dir`` (see the module docstring); returns both
    paths. ``dataset_note`` says where the numbers come from (default: the caption
    in ``evaluation.json``); a note or data set name that says "synthetic" puts a
    warning at the top. ``models`` overrides the models found in ``graphs_dir``.
    Raises :class:`DataError` when ``graphs_dir`` is not a folder: a report of nothing is a mistake."""
    g, od = Path(graphs_dir), Path(out_dir)
    if not g.is_dir():
        raise DataError(g, "not a folder, so there is nothing to report (--graphs-dir: point it at the folder "
                           "`hand-gestures evaluate` wrote, or run that first)")
    od.mkdir(parents=True, exist_ok=True)
    r = _Report()

    mpath = g / "evaluation.json"
    meta, _ = _load(mpath, _read_json)
    if isinstance(meta, dict):
        r.used.append(mpath.name)
    else:
        meta = {}
    results = _load(g / "results.csv", read_csv_rows)  # (rows or None, why): shown in section 3
    model_list = list(models) if models is not None else _discover_models(g, results[0])

    note = dataset_note if dataset_note is not None else (meta.get("caption") or "")
    if note:
        r.p(note, "caption")
    ds, _ = _load(g / "data_summary.json", _read_data_summary)
    runs = read_runs(meta, g)
    split = str(meta.get("split") or "test")
    alpha = to_float(meta.get("alpha", 0.05))
    _section_hypotheses(r, g, run_kinds(runs), 0.05 if math.isnan(alpha) else alpha)
    _section_seed(r, g, results[0], ds, runs, read_crop_info(runs)[0], split)
    _section_methods(r, g, runs, read_crop_info(runs), ds, results[0], split)
    ds = _section_data(r, g)
    _section_training(r, g, model_list)
    _section_results(r, g, meta, results, note)
    _section_confusion(r, g, model_list)
    _section_confused_pairs(r, g)
    _section_errors(r, g, meta, runs)
    _section_orientation(r, g)
    _section_calibration(r, g, meta)
    _section_end_to_end(r, g)
    _section_speed(r, g, results[0], split)

    r.h(2, "Artefacts")
    _number_sections(r)
    r.p("Used: " + (", ".join(dict.fromkeys(r.used)) or "none") + ".")
    r.p("Not available: " + (", ".join(dict.fromkeys(r.missing)) or "none") + ".")

    banner = None
    if _is_synthetic(note, meta.get("caption"), (ds or {}).get("dataset")):
        banner = ("These numbers come from a SYNTHETIC demonstration set, not from HaGRID: they show that the "
                  "pipeline runs end to end and say nothing about how well the models recognise real gestures.")
    meta_line = (f"Generated {_dt.datetime.now().isoformat(timespec='seconds')} by engine.reporting.html.build_report "
                 f"from the artefacts in {g.as_posix()}/; regenerate it rather than editing it.")
    html_path = atomic_write_text(od / "report.html", _render_html(title, r, banner, meta_line))
    md_path = atomic_write_text(od / "report.md", _render_md(title, r, banner, meta_line, od))
    return html_path, md_path
