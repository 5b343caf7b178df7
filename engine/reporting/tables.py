"""The results table: ``graphs/results.csv``, ``graphs/results.md``, ``graphs/pairwise.csv``,
``graphs/calibration.csv`` and the README block between ``<!-- results:start -->`` and
``<!-- results:end -->`` (the results and McNemar tables; ``results.md`` adds the calibration table); also the
helpers every reader of these tables shares (:data:`MODEL_ORDER`, :func:`to_float`), so the
figures and the report format them alike.

The CSV files hold fractions (0-1); the Markdown shows percentages with their 95%
bootstrap interval, e.g. ``98.1 [97.0, 99.0]``.
"""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from common.errors import UsageError
from common.files import atomic_write_text
from engine.metrics import (
    CALIBRATION_FIELDS,
    ECE_BINS,
    PAIR_FIELDS,
    REPORT_ACCURACY,
    REPORT_COVERAGES,
    ROW_FIELDS,
    Comparison,
    orientation_pair_classes,
)

__all__ = [
    "README_START",
    "README_END",
    "format_ci",
    "format_p",
    "results_markdown",
    "readme_markdown",
    "results_cells",
    "pairwise_cells",
    "calibration_cells",
    "calibration_explanation",
    "calibration_markdown",
    "markdown_table",
    "write_results",
    "update_readme",
    "check_readme",
    "ReadmeMarkersError",
    "read_csv_rows",
    "csv_text",
    "MODEL_ORDER",
    "order_models",
    "to_float",
]

README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"

#: Models listed in this order first, the others after them alphabetically.
MODEL_ORDER = ("mlp", "cnn", "gcn", "resnet34", "fusion")


def order_models(names: Iterable[str]) -> list[str]:
    """``names`` without repeats: those in :data:`MODEL_ORDER` first, in that order, then the rest sorted."""
    names = list(dict.fromkeys(names))
    return [m for m in MODEL_ORDER if m in names] + sorted(m for m in names if m not in MODEL_ORDER)


