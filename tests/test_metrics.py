"""engine.metrics against hand-computed cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from engine.metrics import (
    ModelPredictions,
    bootstrap_ci,
    classification_metrics,
    compare_models,
    holm_adjust,
    mcnemar_test,
    most_confused_pairs,
    orientation_pair_confusion,
)

Y_TRUE = np.array([0, 0, 1, 1, 2, 2])
Y_PRED = np.array([0, 1, 1, 1, 2, 0])


# --------------------------------------------------------------------------- classification_metrics


def test_classification_metrics_hand_computed():
    m = classification_metrics(Y_TRUE, Y_PRED, 3, ["a", "b", "c"])
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    # class a: P 1/2 R 1/2 F 1/2; b: P 2/3 R 1 F 0.8; c: P 1 R 1/2 F 2/3
    assert m["per_class"]["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["per_class"]["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert m["per_class"]["c"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["macro_precision"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert m["macro_recall"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    np.testing.assert_array_equal(m["confusion"], [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    np.testing.assert_allclose(m["confusion_normalized"], [[0.5, 0.5, 0], [0, 1, 0], [0.5, 0, 0.5]])


def test_macro_averages_over_the_classes_present_not_all_classes():
    m = classification_metrics(Y_TRUE, Y_PRED, 4)  # class 3 has no hand: left out, not counted as 0
    assert m["n_classes"] == 3
    expected = f1_score(Y_TRUE, Y_PRED, labels=[0, 1, 2], average="macro", zero_division=0)
    assert m["macro_f1"] == pytest.approx(expected) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["macro_f1"] > f1_score(Y_TRUE, Y_PRED, labels=range(4), average="macro", zero_division=0)
    assert m["per_class"]["3"]["support"] == 0
    np.testing.assert_array_equal(m["confusion_normalized"][3], 0)


def _thirteen_of_eighteen(n_per_class=40, acc=0.86, seed=0):
    """An evaluation set holding 13 of 18 classes; wrong predictions may name any of the 18."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(13), n_per_class)
    wrong = rng.random(len(y)) > acc
    p = np.where(wrong, (y + rng.integers(1, 18, len(y))) % 18, y)
    return y, p


def test_thirteen_of_eighteen_classes_reports_the_mean_over_the_thirteen():
    y, p = _thirteen_of_eighteen()
    m = classification_metrics(y, p, 18)
    present = list(range(13))
    assert m["n_classes"] == 13
    for key, fn in (("macro_f1", f1_score), ("macro_precision", precision_score), ("macro_recall", recall_score)):
        assert m[key] == pytest.approx(fn(y, p, labels=present, average="macro", zero_division=0))
    old = f1_score(y, p, labels=range(18), average="macro", zero_division=0)  # the old definition
    assert m["macro_f1"] == pytest.approx(old * 18 / 13)  # absent classes scored 0 pulled it down by 13/18
    assert m["macro_f1"] - old > 0.2


def test_bootstrap_macro_f1_is_over_the_same_classes_and_brackets_the_estimate():
    y, p = _thirteen_of_eighteen(n_per_class=60)
    point = classification_metrics(y, p, 18)["macro_f1"]
    lo, hi = bootstrap_ci(y, p, "macro_f1", n_boot=2000, seed=0, num_classes=18)
    assert lo <= point <= hi and hi - lo < 0.1
    old = f1_score(y, p, labels=range(18), average="macro", zero_division=0)
    assert old < lo  # under the old definition the interval would sit around ~13/18 of it

    def present_f1(t, q):  # the slow path, with the fixed class set of the full y_true
        return f1_score(t, q, labels=range(13), average="macro", zero_division=0)

    slow = bootstrap_ci(y, p, present_f1, n_boot=300, seed=1)
    assert (lo, hi) == pytest.approx(slow, abs=0.015)


