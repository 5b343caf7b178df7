"""Fit the landmark box model (data_loaders/box_model.py) and report how well it matches HaGRID's boxes.

    uv run python tools/fit_box_model.py --data-dir ../shared/hagrid_sample [--json OUT]

Uses the val and test hands that have both an official (human-drawn) box and MediaPipe landmarks: the
sample's train boxes were themselves derived from landmarks, so they cannot be used. Prints the mean IoU
of the raw landmark extent, the held-out IoU both ways (fit on val -> test, fit on test -> val), and the
in-sample fit on val+test, whose radii are ``DEFAULT_BOX_MODEL``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from common.errors import DataError
from common.files import atomic_write_text
from data_loaders.box_model import DEFAULT_BOX_MODEL, BoxModel, box_iou, fit_box_model, landmark_boxes
from data_loaders.classes import make_class_set
from data_loaders.hagrid import load_hagrid
from data_loaders.images import image_size

ZERO = BoxModel(0.0, 0.0, 0.0, 0.0, 0.0)  # the raw extent of the 21 landmarks
#: Where every fit starts: not DEFAULT_BOX_MODEL, which was fitted on the held-out hands too.
START = BoxModel(0.2, 0.2, 0.2, 0.2, 0.2)


def load_hands(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(landmarks (N,21,2), image sizes (N,2), official boxes (N,4))`` of a split's hands with landmarks
    (every class, ``no_gesture`` included); image sizes from the JPEG headers."""
    ann = load_hagrid(data_dir, make_class_set("hagrid18", include_no_gesture=True), splits=[split])
    recs = [r for r in ann.records if r.landmarks is not None]
    if not recs:
        raise DataError(data_dir, f"split {split}: no hand has both a box and landmarks")
    sizes = {p: image_size(p) for p in {r.image_path for r in recs}}
    return (np.stack([r.landmarks for r in recs]).astype(np.float64),
            np.array([sizes[r.image_path] for r in recs], dtype=np.float64),
            np.array([r.bbox for r in recs], dtype=np.float64))


def scores(model: BoxModel, hands: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict:
    """Mean and median IoU with the official boxes, and the share of hands at IoU >= 0.5 and >= 0.75."""
    lm, wh, boxes = hands
    iou = box_iou(landmark_boxes(lm, wh, model), boxes)
    return {"n": len(iou), "mean_iou": float(iou.mean()), "median_iou": float(np.median(iou)),
            "share_iou_0.5": float((iou >= 0.5).mean()), "share_iou_0.75": float((iou >= 0.75).mean())}


def _join(a, b):
    return tuple(np.concatenate([x, y]) for x, y in zip(a, b))


def _line(title: str, s: dict) -> str:
    return (f"{title:<44} n={s['n']:>3}  mean IoU {s['mean_iou']:.3f}  median {s['median_iou']:.3f}  "
            f">=0.5 {100 * s['share_iou_0.5']:.1f} %  >=0.75 {100 * s['share_iou_0.75']:.1f} %")


def run(data_dir: Path) -> tuple[list[str], dict]:
    val, test = load_hands(data_dir, "val"), load_hands(data_dir, "test")
    both = _join(val, test)
    on_val, on_test, on_both = (fit_box_model(*h, start=START) for h in (val, test, both))
    rows = {
        "raw landmark extent (val+test)": (ZERO, both),
        "fitted on val, measured on test": (on_val, test),
        "fitted on test, measured on val": (on_test, val),
        "fitted on val+test, in-sample": (on_both, both),
        "DEFAULT_BOX_MODEL on val+test": (DEFAULT_BOX_MODEL, both),
    }
    result = {"data_dir": str(data_dir), "rows": {}, "models": {
        "val": on_val.to_dict(), "test": on_test.to_dict(), "val+test": on_both.to_dict()}}
    lines = []
    for title, (model, hands) in rows.items():
        s = scores(model, hands)
        result["rows"][title] = s
        lines.append(_line(title, s))
    for name, model in (("val", on_val), ("test", on_test), ("val+test", on_both)):
        lines.append(f"radii fitted on {name:<9} " + ", ".join(f"{k} {v:.4f}" for k, v in model.to_dict().items()))
    return lines, result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=Path("../shared/hagrid_sample"),
                   help="a HaGRID v2 root whose val/test hands have official boxes and landmarks")
    p.add_argument("--json", type=Path, help="also write the figures and fitted radii here")
    args = p.parse_args(argv)
    try:
        lines, result = run(args.data_dir)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