def to_float(x) -> float:
    """``float(x)``, NaN for what is not a number (``None``, ``""`` from a CSV cell, text)."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def format_ci(value, low, high, percent: bool = True, digits: int = 1) -> str:
    """``98.1 [97.0, 99.0]`` (``percent`` multiplies by 100); ``n/a`` for a missing value."""
    v, lo, hi = to_float(value), to_float(low), to_float(high)
    if math.isnan(v):
        return "n/a"
    k = 100.0 if percent else 1.0
    if math.isnan(lo) or math.isnan(hi):
        return f"{v * k:.{digits}f}"
    return f"{v * k:.{digits}f} [{lo * k:.{digits}f}, {hi * k:.{digits}f}]"


END_TO_END_HEADERS = ("model", "hands", "detection recall", "end-to-end accuracy", "annotated-box accuracy",
                      "McNemar p (b / c)", "end-to-end on detected hands", "no landmarks (annotated / detected)")
END_TO_END_MATCHING = ("Matching: greedy one-to-one by IoU between each detection's box (box model around its "
                       "landmarks) and the annotated boxes of the frame (no_gesture boxes included), highest IoU "
                       "first, IoU >= {iou:g}; a gesture hand left unmatched is an end-to-end error.")
END_TO_END_INTERVALS = ("Accuracies in %, with 95% Wilson score intervals. McNemar pairs the two paths on the same "
                        "hands: b = right with the annotated box only, c = right end to end only.")


def end_to_end_cells(row: Mapping) -> list[str]:
    """One row of the end-to-end table (engine.end_to_end) from a result row or its line of end_to_end.csv."""
    def ci(key: str) -> str:
        return format_ci(row[key], row[key + "_ci_low"], row[key + "_ci_high"])

    return [str(row["model"]), str(row["n_hands"]), ci("detection_recall"), ci("e2e_accuracy"),
            ci("annotated_accuracy"), f"{format_p(row['mcnemar_p'])} ({row['mcnemar_b']} / {row['mcnemar_c']})",
            ci("e2e_accuracy_detected"), f"{row['annotated_no_landmarks']} / {row['detected_no_landmarks']}"]


def format_p(p) -> str:
    p = to_float(p)
    if math.isnan(p):
        return "n/a"
    if p < 1e-4:
        return "<1e-4"
    return f"{p:.4f}"


def _format_params(n) -> str:
    n = to_float(n)
    if math.isnan(n) or n <= 0:
        return "n/a"
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    if n >= 1e3:
        return f"{n / 1e3:.1f} k"
    return f"{int(n)}"


def _format_ms(x) -> str:
    x = to_float(x)
    return "n/a" if math.isnan(x) else f"{x:.3g}"


def _md_escape(s: object) -> str:
    return str(s).replace("|", "\\|")


def _truthy(x) -> bool:
    return str(x).strip().lower() in ("1", "true", "yes")


RESULTS_HEADERS = ("model", "n common", "accuracy", "macro F1", "precision", "recall", "n all",
                   "accuracy (all)", "macro F1 (all)", "params", "ms / hand", "device")
RESULTS_ALIGN = ("l", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "l")
PAIRWISE_HEADERS = ("A", "B", "n", "acc A", "acc B", "b", "c", "test", "p", "p (Holm)", "significant")
PAIRWISE_ALIGN = ("l", "l", "r", "r", "r", "r", "r", "l", "r", "r", "c")
CALIBRATION_HEADERS = ("model", "T", "ECE before", "ECE after",
                       *(f"accuracy at {c:.0%} coverage" for c in REPORT_COVERAGES),
                       f"coverage at {REPORT_ACCURACY:.0%} accuracy")
CALIBRATION_ALIGN = ("l", "r", "r", "r", "r", "r", "r")


def results_cells(rows: Sequence[Mapping]) -> list[list[str]]:
    """The formatted cells of the results table (:data:`RESULTS_HEADERS`), one list per model.
    ``rows`` are :attr:`Comparison.rows` or rows read back from ``results.csv``."""
    return [[
        str(r.get("model", "")),
        str(r.get("n_common", "")),
        format_ci(r.get("acc"), r.get("acc_low"), r.get("acc_high")),
        format_ci(r.get("macro_f1"), r.get("f1_low"), r.get("f1_high")),
        format_ci(r.get("precision"), None, None),
        format_ci(r.get("recall"), None, None),
        str(r.get("n_all", "")),
        format_ci(r.get("acc_all"), r.get("acc_all_low"), r.get("acc_all_high")),
        format_ci(r.get("f1_all"), r.get("f1_all_low"), r.get("f1_all_high")),
        _format_params(r.get("n_params")),
        _format_ms(r.get("ms_per_sample")),
        str(r.get("device", "") or "n/a"),
    ] for r in rows]


def pairwise_cells(pairwise: Sequence[Mapping]) -> list[list[str]]:
    """The formatted cells of the McNemar table (:data:`PAIRWISE_HEADERS`)."""
    return [[
        str(p.get("model_a", "")), str(p.get("model_b", "")), str(p.get("n", "")),
        format_ci(p.get("acc_a"), None, None), format_ci(p.get("acc_b"), None, None),
        str(p.get("b", "")), str(p.get("c", "")), str(p.get("method", "")),
        format_p(p.get("p_value")), format_p(p.get("p_holm")),
        "yes" if _truthy(p.get("significant")) else "no",
    ] for p in pairwise]


def calibration_cells(rows: Sequence[Mapping]) -> list[list[str]]:
    """The formatted cells of the calibration table (:data:`CALIBRATION_HEADERS`), one list per model.
    ``rows`` are :func:`engine.metrics.compare_calibration` rows or rows read back from ``calibration.csv``."""
    out = []
    for r in rows:
        t = to_float(r.get("temperature"))
        calibrated = _truthy(r.get("calibrated")) and not math.isnan(t)
        cov99 = format_ci(r.get("cov_at_acc99"), None, None)
        out.append([
            str(r.get("model", "")), f"{t:.3g}" if calibrated else "not calibrated",
            format_ci(r.get("ece_before"), None, None, digits=2), format_ci(r.get("ece_after"), None, None, digits=2),
            format_ci(r.get("acc_at_cov90"), None, None), format_ci(r.get("acc_at_cov80"), None, None),
            "not reached" if cov99 == "n/a" else cov99,
        ])
    return out


def calibration_explanation(n, split: str = "test") -> str:
    return (
        f"Calibration and the reject option on the {n} common {split} hands, in %. ECE = expected calibration "
        f"error ({ECE_BINS} equal-width confidence bins): with the model's own probabilities (before) and with its "
        "logits divided by the temperature T fitted on the validation split when training ended (after; \"not "
        "calibrated\": the checkpoint has no T, so 1 is used). Accuracy at a coverage = accuracy on the most "
        "confident share of hands, the others rejected as unknown (calibrated probabilities; n/a: the most "
        "confident hands tie on a larger share); coverage at an accuracy = the largest share a confidence "
        "threshold keeps at that accuracy."
    )


def calibration_markdown(rows: Sequence[Mapping], split: str = "test") -> str:
    """The Markdown calibration block (explanation and table); ``""`` without rows."""
    if not rows:
        return ""
    return "\n".join([calibration_explanation(rows[0].get("n", ""), split), "",
                      markdown_table(CALIBRATION_HEADERS, calibration_cells(rows), CALIBRATION_ALIGN), ""])


def results_explanation(n_common, alpha: float = 0.05, n_classes=None) -> str:
    """The results table's caption; ``n_classes``: the classes present among the common hands, when known."""
    conf = int(round((1 - alpha) * 100))
    k = f"{n_classes} " if n_classes not in (None, "") else ""
    return (
        f"Accuracy and macro F1 in %, with {conf}% percentile-bootstrap intervals. "
        f"\"Common\" = the {n_common} test hands every model can score (landmark models need landmarks); "
        "\"all\" = every test hand the model can score. Macro F1, precision and recall are the means over "
        f"the {k}classes present in those hands (a class with no hand there is left out, not counted as 0)."
    )


