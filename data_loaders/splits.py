"""Subject-level splits: about 15 images per person, so an image-level split leaks."""
from __future__ import annotations

import bisect
import hashlib
import itertools
from collections import defaultdict
from typing import Iterable, Mapping, Sequence

UNKNOWN_GROUP_SPLIT = "train"


def subject_position(user_id: str, seed: int = 0) -> float:
    """A user's place in ``[0, 1)``: a seeded stable hash of the user_id alone.

    Stable across processes and Python versions (not ``hash()``), and independent
    of which other users, classes or splits are loaded.
    """
    digest = hashlib.blake2b(user_id.encode("utf-8"), digest_size=8, key=str(int(seed)).encode()).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def subject_split(user_id: str, fractions: Mapping[str, float], seed: int = 0) -> str:
    """The split of one user: :func:`subject_position` against the cumulative ``fractions``
    (in their order; they need not sum to 1)."""
    names, bounds = _cumulative(fractions)
    return names[min(bisect.bisect_right(bounds, subject_position(user_id, seed)), len(names) - 1)]


def _cumulative(fractions: Mapping[str, float]) -> tuple[list[str], list[float]]:
    if not fractions:
        raise ValueError("fractions is empty")
    total = sum(fractions.values())
    if total <= 0 or any(v < 0 for v in fractions.values()):
        raise ValueError(f"bad split fractions {dict(fractions)}")
    names = list(fractions)
    return names, list(itertools.accumulate(fractions[n] / total for n in names))


def split_by_subject(
    user_ids: Sequence[str | None], fractions: Mapping[str, float], seed: int = 0
) -> tuple[list[str], int]:
    """Assign each item a split so that no user_id appears in two splits.

    A user's split is a function of ``(user_id, seed)`` and ``fractions`` alone
    (:func:`subject_split`): the same person lands in the same split whatever
    else is loaded (another class subset, ``no_gesture`` or not). Shares are met
    in expectation over users, not exactly. Items without a user_id go to
    ``train`` (they cannot be checked for leakage, so they must not sit in an
    evaluation split). Returns the split per item and the number of items
    without a user_id.
    """
    _cumulative(fractions)  # bad fractions are an error even when no item has a user_id
    cache: dict[str, str] = {}
    out: list[str] = []
    n_unknown = 0
    for u in user_ids:
        if u is None:
            out.append(UNKNOWN_GROUP_SPLIT)
            n_unknown += 1
            continue
        s = cache.get(u)
        if s is None:
            s = cache[u] = subject_split(u, fractions, seed)
        out.append(s)
    return out, n_unknown


def find_subject_leaks(items: Iterable[tuple[str | None, str]]) -> dict[str, list[str]]:
    """Return ``{user_id: [splits]}`` for every user_id present in more than one split.

    ``items`` are ``(user_id, split)`` pairs; unknown user_ids are ignored.
    """
    seen: dict[str, set[str]] = defaultdict(set)
    for u, s in items:
        if u is not None:
            seen[u].add(s)
    return {u: sorted(s) for u, s in sorted(seen.items()) if len(s) > 1}
