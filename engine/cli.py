"""The ``hand-gestures`` command: every option of every step is defined here, once.

Each step is a :class:`Command`: a function that adds its options to a parser and one that runs
it. Only the step being run has its options built (and its modules imported), so
``hand-gestures --help`` and light steps (inspect, crop) do not pay for importing the training
stack. User errors (bad data, options, checkpoints, missing files, unavailable weights) print
one line ``error: <message>`` and exit with status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import MISSING, fields
from pathlib import Path
from typing import NamedTuple

from common.errors import CheckpointMismatchError, DataError, UsageError, UserFacingError

EXIT_DATA_ERROR = 2
#: Errors about the user's input: one line ``error: <message>`` and exit status 2.
#: Anything else is a bug and keeps its traceback.
USER_ERRORS = (DataError, CheckpointMismatchError, UsageError, UserFacingError, FileNotFoundError)


class Command(NamedTuple):
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# --------------------------------------------------------------------------- #
# options shared by every step that reads HaGRID
# --------------------------------------------------------------------------- #
def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``, ``--classes`` and ``--include-no-gesture``, spelled the same for every step."""
    parser.add_argument("--data-dir", type=Path, default=Path("data/hagrid"),
                        help="HaGRID root, v1 or v2 layout (default: data/hagrid)")
    add_class_arguments(parser)


def add_class_arguments(parser: argparse.ArgumentParser) -> None:
    from data_loaders.classes import DEFAULT_CLASSES

    parser.add_argument("--classes", default=DEFAULT_CLASSES,
                        help="class set: a preset (hagrid18, hagrid33), 'dataset' (the labels the data holds: "
                             "your own gestures) or comma-separated names (default: %(default)s)")
    parser.add_argument("--include-no-gesture", action="store_true",
                        help="add no_gesture as the last class (excluded and counted otherwise)")


def class_set_from_args(args: argparse.Namespace):
    """The class set the options name; a misspelt class is an error, not an empty class. ``dataset``
    stands for the labels of ``--data-dir`` when there is one (train: the crops folder's classes)."""
    from data_loaders.classes import DATASET_CLASSES, checked_class_set

    if args.classes == DATASET_CLASSES:
        if getattr(args, "data_dir", None) is None:
            return None
        from data_loaders.classes import make_class_set
        from data_loaders.hagrid import dataset_labels

        return make_class_set(dataset_labels(args.data_dir), args.include_no_gesture)  # the data's own names
    return checked_class_set(args.classes, args.include_no_gesture)


def _positive(kind: type, at_most: float = float("inf")):
    def parse(s: str):
        v = kind(s)
        if not 0 < v < float("inf"):  # also refuses nan and inf
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {s}")
        if v > at_most:
            raise argparse.ArgumentTypeError(f"must be at most {at_most:g}, got {s}")
        return v
    return parse


def _probability(s: str) -> float:
    v = float(s)
    if not 0 <= v <= 1:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1], got {s}")
    return v


#: Largest crop side accepted (a 100,000 px crop would need ~30 GB of memory per hand).
MAX_CROP_SIZE = 4096


# --------------------------------------------------------------------------- #
# hand detector options (predict, evaluate --end-to-end)
# --------------------------------------------------------------------------- #
def add_detector_arguments(parser: argparse.ArgumentParser) -> None:
    """The MediaPipe detector's options, one per :class:`~data_loaders.detect.DetectorConfig` field; the
    defaults are that class's (the settings the sample's landmarks were made with)."""
    from data_loaders.detect import DetectorConfig

    d = DetectorConfig()
    g = parser.add_argument_group("hand detector (MediaPipe Hands)")
    g.add_argument("--video-mode", action="store_true",
                   help="track hands from frame to frame (frames of one stream, in order) instead of detecting "
                        "each image on its own")
    g.add_argument("--max-hands", type=_positive(int), default=d.max_num_hands,
                   help=f"hands per frame at most (default {d.max_num_hands})")
    g.add_argument("--model-complexity", type=int, choices=(0, 1), default=d.model_complexity,
                   help=f"0: lite landmark model, 1: full (default {d.model_complexity})")
    g.add_argument("--min-detection-confidence", type=_probability, default=d.min_detection_confidence,
                   help=f"palm detector threshold (default {d.min_detection_confidence})")
    g.add_argument("--min-tracking-confidence", type=_probability, default=d.min_tracking_confidence,
                   help=f"hand presence threshold while tracking (default {d.min_tracking_confidence})")
    g.add_argument("--mirrored", action="store_true",
                   help="the pictures are mirrored (selfie camera): handedness is reported as MediaPipe gives it")
    g.add_argument("--hand-model", type=Path, default=d.hand_model, metavar="TASK_FILE",
                   help="a MediaPipe Tasks hand_landmarker.task file (default: the model bundled with mediapipe)")


