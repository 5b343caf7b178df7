"""Steps that notebooks and the demo chain together: crops that are made once, validation at a glance."""
from __future__ import annotations

from pathlib import Path

from data_loaders.batches import load_hand_table
from data_loaders.classes import DEFAULT_CLASSES, make_class_set
from data_loaders.hand_table import MANIFEST_NAME

from .checkpoint import load_checkpoint


def ensure_crops(
    data_dir: str | Path | None,
    crops_dir: str | Path,
    *,
    classes: str = DEFAULT_CLASSES,
    include_no_gesture: bool = False,
    progress: bool = True,
    workers: int | None = None,
    annotations=None,
):
    """Make (or finish) the crops of ``data_dir`` in ``crops_dir``; existing crops are reused.

    With no ``data_dir`` the crops already in ``crops_dir`` are used as they are. ``annotations``
    (already loaded for the same class set) saves reading them again. Returns the crop summary, or
    None when nothing was run.
    """
    crops_dir = Path(crops_dir)
    if data_dir is None or not Path(data_dir).exists():
        if (crops_dir / MANIFEST_NAME).is_file():
            return None
        raise FileNotFoundError(
            f"no crops in {crops_dir} and no dataset at {data_dir}: put HaGRID there (README: 'Getting HaGRID') "
            "or run `hand-gestures synth --out data/synthetic` for the demonstration set")
    from data_loaders.crop import crop_dataset

    summary = crop_dataset(data_dir, crops_dir, class_set=make_class_set(classes, include_no_gesture),
                           workers=workers, progress=progress, annotations=annotations)
    if progress:
        print(summary)
    return summary


def validation_report(
    checkpoint: str | Path,
    *,
    crops_dir: str | Path,
    data_dir: str | Path | None = None,
    graphs_dir: str | Path = "graphs",
    split: str = "val",
    device: str = "auto",
) -> dict:
    """Accuracy, macro F1 and a confusion matrix of one checkpoint on ``split`` (default: validation).

    Returns ``{"metrics", "markdown", "confusion_png"}``; the figure is ``<graphs>/<run>_<split>_confusion.png``.
    """
    from .distributed import resolve_device
    from .evaluate import predict_checkpoint
    from .metrics import classification_metrics
    from .reporting.plots import plot_confusion

    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    table = load_hand_table(crops_dir, data_dir, need_images="image" in ckpt["preprocessing"]["inputs"],
                            class_names=ckpt["class_names"])
    preds = predict_checkpoint(checkpoint, table, split=split, device=resolve_device(device), ckpt=ckpt)
    names = list(table.class_names)
    m = classification_metrics(preds.y_true, preds.y_pred, len(names), names)
    png = Path(graphs_dir) / f"{checkpoint.stem}_{split}_confusion.png"
    plot_confusion(m["confusion"], names, png, title=f"{checkpoint.stem} on {split} (n={m['n']})")
    md = (f"**{checkpoint.stem}** on `{split}`: n = {m['n']}, accuracy {100 * m['accuracy']:.2f}%, "
          f"macro F1 {100 * m['macro_f1']:.2f}%, {preds.n_params:,} parameters, "
          f"{preds.ms_per_sample:.3f} ms/sample on {preds.device}")
    return {"metrics": m, "markdown": md, "confusion_png": png}


def predict_frames(checkpoint: str | Path, images: list[str | Path], save_dir: str | Path) -> dict:
    """Detect and classify every hand of each full frame in ``images`` with ``checkpoint`` (the same
    :class:`~engine.predictor.GesturePredictor` as ``hand-gestures predict``); annotated copies go to
    ``save_dir``. Returns ``{"markdown": table of hands, "images": annotated paths}``."""
    from common.files import atomic_open
    from data_loaders.images import open_rgb

    from .draw import draw_hands
    from .predictor import GesturePredictor
    from .reporting.tables import markdown_table

    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    rows, written = [], []
    with GesturePredictor.from_checkpoint(checkpoint) as predictor:
        for path in map(Path, images):
            img = open_rgb(path)
            hands = predictor.predict(img)
            rows += [[path.name, str(h.index), h.handedness or "", h.label, f"{100 * h.probability:.1f}%",
                      ", ".join(f"{n} {100 * p:.0f}%" for n, p in h.top3[1:])] for h in hands]
            rows += [] if hands else [[path.name, "", "", "no hand found", "", ""]]
            target = save_dir / f"{path.stem}_predicted.jpg"
            with atomic_open(target, "wb") as f:
                draw_hands(img, hands).save(f, format="JPEG", quality=90)
            written.append(target)
    table = markdown_table(["frame", "hand", "handedness", "label", "probability", "runners-up"], rows)
    return {"markdown": table, "images": written}


def split_frames(data_dir: str | Path, split: str = "test", n: int = 4) -> list[Path]:
    """``n`` frames of ``split``, one per class in class order (for showing predictions on full frames)."""
    from data_loaders.hagrid import load_hagrid

    ann = load_hagrid(data_dir, splits=[split])
    first: dict[str, Path] = {}
    for r in sorted(ann.records, key=lambda r: (r.label, r.uuid)):
        first.setdefault(r.label, r.image_path)
    return list(first.values())[:n]


def hypotheses_report(graphs_dir: str | Path = "graphs") -> str:
    """The report's verdicts table (:mod:`engine.reporting.hypotheses`) as Markdown, from the artefacts
    ``evaluate`` wrote in ``graphs_dir``; runs are matched to models by the model name each checkpoint records."""
    import json

    from .reporting.hypotheses import hypotheses_markdown
    from .reporting.methods import read_runs, run_kinds

    meta_path = Path(graphs_dir) / "evaluation.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    return hypotheses_markdown(graphs_dir, run_kinds(read_runs(meta, graphs_dir)))