def pairwise_explanation(alpha: float = 0.05) -> str:
    return (
        "McNemar tests on the common hands (b = A right and B wrong, c = A wrong and B right; "
        "exact binomial when b + c < 25, else chi-square with continuity correction; "
        f"p Holm-adjusted over all pairs, significant at {alpha:g})."
    )


def markdown_table(headers: Sequence[str], cells: Sequence[Sequence[str]], align: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table (``align``: ``l``, ``r`` or ``c`` per column)."""
    align = align or ["l"] * len(headers)
    rule = {"l": "---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(_md_escape(h) for h in headers) + " |",
             "|" + "|".join(rule[a] for a in align) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in cells]
    return "\n".join(lines)


def results_markdown(
    rows: Sequence[Mapping],
    pairwise: Sequence[Mapping] = (),
    caption: str | None = None,
    alpha: float = 0.05,
) -> str:
    """The Markdown results block: the caption, the table of models (common subset
    and all-hands numbers with intervals) and the pairwise McNemar table. ``rows``
    and ``pairwise`` are :attr:`Comparison.rows`/``pairwise`` or rows read back
    from the CSV files (strings are fine)."""
    out: list[str] = []
    if caption:
        out += [f"*{caption.strip()}*", ""]
    if not rows:
        return "\n".join(out + ["No results available.", ""])
    out += [results_explanation(rows[0].get("n_common", ""), alpha, rows[0].get("n_classes")), ""]
    out += [markdown_table(RESULTS_HEADERS, results_cells(rows), RESULTS_ALIGN), ""]
    if pairwise:
        out += [pairwise_explanation(alpha), ""]
        out += [markdown_table(PAIRWISE_HEADERS, pairwise_cells(pairwise), PAIRWISE_ALIGN), ""]
    return "\n".join(out)


def readme_markdown(comparison: Comparison, caption: str | None = None) -> str:
    """The README block: :func:`results_markdown` of the comparison (results and McNemar tables)."""
    return results_markdown(comparison.rows, comparison.pairwise, caption, comparison.alpha)


def orientation_pairwise_markdown(comparison: Comparison) -> str:
    """The McNemar table again, on the common hands of the orientation pairs only (where handedness matters)."""
    rows = comparison.orientation_pairwise
    classes = ", ".join(orientation_pair_classes(comparison.class_names))
    head = (f"**Orientation pairs only** ({rows[0]['n']} of the common hands, true class one of {classes}): "
            + pairwise_explanation(comparison.alpha))
    return head + "\n\n" + markdown_table(PAIRWISE_HEADERS, pairwise_cells(rows), PAIRWISE_ALIGN)


def csv_text(rows: Iterable[Mapping], fields: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_value(r.get(k, "")) for k in fields})
    return buf.getvalue()


def _csv_value(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(float(v))
    return v


def read_csv_rows(path: str | os.PathLike) -> list[dict]:
    """The rows of a CSV file as dicts of strings."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_results(
    comparison: Comparison, graphs_dir: str | os.PathLike = "graphs", caption: str | None = None
) -> dict[str, Path]:
    """Write ``results.csv`` (one row per model, :data:`~engine.metrics.ROW_FIELDS`),
    ``pairwise.csv`` (:data:`~engine.metrics.PAIR_FIELDS`), ``calibration.csv``
    (:data:`~engine.metrics.CALIBRATION_FIELDS`, when the comparison has calibration rows) and
    ``results.md``: the README block (:func:`readme_markdown`, starting with ``caption``, e.g.
    which dataset the numbers come from) followed by :func:`calibration_markdown`. Returns the
    paths by name."""
    g = Path(graphs_dir)
    calibration = (comparison.extra.get("calibration") or {}).get("rows") or []
    md = readme_markdown(comparison, caption)
    if comparison.orientation_pairwise:
        md = md.rstrip("\n") + "\n\n" + orientation_pairwise_markdown(comparison) + "\n"
    if calibration:
        md = md.rstrip("\n") + "\n\n" + calibration_markdown(calibration, comparison.extra.get("split", "test"))
    out = {
        "results_csv": atomic_write_text(g / "results.csv", csv_text(comparison.rows, ROW_FIELDS)),
        "pairwise_csv": atomic_write_text(g / "pairwise.csv", csv_text(comparison.pairwise, PAIR_FIELDS)),
    }
    out["orientation_pairwise_csv"] = atomic_write_text(
        g / "orientation_pairwise.csv", csv_text(comparison.orientation_pairwise, PAIR_FIELDS))
    if calibration:
        out["calibration_csv"] = atomic_write_text(g / "calibration.csv", csv_text(calibration, CALIBRATION_FIELDS))
    else:  # a calibration table of an earlier evaluation must not pass for this one's
        (g / "calibration.csv").unlink(missing_ok=True)
    out["results_md"] = atomic_write_text(g / "results.md", md)
    return out


