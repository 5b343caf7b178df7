"""The ``hand-gestures`` command: one subcommand per pipeline step.

Adding a step is one line in :data:`COMMANDS`: its module provides
``add_arguments(parser)`` and ``run(args) -> int``. Only the module of the
command being run is imported, so ``hand-gestures --help`` and light steps
(inspect, crop) do not pay for importing the training stack.

Bad input data (:class:`~data_loaders.errors.DataError`) is reported as one
line ``error: <message>`` with exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from typing import NamedTuple, Sequence

from data_loaders.errors import CheckpointMismatchError, DataError, UsageError, UserFacingError


class Command(NamedTuple):
    name: str
    help: str
    module: str  # provides add_arguments(parser) and run(args) -> int


COMMANDS: list[Command] = [
    Command("inspect", "count images/hands/landmarks/users per split and class, check subject leaks, draw samples",
            "data_loaders.dataset_summary"),
    Command("crop", "crop every hand to a square image and write the crop manifest", "data_loaders.crop"),
    Command("train", "train one model (any registered name) with the shared engine; DDP under torchrun",
            "engine.train"),
    Command("evaluate", "score checkpoints on the test split: table with CIs, McNemar, confusion matrices",
            "engine.evaluate"),
    Command("report", "write reports/report.html (self-contained) and its Markdown twin from graphs/",
            "engine.report"),
    Command("synth", "generate the synthetic demonstration set in HaGRID's v2 layout", "data_loaders.synth"),
    Command("demo", "the main job: (synthetic data ->) crop -> train all five models -> evaluate -> report",
            "engine.demo"),
    Command("download", "download HaGRID archives (v1/v2, subsample/512p/full) and unpack them", "data_loaders.download"),
]

EXIT_DATA_ERROR = 2
#: Errors about the user's input (data, checkpoints, options, missing files, unavailable weights):
#: one line ``error: <message>`` and exit status 2. Anything else is a bug and keeps its traceback.
USER_ERRORS = (DataError, CheckpointMismatchError, UsageError, UserFacingError, FileNotFoundError)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; only the command named in ``argv`` gets its arguments (and its module imported)."""
    parser = argparse.ArgumentParser(
        prog="hand-gestures", description="Train and compare hand-gesture classifiers on HaGRID.")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        if cmd.name == chosen:
            module = importlib.import_module(cmd.module)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # PyTorch Geometric's import triggers torch's own deprecation notice for torch.jit.script: not ours to act on
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return int(args._run(args) or 0)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_DATA_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
