"""Subject-level splits: about 15 images per person, so an image-level split leaks."""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping, Sequence

import numpy as np

UNKNOWN_GROUP_SPLIT = "train"


def split_by_subject(
    user_ids: Sequence[str | None], fractions: Mapping[str, float], seed: int = 0
) -> tuple[list[str], int]:
    """Assign each item a split so that no user_id appears in two splits.

    Subjects are shuffled with ``seed`` and filled into the splits in order,
    each taking subjects until its share of *items* is reached. Items without
    a user_id form one group that goes to ``train`` (it cannot be checked for
    leakage, so it must not sit in an evaluation split). Returns the split per
    item and the number of items without a user_id.
    """
    if not fractions:
        raise ValueError("fractions is empty")
    total = sum(fractions.values())
    if total <= 0 or any(v < 0 for v in fractions.values()):
        raise ValueError(f"bad split fractions {dict(fractions)}")
    counts: dict[str, int] = defaultdict(int)
    for u in user_ids:
        if u is not None:
            counts[u] += 1
    subjects = sorted(counts)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(subjects))
    n_known = sum(counts.values())
    names = list(fractions)
    # evaluation splits first, so small fractions get whole subjects; train takes the rest
    eval_names = [n for n in names if n != UNKNOWN_GROUP_SPLIT]
    targets = {n: fractions[n] / total * n_known for n in eval_names}
    subject_split: dict[str, str] = {}
    filled = {n: 0 for n in eval_names}
    k = 0
    for name in eval_names:
        while k < len(order) and filled[name] < targets[name]:
            s = subjects[order[k]]
            subject_split[s] = name
            filled[name] += counts[s]
            k += 1
    rest = UNKNOWN_GROUP_SPLIT if UNKNOWN_GROUP_SPLIT in fractions else names[0]
    for j in range(k, len(order)):
        subject_split[subjects[order[j]]] = rest
    out = [subject_split[u] if u is not None else UNKNOWN_GROUP_SPLIT for u in user_ids]
    n_unknown = sum(u is None for u in user_ids)
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