def detector_config_from_args(args: argparse.Namespace):
    """The :class:`~data_loaders.detect.DetectorConfig` that :func:`add_detector_arguments`' options name."""
    from data_loaders.detect import DetectorConfig

    return DetectorConfig(static_image_mode=not args.video_mode, max_num_hands=args.max_hands,
                          model_complexity=args.model_complexity,
                          min_detection_confidence=args.min_detection_confidence,
                          min_tracking_confidence=args.min_tracking_confidence, mirrored=args.mirrored,
                          hand_model=None if args.hand_model is None else str(args.hand_model))


# --------------------------------------------------------------------------- #
# inspect
# --------------------------------------------------------------------------- #
def _inspect_arguments(p: argparse.ArgumentParser) -> None:
    from data_loaders.summary import SAMPLES_NAME, SUMMARY_NAME

    add_dataset_arguments(p)
    p.add_argument("--graphs-dir", type=Path, default=Path("graphs"),
                   help=f"where {SUMMARY_NAME} and {SAMPLES_NAME} go (default: graphs)")
    p.add_argument("--samples", type=int, default=12, help="images in the sample grid (0: none; default 12)")
    p.add_argument("--seed", type=int, default=0, help="which sample images (default 0)")


def _inspect(args: argparse.Namespace) -> int:
    from data_loaders.hagrid import load_hagrid
    from data_loaders.summary import (
        SAMPLES_NAME,
        SUMMARY_NAME,
        draw_samples,
        format_table,
        split_totals,
        summarize,
        write_summary_json,
    )

    ann = load_hagrid(args.data_dir, class_set_from_args(args))
    summary = summarize(ann)
    print(format_table(summary, split_totals(ann)))  # load_hagrid has logged its warnings
    write_summary_json(summary, args.graphs_dir / SUMMARY_NAME)
    print(f"wrote {args.graphs_dir / SUMMARY_NAME}")
    if args.samples > 0 and ann.records:
        print(f"wrote {draw_samples(ann, args.graphs_dir / SAMPLES_NAME, n=args.samples, seed=args.seed)}")
    return 0


# --------------------------------------------------------------------------- #
# annotate
# --------------------------------------------------------------------------- #
ANNOTATE_EPILOG = """\
layouts: <root>/<label>/<image> or <root>/<split>/<label>/<image> (split: train, val, test); .jpg, .jpeg, .png.
output: <out>/hagrid_annotations/<split>/<label>.json and <out>/hagrid_dataset/<label>/ (links to the
originals): the HaGRID v2 layout that inspect, crop, train, evaluate and predict read. --data-dir <out> then
works; <out>/annotate_report.csv lists every image skipped or without a hand, <out>/annotate_info.json the
settings and counts. A rerun detects only new or changed images (cache in <out>/.annotate_cache/).
exit status: 0; 1 when some images could not be read (each listed in the report); 2 bad options or data.
See docs/annotate.md.
"""


