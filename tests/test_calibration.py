"""Temperature scaling, ECE and the reject option's coverage curve (engine.metrics / engine.calibration),
the temperature training stores in the best checkpoint, and the calibration table evaluation writes."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from scipy.special import softmax

from common.errors import DataError, UsageError, UserFacingError
from data_loaders.crop import crop_dataset
from engine import cli
from engine.calibration import (
    apply_temperature,
    calibrate_checkpoint,
    coverage_curve,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)
from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.metrics import TEMPERATURE_RANGE, accuracy_at_coverage, coverage_at_accuracy
from engine.reporting.html import build_report
from engine.reporting.tables import README_END, README_START, read_csv_rows
from engine.train import TrainConfig, fit


def _calibrated_set(n: int = 6000, classes: int = 5, seed: int = 0):
    """Logits ``z`` and labels drawn from ``softmax(z)``: probabilities calibrated by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, (n, classes))
    p = softmax(z, axis=1)
    y = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    return z, p, y


# --------------------------------------------------------------------------- the arithmetic
@pytest.mark.parametrize("t0", [0.4, 1.0, 3.0])
def test_fit_temperature_recovers_the_temperature_that_distorted_calibrated_logits(t0):
    z, _, y = _calibrated_set()
    t = fit_temperature(z * t0, y)  # logits t0 times too sharp (t0 > 1) or too soft: T = t0 undoes it
    assert t == pytest.approx(t0, rel=0.08)
    probs = softmax(z * t0, axis=1)
    assert np.array_equal(apply_temperature(probs, t).argmax(1), probs.argmax(1))  # no prediction changes


def test_fit_temperature_stays_in_its_range_and_needs_hands():
    z = np.array([[5.0, 0.0], [0.0, 5.0]])
    assert fit_temperature(z, [0, 1]) == pytest.approx(TEMPERATURE_RANGE[0])  # separable: as sharp as allowed
    assert fit_temperature(z, [1, 0]) == pytest.approx(TEMPERATURE_RANGE[1])  # always wrong: as soft as allowed
    with pytest.raises(ValueError, match="at least one hand"):
        fit_temperature(np.zeros((0, 3)), [])


def test_ece_is_near_zero_for_calibrated_and_large_for_over_confident_probabilities():
    _, p, y = _calibrated_set(n=20000)
    assert expected_calibration_error(p, y) < 0.015
    sharp = apply_temperature(p, 0.25)  # logits x4: far more confident than right
    assert expected_calibration_error(sharp, y) > 0.15
    # by hand: two hands at 0.9 with one right (gap 0.4), two at 0.6 both right (gap 0.4) -> ECE 0.4
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]])
    assert expected_calibration_error(probs, [0, 0, 0, 1]) == pytest.approx(0.4)
    bins = reliability_bins(probs, [0, 0, 0, 1], n_bins=10)
    assert bins["count"].tolist() == [0, 0, 0, 0, 0, 2, 0, 0, 2, 0]  # (0.5, 0.6] and (0.8, 0.9]
    assert bins["accuracy"][8] == 0.5 and bins["confidence"][5] == pytest.approx(0.6)


def test_coverage_curve_by_hand_with_tied_confidences():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    labels = [0, 1, 1, 0, 1]  # right, wrong, right (tied with the wrong one), right, wrong
    cov, acc = coverage_curve(probs, labels)
    np.testing.assert_allclose(cov, [0.2, 0.6, 0.8, 1.0])  # the two hands at 0.8 are kept or rejected together
    np.testing.assert_allclose(acc, [1.0, 2 / 3, 0.75, 0.6])  # at full coverage: the plain accuracy
    assert accuracy_at_coverage(cov, acc, 0.9) == pytest.approx(0.75)
    assert accuracy_at_coverage(cov, acc, 0.5) == 1.0
    assert np.isnan(accuracy_at_coverage(cov, acc, 0.1))  # the most confident hand alone is 20%
    assert coverage_at_accuracy(cov, acc, 0.99) == pytest.approx(0.2)
    assert coverage_at_accuracy(cov, acc, 0.7) == pytest.approx(0.8)
    assert np.isnan(coverage_at_accuracy(*coverage_curve(probs[[1]], [1]), 0.5))  # never reached


