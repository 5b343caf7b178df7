"""Wall time of the README's first command from a clean clone, and where each second goes.

Clones the repository's committed HEAD into a temporary folder (nothing from the working tree), runs
``uv run hand-gestures demo`` there as a new user would, and prints the wall time with the demo's own
per-step seconds (``graphs/demo_timings.json``); "setup" is what the demo's clock does not see: uv's
resolution and environment sync, and Python importing torch, PyG and the rest.

    uv run python benchmarks/bench_demo.py                 # the default (quick) plan
    uv run python benchmarks/bench_demo.py --plan cpu      # the long CPU plan

Needs uv on PATH and its package cache warm (a cold one also downloads PyTorch). Run it on an otherwise
idle machine: the figure is a wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def clone(repo: Path, into: Path) -> str:
    """A clean clone of ``repo``'s HEAD in ``into``; returns the commit."""
    subprocess.run(["git", "clone", "-q", str(repo), str(into)], check=True)
    return subprocess.run(["git", "-C", str(into), "rev-parse", "--short", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


def run_demo(work: Path, plan: str) -> tuple[float, int, str]:
    """``uv run hand-gestures demo`` in ``work``: wall seconds, exit status and the output's tail."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}  # uv uses the clone's own .venv
    t = time.perf_counter()
    proc = subprocess.run(["uv", "run", "hand-gestures", "demo", "--plan", plan, "--no-progress"], cwd=work,
                          env=env, capture_output=True, text=True)
    return time.perf_counter() - t, proc.returncode, (proc.stdout + proc.stderr)[-3000:]


def report(wall: float, timings: dict, commit: str, plan: str) -> str:
    steps = timings["steps_s"]
    lines = [f"commit {commit}, plan {plan!r}, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
             f"python {platform.python_version()}",
             "", "| step | seconds |", "|---|---:|",
             f"| setup (uv resolve + sync, imports) | {wall - timings['total_s']:.0f} |"]
    lines += [f"| {name} | {sec:.0f} |" for name, sec in steps.items()]
    lines += [f"| **wall, from a clean clone** | **{wall:.0f} ({wall / 60:.1f} min)** |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", default="quick")
    ap.add_argument("--repo", type=Path, default=REPO, help="the git repository to clone (default: this one)")
    ap.add_argument("--keep", action="store_true", help="keep the clone (its reports/ and graphs/)")
    args = ap.parse_args(argv)
    if shutil.which("uv") is None:
        print("bench_demo: uv is not on PATH (python3 -m pip install uv)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench_demo_"))
    try:
        commit = clone(args.repo, work / "clone")
        wall, rc, tail = run_demo(work / "clone", args.plan)
        if rc != 0:
            print(f"bench_demo: the demo exited with {rc}:\n{tail}", file=sys.stderr)
            return 1
        timings = json.loads((work / "clone" / "graphs" / "demo_timings.json").read_text())
        print(report(wall, timings, commit, args.plan))
        return 0
    finally:
        if args.keep:
            print(f"clone kept in {work / 'clone'}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