def _annotate_arguments(p: argparse.ArgumentParser) -> None:
    from data_loaders import annotate as a

    p.epilog, p.formatter_class = ANNOTATE_EPILOG, argparse.RawDescriptionHelpFormatter
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, metavar="ROOT", help="a folder of per-class image folders")
    src.add_argument("--hagrid", type=Path, metavar="ROOT",
                     help="an existing HaGRID v2 dataset: add a per-hand handedness (detections matched to the "
                          "official boxes), nothing else; its image folders are linked")
    p.add_argument("--out", type=Path, required=True, help="the new dataset folder")
    p.add_argument("--crops", action="store_true",
                   help="each image is one hand crop: its box is the whole image; landmarks from a detection on "
                        "a padded canvas (crops without a hand found keep a record with empty landmarks)")
    p.add_argument("--gesture-hand", choices=a.GESTURE_HAND_RULES, default=a.DEFAULT_GESTURE_HAND_RULE,
                   help="which of several detected hands is the gesture hand (the others are no_gesture): the "
                        "higher one by box centre, wrist or box top, or the largest "
                        f"(default {a.DEFAULT_GESTURE_HAND_RULE})")
    p.add_argument("--canvas-fill", choices=a.CANVAS_FILLS, default=a.DEFAULT_CANVAS_FILL,
                   help=f"--crops: how the canvas around a crop is filled (default {a.DEFAULT_CANVAS_FILL})")
    s = p.add_argument_group("splits (when the images are not in split folders)")
    s.add_argument("--split", choices=("train", "val", "test"), help="put every image in this split")
    s.add_argument("--user-ids", type=Path, metavar="CSV",
                   help="two columns path-or-stem,user_id: user_id recorded, split by user")
    s.add_argument("--group-by", metavar="REGEX",
                   help="split by the first capture group of REGEX on the relative path (e.g. '^[^/]+/([^_]+)_'); "
                        "the group is recorded as user_id")
    s.add_argument("--val-fraction", type=_probability, default=a.DEFAULT_VAL_FRACTION,
                   help=f"share of groups in val (default {a.DEFAULT_VAL_FRACTION})")
    s.add_argument("--test-fraction", type=_probability, default=a.DEFAULT_TEST_FRACTION,
                   help=f"share of groups in test (default {a.DEFAULT_TEST_FRACTION})")
    s.add_argument("--seed", type=int, default=a.DEFAULT_SEED, help=f"split seed (default {a.DEFAULT_SEED})")
    p.add_argument("--workers", type=_positive(int), default=None,
                   help="detection processes, one detector each (default: one per CPU core)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_detector_arguments(p)


def _annotate(args: argparse.Namespace) -> int:
    from data_loaders.annotate import AnnotateConfig, exit_code, run_annotate

    if args.video_mode:
        raise UsageError("annotate detects every image on its own: --video-mode does not apply")
    if args.mirrored:  # a mirrored hand looks like the other hand: its landmarks and handedness must agree
        raise UsageError("annotate records handedness as the pictures show the hand (what a model learns from "
                         "them); leave --mirrored out, even for selfies, and use it with predict")
    detector = detector_config_from_args(args)
    cfg = AnnotateConfig(out=args.out, images=args.images, hagrid=args.hagrid, crops=args.crops, split=args.split,
                         user_ids=args.user_ids, group_by=args.group_by, val_fraction=args.val_fraction,
                         test_fraction=args.test_fraction, seed=args.seed, max_hands=args.max_hands,
                         gesture_hand=args.gesture_hand, canvas_fill=args.canvas_fill, workers=args.workers,
                         detector=detector, progress=not args.no_progress)
    counts = run_annotate(cfg, log=lambda line: print(line, file=sys.stderr))
    return exit_code(counts)


# --------------------------------------------------------------------------- #
# crop
# --------------------------------------------------------------------------- #
def _crop_arguments(p: argparse.ArgumentParser) -> None:
    from data_loaders.crop import BOX_SOURCES, CONTEXTS, DEFAULT_BOX_SCALE, DEFAULT_SIZE

    add_dataset_arguments(p)
    p.add_argument("--out", type=Path, default=Path("data/crops"), help="crops directory (default: data/crops)")
    p.add_argument("--size", type=_positive(int, MAX_CROP_SIZE), default=DEFAULT_SIZE,
                   help=f"crop side in pixels (default: {DEFAULT_SIZE}; the 64x64 CNN input is resized from it)")
    p.add_argument("--box-scale", type=_positive(float), default=DEFAULT_BOX_SCALE,
                   help=f"square side = max(box w, h) x this (default: {DEFAULT_BOX_SCALE}; HaGRID uses 1-2)")
    p.add_argument("--workers", type=_positive(int), default=None, help="decoding processes (default: min(CPUs, 8))")
    p.add_argument("--splits", nargs="+", default=None,
                   help="only these splits (e.g. val test); the manifest keeps the other splits' lines")
    p.add_argument("--overwrite", action="store_true", help="redo crops that already exist")
    p.add_argument("--box-source", choices=BOX_SOURCES, default=BOX_SOURCES[0],
                   help="centre each crop on the annotated box, or on the box the box model derives from the "
                        "hand's landmarks, as prediction does (hands without landmarks are then skipped and "
                        f"counted); default: {BOX_SOURCES[0]}")
    p.add_argument("--context", choices=CONTEXTS, default=CONTEXTS[0],
                   help="what the square shows around the hand: everything (square), or only the hand's box, "
                        "the rest filled (box: how HaGRID crop sets are cut; train on those and score on frames "
                        f"cropped this way); default: {CONTEXTS[0]}")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _crop(args: argparse.Namespace) -> int:
    from data_loaders.crop import crop_dataset
    from data_loaders.manifest import MANIFEST_NAME

    splits = [s for arg in args.splits for s in arg.split(",") if s] if args.splits else None
    summary = crop_dataset(args.data_dir, args.out, class_set=class_set_from_args(args), size=args.size,
                           box_scale=args.box_scale, workers=args.workers, splits=splits,
                           overwrite=args.overwrite, progress=not args.no_progress, box_source=args.box_source,
                           context=args.context)
    print(summary)
    print(f"manifest: {summary.out_dir / MANIFEST_NAME}")
    return 0


# --------------------------------------------------------------------------- #
# train
# --------------------------------------------------------------------------- #
def _train_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per :class:`~engine.train.TrainConfig` field made with ``_option``, in field order."""
    from .train import TrainConfig

    for f in fields(TrainConfig):
        flag = dict(f.metadata.get("flag", {}))
        if not flag or flag.pop("shared", False):  # no flag, or one that every step spells the same
            if f.name == "classes":
                add_class_arguments(p)  # --classes and --include-no-gesture
            continue
        name = "--" + flag.pop("name", f.name).replace("_", "-")
        if callable(flag.get("choices")):
            flag["choices"] = flag["choices"]()
        if flag.pop("negate", False) or f.default is False:
            p.add_argument(name, action="store_true", **flag)
        elif f.default is MISSING and f.default_factory is MISSING:
            p.add_argument(name, required=True, **flag)
        elif f.default_factory is dict:
            p.add_argument(name, action="append", **flag)
        else:
            kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0])
            p.add_argument(name, default=f.default, **({"type": kind} if kind else {}), **flag)


def parse_key_values(items: Sequence[str] | None) -> dict:
    """``["hidden=[128,64]", "dropout=0.1"]`` -> dict, values read as JSON when they parse."""
    import json

    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"expected KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def train_config_from_args(args: argparse.Namespace):
    """A :class:`~engine.train.TrainConfig` from ``train``'s options (see :func:`_train_arguments`)."""
    from .train import TrainConfig

    values = {}
    for f in fields(TrainConfig):
        flag = f.metadata.get("flag")
        if flag is None:
            continue
        v = getattr(args, flag.get("name", f.name))
        values[f.name] = (not v) if flag.get("negate") else parse_key_values(v) if f.default_factory is dict else v
    return TrainConfig(**values)


def _train(args: argparse.Namespace) -> int:
    from .train import fit

    class_set_from_args(args)  # a misspelt class name is an error before anything loads
    res = fit(train_config_from_args(args))
    print(f"best val accuracy {res.best_val_acc:.4f}; checkpoint {res.best_checkpoint}")
    return 0


# --------------------------------------------------------------------------- #
# evaluate, report
# --------------------------------------------------------------------------- #
def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    from .end_to_end import DEFAULT_IOU_THRESHOLD

    p.add_argument("checkpoints", nargs="*", help="checkpoints to compare (default: every *.pt in --models-dir)")
    p.add_argument("--models-dir", default="final_models")
    p.add_argument("--crops-dir", default="data/crops")
    p.add_argument("--data-dir", help="HaGRID root, for landmark-only models when there are no crops")
    p.add_argument("--split", default="test")
    p.add_argument("--device", default="auto")
    p.add_argument("--graphs-dir", default="graphs")
    p.add_argument("--caption", default="", help="which data the numbers come from (printed above the table)")
    p.add_argument("--also", nargs=2, action="append", default=[], metavar=("MODELS_DIR", "CROPS_DIR"),
                   help="also score the checkpoints of MODELS_DIR (a folder or one .pt) on their own crops folder "
                        "(e.g. models trained on crops framed another way), paired with the others by hand")
    p.add_argument("--update-readme", nargs="?", const="README.md", metavar="README",
                   help="write the table into README.md between the results markers")
    e2e = p.add_argument_group("end to end (--end-to-end): detect -> box -> crop/landmarks -> classify on full frames")
    e2e.add_argument("--end-to-end", action="store_true",
                     help="score the whole path on the full frames of --split of --data-dir: detection recall, "
                          "end-to-end accuracy and annotated-box accuracy per model (graphs/end_to_end.{md,csv})")
    e2e.add_argument("--iou", type=_probability, default=DEFAULT_IOU_THRESHOLD,
                     help="IoU a detection needs with an annotated box to be that hand "
                          f"(default {DEFAULT_IOU_THRESHOLD})")
    e2e.add_argument("--cache-dir", help="where detections are cached between runs (default: a hidden folder in "
                                          "--graphs-dir)")
    e2e.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_detector_arguments(p)


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_checkpoints, find_checkpoints

    if args.also and args.end_to_end:
        raise UsageError("--also pairs crops folders; --end-to-end crops from the frames: list the checkpoints "
                         "instead (evaluate --end-to-end A.pt B.pt ...)")
    if args.end_to_end:
        return _evaluate_end_to_end(args)
    ckpts = [Path(p) for p in args.checkpoints] or find_checkpoints(args.models_dir)
    crops_dirs = {}
    for models, crops in args.also:
        more = [Path(models)] if Path(models).suffix == ".pt" else find_checkpoints(models)
        crops_dirs.update({p: Path(crops) for p in more})
        ckpts += more
    evaluate_checkpoints(ckpts, crops_dir=args.crops_dir, data_dir=args.data_dir, split=args.split,
                         device=args.device, graphs_dir=args.graphs_dir, caption=args.caption,
                         readme=args.update_readme, crops_dirs=crops_dirs)
    print(Path(args.graphs_dir, "results.md").read_text())
    print(f"tables and figures in {args.graphs_dir}/"
          + (f"; README updated: {args.update_readme}" if args.update_readme else ""))
    return 0


def _evaluate_end_to_end(args: argparse.Namespace) -> int:
    from .end_to_end import run_end_to_end

    if not args.data_dir:
        raise UsageError("evaluate --end-to-end needs --data-dir (a HaGRID root with full frames)")
    result = run_end_to_end([Path(p) for p in args.checkpoints] or Path(args.models_dir), args.data_dir,
                            split=args.split, graphs_dir=args.graphs_dir, detector=detector_config_from_args(args),
                            iou_threshold=args.iou, cache_dir=args.cache_dir, progress=not args.no_progress,
                            device=args.device)
    print("\n".join(result.lines()))
    return 0


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--graphs-dir", default="graphs", help="artefacts written by evaluate/train/inspect")
    p.add_argument("--out-dir", default="reports")
    p.add_argument("--title", default="Hand-gesture classifiers on HaGRID")
    p.add_argument("--dataset-note", help="which data the numbers come from (default: the evaluation caption)")


def _report(args: argparse.Namespace) -> int:
    from .reporting.html import build_report

    html, md = build_report(args.graphs_dir, args.out_dir, title=args.title, dataset_note=args.dataset_note)
    print(f"report: {html}\nmarkdown twin: {md}")
    return 0


# --------------------------------------------------------------------------- #
# synth, demo, download
# --------------------------------------------------------------------------- #
def _synth_arguments(p: argparse.ArgumentParser) -> None:
    from data_loaders.synthetic import generate as g

    p.add_argument("--out", default="data/synth", help="output folder (default: data/synth)")
    p.add_argument("--subjects", type=_positive(int), default=g.DEFAULT_SUBJECTS,
                   help=f"synthetic people (default {g.DEFAULT_SUBJECTS})")
    p.add_argument("--images-per-subject", type=_positive(int), default=g.DEFAULT_IMAGES_PER_SUBJECT,
                   help=f"frames per person (default {g.DEFAULT_IMAGES_PER_SUBJECT})")
    p.add_argument("--size", type=g.parse_size, default=g.DEFAULT_IMAGE_SIZE,
                   help="landscape frame size WxH; some subjects film in portrait (default 384x288)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    p.add_argument("--second-hand-p", type=_probability, default=g.DEFAULT_SECOND_HAND_P,
                   help="chance of a second, relaxed no_gesture hand per frame")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _synth(args: argparse.Namespace) -> int:
    from data_loaders.synthetic.generate import describe, generate_synthetic_hagrid

    stats = generate_synthetic_hagrid(
        args.out, n_subjects=args.subjects, images_per_subject=args.images_per_subject, image_size=args.size,
        seed=args.seed, second_hand_p=args.second_hand_p, progress=not args.no_progress)
    print(describe(stats))
    return 0


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    from .recipes import DEFAULT_DEMO_PLAN, DEMO_MODELS, DEMO_PLANS

    p.add_argument("--data-dir", help="HaGRID root (v1 or v2); default: generate the synthetic demonstration set")
    p.add_argument("--plan", choices=list(DEMO_PLANS), default=DEFAULT_DEMO_PLAN,
                   help="training budget: 'quick' (default; under 5 minutes on 2 CPU cores, image models "
                        "under-trained) or 'cpu' (~18 minutes; ResNet-34 at 128 px for 8 epochs); engine/recipes.py")
    p.add_argument("--work-dir", default=".", help="where data/, final_models/, graphs/, reports/ go")
    p.add_argument("--models", nargs="+", default=list(DEMO_MODELS), choices=DEMO_MODELS)
    p.add_argument("--restart", action="store_true", help="redo every step instead of reusing finished ones")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs-scale", type=_positive(float), default=1.0,
                   help="multiply every model's epochs (e.g. 0.2)")
    p.add_argument("--pretrained", help="ResNet-34 start: 'imagenet' (downloads unless cached), a .pth path, or "
                                        "'none' (from scratch); default: ImageNet's when already in the torch hub "
                                        "cache, else from scratch")
    p.add_argument("--synth-subjects", type=_positive(int), help="synthetic set: number of subjects (default 90)")
    p.add_argument("--synth-images-per-subject", type=_positive(int),
                   help="synthetic set: frames per subject (default 16)")
    p.add_argument("--no-progress", action="store_true")


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, run_demo, with_fusion_branches

    run_demo(DemoConfig(data_dir=args.data_dir, work_dir=args.work_dir, models=with_fusion_branches(args.models),
                        restart=args.restart, device=args.device, seed=args.seed, epochs_scale=args.epochs_scale,
                        plan_name=args.plan,
                        pretrained=args.pretrained, synth_subjects=args.synth_subjects,
                        synth_images_per_subject=args.synth_images_per_subject, progress=not args.no_progress))
    return 0


