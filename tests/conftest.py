"""Shared fixtures: the real HaGRID sample beside the checkout (skipped when absent), and a small
HaGRID v2 set written from ``specs`` (a test file overrides ``specs`` to change what is written)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hagrid_fixtures import make_specs, write_v2

REPO = Path(__file__).resolve().parents[1]
SAMPLE = Path(os.environ.get("HAGRID_SAMPLE", REPO.parent / "shared" / "hagrid_sample"))


@pytest.fixture(scope="session")
def synth_crops(tmp_path_factory) -> Path:
    """A tiny synthetic HaGRID (v2 layout) and its crops: always available, no sample needed (read-only)."""
    from data_loaders.crop import crop_dataset
    from data_loaders.synthetic.generate import generate_synthetic_hagrid

    root = tmp_path_factory.mktemp("synth")
    generate_synthetic_hagrid(root / "data", n_subjects=12, images_per_subject=6, seed=1, progress=False)
    crop_dataset(root / "data", root / "crops", workers=1, progress=False)
    return root / "crops"


@pytest.fixture(scope="session")
def hagrid_sample() -> Path:
    """Path to ``../shared/hagrid_sample`` (HaGRID v2 layout); skips the test when it is absent."""
    if not (SAMPLE / "hagrid_annotations").is_dir():
        pytest.skip(f"HaGRID sample not found at {SAMPLE}")
    return SAMPLE


@pytest.fixture
def specs():
    """Three classes, three images each, every hand a gesture with landmarks."""
    return make_specs(("call", "fist", "palm"), per_class=3, no_gesture_every=0, empty_landmarks_every=0)


@pytest.fixture
def root(tmp_path, specs):
    """``specs`` written in HaGRID's v2 layout."""
    return write_v2(tmp_path / "v2", specs)


@pytest.fixture(scope="session")
def random_checkpoints(tmp_path_factory):
    """``{model name: path}``: an untrained checkpoint of every registered model (written once per session)."""
    from checkpoint_fixtures import random_checkpoints as write

    return write(tmp_path_factory.mktemp("random_checkpoints"))
