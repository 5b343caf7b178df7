"""The report's speed table: ms per hand per model (``results.csv``) and frames/s end to end where measured.

``results.csv``'s ``ms_per_sample`` is the evaluation's own timing: the model over the test split in batches,
divided by the hands, on the device the evaluation ran on. That is throughput, not the latency of one hand in
a live stream; one-hand latency and frames/s end to end (detector + box + classifier on video) are what
``benchmarks/bench_predict.py`` measures (:data:`SPEED_COMMAND`). Frames/s are shown when an artefact records
them: any ``*fps*`` column of ``end_to_end.csv``.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

from engine.reporting.tables import to_float

__all__ = ["SPEED_HEADERS", "SPEED_ALIGN", "SPEED_COMMAND", "speed_cells", "fps_columns", "speed_explanation"]

SPEED_HEADERS = ("model", "ms per hand", "hands/s", "device", "parameters")
SPEED_ALIGN = ("l", "r", "r", "l", "r")
#: The command that measures one-hand latency and frames/s end to end (benchmarks/README.md has its figures).
SPEED_COMMAND = "uv run python benchmarks/bench_predict.py --models-dir final_models"


def speed_cells(results: Sequence[Mapping]) -> list[list[str]]:
    """One row per model of ``results.csv``: ms per hand, hands per second, device, parameters."""
    rows = []
    for x in results:
        ms, n = to_float(x.get("ms_per_sample")), to_float(x.get("n_params"))
        rows.append([str(x.get("model", "")), "n/a" if math.isnan(ms) else f"{ms:.3f}",
                     "n/a" if math.isnan(ms) or ms <= 0 else f"{1000 / ms:,.0f}", str(x.get("device") or "n/a"),
                     "n/a" if math.isnan(n) else f"{int(n):,}"])
    return rows


def fps_columns(rows: Sequence[Mapping]) -> list[str]:
    """The columns of ``end_to_end.csv`` rows that hold frames per second (their name says ``fps``)."""
    return [k for k in (rows[0] if rows else {}) if "fps" in k.lower()]


def speed_explanation(split: str = "test") -> str:
    return (f"ms per hand: the evaluation's own timing, each model over the {split} split in batches, divided by "
            "the hands (model call and batch transform on the device shown; no detector, no cropping). It is "
            "throughput, so one hand at a time in a live stream costs more.")
