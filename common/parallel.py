"""One way to fan work out over processes: a process pool when it pays, the same loop in-process otherwise.

The pool is created before the caller starts a progress bar (tqdm's monitor thread must not exist when
the workers fork) and stopped as soon as the caller leaves the ``with`` block, results read or not.
"""
from __future__ import annotations

import multiprocessing
import os
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Sequence


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask on Linux, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def mapped(func: Callable[[Any], Any], tasks: Sequence[Any], workers: int, *, ordered: bool = True,
           chunksize: int = 1, initializer: Callable[..., None] | None = None,
           initargs: tuple = ()) -> Iterator[Iterable[Any]]:
    """``func`` over ``tasks`` as an iterator: in a pool of ``workers`` processes when there are more than one
    worker and one task, else in this process (``initializer`` runs here first).
    ``ordered=False`` yields results as they finish."""
    pool = None
    if workers > 1 and len(tasks) > 1:  # the platform's start method: fork on Linux
        pool = multiprocessing.Pool(min(workers, len(tasks)), initializer=initializer, initargs=initargs)
    elif initializer is not None:
        initializer(*initargs)
    try:
        if pool is None:
            yield map(func, tasks)
        else:
            yield (pool.imap if ordered else pool.imap_unordered)(func, tasks, chunksize=max(1, chunksize))
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