def test_classification_metrics_rejects_bad_labels_and_handles_empty():
    with pytest.raises(ValueError, match="outside"):
        classification_metrics([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="length"):
        classification_metrics([0, 1], [0], 3)
    m = classification_metrics([], [], 3)
    assert m["n"] == 0 and math.isnan(m["accuracy"]) and m["confusion"].shape == (3, 3)


# --------------------------------------------------------------------------- bootstrap


def _fake(n, acc, C=5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    wrong = rng.random(n) > acc
    p = np.where(wrong, (y + rng.integers(1, C, n)) % C, y)
    return y, p


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_bootstrap_contains_estimate_deterministic_and_narrows(metric):
    y, p = _fake(500, 0.8)
    point = np.mean(y == p) if metric == "accuracy" else f1_score(y, p, labels=range(5), average="macro")
    lo, hi = bootstrap_ci(y, p, metric, seed=3, num_classes=5)
    assert lo <= point <= hi and hi - lo > 0
    assert bootstrap_ci(y, p, metric, seed=3, num_classes=5) == (lo, hi)
    assert bootstrap_ci(y, p, metric, seed=4, num_classes=5) != (lo, hi)
    yb, pb = _fake(50_000, 0.8)
    lo_b, hi_b = bootstrap_ci(yb, pb, metric, seed=3, num_classes=5)
    assert hi_b - lo_b < (hi - lo) / 5  # sqrt(100) = 10 in theory


def test_bootstrap_fast_path_matches_index_resampling():
    y, p = _fake(2000, 0.85)

    def macro_f1(t, q):
        cm = np.bincount(t * 5 + q, minlength=25).reshape(5, 5)
        d = cm.sum(0) + cm.sum(1)
        return float(np.mean(np.divide(2 * np.diag(cm), d, out=np.zeros(5), where=d > 0)))

    for fast, slow in (("accuracy", lambda t, q: float(np.mean(t == q))), ("macro_f1", macro_f1)):
        a = bootstrap_ci(y, p, fast, n_boot=2000, seed=1, num_classes=5)
        b = bootstrap_ci(y, p, slow, n_boot=2000, seed=2)
        assert a == pytest.approx(b, abs=0.006)


def test_bootstrap_on_many_hands_is_tight_around_the_estimate():
    # correctness only: speed is measured in benchmarks/, not asserted here (flaky on a loaded machine)
    y, p = _fake(100_000, 0.9, C=19)
    acc = float(np.mean(y == p))
    f1 = f1_score(y, p, average="macro", labels=range(19), zero_division=0)
    for metric, estimate, kw in (("accuracy", acc, {}), ("macro_f1", f1, {"num_classes": 19})):
        lo, hi = bootstrap_ci(y, p, metric, n_boot=200, **kw)
        assert lo <= estimate <= hi
        assert hi - lo < 0.01  # ~1.96 * 2 * sqrt(0.09 / 1e5) = 0.004 for the accuracy


def test_bootstrap_edge_cases():
    assert all(math.isnan(v) for v in bootstrap_ci([], [], "accuracy"))
    assert bootstrap_ci([1, 1, 1], [1, 1, 1], "accuracy") == (1.0, 1.0)
    with pytest.raises(ValueError, match="unknown metric"):
        bootstrap_ci([1], [1], "auc")


# --------------------------------------------------------------------------- McNemar


def _paired(b, c, both=5, neither=3):
    a = [1] * b + [0] * c + [1] * both + [0] * neither
    bb = [0] * b + [1] * c + [1] * both + [0] * neither
    return np.array(a, bool), np.array(bb, bool)


def test_mcnemar_exact_branch():
    t = mcnemar_test(*_paired(10, 2))
    assert (t["b"], t["c"], t["method"]) == (10, 2, "exact")
    # two-sided exact: 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert t["p_value"] == pytest.approx(158 / 4096)
    assert t["statistic"] == 2
    assert mcnemar_test(*_paired(12, 12))["p_value"] == pytest.approx(1.0)


def test_mcnemar_chi2_branch_with_continuity_correction():
    t = mcnemar_test(*_paired(30, 10))
    stat = (abs(30 - 10) - 1) ** 2 / 40  # 9.025
    assert t["method"] == "chi2_cc"
    assert t["statistic"] == pytest.approx(stat)
    assert t["p_value"] == pytest.approx(math.erfc(math.sqrt(stat / 2)))  # chi2(1) survival


def test_mcnemar_branch_boundary_and_no_discordance():
    assert mcnemar_test(*_paired(20, 4))["method"] == "exact"  # b + c = 24
    assert mcnemar_test(*_paired(20, 5))["method"] == "chi2_cc"  # b + c = 25
    t = mcnemar_test(*_paired(0, 0))
    assert t["p_value"] == 1.0 and t["b"] == t["c"] == 0


def test_holm_adjust():
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([]) == []


# --------------------------------------------------------------------------- confusion views


def test_most_confused_pairs():
    cm = np.array([[10, 3, 0], [1, 8, 5], [0, 3, 2]])
    out = most_confused_pairs(cm, ["a", "b", "c"], k=3)
    assert [(d["true"], d["pred"], d["count"]) for d in out] == [("b", "c", 5), ("a", "b", 3), ("c", "b", 3)]
    assert out[0]["rate"] == pytest.approx(5 / 14)
    assert len(most_confused_pairs(np.diag([3, 4]), ["a", "b"])) == 0


def test_orientation_pair_confusion_constructed():
    names = ["peace", "peace_inverted", "like", "dislike", "fist"]
    cm = np.array([
        [80, 15, 0, 0, 5],   # peace: 15 -> peace_inverted, 5 -> fist
        [10, 90, 0, 0, 0],
        [0, 0, 50, 0, 0],
        [0, 0, 4, 46, 0],
        [0, 0, 0, 0, 30],
    ])
    out = orientation_pair_confusion(cm, names)
    assert [(d["a"], d["b"]) for d in out] == [("peace", "peace_inverted"), ("like", "dislike")]  # others skipped
    p = out[0]
    np.testing.assert_array_equal(p["matrix"], [[80, 15], [10, 90]])
    assert (p["n_a"], p["n_b"]) == (100, 100)
    assert p["a_as_b"] == pytest.approx(0.15) and p["b_as_a"] == pytest.approx(0.10)
    assert p["cross_error_rate"] == pytest.approx(25 / 200)
    np.testing.assert_allclose(p["matrix_norm"], [[0.8, 0.15], [0.1, 0.9]])
    assert out[1]["cross_error_rate"] == pytest.approx(4 / 100)
    assert orientation_pair_confusion(np.eye(2), ["a", "b"]) == []


# --------------------------------------------------------------------------- compare_models


def _three_models():
    idx = np.arange(100, 200)
    y = np.arange(100) % 3
    p_img = y.copy()
    p_img[:20] = (y[:20] + 1) % 3          # wrong on hands 100..119
    p_lm = y.copy()
    p_lm[50:55] = (y[50:55] + 1) % 3       # wrong on hands 150..154
    keep = np.ones(100, bool)
    keep[:10] = False                      # no landmarks for hands 100..109
    return {
        "image": ModelPredictions("image", idx, y, p_img, None, 1000, 1.5, "cpu"),
        "landmark": ModelPredictions("landmark", idx[keep][::-1], y[keep][::-1], p_lm[keep][::-1], None, 10, 0.1, "cpu"),
        "perfect": ModelPredictions("perfect", idx, y, y, None, 5, 0.2, "cpu"),
    }


def test_compare_models_common_subset_and_all_hands():
    cmp = compare_models(_three_models(), ["a", "b", "c"], n_boot=200)
    assert cmp.n_common == 90
    np.testing.assert_array_equal(cmp.common_index, np.arange(110, 200))
    rows = {r["model"]: r for r in cmp.rows}
    assert [r["model"] for r in cmp.rows] == ["image", "landmark", "perfect"]
    assert all(r["n_common"] == 90 for r in cmp.rows)
    assert rows["image"]["acc"] == pytest.approx(80 / 90)  # wrong on 110..119 of the common hands
    assert rows["image"]["n_all"] == 100 and rows["image"]["acc_all"] == pytest.approx(0.80)
    assert rows["landmark"]["n_all"] == 90 and rows["landmark"]["acc_all"] == pytest.approx(85 / 90)
    assert rows["perfect"]["acc"] == 1.0 and rows["perfect"]["acc_low"] == 1.0
    for r in cmp.rows:
        assert r["acc_low"] <= r["acc"] <= r["acc_high"]
        assert r["f1_low"] <= r["macro_f1"] <= r["f1_high"]
        assert r["acc_all_low"] <= r["acc_all"] <= r["acc_all_high"]
    assert rows["image"]["n_params"] == 1000 and rows["image"]["device"] == "cpu"
    assert cmp.metrics["image"]["confusion"].sum() == 90
    assert cmp.metrics_all["image"]["confusion"].sum() == 100

    pw = {(p["model_a"], p["model_b"]): p for p in cmp.pairwise}
    assert set(pw) == {("image", "landmark"), ("image", "perfect"), ("landmark", "perfect")}
    p = pw[("image", "landmark")]
    assert (p["n"], p["b"], p["c"]) == (90, 5, 10)  # paired on the common hands only
    assert p["method"] == "exact" and p["p_holm"] >= p["p_value"]
    assert pw[("image", "perfect")]["c"] == 10 and pw[("image", "perfect")]["b"] == 0


def test_compare_models_without_the_landmark_model_uses_all_hands():
    preds = _three_models()
    del preds["landmark"]
    cmp = compare_models(preds, ["a", "b", "c"], n_boot=100)
    assert cmp.n_common == 100
    assert cmp.rows[0]["acc"] == pytest.approx(0.80)


def test_compare_models_errors():
    preds = _three_models()
    bad = preds["perfect"]
    preds["perfect"] = ModelPredictions("perfect", bad.index, (bad.y_true + 1) % 3, bad.y_pred)
    with pytest.raises(ValueError, match="disagree on the true label"):
        compare_models(preds, ["a", "b", "c"], n_boot=10)
    with pytest.raises(ValueError, match="no hand is scored by every model"):
        compare_models({"x": ModelPredictions("x", [1, 2], [0, 0], [0, 0]),
                        "y": ModelPredictions("y", [3], [0], [0])}, ["a"], n_boot=10)
    with pytest.raises(ValueError, match="duplicate"):
        ModelPredictions("x", [1, 1], [0, 0], [0, 0])


def test_orientation_pairwise_tests_only_the_pair_hands():
    """McNemar on the orientation pairs' hands only: a model that fixes stop/stop_inverted is tested on those."""
    names = ["call", "stop", "stop_inverted"]
    y = np.array([0] * 40 + [1] * 20 + [2] * 20)
    a = y.copy()
    a[40:60] = 2  # a: every stop called stop_inverted
    b = y.copy()
    b[:10] = 1  # b: the pair right, 10 calls wrong
    preds = {m: ModelPredictions(m, np.arange(80), y, p) for m, p in (("a", a), ("b", b))}
    cmp = compare_models(preds, names, n_boot=50)
    (row,) = cmp.orientation_pairwise
    assert row["n"] == 40 and (row["b"], row["c"]) == (0, 20) and row["significant"]
    (everything,) = cmp.pairwise
    assert everything["n"] == 80 and (everything["b"], everything["c"]) == (10, 20)
    one = compare_models({"a": preds["a"]}, names, n_boot=50)
    assert one.orientation_pairwise == []