def test_coverage_curve_on_many_hands_ranks_even_saturated_probabilities():
    _, p, y = _calibrated_set()
    cov, acc = coverage_curve(p, y)
    assert np.all(np.diff(cov) > 0) and cov[-1] == 1.0 and len(cov) == len(y)
    assert acc[-1] == pytest.approx(np.mean(p.argmax(1) == y))
    assert acc[len(acc) // 10] > acc[-1] + 0.2  # the most confident tenth is far more often right
    # float32 probabilities of 1.0 still differ in their other classes: no false tie
    cov, _ = coverage_curve(np.array([[1.0, 1e-9], [1.0, 1e-7]], np.float32), [0, 0])
    assert cov.tolist() == [0.5, 1.0]


# --------------------------------------------------------------------------- checkpoints, training, evaluation
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An mlp trained for two epochs on crops of a small v2 set (3 classes, landmarks on every hand)."""
    from hagrid_fixtures import make_specs, write_v2

    d = tmp_path_factory.mktemp("calibration")
    specs = make_specs(("call", "fist", "palm"), per_class=6, no_gesture_every=0, empty_landmarks_every=0)
    crop_dataset(write_v2(d / "v2", specs), d / "crops", workers=1, progress=False)
    cfg = TrainConfig(model="mlp", classes="call,fist,palm", crops_dir=str(d / "crops"), out_dir=str(d / "models"),
                      graphs_dir=str(d / "graphs"), device="cpu", tensorboard=False, epochs=2, patience=0,
                      num_workers=0)
    return {"dir": d, "crops": d / "crops", "cfg": cfg, "fit": fit(cfg)}


def test_training_stores_the_temperature_in_the_best_checkpoint_and_says_so(trained, tmp_path, capsys):
    ck = load_checkpoint(trained["fit"].best_checkpoint)
    calib = ck["calibration"]
    assert set(calib) == {"temperature", "split", "n", "nll_before", "nll_after", "ece_before", "ece_after"}
    assert calib["split"] == "val" and calib["n"] == _val_hands(trained) > 0
    assert TEMPERATURE_RANGE[0] <= calib["temperature"] <= TEMPERATURE_RANGE[1]
    assert calib["nll_after"] <= calib["nll_before"] + 1e-9  # T = 1 was a candidate
    assert "calibration" not in load_checkpoint(trained["fit"].last_checkpoint)  # the resume file is left alone
    assert ck["preprocessing"]["crop"]["box_source"] == "annotation"
    # the line training prints (only with progress on, like the epoch lines)
    from dataclasses import replace

    fit(replace(trained["cfg"], out_dir=str(tmp_path / "m"), graphs_dir=str(tmp_path / "g"), epochs=1))
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "temperature" in x)
    assert line.startswith("[mlp] temperature ") and "val NLL" in line and "ECE" in line and "->" in line


def _val_hands(trained) -> int:
    from data_loaders.hand_table import HandTable

    t = HandTable.from_manifest(trained["crops"])
    return int(((t.split == "val") & t.has_landmarks).sum())


def test_calibrate_checkpoint_refits_the_same_temperature_from_the_checkpoints_crops(trained, tmp_path):
    path = shutil.copy(trained["fit"].best_checkpoint, tmp_path / "mlp.pt")
    ck = load_checkpoint(path)
    stored = ck.pop("calibration")
    save_checkpoint(path, ck)
    calib = calibrate_checkpoint(path)  # crops folder from args["crops_dir"], split val
    assert calib["temperature"] == pytest.approx(stored["temperature"], rel=1e-3)
    assert calib["n"] == stored["n"] and load_checkpoint(path)["calibration"] == calib
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.pt"]  # written atomically: no temp file left
    test = calibrate_checkpoint(path, split="test", crops_dir=trained["crops"])
    assert test["split"] == "test" and load_checkpoint(path)["calibration"]["split"] == "test"


def test_calibrate_checkpoint_errors_are_one_line(trained, tmp_path):
    path = shutil.copy(trained["fit"].best_checkpoint, tmp_path / "mlp.pt")
    with pytest.raises(UserFacingError, match="no hands of split 'nope'") as e:
        calibrate_checkpoint(path, split="nope")
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="manifest"):
        calibrate_checkpoint(path, crops_dir=tmp_path / "no_crops")
    ck = load_checkpoint(path)
    ck["args"]["crops_dir"] = None
    save_checkpoint(path, ck)
    with pytest.raises(UsageError, match="--crops-dir"):
        calibrate_checkpoint(path)


def test_evaluate_prints_and_writes_the_calibration_table_and_report_section(trained, tmp_path, capsys):
    best = trained["fit"].best_checkpoint
    plain = tmp_path / "plain.pt"
    ck = load_checkpoint(best)
    del ck["calibration"]
    ck["args"]["run_name"] = "uncalibrated"
    save_checkpoint(plain, ck)
    g, readme = tmp_path / "graphs", tmp_path / "README.md"
    readme.write_text(f"# x\n{README_START}\n{README_END}\n")
    assert cli.main(["evaluate", str(best), str(plain), "--crops-dir", str(trained["crops"]), "--graphs-dir",
                     str(g), "--device", "cpu", "--update-readme", str(readme)]) == 0
    out = capsys.readouterr().out
    assert "ECE before" in out and "coverage at 99% accuracy" in out and "not calibrated" in out
    rows = {r["model"]: r for r in read_csv_rows(g / "calibration.csv")}
    assert set(rows) == {"mlp", "uncalibrated"}
    t = load_checkpoint(best)["calibration"]["temperature"]
    assert float(rows["mlp"]["temperature"]) == pytest.approx(t) and rows["mlp"]["calibrated"] == "True"
    assert rows["uncalibrated"]["calibrated"] == "False" and rows["uncalibrated"]["ece_after"] == \
        rows["uncalibrated"]["ece_before"]
    assert rows["mlp"]["ece_before"] == rows["uncalibrated"]["ece_before"]  # same weights, same test hands
    assert (g / "coverage.png").stat().st_size > 1000 and (g / "reliability.png").stat().st_size > 1000
    assert "ECE" not in readme.read_text()  # the README block keeps its two tables
    _, md = build_report(g, tmp_path / "reports")
    text = md.read_text()
    assert "Calibration and the reject option" in text and "coverage.png" in text and "not calibrated" in text


def test_expected_calibration_error_of_softened_probabilities_is_recovered_by_the_fitted_temperature():
    """End to end on arrays: over-confident probabilities, T fitted on one half, ECE drops on the other."""
    z, _, y = _calibrated_set(n=8000, seed=3)
    probs = softmax(3.0 * z, axis=1)
    t = fit_temperature(np.log(probs[:4000]), y[:4000])
    before = expected_calibration_error(probs[4000:], y[4000:])
    after = expected_calibration_error(apply_temperature(probs[4000:], t), y[4000:])
    assert before > 0.1 and after < 0.03
