"""Shared fixtures: the real HaGRID sample beside the checkout (skipped when absent)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = Path(os.environ.get("HAGRID_SAMPLE", REPO.parent / "shared" / "hagrid_sample"))


@pytest.fixture(scope="session")
def hagrid_sample() -> Path:
    """Path to ``../shared/hagrid_sample`` (HaGRID v2 layout); skips the test when it is absent."""
    if not (SAMPLE / "hagrid_annotations").is_dir():
        pytest.skip(f"HaGRID sample not found at {SAMPLE}")
    return SAMPLE
