"""Results table, README block, evaluation artefacts and the report."""
from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest

from engine.metrics import ModelPredictions, compare_models
from engine.reporting.html import build_report, write_evaluation_artefacts
from engine.reporting.plots import plot_history
from engine.reporting.tables import README_END, README_START, format_ci, read_csv_rows, update_readme, write_results

CLASSES = ["like", "dislike", "peace", "peace_inverted"]
CI = re.compile(r"\d+\.\d \[\d+\.\d, \d+\.\d\]")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _comparison():
    rng = np.random.default_rng(0)
    n = 400
    idx = np.arange(n)
    y = rng.integers(0, 4, n)
    preds = {}
    for name, acc, lm in (("mlp", 0.8, True), ("resnet34", 0.9, False)):
        p = np.where(rng.random(n) < acc, y, y ^ 1)  # errors go to the orientation partner
        keep = (idx % 10 != 0) if lm else np.ones(n, bool)
        preds[name] = ModelPredictions(name, idx[keep], y[keep], p[keep], None, 1234, 0.5, "cpu")
    return compare_models(preds, CLASSES, n_boot=200)


@pytest.fixture(scope="module")
def comparison():
    return _comparison()


@pytest.fixture(scope="module")
def graphs(tmp_path_factory, comparison):
    """A graphs dir with the evaluation artefacts, a data summary and one history CSV."""
    g = tmp_path_factory.mktemp("graphs")
    write_evaluation_artefacts(comparison, g, CLASSES, caption="Synthetic demonstration set")
    splits = {s: {c: {"images": 10 * k, "hands": 11 * k, "hands_with_landmarks": 9 * k, "users": 3 * k}
                  for c in CLASSES} for s, k in (("train", 8), ("val", 1), ("test", 2))}
    (g / "data_summary.json").write_text(json.dumps({
        "dataset": "synthetic", "format": "v2", "class_names": CLASSES, "splits": splits,
        "skipped": {"bad_bbox": 2}, "subject_leaks": {},
    }))
    with open(g / "mlp_history.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "samples_per_s"])
        for e in range(1, 6):
            w.writerow([e, 1 / e, 1 - 0.5 / e, 1.2 / e, 0.9 - 0.4 / e, 1e-3, 2.0, 1000])
    return g


def test_format_ci():
    assert format_ci(0.981, 0.97, 0.99) == "98.1 [97.0, 99.0]"
    assert format_ci("0.981", "0.97", "0.99") == "98.1 [97.0, 99.0]"
    assert format_ci(0.5, "", "") == "50.0"
    assert format_ci("", None, None) == "n/a"


def test_write_results_and_update_readme(tmp_path, comparison):
    paths = write_results(comparison, tmp_path, caption="HaGRID sample, test split")
    rows = read_csv_rows(paths["results_csv"])
    assert [r["model"] for r in rows] == ["mlp", "resnet34"]
    assert all(r["n_common"] == "360" for r in rows)
    assert rows[1]["n_all"] == "400"
    assert float(rows[0]["acc_low"]) <= float(rows[0]["acc"]) <= float(rows[0]["acc_high"])
    pw = read_csv_rows(paths["pairwise_csv"])
    assert len(pw) == 1 and pw[0]["method"] in ("exact", "chi2_cc")
    md = paths["results_md"].read_text()
    assert md.startswith("*HaGRID sample, test split*")
    assert len(CI.findall(md)) >= 8 and "McNemar" in md and "| mlp | resnet34 |" in md

    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nintro\n\n{README_START}\nold table\n{README_END}\n\n## After\n")
    update_readme(readme, md)
    text = readme.read_text()
    assert "old table" not in text and "HaGRID sample, test split" in text
    assert text.startswith("# Title\n\nintro\n\n" + README_START + "\n")
    assert text.endswith(README_END + "\n\n## After\n")
    update_readme(readme, "second")  # the markers stay, so it can run again
    text = readme.read_text()
    assert text.count(README_START) == 1 and "second" in text and "HaGRID sample" not in text
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind


def test_update_readme_without_markers_is_a_clear_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n")
    with pytest.raises(ValueError, match="results:start"):
        update_readme(readme, "x")
    assert readme.read_text() == "# no markers here\n"
    readme.write_text(f"{README_END}\n{README_START}\n")
    with pytest.raises(ValueError, match="before"):
        update_readme(readme, "x")


def test_evaluation_artefacts(graphs):
    for name in ("results.csv", "results.md", "pairwise.csv", "per_class.csv", "confused_pairs.csv",
                 "orientation_pairs.csv", "evaluation.json", "mlp_confusion.png", "resnet34_confusion.png",
                 "orientation_pairs.png", "model_comparison.png"):
        assert (graphs / name).is_file(), name
    for png in graphs.glob("*.png"):
        assert png.read_bytes()[:8] == PNG_MAGIC
    orient = read_csv_rows(graphs / "orientation_pairs.csv")
    assert {(r["a"], r["b"]) for r in orient} == {("like", "dislike"), ("peace", "peace_inverted")}
    confused = read_csv_rows(graphs / "confused_pairs.csv")
    assert confused[0]["rank"] == "1" and {confused[0]["true"], confused[0]["pred"]} in (
        {"like", "dislike"}, {"peace", "peace_inverted"})
    assert json.loads((graphs / "evaluation.json").read_text())["n_common"] == 360


def test_write_evaluation_artefacts_checks_class_names(tmp_path, comparison):
    with pytest.raises(ValueError, match="differ"):
        write_evaluation_artefacts(comparison, tmp_path, ["a", "b", "c", "d"])


def test_build_report_is_self_contained(graphs, tmp_path):
    out = tmp_path / "reports"
    html_path, md_path = build_report(graphs, out, dataset_note="Synthetic demonstration set")
    html = html_path.read_text()
    assert html.count('src="data:image/png;base64,') >= 5  # curves, comparison, 2 confusions, orientation
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', html)
    assert "<link" not in html and "<script" not in html
    assert "SYNTHETIC" in html
    assert CI.search(html) and "McNemar" in html and "peace / peace_inverted" in html
    assert (graphs / "mlp_curves.png").is_file()  # drawn from mlp_history.csv
    assert "resnet34 training curves: not available" in html

    md = md_path.read_text()
    assert "SYNTHETIC" in md and "| mlp |" in md
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert images and all(not i.startswith("data:") for i in images)
    for rel in images:
        assert (out / rel).resolve().is_file(), rel


def test_build_report_without_artefacts_does_not_crash(tmp_path):
    g = tmp_path / "graphs"
    g.mkdir()
    (g / "data_summary.json").write_text("{not json")
    html_path, md_path = build_report(g, tmp_path / "reports", dataset_note="HaGRID sample")
    html = html_path.read_text()
    assert "not available" in html and "data_summary.json" in html
    assert "SYNTHETIC" not in html
    assert "not available" in md_path.read_text()


def test_build_report_unreadable_or_empty_artefacts(graphs, tmp_path):
    import shutil

    g = tmp_path / "graphs"
    shutil.copytree(graphs, g)
    (g / "orientation_pairs.csv").write_bytes(b"\xff\xfe\x00not utf-8")
    (g / "pairwise.csv").write_bytes(b"\xff\xfe\x00not utf-8")
    (g / "results.csv").write_text((g / "results.csv").read_text().splitlines()[0] + "\n")  # header only
    (g / "data_summary.json").write_text("[1, 2]")
    md = build_report(g, tmp_path / "reports")[1].read_text()
    assert "Orientation-pair table: not available (orientation_pairs.csv could not be read" in md
    assert "No orientation pair is in the class set" not in md  # unreadable is not "none"
    assert "Pairwise tests: not available (pairwise.csv could not be read" in md
    assert "No pairs to test" not in md
    assert "Results table: not available (results.csv is empty)" in md
    assert "Data summary: not available (data_summary.json could not be read" in md
    used = next(line for line in md.splitlines() if line.startswith("Used: "))
    missing = next(line for line in md.splitlines() if line.startswith("Not available: "))
    for name in ("results.csv", "pairwise.csv", "orientation_pairs.csv", "data_summary.json"):
        assert name not in used and name in missing, name
    assert "per_class.csv" in used and "confused_pairs.csv" in used


def test_one_model_order_and_number_parser():
    from engine import evaluate
    from engine.reporting import html as report
    from engine.reporting import plots
    from engine.reporting import tables as results_table

    assert evaluate.MODEL_ORDER is report.MODEL_ORDER is results_table.MODEL_ORDER
    assert results_table.order_models(["zeta", "fusion", "alpha", "mlp", "mlp"]) == ["mlp", "fusion", "alpha", "zeta"]
    assert plots.to_float is report.to_float is results_table.to_float
    assert results_table.to_float("0.5") == 0.5 and math.isnan(results_table.to_float(""))


def test_plot_history_accepts_rows_with_gaps(tmp_path):
    rows = [{"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": "", "val_acc": ""},
            {"epoch": 2, "train_loss": 0.5, "train_acc": 0.7, "val_loss": 0.6, "val_acc": 0.65}]
    out = plot_history(rows, tmp_path / "h.png", "t")
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert plot_history([], tmp_path / "empty.png").is_file()


def test_report_opens_with_question_hypotheses_seed_and_methods(graphs, tmp_path):
    html_path, md_path = build_report(graphs, tmp_path / "reports")
    md, html = md_path.read_text(), html_path.read_text()
    heads = [line for line in md.splitlines() if line.startswith("## ")]
    assert heads[:4] == ["## 1. Question and hypotheses", "## 2. The seed's figures beside ours", "## 3. Methods",
                         "## 4. Data"]
    assert "| H2 | ResNet-34 beats the small CNN | cnn | resnet34 |" not in md  # no cnn run: not tested
    assert "no cnn run in this evaluation" in md and "not tested" in md
    assert "| resnet34 | 99.70 |" in md and "not evidence that fusion beats ResNet-34" in md
    assert "Models and training" in md and "not recorded" in md  # the fixture has no checkpoints
    assert "@media print" in html and "break-before:page" in html
    assert "1. Question and hypotheses" in html


# --------------------------------------------------------------------------- errors worth looking at, speed


def _crops_folder(root, keys, size=32):
    """A crops folder with one small JPEG and a manifest line per key (landmarks on a diagonal)."""
    from PIL import Image

    from data_loaders.manifest import write_manifest

    (root / "test").mkdir(parents=True)
    entries = []
    for i, k in enumerate(keys):
        Image.new("RGB", (size, size), (40 * (i % 6), 90, 160)).save(root / "test" / f"{k}.jpg")
        lm = [[0.3 + 0.01 * j, 0.2 + 0.02 * j] for j in range(21)]
        entries.append({"key": k, "uuid": k[:-2], "hand": 0, "split": "test", "label": "like", "user_id": None,
                        "crop": f"test/{k}.jpg", "image": "x.jpg", "image_size": [200, 100],
                        "bbox": [0.3, 0.2, 0.2, 0.4], "crop_box": [50.0, 10.0, 80.0], "landmarks": lm,
                        "leading_hand": None})
    write_manifest(root / "manifest.jsonl", entries)
    return root


def _comparison_with_predictions(crops_dir):
    from engine.reporting.errors import prediction_columns

    rng = np.random.default_rng(1)
    n = 60
    idx, y = np.arange(n), rng.integers(0, 4, n)
    keys = np.array([f"h{i:03d}_0" for i in range(n)], dtype=object)
    preds = {}
    for name, acc in (("mlp", 0.7), ("gcn", 0.8)):
        p = np.where(rng.random(n) < acc, y, y ^ 1)
        probs = np.full((n, 4), 0.1)
        probs[idx, p] = rng.uniform(0.5, 0.7, n)
        preds[name] = ModelPredictions(name, idx, y, p, probs, 100, 0.25, "cpu")
    cmp = compare_models(preds, CLASSES, n_boot=50)
    cmp.extra["predictions"] = prediction_columns(preds, {m: keys for m in preds}, cmp.common_index, CLASSES)
    cmp.extra["crops_dirs"] = {"mlp": str(crops_dir), "gcn": str(crops_dir.parent / "no_such_crops")}
    return cmp, keys


def test_crop_landmarks_follow_the_manifest_formula():
    from engine.reporting.errors import crop_landmarks

    e = {"landmarks": [[0.5, 0.5], [0.25, 0.1]] + [[0.0, 0.0]] * 19, "image_size": [200, 100],
         "crop_box": [50, 0, 100]}
    lm = crop_landmarks(e)
    assert lm[0] == pytest.approx([0.5, 0.5]) and lm[1] == pytest.approx([0.0, 0.1])
    assert crop_landmarks({**e, "landmarks": None}) is None


def test_errors_section_shows_misclassified_crops(tmp_path):
    from engine.reporting.errors import error_rows

    keys = [f"h{i:03d}_0" for i in range(60)]
    cmp, _ = _comparison_with_predictions(_crops_folder(tmp_path / "crops", keys))
    g = tmp_path / "graphs"
    out = write_evaluation_artefacts(cmp, g, CLASSES)
    preds = read_csv_rows(out["predictions_csv"])
    assert len(preds) == 120 and set(preds[0]) == {"model", "key", "true", "predicted", "probability", "common"}
    assert json.loads((g / "evaluation.json").read_text())["crops_dirs"]["mlp"] == str(tmp_path / "crops")

    rows = error_rows("mlp", read_csv_rows(g / "confused_pairs.csv"), preds)
    assert 1 <= len(rows) <= 3 and all(0 < len(r.keys) <= 4 and len(r.keys) <= r.count for r in rows)
    assert all(r.probs == sorted(r.probs, reverse=True) for r in rows)
    for r in rows:
        wrong = [p for p in preds if p["model"] == "mlp" and p["key"] in r.keys]
        assert all(p["true"] == r.true and p["predicted"] == r.pred for p in wrong)

    md = build_report(g, tmp_path / "reports")[1].read_text()
    assert (g / "mlp_errors.png").read_bytes()[:8] == PNG_MAGIC
    assert re.search(r"!\[mlp: \w+ → \w+ \(\d of \d+\)", md)
    assert "gcn: thumbnails not available (no crops folder at" in md and not (g / "gcn_errors.png").exists()


def test_errors_and_speed_sections_without_their_artefacts(graphs, tmp_path):
    md = build_report(graphs, tmp_path / "reports")[1].read_text()
    assert "Misclassified crops: not available (predictions.csv missing)" in md
    assert re.search(r"^## \d+\. Speed$", md, re.M)
    assert "| mlp | 0.500 | 2,000 | cpu | 1,234 |" in md
    assert "benchmarks/bench_predict.py" in md
