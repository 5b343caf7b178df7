"""The main job end to end on a reduced synthetic set, through the CLI, and its reuse of finished steps."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from engine.cli import main

MODELS = ("mlp", "gcn", "cnn", "resnet34", "fusion")


def _demo(work: Path) -> int:
    return main(["demo", "--work-dir", str(work), "--epochs-scale", "0.05", "--synth-subjects", "12",
                 "--synth-images-per-subject", "6", "--device", "cpu", "--no-progress"])


def test_demo_end_to_end_then_reuses_finished_steps(tmp_path, capsys):
    assert _demo(tmp_path) == 0
    out = capsys.readouterr().out
    assert "Synthetic demonstration set" in out and "| model |" in out and "report:" in out
    for m in MODELS:
        assert (tmp_path / "final_models" / f"{m}.pt").is_file(), m
        assert (tmp_path / "graphs" / f"{m}_confusion.png").is_file(), m
    rows = list(csv.DictReader((tmp_path / "graphs" / "results.csv").open()))
    assert [r["model"] for r in rows] == list(MODELS)
    assert all(0.0 <= float(r["acc"]) <= 1.0 and int(r["n_common"]) > 0 for r in rows)
    html = (tmp_path / "reports" / "report.html").read_text()
    assert "data:image/png;base64" in html and "SYNTHETIC" in html.upper()
    assert (tmp_path / "graphs" / "data_summary.json").is_file()
    # where the time went: every step timed, in order, and the ResNet-34's start said
    timings = json.loads((tmp_path / "graphs" / "demo_timings.json").read_text())
    assert timings["plan"] == "quick" and list(timings["steps_s"]) == ["dataset", "crops", *MODELS, "evaluation", "report"]
    assert all(v >= 0 for v in timings["steps_s"].values())
    assert timings["total_s"] >= sum(timings["steps_s"].values()) - 0.5  # each rounded to 0.1 s
    assert "plan 'quick'" in out and ("[resnet34] trains from scratch" in out or "[resnet34] starts from" in out)

    mtimes = {m: (tmp_path / "final_models" / f"{m}.pt").stat().st_mtime_ns for m in MODELS}
    crops = sorted((tmp_path / "data").glob("crops_*/train/*/*.jpg"))
    crop_mtime = crops[0].stat().st_mtime_ns
    assert _demo(tmp_path) == 0
    out = capsys.readouterr().out
    assert out.count("finished checkpoint found") == len(MODELS)
    assert {m: (tmp_path / "final_models" / f"{m}.pt").stat().st_mtime_ns for m in MODELS} == mtimes
    assert crops[0].stat().st_mtime_ns == crop_mtime
