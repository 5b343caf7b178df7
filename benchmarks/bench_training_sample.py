"""Train every model on the HaGRID sample (train to fit, val to stop, test to report) and print figures.

Each of our models is paired with a seed-style baseline trained the same way:
the seed's box normalisation of landmarks (MLP, GCN), the seed's mean-pooled
GCN without joint identity, and the seed's CNN recipe (constant lr 1e-3, no
augmentation). Our models train with the demo's CPU plan (``engine.recipes.CPU_PLAN``):
ResNet-34 from scratch (no ImageNet weights offline) for a few epochs, fusion from it and
the GCN with frozen branches.

    uv run python benchmarks/bench_training_sample.py [--data-dir ../shared/hagrid_sample] [--out /tmp/bench_sample]

Writes ``<out>/training_sample.md`` (the table below the command) and prints it.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch

from data_loaders.crop import crop_dataset
from engine.evaluate import evaluate_checkpoints
from engine.recipes import CPU_PLAN, DEMO_MODELS
from engine.train import TrainConfig, fit


def _plan(model: str, **variant) -> dict:
    """The demo's CPU plan for ``model`` (engine.recipes.CPU_PLAN), with a variant's changes."""
    return {**copy.deepcopy(CPU_PLAN[model]), **variant}


#: The seed's recipes, trained beside ours (run name, model, changes to the CPU plan).
SEED_STYLE: dict[str, tuple[str, str, dict]] = {
    "mlp": ("mlp_seed", "mlp", _plan("mlp", landmark_norm="bbox", augment=False)),
    "gcn": ("gcn_seed", "gcn", _plan("gcn", landmark_norm="bbox", augment=False,
                                     hparams={"readout": "mean", "node_embedding": False})),
    "cnn": ("cnn_seed", "cnn", _plan("cnn", lr=1e-3, scheduler="none", weight_decay=0.0, augment=False, patience=0)),
}

#: Each model with the CPU plan, followed by its seed-style baseline where there is one.
RUNS: list[tuple[str, str, dict]] = [
    run for model in DEMO_MODELS for run in [(model, model, _plan(model)), SEED_STYLE.get(model)] if run
]

#: GCN variants (``--variants``): node features, extra edges and readout, same budget as ``gcn``.
VARIANTS: list[tuple[str, str, dict]] = [
    (name, "gcn", _plan("gcn", hparams=hp)) for name, hp in (
        ("gcn_bone", {"node_features": "xy+bone"}),
        ("gcn_edges", {"extra_edges": ["palm", "tips"]}),
        ("gcn_bone_edges", {"node_features": "xy+bone", "extra_edges": ["palm", "tips"]}),
        ("gcn_flatten", {"readout": "flatten"}),
    )
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "hagrid_sample"))
    ap.add_argument("--out", default="/tmp/bench_sample")
    ap.add_argument("--runs", nargs="*", help="only these run names")
    ap.add_argument("--variants", action="store_true", help="also train the GCN variants")
    args = ap.parse_args()
    out = Path(args.out)
    crops = out / "crops"
    crop_dataset(args.data_dir, crops, progress=False)
    timing = {}
    for name, model, over in RUNS + (VARIANTS if args.variants else []):
        if args.runs and name not in args.runs:
            continue
        over = dict(over)
        if model == "fusion":
            over["init_from"] = {"resnet34": str(out / "models" / "resnet34.pt"), "gcn": str(out / "models" / "gcn.pt")}
        cfg = TrainConfig(model=model, run_name=name, crops_dir=str(crops), out_dir=str(out / "models"),
                          graphs_dir=str(out / "graphs"), device="cpu", progress=False, tensorboard=False, **over)
        t0 = time.perf_counter()
        res = fit(cfg)
        total = time.perf_counter() - t0
        secs = [r["seconds"] for r in res.history]
        timing[name] = dict(epochs=res.epochs_run, s_per_epoch=statistics.median(secs), total=total,
                            samples_s=statistics.median(r["samples_per_s"] for r in res.history),
                            best_val=res.best_val_acc)
        print(f"{name}: {res.epochs_run} epochs, median {timing[name]['s_per_epoch']:.2f} s/epoch, "
              f"{total:.0f} s total, best val {res.best_val_acc:.4f}", flush=True)
    ckpts = [out / "models" / f"{n}.pt" for n in timing]
    cmp = evaluate_checkpoints(ckpts, crops_dir=crops, split="test", device="cpu", graphs_dir=out / "graphs",
                               caption=f"HaGRID sample ({args.data_dir}), test split")
    lines = [f"CPU: {torch.get_num_threads()} threads; torch {torch.__version__}", "",
             "| run | epochs run | s / epoch (median) | train samples/s | total s | best val acc | test acc (all hands) [95% CI] | n | test macro F1 |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    rows = {r["model"]: r for r in cmp.rows}
    for name, t in timing.items():
        r = rows[name]
        lines.append(f"| {name} | {t['epochs']} | {t['s_per_epoch']:.2f} | {t['samples_s']:.0f} | {t['total']:.0f} | "
                     f"{100 * t['best_val']:.1f} | {100 * r['acc_all']:.1f} [{100 * r['acc_all_low']:.1f}, "
                     f"{100 * r['acc_all_high']:.1f}] | {r['n_all']} | {100 * r['f1_all']:.1f} |")
    lines += ["", (out / "graphs" / "results.md").read_text()]
    text = "\n".join(lines)
    (out / "training_sample.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
