"""The GPU and seed-ratio benchmarks run (tiny, on the CPU) so that they do not rot; no timing asserts."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from model_classes import list_models

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cli(*argv: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-m", "engine.cli", *argv], check=True, env=env, capture_output=True)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny synthetic HaGRID (v2 layout) and its crops, made with the CLI: (raw folder, crops folder)."""
    root = tmp_path_factory.mktemp("bench_synth")
    raw, crops = root / "raw", root / "crops"
    _cli("synth", "--out", str(raw), "--subjects", "12", "--images-per-subject", "6", "--no-progress")
    _cli("crop", "--data-dir", str(raw), "--out", str(crops), "--no-progress")
    return raw, crops


def test_bench_gpu_tiny_cpu_every_model(tmp_path, capsys):
    bench = _load("bench_gpu")
    res = bench.main(["--tiny", "--device", "cpu", "--no-compile", "--threads", "1", "--out", str(tmp_path)])
    rows = {r["model"]: r for r in res["rows"]}
    assert set(rows) == set(list_models()) == {"mlp", "cnn", "gcn", "resnet34", "fusion"}
    for r in rows.values():
        assert "error" not in r, r
        assert r["train_samples_s"] > 0 and r["infer_samples_s"] > 0
        assert r["compile"] is False and r["train_peak_mib"] is None  # CPU: memory n/a
    saved = json.loads((tmp_path / "bench_gpu.json").read_text())
    assert [r["model"] for r in saved["rows"]] == [r["model"] for r in res["rows"]]
    out = capsys.readouterr().out
    table = out[out.rindex("| model |"):]
    for name in rows:
        assert f"| {name} |" in table
    assert ">= 10,000 train img/s" in table and "weights=None" in out
    bench.main(["--summarize", str(tmp_path / "bench_gpu.json")])
    assert "| resnet34 | no |" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_gpu_end_to_end_tiny(tmp_path, tiny_set, capsys):
    raw, _ = tiny_set
    bench = _load("bench_gpu")
    res = bench.main(["--tiny", "--device", "cpu", "--no-synthetic", "--sample-dir", str(raw), "--epochs", "1",
                      "--threads", "1", "--out", str(tmp_path)])
    (e2e,) = res["e2e"]
    assert e2e["crop_s"] > 0 and e2e["crops"] > 0 and e2e["total_s"] > 0
    assert list(e2e["models"]) == ["mlp", "gcn", "cnn", "resnet34", "fusion"]
    assert e2e["models"]["fusion"]["init_from"] == ["gcn", "resnet34"]
    for m in e2e["models"].values():
        assert m["seconds"] > 0 and m["epochs_run"] == 1 and m["train_samples_s_median"] > 0
    assert "target < 120 s" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_gpu_ddp_check_under_torchrun_cpu(tmp_path, tiny_set):
    _, crops = tiny_set
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
         str(BENCH / "bench_gpu.py"), "--ddp-check", "--tiny", "--device", "cpu", "--crops-dir", str(crops),
         "--threads", "1", "--work-dir", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("ddp-check summary: "))
    summary = json.loads(line.split(": ", 1)[1])
    assert summary["reload_ok"] and summary["ddp_ok"] and summary["explicit_backend"] == "gloo"
    assert Path(summary["checkpoint"]).is_file()


def test_bench_seed_ratio_tiny(tmp_path, tiny_set, capsys):
    _, crops = tiny_set
    bench = _load("bench_seed_ratio")
    res = bench.main(["--tiny", "--crops-dir", str(crops), "--seed-workers", "1", "--threads", "1",
                      "--out", str(tmp_path)])
    rows = res["rows"]
    whats = " ".join(r["what"] for r in rows)
    for part in ("(a) GCN", "crop loading 64px", "crop loading 128px", "(c) cnn", "(c) resnet34"):
        assert part in whats
    assert all(r["ratio"] > 0 for r in rows)
    assert res["gcn"]["seed"]["samples_s"] > 0 and res["gcn"]["ours"]["samples_s"] > 0
    assert (tmp_path / "seed_ratio.json").is_file() and (tmp_path / "seed_ratio.md").is_file()
    assert "ours / seed" in capsys.readouterr().out


def test_bench_crop_cache_tiny(tmp_path, capsys):
    bench = _load("bench_crop_cache")
    res = bench.main(["--tiny", "--work-dir", str(tmp_path), "--no-progress", "--out", str(tmp_path / "cache.json")])
    assert res["n"] > 0 and res["cache_bytes"] == res["n"] * 3 * 64 * 64 and res["cache_build_s"] > 0
    for k in ("jpeg_data_img_s", "cache_data_img_s", "jpeg_train_img_s", "cache_train_img_s"):
        assert res[k] > 0, k
    assert json.loads((tmp_path / "cache.json").read_text())["n"] == res["n"]
    out = capsys.readouterr().out
    assert "data epoch, decoded cache" in out and "cnn training epoch, JPEG DataLoader" in out
    assert not list(tmp_path.glob("bench_crop_cache_tiny_*"))  # its temporary crops are removed