def _download_arguments(p: argparse.ArgumentParser) -> None:
    from data_loaders.classes import DEFAULT_CLASSES
    from data_loaders.download import VERSIONS

    p.add_argument("--version", choices=VERSIONS, default="v1",
                   help="v1: HaGRID 2022 (18 gestures, ann_* layout); v2: HaGRIDv2 2024 (33 gestures, "
                        "hagrid_annotations layout). Default: v1")
    p.add_argument("--subset", choices=("subsample", "512", "full", "annotations"), default="subsample",
                   help="subsample: 100 images per class (v1 only, ~2.5 GB); 512: images resized to 512 px; "
                        "full: FullHD images, one archive per class (~40 GB each); annotations: JSON only. "
                        "Default: subsample")
    p.add_argument("--classes", default=DEFAULT_CLASSES,
                   help="which gestures: hagrid18 (default), hagrid33, all, or comma-separated names; picks "
                        "the per-class archives of 'full' and what is unpacked from single archives")
    p.add_argument("--out", type=Path, default=Path("data/hagrid"), help="HaGRID root (default: data/hagrid)")
    p.add_argument("--archives-dir", type=Path, default=None,
                   help="where the .zip files are kept (default: <out>/archives)")
    p.add_argument("--base-url", default=None,
                   help="fetch <base-url>/<archive name> instead of the official URLs (a mirror)")
    p.add_argument("--dry-run", action="store_true", help="print the URLs and the total size; download nothing")
    p.add_argument("--remove-archives", action="store_true",
                   help="delete each .zip once unpacked (halves the disk needed; a re-run still skips it)")
    p.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds (default: 60)")
    p.add_argument("--retries", type=int, default=3, help="retries (resuming) after a dropped connection (default: 3)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--backoff", type=float, default=5.0, help=argparse.SUPPRESS)  # seconds x attempt


