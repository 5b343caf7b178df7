"""Write the thin notebooks (committed without outputs).

Every notebook is: a parameters cell (tagged ``parameters``; the tests replace
it), calls into the packages, and figures shown inline. Rerun this script after
changing a notebook's template: ``uv run python tools/make_notebooks.py``.
"""
from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from engine.train import TrainConfig  # noqa: E402

TRAINING = {
    "train_mlp_baseline": ("mlp", "MLP on the 42-D hand landmarks",
                           "The seed's small baseline (42 -> 64 -> 32 -> 18, 5,426 parameters) on the 21 MediaPipe landmarks (x, y)."),
    "train_cnn_baseline": ("cnn", "Small CNN on 64x64 crops",
                           "About 20K parameters, batch norm, orientation-safe augmentation and a one-cycle schedule."),
    "train_gnn": ("gcn", "GCN on the hand skeleton graph",
                  "Three graph convolutions on MediaPipe's 21-joint hand graph, keeping joint identity."),
    "train_resnet": ("resnet34", "ResNet-34 on 128x128 crops",
                     "torchvision's ResNet-34 with a new head; ImageNet weights when they can be loaded "
                     "(set `HPARAMS = {\"weights\": None}` to train from scratch, or a local .pth path)."),
    "train_fusion": ("fusion", "Late fusion: ResNet-34 image features + GCN graph embedding",
                     "Initialised from the trained ResNet-34 and GCN checkpoints when they exist; hands without "
                     "landmarks are classified from the image alone."),
}

#: TrainConfig's defaults (engine/train.py): the notebooks restate none of them.
_D = {f.name: f.default for f in fields(TrainConfig)}


def _param(line: str, comment: str = "") -> str:
    return f"{line:<32} # {comment}".rstrip(" #") if comment else line


PARAMS = "\n".join([
    "# Parameters (the tests replace this cell)",
    _param('DATA_DIR = "../data/hagrid"', 'HaGRID root, v1 or v2 (README: "Getting HaGRID")'),
    _param(f'CROPS_DIR = "../{_D["crops_dir"]}"', "crops + manifest; made (resumably) from DATA_DIR when missing"),
    _param(f'OUT_DIR = "../{_D["out_dir"]}"', "checkpoints"),
    _param(f'GRAPHS_DIR = "../{_D["graphs_dir"]}"', "curves, confusion matrices"),
    _param("EPOCHS = None", "None: the model's recipe"),
    _param("BATCH_SIZE = None", "None: the model's recipe"),
    _param(f'DEVICE = "{_D["device"]}"', '"auto", "cpu", "cuda"'),
    f"SEED = {_D['seed']}",
    _param("MAX_TRAIN_BATCHES = None", "cap batches per epoch for a quick look"),
    _param("HPARAMS = {}", 'model hyperparameters, e.g. {"hidden": [128, 64]}'),
])


def training_notebook(model: str, title: str, blurb: str) -> nbformat.NotebookNode:
    extra = ""
    if model == "fusion":
        extra = ('\ninit_from = {m: f"{OUT_DIR}/{m}.pt" for m in ("resnet34", "gcn") '
                 'if Path(OUT_DIR, f"{m}.pt").exists()}')
    cells = [
        new_markdown_cell(f"# {title}\n\n{blurb}\n\nAll logic lives in `engine/` and `data_loaders/`; "
                          "this notebook only sets parameters, calls the engine and shows the results."),
        new_code_cell(PARAMS, metadata={"tags": ["parameters"]}),
        new_code_cell(
            "from pathlib import Path\n\n"
            "from IPython.display import Image, Markdown, display\n\n"
            "from engine.notebook import ensure_crops, validation_report\n"
            "from engine.train import TrainConfig, fit"
        ),
        new_markdown_cell("## Data\nCrops and the manifest are made once and reused (the step resumes)."),
        new_code_cell("ensure_crops(DATA_DIR, CROPS_DIR)"),
        new_markdown_cell("## Training"),
        new_code_cell(
            (extra.strip() + "\n" if extra else "")
            + f'config = TrainConfig(model="{model}", crops_dir=CROPS_DIR, data_dir=DATA_DIR, out_dir=OUT_DIR,\n'
            "                     graphs_dir=GRAPHS_DIR, epochs=EPOCHS, batch_size=BATCH_SIZE, device=DEVICE,\n"
            "                     seed=SEED, max_train_batches=MAX_TRAIN_BATCHES, hparams=HPARAMS"
            + (", init_from=init_from" if model == "fusion" else "") + ")\n"
            "result = fit(config)\n"
            'print(f"best validation accuracy {result.best_val_acc:.4f} -> {result.best_checkpoint}")'
        ),
        new_code_cell(f'display(Image(filename=str(Path(GRAPHS_DIR, "{model}_curves.png"))))'),
        new_markdown_cell("## Validation"),
        new_code_cell(
            "val = validation_report(result.best_checkpoint, crops_dir=CROPS_DIR, data_dir=DATA_DIR,\n"
            "                        graphs_dir=GRAPHS_DIR, device=DEVICE)\n"
            "display(Markdown(val[\"markdown\"]))\n"
            "display(Image(filename=str(val[\"confusion_png\"])))"
        ),
    ]
    return new_notebook(cells=cells, metadata=_meta())


