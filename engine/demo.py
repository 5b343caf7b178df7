"""The main job: crop -> train all five models -> evaluate -> report, in minutes on a CPU.

With no ``--data-dir`` it first generates the synthetic demonstration set
(HaGRID v2 layout, see :mod:`data_loaders.synthetic`) and runs the real code path on
it; with ``--data-dir`` pointing at HaGRID (or the sample) it runs the same steps
there. Finished steps are reused on a rerun (crops, finished checkpoints;
interrupted training resumes) unless ``--restart`` is given.
"""
from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from .checkpoint import FUSION_BRANCHES, CheckpointSaver, load_checkpoint
from .recipes import CPU_PLAN
from .recipes import DEMO_MODELS as MODELS
from .train import TrainConfig, fit


@dataclass
class DemoConfig:
    data_dir: str | None = None  # None: the synthetic set
    work_dir: str = "."
    synth_dir: str = "data/synthetic"
    final_models: str = "final_models"
    graphs_dir: str = "graphs"
    reports_dir: str = "reports"
    models: Sequence[str] = MODELS
    restart: bool = False
    device: str = "auto"
    seed: int = 0
    epochs_scale: float = 1.0  # <1 shortens every run (tests)
    synth_subjects: int | None = None
    synth_images_per_subject: int | None = None
    pretrained: str | None = None  # ResNet-34 weights: "imagenet" or a path; None trains from scratch
    progress: bool = True
    plan: dict = field(default_factory=lambda: {k: dict(v) for k, v in CPU_PLAN.items()})


def _p(cfg: DemoConfig, rel: str) -> Path:
    return Path(cfg.work_dir) / rel


def _crops_dir(cfg: DemoConfig, data_dir: Path) -> Path:
    """One crops folder per dataset: named after it, plus a short hash of its full path so that two
    datasets in folders of the same name never share crops."""
    resolved = data_dir.resolve()
    return _p(cfg, f"data/crops_{resolved.name}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}")


def _previous_run(cfg: TrainConfig, epochs: int, patience: int) -> str:
    """``"finished"``, ``"interrupted"`` (same data and settings, resumable) or ``"none"``."""
    saver = CheckpointSaver(cfg.out_dir, cfg.name)
    best, last = saver.best, saver.last
    if not last.is_file():
        return "none"
    ck = load_checkpoint(last)
    args = ck.get("args", {})
    same = (Path(args.get("crops_dir", "")).resolve() == Path(cfg.crops_dir).resolve()
            and args.get("epochs") == epochs and args.get("hparams") == cfg.hparams and args.get("seed") == cfg.seed)
    if not same:
        return "none"
    done = ck["epoch"] + 1 >= epochs or (patience and ck.get("bad_epochs", 0) >= patience)
    return "finished" if done and best.is_file() else "interrupted"


def train_configs(cfg: DemoConfig, crops_dir: Path) -> list[tuple[TrainConfig, int, int]]:
    out = []
    for name in cfg.models:
        plan = dict(cfg.plan[name])
        epochs = max(1, round(plan.pop("epochs") * cfg.epochs_scale))
        patience = plan.pop("patience")
        hparams = dict(plan.pop("hparams"))
        if name == "resnet34" and cfg.pretrained:
            hparams["weights"] = cfg.pretrained
        init_from = {}
        if name == "fusion":
            init_from = {m: str(CheckpointSaver(_p(cfg, cfg.final_models), m).best) for m in FUSION_BRANCHES}
        tc = TrainConfig(model=name, crops_dir=str(crops_dir), out_dir=str(_p(cfg, cfg.final_models)),
                         graphs_dir=str(_p(cfg, cfg.graphs_dir)), epochs=epochs, patience=patience,
                         hparams=hparams, seed=cfg.seed, device=cfg.device, init_from=init_from,
                         progress=cfg.progress, tensorboard=False, **plan)
        out.append((tc, epochs, patience))
    return out