def _download(args: argparse.Namespace) -> int:
    from data_loaders.download import download_hagrid, parse_classes

    download_hagrid(args.version, args.subset, parse_classes(args.classes, args.version), args.out,
                    base_url=args.base_url, archives_dir=args.archives_dir, dry_run=args.dry_run,
                    progress=not args.no_progress, remove_archives=args.remove_archives, timeout=args.timeout,
                    retries=max(args.retries, 0), backoff=max(args.backoff, 0.0))
    return 0


# --------------------------------------------------------------------------- #
# predict, export, calibrate
# --------------------------------------------------------------------------- #
PREDICT_EPILOG = """\
output: one JSON line per hand: {"source", "frame" (index in a video or camera stream, 0 for an image), "hand",
"box" [x, y, w, h] (normalised, top-left origin), "landmarks" (21 x [x, y, z], normalised), "handedness"
("left"/"right": the person's own hand; see --mirrored), "handedness_score", "label", "probability", "top3",
"note" (when there is one)}. A frame with no hand gives one line {"source", "frame", "hands": 0}. Lines go to
standard output, or to --jsonl FILE, written line by line to a temporary file beside it and renamed into place
when the run ends (also after Ctrl-C, with what was done). A summary goes to standard error.

detection: images are detected one by one (static mode); videos and the camera with tracking from frame to
frame (a new tracker per video). --static detects every frame on its own (slower, steadier on cuts);
--video-mode tracks across images too (a folder of consecutive frames).

labels: "unknown" when the best probability is below --min-confidence, or when a landmark model (mlp, gcn)
gets a hand whose landmarks are unusable (note "no landmarks"); fusion then uses its image branch.

exit status: 0 every input read; 1 some files could not be read (each named once on standard error), the others
predicted; 2 nothing could be read, or a bad option or checkpoint; 130 interrupted.
"""


