"""Model-agnostic evaluation: metrics, bootstrap intervals, McNemar tests and the
honest comparison of several models.

Everything here works from predictions (:class:`ModelPredictions`), never from
checkpoints, so it can be tested on hand-made arrays.

The comparison (:func:`compare_models`) scores every model on the *common*
subset of hands (the intersection of the ``index`` arrays: a landmark model
cannot score a hand without landmarks, so an image model scored on all hands is
not comparable with it), and separately each model on every hand it can score.

Calibration (the second half): temperature scaling, the expected calibration error,
reliability bins and the accuracy-vs-coverage curve of the reject option, on
probability arrays; :mod:`engine.calibration` applies them to checkpoints.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy import optimize, special, stats
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from data_loaders.classes import ORIENTATION_PAIRS

__all__ = [
    "ModelPredictions",
    "Comparison",
    "classification_metrics",
    "bootstrap_ci",
    "mcnemar_test",
    "holm_adjust",
    "compare_models",
    "most_confused_pairs",
    "orientation_pair_confusion",
    "row_normalize",
    "log_probs",
    "nll",
    "fit_temperature",
    "apply_temperature",
    "expected_calibration_error",
    "reliability_bins",
    "coverage_curve",
    "accuracy_at_coverage",
    "coverage_at_accuracy",
    "calibration_summary",
    "compare_calibration",
    "CALIBRATION_FIELDS",
]

#: McNemar uses the exact binomial test below this many discordant pairs.
MCNEMAR_EXACT_BELOW = 25


@dataclass
class ModelPredictions:
    """One model's predictions on a set of hands.

    ``index`` holds the HandTable row ids of the hands scored (unique), aligned
    with ``y_true``, ``y_pred`` and, if given, ``probs`` (``(n, C)``)."""

    name: str
    index: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    probs: np.ndarray | None = None
    n_params: int = 0
    ms_per_sample: float = float("nan")
    device: str = ""

    def __post_init__(self) -> None:
        self.index = np.asarray(self.index, dtype=np.int64).reshape(-1)
        self.y_true = np.asarray(self.y_true, dtype=np.int64).reshape(-1)
        self.y_pred = np.asarray(self.y_pred, dtype=np.int64).reshape(-1)
        n = len(self.index)
        if len(self.y_true) != n or len(self.y_pred) != n:
            raise ValueError(
                f"{self.name}: index, y_true and y_pred differ in length "
                f"({n}, {len(self.y_true)}, {len(self.y_pred)})"
            )
        if self.probs is not None:
            self.probs = np.asarray(self.probs)
            if self.probs.ndim != 2 or self.probs.shape[0] != n:
                raise ValueError(f"{self.name}: probs has shape {self.probs.shape}, expected ({n}, C)")
        if n and len(np.unique(self.index)) != n:
            raise ValueError(f"{self.name}: index has duplicate hand ids")

    def __len__(self) -> int:
        return len(self.index)

    def subset(self, index: np.ndarray) -> "ModelPredictions":
        """The predictions for the hands in ``index`` (each must be present), in that order."""
        index = np.asarray(index, dtype=np.int64)
        order = np.argsort(self.index, kind="stable")
        pos = np.searchsorted(self.index, index, sorter=order)
        pos = np.clip(pos, 0, max(len(order) - 1, 0))
        rows = order[pos] if len(order) else pos
        if len(index) and (not len(order) or not np.array_equal(self.index[rows], index)):
            raise KeyError(f"{self.name}: some requested hands were not scored by this model")
        return ModelPredictions(
            name=self.name,
            index=index,
            y_true=self.y_true[rows],
            y_pred=self.y_pred[rows],
            probs=None if self.probs is None else self.probs[rows],
            n_params=self.n_params,
            ms_per_sample=self.ms_per_sample,
            device=self.device,
        )


# --------------------------------------------------------------------------- metrics


def _check_labels(y: np.ndarray, num_classes: int, what: str) -> None:
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{what} has labels outside [0, {num_classes}): min {y.min()}, max {y.max()}")


def row_normalize(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows that sum to 0 stay 0)."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)


def classification_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    num_classes: int,
    class_names: Sequence[str] | None = None,
) -> dict:
    """Accuracy, macro F1/precision/recall, per-class report keyed by class name and the confusion
    matrix (rows = true, columns = predicted) as counts and row-normalised.

    The macro averages run over the classes *present* in ``y_true`` (support > 0; their number is
    ``n_classes``), not over all ``num_classes``: a class with no hand in the evaluated set has no
    recall to measure, and counting it as 0 would report e.g. 62.0 instead of 85.8 on a set holding
    13 of 18 classes. A present class never predicted scores 0 (``zero_division=0``); predictions of an
    absent class still count, as errors of the true classes. The per-class report keeps every class."""
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred differ in length ({len(y_true)} vs {len(y_pred)})")
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    _check_labels(y_true, num_classes, "y_true")
    _check_labels(y_pred, num_classes, "y_pred")
    labels = list(range(num_classes))
    n = len(y_true)
    if n == 0:
        nan = float("nan")
        cm = np.zeros((num_classes, num_classes), dtype=np.int64)
        per_class = {c: {"precision": nan, "recall": nan, "f1": nan, "support": 0} for c in names}
        return {
            "n": 0, "n_classes": 0, "accuracy": nan, "macro_f1": nan, "macro_precision": nan, "macro_recall": nan,
            "per_class": per_class, "confusion": cm, "confusion_normalized": row_normalize(cm),
            "class_names": names,
        }
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    cm = confusion_matrix(y_true, y_pred, labels=labels).astype(np.int64)
    per_class = {
        c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, c in enumerate(names)
    }
    present = s > 0
    return {
        "n": n,
        "n_classes": int(present.sum()),
        "accuracy": float(np.mean(y_true == y_pred)),
        "macro_f1": float(np.mean(f[present])),
        "macro_precision": float(np.mean(p[present])),
        "macro_recall": float(np.mean(r[present])),
        "per_class": per_class,
        "confusion": cm,
        "confusion_normalized": row_normalize(cm),
        "class_names": names,
    }


def _macro_f1_from_counts(cms: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Macro F1 of a stack of confusion matrices ``(..., C, C)`` over the classes ``present`` (a ``(C,)``
    mask), each F1 as scikit-learn computes it with ``zero_division=0``."""
    tp = np.diagonal(cms, axis1=-2, axis2=-1).astype(np.float64)
    denom = cms.sum(axis=-1) + cms.sum(axis=-2)  # true + predicted = 2tp + fp + fn
    f1 = np.divide(2.0 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return f1[..., present].mean(axis=-1)


_NAMED_METRICS = ("accuracy", "macro_f1")


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    metric: str | Callable[[np.ndarray, np.ndarray], float] = "accuracy",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    num_classes: int | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval (``1 - alpha``) of a metric, resampling hands
    with replacement.

    ``metric`` is ``"accuracy"``, ``"macro_f1"`` or a callable ``(y_true, y_pred) -> float``.
    ``"macro_f1"`` averages over a fixed set of classes in every resample, those present in the full
    ``y_true`` (as :func:`classification_metrics` does), so every resample scores the same classes
    (one that a resample happens to miss scores 0 there).
    The named metrics depend only on the confusion counts, and resampling ``n``
    hands with replacement gives counts that are exactly multinomial(``n``, cell
    frequencies) — binomial for accuracy — so the resamples are drawn as counts:
    1000 resamples of 100k hands take milliseconds, with the same distribution as
    resampling indices. A callable is resampled by indices, in chunks.
    """
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred differ in length ({len(y_true)} vs {len(y_pred)})")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    n = len(y_true)
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    if metric == "accuracy":
        k = int(np.sum(y_true == y_pred))
        values = rng.binomial(n, k / n, size=n_boot) / n
    elif metric == "macro_f1":
        if num_classes is None:
            num_classes = int(max(y_true.max(), y_pred.max())) + 1
        _check_labels(y_true, num_classes, "y_true")
        _check_labels(y_pred, num_classes, "y_pred")
        cells = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
        draws = rng.multinomial(n, cells / n, size=n_boot)
        present = np.bincount(y_true, minlength=num_classes) > 0
        values = _macro_f1_from_counts(draws.reshape(n_boot, num_classes, num_classes), present)
    elif callable(metric):
        values = np.empty(n_boot, dtype=np.float64)
        for b in range(n_boot):
            idx = rng.integers(0, n, size=n)
            values[b] = metric(y_true[idx], y_pred[idx])
    else:
        raise ValueError(f"unknown metric {metric!r}; use one of {_NAMED_METRICS} or a callable")
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def mcnemar_test(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's test on paired correctness vectors of two models.

    ``b`` = hands A got right and B wrong, ``c`` = the reverse. With ``b + c < 25``
    the exact two-sided binomial test (``statistic`` = min(b, c)); otherwise the
    chi-square test with continuity correction, ``(|b - c| - 1)^2 / (b + c)``, 1 dof.
    """
    a = np.asarray(correct_a, dtype=bool).reshape(-1)
    b_ = np.asarray(correct_b, dtype=bool).reshape(-1)
    if len(a) != len(b_):
        raise ValueError(f"paired vectors differ in length ({len(a)} vs {len(b_)})")
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    n_disc = b + c
    if n_disc == 0:
        return {"b": 0, "c": 0, "statistic": 0.0, "p_value": 1.0, "method": "exact", "n": len(a)}
    if n_disc < MCNEMAR_EXACT_BELOW:
        p = stats.binomtest(b, n_disc, 0.5, alternative="two-sided").pvalue
        return {"b": b, "c": c, "statistic": float(min(b, c)), "p_value": float(min(p, 1.0)),
                "method": "exact", "n": len(a)}
    stat = (abs(b - c) - 1.0) ** 2 / n_disc
    p = stats.chi2.sf(stat, df=1)
    return {"b": b, "c": c, "statistic": float(stat), "p_value": float(p), "method": "chi2_cc", "n": len(a)}


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj.tolist()


# --------------------------------------------------------------------------- confusion views


def most_confused_pairs(cm: np.ndarray, class_names: Sequence[str], k: int = 10) -> list[dict]:
    """The ``k`` largest off-diagonal cells of a count confusion matrix, as dicts
    ``{"true", "pred", "count", "rate"}`` (``rate`` = count / hands of the true class),
    largest first; cells with 0 are left out."""
    cm = np.asarray(cm)
    C = cm.shape[0]
    if cm.shape != (C, C) or len(class_names) != C:
        raise ValueError(f"confusion matrix {cm.shape} does not match {len(class_names)} class names")
    support = cm.sum(axis=1)
    cells = [(int(cm[i, j]), i, j) for i in range(C) for j in range(C) if i != j and cm[i, j] > 0]
    cells.sort(key=lambda t: (-t[0], t[1], t[2]))
    return [
        {"true": class_names[i], "pred": class_names[j], "count": cnt,
         "rate": float(cnt / support[i]) if support[i] else 0.0}
        for cnt, i, j in cells[:k]
    ]


def orientation_pair_confusion(
    cm: np.ndarray,
    class_names: Sequence[str],
    pairs: Sequence[tuple[str, str]] = ORIENTATION_PAIRS,
) -> list[dict]:
    """For each pair ``(a, b)`` whose two classes are both in ``class_names``: the 2x2
    confusion within the pair (``matrix`` = ``[[a->a, a->b], [b->a, b->b]]`` counts;
    ``matrix_norm`` = the same divided by all hands of the true class, so a row may
    sum to less than 1 when hands go to classes outside the pair), ``n_a``, ``n_b``,
    ``a_as_b``, ``b_as_a`` (rates) and ``cross_error_rate`` = (a->b + b->a) / (n_a + n_b),
    the share of the pair's hands given to the partner class."""
    cm = np.asarray(cm)
    names = list(class_names)
    if cm.shape != (len(names), len(names)):
        raise ValueError(f"confusion matrix {cm.shape} does not match {len(names)} class names")
    out = []
    for a, b in pairs:
        if a not in names or b not in names:
            continue
        i, j = names.index(a), names.index(b)
        m = np.array([[cm[i, i], cm[i, j]], [cm[j, i], cm[j, j]]], dtype=np.int64)
        n_a, n_b = int(cm[i].sum()), int(cm[j].sum())
        norm = np.array([[m[0, 0] / n_a if n_a else 0.0, m[0, 1] / n_a if n_a else 0.0],
                         [m[1, 0] / n_b if n_b else 0.0, m[1, 1] / n_b if n_b else 0.0]])
        tot = n_a + n_b
        out.append({
            "a": a, "b": b, "matrix": m, "matrix_norm": norm, "n_a": n_a, "n_b": n_b,
            "a_as_b": float(norm[0, 1]), "b_as_a": float(norm[1, 0]),
            "cross_error_rate": float((m[0, 1] + m[1, 0]) / tot) if tot else 0.0,
        })
    return out


# --------------------------------------------------------------------------- comparison

#: Columns of :attr:`Comparison.rows`, in order (also the columns of ``results.csv``).
ROW_FIELDS = (
    "model", "n_common", "acc", "acc_low", "acc_high", "macro_f1", "f1_low", "f1_high",
    "precision", "recall", "n_classes", "n_all", "acc_all", "acc_all_low", "acc_all_high",
    "f1_all", "f1_all_low", "f1_all_high", "n_classes_all", "n_params", "ms_per_sample", "device",
)
#: Columns of :attr:`Comparison.pairwise` (also the columns of ``pairwise.csv``).
PAIR_FIELDS = (
    "model_a", "model_b", "n", "acc_a", "acc_b", "b", "c", "statistic", "p_value",
    "p_holm", "method", "significant",
)


@dataclass
class Comparison:
    """The result of :func:`compare_models`.

    ``rows``: one dict per model (:data:`ROW_FIELDS`); ``pairwise``: one dict per
    pair of models (:data:`PAIR_FIELDS`: ``b`` = A right & B wrong, ``c`` = A wrong
    & B right on the common hands, ``p_holm`` adjusted over all pairs,
    ``significant`` = ``p_holm < alpha``); ``metrics``/``metrics_all``: per model
    :func:`classification_metrics` on the common subset / on all its hands;
    ``confusion``/``confusion_all``: the count matrices; ``confused_pairs`` and
    ``orientation``: per model, on the common subset; ``orientation_pairwise``: the pairwise tests again,
    on the common hands whose true class is one of an orientation pair (the hands handedness is for)."""

    class_names: list[str]
    common_index: np.ndarray
    rows: list[dict]
    pairwise: list[dict]
    metrics: dict[str, dict]
    metrics_all: dict[str, dict]
    confusion: dict[str, np.ndarray]
    confusion_all: dict[str, np.ndarray]
    confused_pairs: dict[str, list[dict]]
    orientation: dict[str, list[dict]]
    orientation_pairwise: list[dict] = field(default_factory=list)  # McNemar on the orientation pairs' hands
    alpha: float = 0.05
    n_boot: int = 1000
    extra: dict = field(default_factory=dict)

    @property
    def n_common(self) -> int:
        return int(len(self.common_index))

    @property
    def models(self) -> list[str]:
        return [r["model"] for r in self.rows]


def compare_models(
    preds: Mapping[str, ModelPredictions],
    class_names: Sequence[str],
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    top_k_confused: int = 10,
    pairs: Sequence[tuple[str, str]] = ORIENTATION_PAIRS,
) -> Comparison:
    """Compare models on paired predictions (see the module docstring).

    Raises ``ValueError`` when no hand is scored by every model, or when two models
    give different true labels for the same hand id (their ``index`` arrays do
    not refer to the same table)."""
    if not preds:
        raise ValueError("compare_models needs at least one model")
    names = list(class_names)
    common = _common_hands(preds)
    sub = {m: p.subset(common) for m, p in preds.items()}
    _check_same_truth(sub, len(common))
    cmp = Comparison(
        class_names=names, common_index=common, rows=[], pairwise=_pairwise_tests(sub, alpha),
        metrics={}, metrics_all={}, confusion={}, confusion_all={}, confused_pairs={}, orientation={},
        alpha=alpha, n_boot=n_boot, orientation_pairwise=_orientation_pairwise(sub, names, pairs, alpha),
    )
    boot = dict(n_boot=n_boot, alpha=alpha, seed=seed, num_classes=len(names))
    for m, p in preds.items():
        mc = classification_metrics(sub[m].y_true, sub[m].y_pred, len(names), names)
        ma = classification_metrics(p.y_true, p.y_pred, len(names), names)
        cmp.metrics[m], cmp.metrics_all[m] = mc, ma
        cmp.confusion[m], cmp.confusion_all[m] = mc["confusion"], ma["confusion"]
        cmp.confused_pairs[m] = most_confused_pairs(mc["confusion"], names, k=top_k_confused)
        cmp.orientation[m] = orientation_pair_confusion(mc["confusion"], names, pairs)
        cmp.rows.append(_model_row(m, p, sub[m], mc, ma, boot))
    return cmp


def _common_hands(preds: Mapping[str, ModelPredictions]) -> np.ndarray:
    """The hand ids every model scored (sorted); ``ValueError`` when there are none."""
    common = None
    for p in preds.values():
        idx = np.unique(p.index)
        common = idx if common is None else np.intersect1d(common, idx, assume_unique=True)
    if common is None or len(common) == 0:
        sizes = ", ".join(f"{m}: {len(p)}" for m, p in preds.items())
        raise ValueError(f"no hand is scored by every model ({sizes})")
    return common


def _check_same_truth(sub: Mapping[str, ModelPredictions], n_common: int) -> None:
    """Every model must give the same true label to each common hand, or the ids refer to other tables."""
    (ref, first), *rest = sub.items()
    for m, s in rest:
        bad = int(np.sum(s.y_true != first.y_true))
        if bad:
            raise ValueError(
                f"{m} and {ref} disagree on the true label of {bad} of {n_common} common hands: "
                "their index arrays do not refer to the same hands"
            )


def _model_row(name: str, p: ModelPredictions, s: ModelPredictions, mc: dict, ma: dict, boot: dict) -> dict:
    """One :data:`ROW_FIELDS` row: metrics with bootstrap intervals on the common hands (``s``, ``mc``)
    and on all the model's hands (``p``, ``ma``)."""
    acc_lo, acc_hi = bootstrap_ci(s.y_true, s.y_pred, "accuracy", **boot)
    f1_lo, f1_hi = bootstrap_ci(s.y_true, s.y_pred, "macro_f1", **boot)
    acca_lo, acca_hi = bootstrap_ci(p.y_true, p.y_pred, "accuracy", **boot)
    f1a_lo, f1a_hi = bootstrap_ci(p.y_true, p.y_pred, "macro_f1", **boot)
    return {
        "model": name, "n_common": mc["n"],
        "acc": mc["accuracy"], "acc_low": acc_lo, "acc_high": acc_hi,
        "macro_f1": mc["macro_f1"], "f1_low": f1_lo, "f1_high": f1_hi,
        "precision": mc["macro_precision"], "recall": mc["macro_recall"], "n_classes": mc["n_classes"],
        "n_all": ma["n"], "acc_all": ma["accuracy"], "acc_all_low": acca_lo, "acc_all_high": acca_hi,
        "f1_all": ma["macro_f1"], "f1_all_low": f1a_lo, "f1_all_high": f1a_hi, "n_classes_all": ma["n_classes"],
        "n_params": int(p.n_params), "ms_per_sample": float(p.ms_per_sample), "device": p.device,
    }


def orientation_pair_classes(class_names: Sequence[str], pairs: Sequence[tuple[str, str]] = ORIENTATION_PAIRS
                             ) -> list[str]:
    """The classes of the orientation pairs whose two classes are both in ``class_names``."""
    return [c for a, b in pairs if a in class_names and b in class_names for c in (a, b)]


def _orientation_pairwise(sub: Mapping[str, ModelPredictions], names: Sequence[str],
                          pairs: Sequence[tuple[str, str]], alpha: float) -> list[dict]:
    """:func:`_pairwise_tests` on the hands whose true class belongs to an orientation pair ([] if none)."""
    ids = [names.index(c) for c in orientation_pair_classes(names, pairs)]
    first = next(iter(sub.values()))
    keep = np.isin(first.y_true, ids)
    if len(sub) < 2 or not keep.any():
        return []
    return _pairwise_tests({m: p.subset(p.index[keep]) for m, p in sub.items()}, alpha)


def _pairwise_tests(sub: Mapping[str, ModelPredictions], alpha: float) -> list[dict]:
    """McNemar tests of every pair of models on the common hands, Holm-adjusted (:data:`PAIR_FIELDS`)."""
    pairwise = []
    for a, b in itertools.combinations(sub, 2):
        ca = sub[a].y_pred == sub[a].y_true
        cb = sub[b].y_pred == sub[b].y_true
        t = mcnemar_test(ca, cb)
        pairwise.append({
            "model_a": a, "model_b": b, "n": len(ca),
            "acc_a": float(ca.mean()), "acc_b": float(cb.mean()),
            "b": t["b"], "c": t["c"], "statistic": t["statistic"], "p_value": t["p_value"],
            "method": t["method"],
        })
    for row, ph in zip(pairwise, holm_adjust([r["p_value"] for r in pairwise])):
        row["p_holm"] = ph
        row["significant"] = bool(ph < alpha)
    return [{k: r[k] for k in PAIR_FIELDS} for r in pairwise]


# --------------------------------------------------------------------------- calibration and the reject option
# (engine.calibration fits and stores a checkpoint's temperature; the arithmetic lives here, on arrays)

#: The temperatures :func:`fit_temperature` searches (a fitted value at either end means "as far as allowed").
TEMPERATURE_RANGE = (0.05, 20.0)
#: Equal-width confidence bins of the expected calibration error and the reliability diagram.
ECE_BINS = 15
#: Coverages at which evaluation reports the accuracy of the hands kept, and the accuracy it reports coverage for.
REPORT_COVERAGES = (0.9, 0.8)
REPORT_ACCURACY = 0.99
#: Columns of :func:`compare_calibration`'s rows (also the columns of ``calibration.csv``).
CALIBRATION_FIELDS = ("model", "calibrated", "temperature", "n", "accuracy", "nll_before", "nll_after",
                      "ece_before", "ece_after", "acc_at_cov90", "acc_at_cov80", "cov_at_acc99")


def log_probs(probs: np.ndarray) -> np.ndarray:
    """``log(probs)`` in float64, zeros clipped to the smallest float32: logits up to a per-row constant,
    which is all temperature scaling needs (``softmax(log p / T)`` does not see the constant)."""
    p = np.asarray(probs, dtype=np.float64)
    return np.log(np.maximum(p, np.finfo(np.float32).tiny))


def _check_scores(scores: np.ndarray, labels: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if scores.ndim != 2 or scores.shape[0] != len(labels):
        raise ValueError(f"{what} has shape {scores.shape}, expected ({len(labels)}, C) for {len(labels)} labels")
    _check_labels(labels, scores.shape[1], "labels")
    return scores, labels


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)`` (NaN for no hands)."""
    z, y = _check_scores(logits, labels, "logits")
    if not len(y):
        return float("nan")
    return _mean_nll(z / temperature, y)


def _mean_nll(z: np.ndarray, y: np.ndarray) -> float:
    """Mean ``-log softmax(z)[y]`` as ``log(1 + sum_{j != y} exp(z_j - z_y))``: exact even where the right
    class has all but all the probability (``logsumexp(z) - z_y`` rounds that to 0, which would leave
    the temperature of a confident, right model undetermined)."""
    rows = np.arange(len(y))
    d = z - z[rows, y][:, None]
    d[rows, y] = -np.inf
    return float(np.mean(np.logaddexp(0.0, special.logsumexp(d, axis=1))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature ``T`` that minimises :func:`nll` of ``softmax(logits / T)`` (Guo et al. 2017).

    One parameter, so a bounded 1-D search over ``log T`` in :data:`TEMPERATURE_RANGE` (the NLL is
    convex in ``1 / T``, hence unimodal in ``log T``): exact to ~1e-5 in log T and deterministic. ``T > 1``
    softens an over-confident model, ``T < 1`` sharpens an under-confident one; the argmax never changes.
    """
    z, y = _check_scores(logits, labels, "logits")
    if not len(y):
        raise ValueError("fit_temperature needs at least one hand")

    def loss(log_t: float) -> float:
        return _mean_nll(z / np.exp(log_t), y)

    lo, hi = np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])
    res = optimize.minimize_scalar(loss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-5})
    best = min((res.x, lo, hi), key=loss)  # Brent stops just inside a bound: the bound itself when it wins
    return float(np.exp(best))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` in float64: the probabilities of a model whose logits are divided by ``T``
    (``probs`` themselves, as float64, for ``T = 1``)."""
    if float(temperature) == 1.0:
        return np.asarray(probs, dtype=np.float64)
    return special.softmax(log_probs(probs) / float(temperature), axis=1)


def _confidence(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per hand: the top probability, whether the top class is right, and the doubt (the other
    classes' summed probability: the same ranking as ``1 - confidence`` without its rounding to 0)."""
    p, y = _check_scores(probs, labels, "probs")
    rows = np.arange(len(y))
    top = p.argmax(axis=1) if len(y) else np.zeros(0, np.int64)
    others = p.copy()
    others[rows, top] = 0.0
    return p[rows, top], top == y, others.sum(axis=1)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> dict:
    """Hands binned by confidence (``n_bins`` equal-width bins over [0, 1], right-closed): per bin the
    mean ``confidence``, the ``accuracy`` (NaN where empty) and the ``count``; ``edges`` has n_bins + 1."""
    conf, correct, _ = _confidence(probs, labels)
    which = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / count
        accuracy = np.bincount(which, weights=correct.astype(np.float64), minlength=n_bins) / count
    return {"edges": np.linspace(0.0, 1.0, n_bins + 1), "confidence": mean_conf, "accuracy": accuracy,
            "count": count}


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE: the count-weighted mean gap between accuracy and mean confidence over
    :func:`reliability_bins` (0 = the confidence says how often the model is right; NaN for no hands)."""
    bins = reliability_bins(probs, labels, n_bins)
    n = int(bins["count"].sum())
    if n == 0:
        return float("nan")
    ok = bins["count"] > 0
    gaps = np.abs(bins["accuracy"][ok] - bins["confidence"][ok])
    return float(np.sum(gaps * bins["count"][ok]) / n)


def coverage_curve(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy against coverage for the reject option: keep the most confident hands, reject the rest.

    Returns ``(coverage, accuracy)``: one point per confidence threshold, i.e. hands of equal confidence
    are kept or rejected together (a threshold cannot split them). Coverage rises to 1 (every hand kept,
    the plain accuracy); both arrays are empty for no hands."""
    _, correct, doubt = _confidence(probs, labels)
    n = len(correct)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(doubt, kind="stable")
    d = doubt[order]
    ends = np.flatnonzero(np.append(d[1:] != d[:-1], True))  # last hand of each group of equal confidence
    kept = ends + 1
    return kept / n, np.cumsum(correct[order])[ends] / kept


def accuracy_at_coverage(coverage: np.ndarray, accuracy: np.ndarray, target: float) -> float:
    """Accuracy of the largest :func:`coverage_curve` point that keeps at most ``target`` of the hands
    (NaN when even the most confident group of hands is a larger share)."""
    ok = np.flatnonzero(np.asarray(coverage) <= target + 1e-12)
    return float(accuracy[ok[-1]]) if len(ok) else float("nan")


def coverage_at_accuracy(coverage: np.ndarray, accuracy: np.ndarray, target: float) -> float:
    """The largest share of hands a confidence threshold keeps with accuracy >= ``target`` (NaN: never)."""
    ok = np.flatnonzero(np.asarray(accuracy) >= target - 1e-12)
    return float(np.asarray(coverage)[ok].max()) if len(ok) else float("nan")


def calibration_summary(probs: np.ndarray, labels: np.ndarray, temperature: float | None = None) -> dict:
    """Calibration of one model's probabilities before and after ``temperature`` (None: not calibrated,
    scored as T = 1), and its reject option with the calibrated probabilities: a :data:`CALIBRATION_FIELDS`
    row (without ``model``) plus ``curve`` (coverage, accuracy) and reliability ``bins_before`` / ``bins_after``."""
    t = 1.0 if temperature is None else float(temperature)
    after = apply_temperature(probs, t)
    cov, acc = coverage_curve(after, labels)
    z = log_probs(probs)
    (c90, c80), a99 = REPORT_COVERAGES, REPORT_ACCURACY
    _, correct, _ = _confidence(probs, labels)
    return {
        "calibrated": temperature is not None, "temperature": t, "n": len(correct),
        "accuracy": float(correct.mean()) if len(correct) else float("nan"),
        "nll_before": nll(z, labels), "nll_after": nll(z, labels, t),
        "ece_before": expected_calibration_error(probs, labels), "ece_after": expected_calibration_error(after, labels),
        "acc_at_cov90": accuracy_at_coverage(cov, acc, c90), "acc_at_cov80": accuracy_at_coverage(cov, acc, c80),
        "cov_at_acc99": coverage_at_accuracy(cov, acc, a99),
        "curve": (cov, acc), "bins_before": reliability_bins(probs, labels),
        "bins_after": reliability_bins(after, labels),
    }


def compare_calibration(preds: Mapping[str, ModelPredictions], common_index: np.ndarray,
                        temperatures: Mapping[str, float | None]) -> dict:
    """:func:`calibration_summary` of every model on the same hands (``common_index``, as the results
    table): ``{"rows": [CALIBRATION_FIELDS dicts], "curves": {model: summary with the arrays}}``; a model
    without probabilities (``probs is None``) has nothing to calibrate and is left out."""
    rows, curves = [], {}
    for m, p in preds.items():
        if p.probs is None:
            continue
        s = p.subset(common_index)
        summary = calibration_summary(s.probs, s.y_true, temperatures.get(m))
        rows.append({"model": m, **{k: summary[k] for k in CALIBRATION_FIELDS if k != "model"}})
        curves[m] = summary
    return {"rows": rows, "curves": curves}