def evaluation_notebook() -> nbformat.NotebookNode:
    params = '''# Parameters (the tests replace this cell)
DATA_DIR = "data/hagrid"         # HaGRID root (only needed when there are no crops)
CROPS_DIR = "data/crops"
MODELS_DIR = "final_models"      # every *.pt here is evaluated
GRAPHS_DIR = "graphs"
DEVICE = "auto"
SPLIT = "test"
CAPTION = "HaGRID test split"    # says which data the numbers come from
FRAMES = 4                       # full frames of SPLIT shown with predictions (detector -> box -> model)'''
    cells = [
        new_markdown_cell("# Evaluate every checkpoint\n\nScores each model in `final_models/` on the test split: "
                          "on the hands every model can score (common subset) and on all hands each can score, "
                          "with 95% bootstrap intervals and McNemar's test for each pair. Figures go to `graphs/`."),
        new_code_cell(params, metadata={"tags": ["parameters"]}),
        new_code_cell(
            "from pathlib import Path\n\n"
            "from IPython.display import Image, Markdown, display\n\n"
            "from engine.evaluate import evaluate_checkpoints, find_checkpoints\n"
            "from engine.reporting.tables import markdown_table"
        ),
        new_code_cell(
            "checkpoints = find_checkpoints(MODELS_DIR)\n"
            'print("\\n".join(str(p) for p in checkpoints))\n'
            "comparison = evaluate_checkpoints(checkpoints, crops_dir=CROPS_DIR, data_dir=DATA_DIR, split=SPLIT,\n"
            "                                  device=DEVICE, graphs_dir=GRAPHS_DIR, caption=CAPTION)"
        ),
        new_markdown_cell("## Comparison table"),
        new_code_cell('display(Markdown(Path(GRAPHS_DIR, "results.md").read_text()))\n'
                      'display(Image(filename=str(Path(GRAPHS_DIR, "model_comparison.png"))))'),
        new_markdown_cell("## Hypotheses and verdicts\n\nThe seed's hypotheses tested on these hands (the same "
                          "table opens `reports/report.html`)."),
        new_code_cell("from engine.notebook import hypotheses_report\n\n"
                      "display(Markdown(hypotheses_report(GRAPHS_DIR)))"),
        new_markdown_cell("## Confusion matrices (common hands)"),
        new_code_cell("for name in comparison.models:\n"
                      '    display(Markdown(f"### {name}"))\n'
                      '    display(Image(filename=str(Path(GRAPHS_DIR, f"{name}_confusion.png"))))'),
        new_markdown_cell("## Most confused class pairs"),
        new_code_cell("for name in comparison.models:\n"
                      "    rows = [[p['true'], p['pred'], p['count'], f\"{100 * p['rate']:.1f}%\"]\n"
                      "            for p in comparison.confused_pairs[name][:5]]\n"
                      '    display(Markdown(f"**{name}**\\n\\n" + markdown_table(["true", "predicted", "hands", "rate"], rows)))'),
        new_markdown_cell("## Orientation-paired classes"),
        new_code_cell('display(Image(filename=str(Path(GRAPHS_DIR, "orientation_pairs.png"))))'),
        new_markdown_cell("## Predictions on full frames\n\nWhat a user sees: MediaPipe finds the hands, the box model "
                          "turns their landmarks into crop boxes, the model classifies each hand "
                          "(`hand-gestures predict` does the same)."),
        new_code_cell("from engine.notebook import predict_frames, split_frames\n\n"
                      'best = next((p for p in checkpoints if p.stem == "fusion"), checkpoints[0])\n'
                      "shown = predict_frames(best, split_frames(DATA_DIR, SPLIT, FRAMES), Path(GRAPHS_DIR, \"predictions\"))\n"
                      'display(Markdown(f"**{best.name}**\\n\\n" + shown["markdown"]))\n'
                      'for path in shown["images"]:\n'
                      "    display(Image(filename=str(path), width=320))"),
    ]
    return new_notebook(cells=cells, metadata=_meta())


def _meta() -> dict:
    return {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"}}


def _write(nb: nbformat.NotebookNode, path: Path) -> None:
    for i, cell in enumerate(nb.cells):  # stable ids: regenerating a notebook gives a clean diff
        cell.id = f"{path.stem}-{i}"
    nbformat.write(nb, path)


def main() -> None:
    for stem, (model, title, blurb) in TRAINING.items():
        _write(training_notebook(model, title, blurb), ROOT / "training_scripts" / f"{stem}.ipynb")
    _write(evaluation_notebook(), ROOT / "test_models.ipynb")


if __name__ == "__main__":
    main()
