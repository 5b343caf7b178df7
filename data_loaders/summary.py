"""What is in a HaGRID root: counts per split and class, subject leaks, skips, sample images.

``hand-gestures inspect`` prints the table and writes ``graphs/data_summary.json``
(read by the report) and ``graphs/data_samples.png`` (boxes and landmark
skeletons drawn on a few images, to see that coordinates line up). It also reads
every image's header, to flag before cropping the hands that crop would skip.
"""
from __future__ import annotations

import io
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import orjson

from common.errors import DataError
from common.files import atomic_write_bytes

from .crop import box_problem
from .hagrid import HagridAnnotations, HandRecord, SkipLog, unreadable_image_reason, with_image_sizes
from .hand_graph import HAND_BONES
from .images import image_size, open_rgb
from .splits import find_subject_leaks

log = logging.getLogger(__name__)

SUMMARY_NAME = "data_summary.json"
SAMPLES_NAME = "data_samples.png"
COUNT_KEYS = ("images", "hands", "hands_with_landmarks", "users")
#: Prefix of the ``skipped`` reasons of hands the crop step will skip (see :func:`crop_problems`).
CROP_WILL_SKIP = "crop_will_skip:"


def summarize(annotations: HagridAnnotations) -> dict:
    """Counts per split x class (images, hands, hands with landmarks, distinct users), leaks and skips.

    The hands crop will skip (:func:`crop_problems`: one header read per image) are counted in
    ``skipped`` as ``crop_will_skip:<reason>``. The schema is fixed (the report reads it): see
    :func:`write_summary_json`.
    """
    ann = annotations
    names = ann.class_set.to_list()
    images: dict[tuple[str, str], set] = defaultdict(set)
    users: dict[tuple[str, str], set] = defaultdict(set)
    hands: dict[tuple[str, str], int] = defaultdict(int)
    with_lm: dict[tuple[str, str], int] = defaultdict(int)
    for r in ann.records:
        k = (r.split, r.label)
        images[k].add(r.uuid)
        hands[k] += 1
        with_lm[k] += r.landmarks is not None
        if r.user_id is not None:
            users[k].add(r.user_id)
    splits = {
        s: {c: {"images": len(images[s, c]), "hands": hands[s, c], "hands_with_landmarks": with_lm[s, c],
                "users": len(users[s, c])} for c in names}
        for s in ann.splits
    }
    skipped = dict(ann.skipped.counts)
    skipped.update(ann.excluded.counts)
    skipped.update({f"degraded:{k}": v for k, v in ann.degraded.counts.items()})
    skipped.update({f"{CROP_WILL_SKIP}{k}": v for k, v in crop_problems(ann.records).counts.items()})
    return {
        "dataset": str(ann.root),
        "format": ann.format,
        "class_names": names,
        "splits": splits,
        "skipped": dict(sorted(skipped.items())),
        "subject_leaks": find_subject_leaks((r.user_id, r.split) for r in ann.records),
        "split_totals": split_totals(ann),
    }


def crop_problems(records: list[HandRecord]) -> SkipLog:
    """The hands the crop step will skip, found from image headers alone (crop's reasons): image
    missing or unreadable (``missing_image``, ``corrupt_image``), box under one pixel wide or high
    (``zero_size_box``) or with no pixel inside the image. Logs one warning naming an example."""
    problems = SkipLog(entries=None)
    for r, wh in with_image_sizes(records, image_size):
        if isinstance(wh, DataError):
            problems.add(unreadable_image_reason(wh), wh.path, r.uuid, wh.problem, hand=r.hand)
        elif (bad := box_problem(r.bbox, wh)) is not None:
            problems.add(bad[0], r.image_path, r.uuid, bad[1], hand=r.hand)
    if problems.counts:
        log.warning("%d hand(s) will be skipped by crop (%s), e.g. %s", problems.total(),
                    ", ".join(f"{k} {v}" for k, v in sorted(problems.counts.items())),
                    "; ".join(ex[0] for _, ex in sorted(problems.examples.items())))
    return problems


def split_totals(annotations: HagridAnnotations) -> dict[str, dict[str, int]]:
    """Distinct images and known user_ids per split: not sums over classes (an image with a
    gesture and a no_gesture hand counts in two classes; a person shows many gestures)."""
    images: dict[str, set] = defaultdict(set)
    users: dict[str, set] = defaultdict(set)
    for r in annotations.records:
        images[r.split].add(r.uuid)
        if r.user_id is not None:
            users[r.split].add(r.user_id)
    return {s: {"images": len(images[s]), "users": len(users[s])} for s in annotations.splits}


