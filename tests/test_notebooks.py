"""Every notebook runs headless, thin as it is, through its parameters cell.

On the real sample when it is present (fixture data otherwise), with tiny
settings: the point is that each notebook's calls work end to end.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from conftest import REPO, SAMPLE
from nbclient import NotebookClient

from data_loaders.synthetic.generate import generate_synthetic_hagrid

TRAINING = [
    ("train_mlp_baseline", "mlp", {}),
    ("train_gnn", "gcn", {}),
    ("train_cnn_baseline", "cnn", {}),
    ("train_resnet", "resnet34", {"weights": None}),
    ("train_fusion", "fusion", {"freeze_branches": True}),  # branches come from the resnet34 and gcn above
]


def _run(nb_path: Path, params: str) -> nbformat.NotebookNode:
    nb = nbformat.read(nb_path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{nb_path}: needs exactly one cell tagged 'parameters'"
    cells[0].source = params
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(nb_path.parent)}}).execute()
    return nb


def _outputs_text(nb: nbformat.NotebookNode) -> str:
    return json.dumps([c.get("outputs", []) for c in nb.cells if c.cell_type == "code"])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("notebooks")
    if (SAMPLE / "hagrid_annotations").is_dir():
        data = SAMPLE
    else:
        data = root / "synth"
        generate_synthetic_hagrid(data, n_subjects=12, images_per_subject=6, seed=2, progress=False)
    return {"data": data, "crops": root / "crops", "models": root / "models", "graphs": root / "graphs"}


def test_notebooks_are_committed_without_outputs():
    for nb_path in [REPO / "test_models.ipynb", *sorted((REPO / "training_scripts").glob("*.ipynb"))]:
        nb = nbformat.read(nb_path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), nb_path


def test_training_notebooks_then_evaluation_notebook(workspace):
    w = workspace
    for stem, model, hparams in TRAINING:
        params = (f"DATA_DIR = {str(w['data'])!r}\nCROPS_DIR = {str(w['crops'])!r}\nOUT_DIR = {str(w['models'])!r}\n"
                  f"GRAPHS_DIR = {str(w['graphs'])!r}\nEPOCHS = 1\nBATCH_SIZE = 16\nDEVICE = 'cpu'\nSEED = 0\n"
                  f"MAX_TRAIN_BATCHES = 2\nHPARAMS = {hparams!r}\n")
        nb = _run(REPO / "training_scripts" / f"{stem}.ipynb", params)
        text = _outputs_text(nb)
        assert "best validation accuracy" in text and "image/png" in text, stem
        assert (w["models"] / f"{model}.pt").is_file(), stem
    nb = _run(REPO / "test_models.ipynb",
              f"DATA_DIR = {str(w['data'])!r}\nCROPS_DIR = {str(w['crops'])!r}\nMODELS_DIR = {str(w['models'])!r}\n"
              f"GRAPHS_DIR = {str(w['graphs'])!r}\nDEVICE = 'cpu'\nSPLIT = 'test'\nCAPTION = 'notebook test'\n"
              "FRAMES = 2\n")
    text = _outputs_text(nb)
    for model in ("mlp", "cnn", "gcn", "resnet34", "fusion"):
        assert (w["graphs"] / f"{model}_confusion.png").is_file()
        assert model in text
    assert (w["graphs"] / "results.csv").is_file() and (w["graphs"] / "orientation_pairs.png").is_file()
    # predictions on full frames: an annotated copy of each frame shown, and the table of hands
    assert len(list((w["graphs"] / "predictions").glob("*_predicted.jpg"))) == 2
    assert "fusion.pt" in text and "probability" in text