def _predict_arguments(p: argparse.ArgumentParser) -> None:
    from .predictor import BACKENDS

    p.epilog, p.formatter_class = PREDICT_EPILOG, argparse.RawDescriptionHelpFormatter
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="image files (jpg, jpeg, png, bmp, webp), folders (recursive) and video files")
    p.add_argument("--model", required=True, help="a checkpoint (.pt), or its ONNX export (.onnx)")
    p.add_argument("--backend", choices=BACKENDS, default=BACKENDS[0],
                   help="torch, or onnxruntime (runs <model stem>.onnx, see `hand-gestures export`)")
    p.add_argument("--onnx", type=Path, help="the ONNX file for --backend onnxruntime (default: beside --model)")
    p.add_argument("--camera", type=int, metavar="N",
                   help="live prediction from camera N in a window (q quits); instead of INPUTs")
    p.add_argument("--jsonl", type=Path, metavar="FILE", help="write the JSON lines to FILE instead of stdout")
    p.add_argument("--save", type=Path, metavar="DIR",
                   help="write annotated copies here: images under their names relative to the input folder, "
                        "one annotated .mp4 per video")
    p.add_argument("--min-confidence", type=_probability, default=0.0, metavar="P",
                   help="report 'unknown' when the best probability is below P (default 0: never)")
    p.add_argument("--device", default="cpu", help="torch device for the classifier (default cpu; auto: GPU if any)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--static", action="store_true", help="detect every video/camera frame on its own")
    add_detector_arguments(p)


