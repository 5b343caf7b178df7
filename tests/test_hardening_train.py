"""Training-side hardening (issue 9): bad options, output folders and checkpoints end in one line
``error: ...`` (exit 2) before any work, never a traceback; loaded models are ready for inference."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.errors import CheckpointMismatchError
from engine import cli
from engine.checkpoint import load_checkpoint, load_model, make_checkpoint, save_checkpoint
from model_classes import create_model

REPO = Path(__file__).resolve().parents[1]


def _train(tmp_path: Path, capsys, *options: str) -> tuple[int, str]:
    """``hand-gestures train`` with ``options`` on a crops folder that does not exist: a run that got
    past option checking would stop at the missing crops instead, with another message."""
    argv = ["train", "--crops-dir", str(tmp_path / "no_crops"), "--out-dir", str(tmp_path / "models"),
            "--graphs-dir", str(tmp_path / "graphs"), "--no-progress", *options]
    capsys.readouterr()
    rc = cli.main(argv)
    err = capsys.readouterr().err.strip()
    return rc, err


def _one_line_error(rc: int, err: str, *expected: str) -> None:
    assert rc == 2 and err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for text in expected:
        assert text in err, err


@pytest.mark.parametrize("options,expected", [
    (["--model", "fusion", "--init-from", "resnet=r.pt"], ["--init-from", "'resnet'", "resnet34, gcn"]),
    (["--model", "fusion", "--init-from", "gnc=g.pt"], ["--init-from", "'gnc'", "resnet34, gcn"]),
    (["--model", "mlp", "--init-from", "gcn=g.pt"], ["--init-from", "--model fusion"]),
])
def test_init_from_with_unknown_branch_or_on_a_non_fusion_model_is_a_usage_error(tmp_path, capsys, options, expected):
    _one_line_error(*_train(tmp_path, capsys, *options), *expected)


@pytest.mark.parametrize("options,flag", [
    (["--epochs", "0"], "--epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--workers", "-1"], "--workers"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "-0.1"], "--lr"),
    (["--weight-decay", "inf"], "--weight-decay"),
    (["--patience", "-2"], "--patience"),
    (["--max-train-batches", "0"], "--max-train-batches"),
    (["--device", "tpu"], "--device"),
    pytest.param(["--device", "cuda"], "--device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")),
])
def test_training_options_are_validated_before_any_work(tmp_path, capsys, options, flag):
    _one_line_error(*_train(tmp_path, capsys, "--model", "mlp", *options), flag)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


@pytest.mark.parametrize("option", ["--out-dir", "--graphs-dir"])
def test_unwritable_output_folders_stop_training_before_it_starts(tmp_path, capsys, option):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    rc, err = _train(tmp_path, capsys, "--model", "mlp", option, str(blocker / "sub"))
    _one_line_error(rc, err, option, str(blocker / "sub"))


def test_os_errors_are_one_line_errors_naming_the_path(tmp_path, capsys, monkeypatch):
    import engine.train

    def disk_full(cfg, callbacks=()):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "models" / "mlp.pt"))

    monkeypatch.setattr(engine.train, "fit", disk_full)
    rc, err = _train(tmp_path, capsys, "--model", "mlp")
    _one_line_error(rc, err, f"{tmp_path / 'models' / 'mlp.pt'}: {os.strerror(errno.ENOSPC)}")


def _mlp_checkpoint(path: Path, preprocessing: dict) -> Path:
    model = create_model("mlp", 3)
    return save_checkpoint(path, make_checkpoint(model, model_name="mlp", class_names=["a", "b", "c"],
                                                 preprocessing=preprocessing))


def test_checkpoint_without_preprocessing_inputs_names_the_file_and_key(tmp_path):
    path = _mlp_checkpoint(tmp_path / "old.pt", {"landmark_norm": "wrist"})
    with pytest.raises(CheckpointMismatchError, match=r"old\.pt.*inputs"):
        load_checkpoint(path)


def test_load_model_returns_an_inference_ready_model(tmp_path):
    path = _mlp_checkpoint(tmp_path / "mlp.pt", {"inputs": ["landmarks"], "landmark_norm": "wrist"})
    model, _ = load_model(path)
    assert not any(m.training for m in model.modules())
    trainable, _ = load_model(path, train=True)
    assert all(m.training for m in trainable.modules())


def test_importing_the_models_prints_no_torch_geometric_future_warning():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", "import model_classes"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "FutureWarning" not in proc.stderr, proc.stderr[-2000:]