def write_summary_json(summary: dict, path: str | Path) -> None:
    """Write the summary atomically. Schema::

        {"dataset": str, "format": "v1"|"v2", "class_names": [...],
         "splits": {"<split>": {"<class>": {"images": n, "hands": n, "hands_with_landmarks": n, "users": n}}},
         "skipped": {"<reason>": n}, "subject_leaks": {"<user_id>": ["train", "val"]},
         "split_totals": {"<split>": {"images": n, "users": n}}}

    ``skipped`` reasons: the loader's skips, ``excluded_*``, ``degraded:*`` and ``crop_will_skip:*``.
    """
    atomic_write_bytes(path, orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")


def format_table(summary: dict, totals: dict[str, dict[str, int]] | None = None) -> str:
    """The per split x class table, then leaks and skips, as printable text.

    ``totals`` (from :func:`split_totals`) gives the distinct images and users
    of each split's total row; without it those cells are blank.
    """
    names = summary["class_names"]
    w = max([len(c) for c in names] + [len("total")])
    lines = [f"{summary['dataset']} (HaGRID {summary['format']}, {len(names)} classes)"]
    for split, per_class in summary["splits"].items():
        lines.append("")
        lines.append(f"[{split}]  {'class':<{w}} {'images':>7} {'hands':>7} {'w/ lmk':>7} {'users':>6}")
        tot = {k: 0 for k in COUNT_KEYS}
        for c in names:
            row = per_class.get(c, dict.fromkeys(COUNT_KEYS, 0))
            for k in COUNT_KEYS:
                tot[k] += row[k]
            lines.append(f"{'':<{len(split) + 3}}{c:<{w}} {row['images']:>7} {row['hands']:>7} "
                         f"{row['hands_with_landmarks']:>7} {row['users']:>6}")
        t = (totals or {}).get(split, {})
        lines.append(f"{'':<{len(split) + 3}}{'total':<{w}} {t.get('images', ''):>7} {tot['hands']:>7} "
                     f"{tot['hands_with_landmarks']:>7} {t.get('users', ''):>6}")
    lines.append("")
    leaks = summary["subject_leaks"]
    if leaks:
        lines.append(f"SUBJECT LEAKS: {len(leaks)} user_id(s) in more than one split")
        lines.extend(f"  {u}: {', '.join(s)}" for u, s in list(leaks.items())[:20])
        if len(leaks) > 20:
            lines.append(f"  ... and {len(leaks) - 20} more")
    else:
        lines.append("subject leaks: none (no known user_id in two splits)")
    if summary["skipped"]:
        lines.append("skipped / excluded / degraded hands:")
        lines.extend(f"  {k}: {v}" for k, v in summary["skipped"].items())
    if any(k.startswith(CROP_WILL_SKIP) for k in summary["skipped"]):
        lines.append(f"  ({CROP_WILL_SKIP}*: annotated hands that `crop` will skip: image missing or unreadable, "
                     "or box under a pixel or outside the image)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- #
# sample grid
# --------------------------------------------------------------------------- #
def _pick_images(records: list[HandRecord], n: int, seed: int) -> list[list[HandRecord]]:
    """``n`` images, spread over classes (round robin over shuffled classes), each with its hands."""
    by_image: dict[Path, list[HandRecord]] = defaultdict(list)
    for r in records:
        by_image[r.image_path].append(r)
    by_class: dict[str, list[Path]] = defaultdict(list)
    for p, hs in by_image.items():
        by_class[min(hs, key=lambda h: h.hand).label].append(p)
    rng = np.random.default_rng(seed)
    pools = {c: [ps[i] for i in rng.permutation(len(ps))] for c, ps in sorted(by_class.items())}
    names = sorted(pools)
    order = [names[i] for i in rng.permutation(len(names))]
    picked: list[list[HandRecord]] = []
    while len(picked) < n and any(pools.values()):
        for c in order:
            if pools[c] and len(picked) < n:
                picked.append(by_image[pools[c].pop()])
    return picked


def draw_samples(annotations: HagridAnnotations, out_png: str | Path, n: int = 12, seed: int = 0) -> Path:
    """Draw ``n`` images with their boxes and landmark skeletons into one PNG; returns its path.

    Coordinates are drawn in normalised image units (``extent=(0, 1, 1, 0)``),
    exactly as stored, so a misread format shows up as misplaced boxes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: no global backend state
    from matplotlib.figure import Figure

    picked = _pick_images(annotations.records, n, seed)
    if not picked:
        raise DataError(annotations.root, "no hands to draw")
    cols = min(4, len(picked))
    rows = -(-len(picked) // cols)
    fig = Figure(figsize=(3.2 * cols, 3.4 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for k, hands in enumerate(picked):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.set_xticks([])
        ax.set_yticks([])
        first = hands[0]
        ax.set_title(f"{first.split}/{first.label}\n{first.uuid[:8]}", fontsize=8)
        try:
            img = open_rgb(first.image_path, draft_to=(320, 320))
        except DataError as e:
            ax.text(0.5, 0.5, f"cannot read image:\n{e.problem[:60]}", ha="center", va="center", fontsize=7,
                    wrap=True)
            ax.set_xlim(0, 1)
            ax.set_ylim(1, 0)
            continue
        w, h = img.info["original_size"]
        ax.imshow(np.asarray(img), extent=(0, 1, 1, 0))
        ax.set_aspect(h / w)
        for r in hands:
            color = "tab:gray" if r.label == "no_gesture" else "lime"
            x, y, bw, bh = r.bbox
            ax.plot([x, x + bw, x + bw, x, x], [y, y, y + bh, y + bh, y], color=color, lw=1.2)
            ax.text(x, y, r.label, color="black", fontsize=6, va="bottom",
                    bbox={"facecolor": color, "alpha": 0.7, "pad": 1, "lw": 0})
            if r.landmarks is not None:
                lm = r.landmarks
                for a, b in HAND_BONES:
                    ax.plot([lm[a, 0], lm[b, 0]], [lm[a, 1], lm[b, 1]], color="red", lw=0.8)
                ax.scatter(lm[:, 0], lm[:, 1], s=3, color="yellow", zorder=3)
        ax.set_xlim(0, 1)
        ax.set_ylim(1, 0)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    out_png = Path(out_png)
    atomic_write_bytes(out_png, buf.getvalue())
    return out_png