def run_demo(cfg: DemoConfig) -> dict:
    """Run every step; returns paths and the comparison."""
    from data_loaders.classes import make_class_set
    from data_loaders.hagrid import load_hagrid
    from data_loaders.summary import draw_samples, summarize, write_summary_json

    from .evaluate import evaluate_checkpoints
    from .notebook import ensure_crops
    from .reporting.html import build_report

    t_start = time.perf_counter()
    def say(*a) -> None:  # step headers, reuse notices and the final table: always shown
        print(*a, flush=True)

    graphs = _p(cfg, cfg.graphs_dir)
    if cfg.data_dir is None:
        from data_loaders.synthetic.generate import generate_synthetic_hagrid

        data_dir = _p(cfg, cfg.synth_dir)
        say(f"== 1/5 synthetic demonstration set -> {data_dir}")
        kw = {}
        if cfg.synth_subjects:
            kw["n_subjects"] = cfg.synth_subjects
        if cfg.synth_images_per_subject:
            kw["images_per_subject"] = cfg.synth_images_per_subject
        generate_synthetic_hagrid(data_dir, seed=cfg.seed, progress=cfg.progress, **kw)
        caption = ("Synthetic demonstration set (procedurally drawn hands in HaGRID's format): "
                   "these numbers show the pipeline works, they are not HaGRID results.")
    else:
        data_dir = Path(cfg.data_dir)
        say(f"== 1/5 dataset {data_dir}")
        caption = f"Test split of {data_dir.resolve().name} ({data_dir})."
    crops_dir = _crops_dir(cfg, data_dir)
    if cfg.restart:
        for d in (crops_dir,):
            shutil.rmtree(d, ignore_errors=True)
    say(f"== 2/5 crops -> {crops_dir}")
    ann = load_hagrid(data_dir, make_class_set())
    ensure_crops(data_dir, crops_dir, progress=cfg.progress, annotations=ann)
    summary = summarize(ann)
    write_summary_json(summary, graphs / "data_summary.json")
    draw_samples(ann, graphs / "data_samples.png")

    say("== 3/5 training")
    ckpts = []
    for tc, epochs, patience in train_configs(cfg, crops_dir):
        previous = "none" if cfg.restart else _previous_run(tc, epochs, patience)
        saver = CheckpointSaver(tc.out_dir, tc.name)
        if previous == "finished":
            say(f"[{tc.name}] finished checkpoint found, reusing {saver.best}")
        else:
            if previous == "none":  # never mix a stale run (other data or settings) into a new one
                for path in (saver.best, saver.last):
                    path.unlink(missing_ok=True)
            fit(replace(tc, resume=previous == "interrupted"))
        ckpts.append(saver.best)

    say("== 4/5 evaluation on the test split")
    comparison = evaluate_checkpoints(ckpts, crops_dir=crops_dir, split="test", device=cfg.device,
                                      graphs_dir=graphs, caption=caption)
    say("== 5/5 report")
    html, md = build_report(graphs, _p(cfg, cfg.reports_dir), dataset_note=caption)
    table = (graphs / "results.md").read_text()
    minutes = (time.perf_counter() - t_start) / 60
    say("\n" + table)
    say(f"Done in {minutes:.1f} min.\n  checkpoints: {_p(cfg, cfg.final_models)}\n  figures and tables: {graphs}\n"
        f"  report: {html}\n  crops: {crops_dir}")
    return {"comparison": comparison, "report_html": html, "report_md": md, "results_md": graphs / "results.md",
            "checkpoints": ckpts, "crops_dir": crops_dir, "data_dir": data_dir, "minutes": minutes}


def with_fusion_branches(models: Sequence[str]) -> list[str]:
    """The models to train, in order; fusion brings the two models it starts from."""
    models = list(models)
    if "fusion" in models:
        models = [m for m in MODELS if m in set(models) | set(FUSION_BRANCHES)]
    return models
