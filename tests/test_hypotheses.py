"""The hypotheses table (issue 13's acceptance test): every verdict follows from its own numbers."""
from __future__ import annotations

import math

import numpy as np
import pytest

from engine.metrics import ModelPredictions, compare_models, holm_adjust, mcnemar_test
from engine.reporting.hypotheses import (
    CONTRADICTED,
    SUPPORTED,
    hypotheses_from_comparison,
    hypotheses_table,
    paired_diff_ci,
    resolve_run,
    verdict,
)
from engine.reporting.reference import SEED_ACCURACY, SEED_TEST_HANDS, fusion_caveat, paired_halfwidth

CLASSES = ["a", "b", "c"]


def _preds(accs: dict[str, float], n: int = 600, seed: int = 0) -> dict[str, ModelPredictions]:
    """Synthetic predictions with (about) the given accuracies, each model's errors independent."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return {m: ModelPredictions(m, np.arange(n), y, np.where(rng.random(n) < acc, y, (y + 1) % 3))
            for m, acc in accs.items()}


def _pair(a: str, b: str, n: int, only_a: int, only_b: int, both: int) -> dict:
    """A pairwise.csv-like row (strings, as read back) with McNemar computed from the cells."""
    ca = np.array([1] * only_a + [0] * only_b + [1] * both + [0] * (n - only_a - only_b - both), bool)
    cb = np.array([0] * only_a + [1] * only_b + [1] * both + [0] * (n - only_a - only_b - both), bool)
    t = mcnemar_test(ca, cb)
    return {"model_a": a, "model_b": b, "n": str(n), "acc_a": str(ca.mean()), "acc_b": str(cb.mean()),
            "b": str(t["b"]), "c": str(t["c"]), "p_value": repr(t["p_value"])}


def _check_verdicts(hyps, alpha: float) -> None:
    """The acceptance rule, checked row by row from the row's own numbers."""
    tested = [h for h in hyps if h.tested]
    assert [h.p_holm for h in tested] == pytest.approx(holm_adjust([h.p_value for h in tested]))
    for h in hyps:
        if not h.tested:
            assert h.verdict == "not tested"
            continue
        assert h.diff == pytest.approx(h.acc_b - h.acc_a, abs=1e-9)
        assert h.diff_low <= h.diff <= h.diff_high
        if h.verdict == SUPPORTED:
            assert h.diff > 0 and h.p_holm < alpha
        elif h.verdict == CONTRADICTED:
            assert h.diff < 0 and h.p_holm < alpha
        else:
            assert h.verdict == f"no detectable difference at n = {h.n:,}" and not h.p_holm < alpha


def test_verdict_rule():
    assert verdict(0.05, 0.01, 0.05, 100) == SUPPORTED
    assert verdict(-0.05, 0.01, 0.05, 100) == CONTRADICTED
    assert verdict(0.05, 0.2, 0.05, 100) == "no detectable difference at n = 100"
    assert verdict(-0.05, 0.2, 0.05, 100).startswith("no detectable")
    assert verdict(0.05, 0.05, 0.05, 100).startswith("no detectable")  # p must be below alpha
    assert verdict(float("nan"), float("nan"), 0.05, 0) == "not tested"


def test_verdicts_follow_from_a_comparison():
    """Supported (gcn >> mlp), contradicted (cnn >> resnet34) and undetectable (fusion ~ gcn) at once."""
    cmp = compare_models(_preds({"mlp": 0.55, "gcn": 0.95, "cnn": 0.9, "resnet34": 0.5, "fusion": 0.95}),
                         CLASSES, n_boot=50)
    hyps = hypotheses_from_comparison(cmp)
    by = {h.id: h for h in hyps}
    assert by["H1"].verdict == SUPPORTED and (by["H1"].model_a, by["H1"].model_b) == ("mlp", "gcn")
    assert by["H2"].verdict == CONTRADICTED
    assert by["H3"].model_a == "gcn" and "gcn is the better" in by["H3"].note
    assert by["H3"].verdict.startswith("no detectable difference at n = 600")
    _check_verdicts(hyps, cmp.alpha)


def test_holm_adjustment_can_turn_a_raw_significance_into_no_verdict():
    """Raw p just under alpha alone, but not after adjustment over three hypotheses."""
    rows = [_pair("mlp", "gcn", 400, 20, 38, 300),   # raw p ~0.025: significant alone
            _pair("cnn", "resnet34", 400, 30, 31, 300), _pair("gcn", "fusion", 400, 30, 32, 300),
            _pair("resnet34", "fusion", 400, 10, 60, 300)]
    hyps = hypotheses_table(rows, runs=["mlp", "gcn", "cnn", "resnet34", "fusion"])
    h1 = hyps[0]
    assert h1.p_value < 0.05 <= h1.p_holm and h1.diff > 0
    assert h1.verdict == "no detectable difference at n = 400"
    _check_verdicts(hyps, 0.05)


def test_reversed_row_order_and_runs_with_suffixes():
    """pairwise rows in either order; runs found by recorded model name or prefix; handedness pairs."""
    rows = [_pair("gcn_crops", "mlp_crops", 500, 10, 90, 300),  # mlp_crops much better: H1 contradicted
            _pair("gcn_crops", "gcn_crops_handedness", 500, 5, 60, 300)]
    runs = ["mlp_crops", "gcn_crops", "gcn_crops_handedness"]
    hyps = hypotheses_table(rows, runs=runs, kinds={"mlp_crops": "mlp"})
    by = {h.id: h for h in hyps}
    assert (by["H1"].model_a, by["H1"].model_b) == ("mlp_crops", "gcn_crops")
    assert by["H1"].verdict == CONTRADICTED and by["H1"].a_only == 90 and by["H1"].b_only == 10
    assert by["HD-gcn_crops"].verdict == SUPPORTED
    assert by["H2"].verdict == "not tested" and "no resnet34 run" in by["H2"].note
    _check_verdicts(hyps, 0.05)
    assert resolve_run("gcn", ["gcn_a", "gcn_b"])[0] is None


def test_end_to_end_hypotheses_from_its_csv_rows():
    e2e = [{"model": "gcn", "n_hands": "200", "e2e_accuracy": "0.8", "annotated_accuracy": "0.9",
            "mcnemar_b": "25", "mcnemar_c": "5", "mcnemar_p": "0.0003"}]
    hyps = hypotheses_table([], runs=[], end_to_end=e2e)
    h = next(h for h in hyps if h.id == "E2E-gcn")
    assert h.diff == pytest.approx(0.1) and h.verdict == SUPPORTED
    _check_verdicts(hyps, 0.05)


def test_paired_bootstrap_is_seeded_and_centred():
    lo, hi = paired_diff_ci(1000, 20, 60)
    assert (lo, hi) == paired_diff_ci(1000, 20, 60)
    assert lo < 0.04 < hi and hi - lo < 0.05
    assert paired_diff_ci(100, 0, 0) == (0.0, 0.0)
    assert all(math.isnan(x) for x in paired_diff_ci(0, 0, 0))


def test_seed_fusion_caveat_is_computed():
    hw = paired_halfwidth(SEED_TEST_HANDS, SEED_ACCURACY["resnet34"] / 100, SEED_ACCURACY["fusion"] / 100)
    assert 0.0003 < hw < 0.0007  # ±0.05 pt with independent errors: wider than the +0.02 pt claimed
    text = fusion_caveat()
    assert "+0.02 pt" in text and f"±{100 * hw:.3f} pt" in text and "not evidence" in text
