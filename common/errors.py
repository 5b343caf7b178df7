"""Errors that name the file (and record) that caused them."""
from __future__ import annotations

from pathlib import Path


class DataError(Exception):
    """Bad input data: the message names the file, the record and the problem."""

    def __init__(self, path: str | Path, problem: str | None = None, uuid: str | None = None) -> None:
        if problem is None:
            # Rebuilt from one message, as torch's DataLoader does with an error from a worker
            # ("Caught DataError in DataLoader worker ... Original Traceback ... DataError: <path>: <problem>"):
            # keep the original one-line message, not the traceback around it.
            lines = [ln for ln in str(path).strip().splitlines() if ln.strip()]
            text = lines[-1].split("DataError: ", 1)[-1] if lines else str(path)
            path, problem = text.split(": ", 1) if ": " in text else ("", text)
            uuid = None
        self.path = str(path)
        self.uuid = uuid
        self.problem = problem
        where = f"{self.path}" + (f" [{uuid}]" if uuid else "")
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):
        # rebuilt from its parts, so it crosses process boundaries (DataLoader workers, Pool) intact
        return (type(self), (self.path, self.problem, self.uuid))


class UserFacingError(Exception):
    """Base for errors whose message says all a user needs (e.g. weights that cannot be fetched):
    the command line prints the message alone, without a traceback."""


class CheckpointMismatchError(Exception):
    """A checkpoint does not match the model or data it is being used with."""


class UsageError(Exception):
    """A command-line value that cannot be used (reported as one line, exit status 2)."""
