"""Errors that name the file (and record) that caused them."""
from __future__ import annotations

from pathlib import Path


class DataError(Exception):
    """Bad input data: the message names the file, the record and the problem."""

    def __init__(self, path: str | Path, problem: str, uuid: str | None = None) -> None:
        self.path = str(path)
        self.uuid = uuid
        self.problem = problem
        where = f"{self.path}" + (f" [{uuid}]" if uuid else "")
        super().__init__(f"{where}: {problem}")


class CheckpointMismatchError(Exception):
    """A checkpoint does not match the model or data it is being used with."""
