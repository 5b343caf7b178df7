"""Gesture class sets and their stable order.

Every artefact (crop manifest, checkpoint, results table) stores the class names
in the order given here, so a model trained today can be read tomorrow even if
the defaults change.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Sequence

from common.errors import DataError

NO_GESTURE = "no_gesture"

#: The 18 gestures of HaGRID v1, in alphabetical (= HaGRID's folder) order.
GESTURES_18: tuple[str, ...] = (
    "call", "dislike", "fist", "four", "like", "mute", "ok", "one", "palm",
    "peace", "peace_inverted", "rock", "stop", "stop_inverted", "three",
    "three2", "two_up", "two_up_inverted",
)

#: HaGRID v2 adds 15 gestures to the 18 of v1 (33 in all, without no_gesture).
GESTURES_V2_EXTRA: tuple[str, ...] = (
    "grabbing", "grip", "hand_heart", "hand_heart2", "holy", "little_finger",
    "middle_finger", "point", "take_picture", "three3", "three_gun",
    "thumb_index", "thumb_index2", "timeout", "xsign",
)
GESTURES_33: tuple[str, ...] = tuple(sorted(GESTURES_18 + GESTURES_V2_EXTRA))

#: Every label HaGRID may put in an annotation file.
KNOWN_LABELS: frozenset[str] = frozenset(GESTURES_33) | {NO_GESTURE}

#: Pairs that differ only by orientation or by a detail a flip cannot create.
ORIENTATION_PAIRS: tuple[tuple[str, str], ...] = (
    ("peace", "peace_inverted"),
    ("stop", "stop_inverted"),
    ("two_up", "two_up_inverted"),
    ("like", "dislike"),
    ("mute", "one"),
)

_PRESETS = {"hagrid18": GESTURES_18, "hagrid33": GESTURES_33}
#: ``--classes dataset``: the labels the dataset itself holds (a user's own gestures from
#: ``hand-gestures annotate``): its annotation files for ``crop``, the crops folder's classes for ``train``.
DATASET_CLASSES = "dataset"
#: The class set every step uses unless told otherwise: the 18 gestures.
DEFAULT_CLASSES = "hagrid18"


@dataclass(frozen=True)
class ClassSet:
    """An ordered set of class names; the index of a name is its label id."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"class set has duplicate names: {self.names}")
        if not self.names:
            raise ValueError("class set is empty")

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    @property
    def _index(self) -> dict[str, int]:
        # cached on first use; frozen dataclass so go through object.__setattr__
        try:
            return self.__dict__["_idx"]
        except KeyError:
            idx = {n: i for i, n in enumerate(self.names)}
            object.__setattr__(self, "_idx", idx)
            return idx

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"unknown class {name!r}; known: {', '.join(self.names)}") from None

    def to_list(self) -> list[str]:
        return list(self.names)


def class_names(spec: str | Sequence[str]) -> list[str]:
    """The names a ``--classes`` value stands for, in order: a preset (``hagrid18``, ``hagrid33``), a
    comma-separated list, or a sequence of names. Unchecked: callers say which names are valid."""
    if not isinstance(spec, str):
        return list(spec)
    return list(_PRESETS[spec]) if spec in _PRESETS else [s.strip() for s in spec.split(",") if s.strip()]


def make_class_set(
    spec: str | Sequence[str] = DEFAULT_CLASSES, include_no_gesture: bool = False
) -> ClassSet:
    """Build a class set from :func:`class_names` of ``spec``. ``no_gesture`` is appended
    last when asked for, so the gesture ids do not move."""
    names = [n for n in class_names(spec) if n != NO_GESTURE]
    if include_no_gesture:
        names.append(NO_GESTURE)
    return ClassSet(tuple(names))


def checked_class_set(spec: str | Sequence[str] = DEFAULT_CLASSES, include_no_gesture: bool = False) -> ClassSet:
    """:func:`make_class_set` for user input: a name one letter or so from a HaGRID label is a typo and an
    error naming ``--classes`` (not an empty class); other names are a user's own gestures and pass."""
    try:
        cs = make_class_set(spec, include_no_gesture=include_no_gesture)
    except ValueError as e:
        raise DataError("--classes", str(e)) from None
    typos = {n: close for n in cs.names if n not in KNOWN_LABELS
             for close in difflib.get_close_matches(n, sorted(KNOWN_LABELS), n=1, cutoff=0.8)}
    if typos:  # a user's own gesture names pass; a near-miss of a HaGRID label is surely a typo
        raise DataError("--classes", "unknown class(es) " + ", ".join(f"{n} (did you mean {c}?)" for n, c in typos.items())
                        + f"; presets: {', '.join(_PRESETS)}, {DATASET_CLASSES}")
    return cs