def _predict(args: argparse.Namespace) -> int:
    from .predict_run import run_camera, run_predict
    from .predictor import GesturePredictor

    if (args.camera is None) == (not args.inputs):
        raise UsageError("give INPUT files/folders or --camera N (one of the two)")
    if args.static and args.video_mode:
        raise UsageError("--static and --video-mode contradict each other; give one")
    mode = "static" if args.static else "video" if args.video_mode else "auto"
    config = detector_config_from_args(args)
    with GesturePredictor.from_checkpoint(args.model, backend=args.backend, onnx_path=args.onnx,
                                          min_confidence=args.min_confidence, device=args.device) as predictor:
        kw = {"detector_config": config, "mode": mode, "jsonl": args.jsonl, "save": args.save}
        if args.camera is not None:
            summary = run_camera(predictor, args.camera, **kw)
        else:
            summary = run_predict(predictor, args.inputs, progress=not args.no_progress, **kw)
    for line in summary.lines():
        print(line, file=sys.stderr)
    if summary.frames == 0 and not summary.interrupted:
        print("error: no frame could be read from the inputs", file=sys.stderr)
    return summary.exit_code()


def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path, help="the checkpoint (.pt) to export")
    p.add_argument("--out", type=Path, help="the .onnx file (default: <model stem>.onnx beside the checkpoint)")
    p.add_argument("--check-data", type=Path, metavar="CROPS_DIR",
                   help="crops folder whose hands the parity check runs on (default: the checkpoint's own crops "
                        "when they exist, else synthetic hands)")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format (default onnx)")


