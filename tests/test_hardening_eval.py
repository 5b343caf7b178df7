"""Hardening of evaluation and reporting (issue 9): rows named by the checkpoint's own run name (#6),
`--update-readme` checked before any work and `report` without a graphs folder (#12)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from data_loaders.crop import crop_dataset
from data_loaders.synthetic.generate import generate_synthetic_hagrid
from engine import cli
from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.evaluate import evaluate_checkpoints
from engine.reporting.tables import README_END, README_START, read_csv_rows
from engine.train import TrainConfig, fit


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """Crops of a tiny synthetic set and an mlp trained on them for one epoch."""
    root = tmp_path_factory.mktemp("hardening_eval")
    generate_synthetic_hagrid(root / "data", n_subjects=8, images_per_subject=4, seed=5, progress=False)
    crop_dataset(root / "data", root / "crops", workers=1, progress=False)
    res = fit(TrainConfig(
        model="mlp", crops_dir=str(root / "crops"), out_dir=str(root / "models"), graphs_dir=str(root / "graphs"),
        device="cpu", progress=False, tensorboard=False, epochs=1, patience=0, num_workers=0,
    ))
    return {"crops": root / "crops", "mlp": Path(res.best_checkpoint)}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_evaluate_labels_rows_by_the_run_name_recorded_in_the_checkpoint(trained, tmp_path):
    """#6: an mlp checkpoint renamed gcn.pt is reported as "mlp"; two checkpoints of one run name
    are told apart by their file names; evaluation.json says which file each row came from."""
    renamed = tmp_path / "gcn.pt"
    shutil.copy(trained["mlp"], renamed)
    g = tmp_path / "graphs"
    cmp = evaluate_checkpoints([renamed], crops_dir=trained["crops"], device="cpu", graphs_dir=g)
    assert cmp.models == ["mlp"]
    assert [r["model"] for r in read_csv_rows(g / "results.csv")] == ["mlp"]
    assert json.loads((g / "evaluation.json").read_text())["checkpoints"] == {"mlp": str(renamed)}

    named = load_checkpoint(trained["mlp"])
    named["args"]["run_name"] = "mlp_small"
    named_path = save_checkpoint(tmp_path / "cnn.pt", named)
    cmp = evaluate_checkpoints([trained["mlp"], renamed, named_path], crops_dir=trained["crops"], device="cpu",
                               graphs_dir=None)
    assert cmp.models == ["mlp (mlp.pt)", "mlp (gcn.pt)", "mlp_small"]
    assert cmp.extra["checkpoints"] == {"mlp (mlp.pt)": str(trained["mlp"]), "mlp (gcn.pt)": str(renamed),
                                        "mlp_small": str(named_path)}


def test_update_readme_without_markers_fails_before_any_work(trained, tmp_path, capsys):
    """#12: a README without the results markers (or no README) is one error line, and nothing is written."""
    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n")
    g = tmp_path / "graphs"
    argv = ["evaluate", str(trained["mlp"]), "--crops-dir", str(trained["crops"]), "--graphs-dir", str(g),
            "--device", "cpu", "--update-readme"]
    assert cli.main(argv + [str(readme)]) == 2
    line = _one_error_line(capsys)
    assert str(readme) in line and README_START in line and README_END in line
    assert not g.exists()
    assert readme.read_text() == "# no markers here\n"

    assert cli.main(argv + [str(tmp_path / "missing.md")]) == 2
    assert "missing.md" in _one_error_line(capsys)
    assert not g.exists()


def test_report_without_graphs_folder_is_an_error(tmp_path, capsys):
    """#12: `report` on a graphs folder that does not exist exits 2 naming it, and writes no report."""
    missing = tmp_path / "no_such_graphs"
    out = tmp_path / "reports"
    assert cli.main(["report", "--graphs-dir", str(missing), "--out-dir", str(out)]) == 2
    line = _one_error_line(capsys)
    assert str(missing) in line and "--graphs-dir" in line
    assert not out.exists()