class ReadmeMarkersError(UsageError, ValueError):
    """A README that cannot take the results block: missing, or its markers absent, repeated or out of order.
    A :class:`UsageError` for the command line (one line, exit 2), a ``ValueError`` for callers of the API."""


def check_readme(readme_path: str | os.PathLike) -> tuple[str, int, int]:
    """The README's text and the span between its results markers; :class:`ReadmeMarkersError` naming the
    file and the marker lines to add when it cannot be updated. Called before any work that would be lost."""
    path = Path(readme_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ReadmeMarkersError(f"{path}: cannot read the README to update ({e})") from None
    ns, ne = text.count(README_START), text.count(README_END)
    if ns != 1 or ne != 1:
        raise ReadmeMarkersError(
            f"{path}: expected exactly one '{README_START}' and one '{README_END}' marker "
            f"(found {ns} and {ne}); add them on their own lines where the results table should go"
        )
    start = text.index(README_START) + len(README_START)
    end = text.index(README_END)
    if end < start:
        raise ReadmeMarkersError(f"{path}: '{README_END}' comes before '{README_START}'; swap them")
    return text, start, end


def update_readme(readme_path: str | os.PathLike, markdown: str) -> Path:
    """Replace the text between ``<!-- results:start -->`` and ``<!-- results:end -->``
    in ``readme_path`` with ``markdown`` (the markers stay). Raises :class:`ReadmeMarkersError`
    (see :func:`check_readme`) when it cannot; writes atomically."""
    text, start, end = check_readme(readme_path)
    new = text[:start] + "\n" + markdown.strip("\n") + "\n" + text[end:]
    return atomic_write_text(Path(readme_path), new)