def _export(args: argparse.Namespace) -> int:
    from .export import export_checkpoint

    report = export_checkpoint(args.model, args.out, check_data=args.check_data)
    print("\n".join(report.lines()))
    return 0


def _calibrate_arguments(p: argparse.ArgumentParser) -> None:
    from .calibration import DEFAULT_SPLIT

    p.add_argument("checkpoints", nargs="+", type=Path, metavar="CKPT", help="checkpoints to calibrate (in place)")
    p.add_argument("--crops-dir", help="crops folder (default: the one each checkpoint was trained on)")
    p.add_argument("--data-dir", help="HaGRID root, for landmark models without crops (default: the checkpoint's)")
    p.add_argument("--split", default=DEFAULT_SPLIT,
                   help=f"split the temperature is fitted on (default {DEFAULT_SPLIT})")
    p.add_argument("--device", default="cpu", help="torch device (default cpu; auto: GPU if any)")


def _calibrate(args: argparse.Namespace) -> int:
    from .calibration import calibrate_checkpoint

    for path in args.checkpoints:
        c = calibrate_checkpoint(path, crops_dir=args.crops_dir, data_dir=args.data_dir, split=args.split,
                                 device=args.device)
        print(f"{path}: temperature {c['temperature']:.3f} on {c['n']} {c['split']} hands; NLL {c['nll_before']:.4f}"
              f" -> {c['nll_after']:.4f}, ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f}")
    return 0


COMMANDS: list[Command] = [
    Command("inspect", "count images/hands/landmarks/users per split and class, check subject leaks, draw samples",
            _inspect_arguments, _inspect),
    Command("annotate", "turn a folder of per-class photos or hand crops into a HaGRID v2 dataset (detector "
            "landmarks, boxes, handedness), or add handedness to a HaGRID v2 dataset", _annotate_arguments, _annotate),
    Command("crop", "crop every hand to a square image and write the crop manifest", _crop_arguments, _crop),
    Command("train", "train one model (any registered name) with the shared engine; DDP under torchrun",
            _train_arguments, _train),
    Command("evaluate", "score checkpoints on the test split: table with CIs, McNemar, confusion matrices",
            _evaluate_arguments, _evaluate),
    Command("report", "write reports/report.html (self-contained) and its Markdown twin from graphs/",
            _report_arguments, _report),
    Command("synth", "generate the synthetic demonstration set in HaGRID's v2 layout", _synth_arguments, _synth),
    Command("demo", "the main job: (synthetic data ->) crop -> train all five models -> evaluate -> report",
            _demo_arguments, _demo),
    Command("download", "download HaGRID archives (v1/v2, subsample/512p/full) and unpack them",
            _download_arguments, _download),
    Command("predict", "gestures in photos, folders, videos or a live camera: JSON lines, annotated copies",
            _predict_arguments, _predict),
    Command("export", "export a checkpoint to ONNX (metadata inside) with a parity check against PyTorch",
            _export_arguments, _export),
    Command("calibrate", "fit a checkpoint's temperature on the validation split so probabilities mean what they say",
            _calibrate_arguments, _calibrate),
]


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; only the command named in ``argv`` gets its arguments (and its modules imported)."""
    parser = argparse.ArgumentParser(
        prog="hand-gestures", description="Train and compare hand-gesture classifiers on HaGRID.")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        if cmd.name == chosen:
            cmd.add_arguments(p)
            p.set_defaults(_run=cmd.run)
    return parser


def run_args(args: argparse.Namespace) -> int:
    """Run the command that ``build_parser(argv).parse_args(argv)`` parsed; returns its exit status."""
    return int(args._run(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return run_args(args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_DATA_ERROR
    except OSError as e:  # the file system refused (read-only, full disk, no such folder): not a bug
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_DATA_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
