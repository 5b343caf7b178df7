"""The main job: crop -> train all five models -> evaluate -> report, in minutes on a CPU.

With no ``--data-dir`` it first generates the synthetic demonstration set
(HaGRID v2 layout, see :mod:`data_loaders.synthetic`) and runs the real code path on
it; with ``--data-dir`` pointing at HaGRID (or the sample) it runs the same steps
there. Finished steps are reused on a rerun (crops, finished checkpoints;
interrupted training resumes) unless ``--restart`` is given.
"""
from __future__ import annotations

import copy
import hashlib
import json
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

from common.files import atomic_write_text

from .checkpoint import FUSION_BRANCHES, CheckpointSaver, load_checkpoint
from .recipes import DEFAULT_DEMO_PLAN, DEMO_PLANS
from .recipes import DEMO_MODELS as MODELS
from .train import TrainConfig, fit, resolved_settings


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
    pretrained: str | None = None  # ResNet-34 weights: "imagenet" or a path; None: ImageNet's when cached, else none
    progress: bool = True
    plan_name: str = DEFAULT_DEMO_PLAN  # a key of engine.recipes.DEMO_PLANS
    plan: dict | None = None  # per-model settings; None: DEMO_PLANS[plan_name]

    def model_plan(self, model: str) -> dict:
        """A copy of ``model``'s settings in this run's plan."""
        plan = self.plan if self.plan is not None else DEMO_PLANS[self.plan_name]
        return copy.deepcopy(plan[model])


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
            and args.get("epochs") == epochs and args.get("hparams") == cfg.hparams and args.get("seed") == cfg.seed
            and args.get("image_size") == cfg.image_size
            and all(args.get(k) == v for k, v in resolved_settings(cfg).items()))
    if not same:
        return "none"
    done = ck["epoch"] + 1 >= epochs or (patience and ck.get("bad_epochs", 0) >= patience)
    return "finished" if done and best.is_file() else "interrupted"


def train_configs(cfg: DemoConfig, crops_dir: Path) -> list[tuple[TrainConfig, int, int]]:
    out = []
    for name in cfg.models:
        plan = cfg.model_plan(name)
        epochs = max(1, round(plan.pop("epochs") * cfg.epochs_scale))
        patience = plan.pop("patience")
        hparams = dict(plan.pop("hparams"))
        if name == "resnet34" and cfg.pretrained and cfg.pretrained.lower() != "none":
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


SYNTHETIC_CAPTION = ("Synthetic demonstration set (procedurally drawn hands in HaGRID's format): "
                     "these numbers show the pipeline works, they are not HaGRID results.")
TIMINGS_FILE = "demo_timings.json"


def say(*a) -> None:
    """Step headers, reuse notices, timings and the final table: always shown, whatever ``--no-progress``."""
    print(*a, flush=True)


class StepClock:
    """Wall seconds per demo step, in order, so a run says where its time went (and keeps it in
    ``graphs/demo_timings.json``)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - t, 1)

    @property
    def total(self) -> float:
        return round(time.perf_counter() - self.t0, 1)

    def line(self) -> str:
        return ", ".join(f"{k} {v:.0f} s" for k, v in self.seconds.items()) + f"; total {self.total:.0f} s"

    def write(self, path: Path, plan_name: str) -> None:
        atomic_write_text(path, json.dumps({"plan": plan_name, "steps_s": self.seconds, "total_s": self.total},
                                           indent=2) + "\n")


def _dataset(cfg: DemoConfig) -> tuple[Path, str]:
    """Step 1: the dataset folder (the synthetic set generated or reused) and its caption."""
    if cfg.data_dir is not None:
        data_dir = Path(cfg.data_dir)
        say(f"== 1/5 dataset {data_dir}")
        return data_dir, f"Test split of {data_dir.resolve().name} ({data_dir})."
    from data_loaders.synthetic.generate import generate_synthetic_hagrid

    data_dir = _p(cfg, cfg.synth_dir)
    say(f"== 1/5 synthetic demonstration set -> {data_dir}")
    kw = {}
    if cfg.synth_subjects:
        kw["n_subjects"] = cfg.synth_subjects
    if cfg.synth_images_per_subject:
        kw["images_per_subject"] = cfg.synth_images_per_subject
    generate_synthetic_hagrid(data_dir, seed=cfg.seed, progress=cfg.progress, **kw)
    return data_dir, SYNTHETIC_CAPTION


def _crops(cfg: DemoConfig, data_dir: Path) -> Path:
    """Step 2: the crops (made or reused), the data summary and the sample sheet."""
    from data_loaders.classes import make_class_set
    from data_loaders.hagrid import load_hagrid
    from data_loaders.summary import draw_samples, summarize, write_summary_json

    from .notebook import ensure_crops

    crops_dir = _crops_dir(cfg, data_dir)
    if cfg.restart:
        shutil.rmtree(crops_dir, ignore_errors=True)
    say(f"== 2/5 crops -> {crops_dir}")
    ann = load_hagrid(data_dir, make_class_set())
    ensure_crops(data_dir, crops_dir, progress=cfg.progress, annotations=ann)
    graphs = _p(cfg, cfg.graphs_dir)
    write_summary_json(summarize(ann), graphs / "data_summary.json")
    draw_samples(ann, graphs / "data_samples.png")
    return crops_dir


def resnet_start(pretrained: str | None) -> tuple[str | None, str]:
    """The ResNet-34's initial weights and the line that says so: ``--pretrained`` when given ("none":
    from scratch), else torchvision's ImageNet weights when they are already in the torch hub cache
    (nothing is downloaded), else from scratch."""
    from model_classes.resnet import cached_imagenet_weights, imagenet_cache_path

    if pretrained is not None and pretrained.lower() == "none":
        return None, "[resnet34] trains from scratch (--pretrained none)"
    if pretrained is not None:
        return pretrained, f"[resnet34] starts from --pretrained {pretrained}"
    cached = cached_imagenet_weights()
    if cached is not None:
        return "imagenet", f"[resnet34] starts from the ImageNet weights found in the torch hub cache ({cached})"
    return None, (f"[resnet34] trains from scratch: no ImageNet weights at {imagenet_cache_path()} "
                  "(put torchvision's file there, or pass --pretrained FILE)")


def _train(cfg: DemoConfig, crops_dir: Path, clock: StepClock) -> list[Path]:
    """Step 3: every model in order, finished checkpoints reused and interrupted runs resumed."""
    say(f"== 3/5 training (plan {cfg.plan_name!r}" + (f", epochs x {cfg.epochs_scale:g}" if cfg.epochs_scale != 1
                                                      else "") + ")")
    if "resnet34" in cfg.models:
        weights, line = resnet_start(cfg.pretrained)
        cfg = replace(cfg, pretrained=weights or "none")
        say(line)
    ckpts = []
    for tc, epochs, patience in train_configs(cfg, crops_dir):
        previous = "none" if cfg.restart else _previous_run(tc, epochs, patience)
        saver = CheckpointSaver(tc.out_dir, tc.name)
        with clock.step(tc.name):
            if previous == "finished":
                say(f"[{tc.name}] finished checkpoint found, reusing {saver.best}")
            else:
                if previous == "none":  # never mix a stale run (other data or settings) into a new one
                    for path in (saver.best, saver.last):
                        path.unlink(missing_ok=True)
                fit(replace(tc, resume=previous == "interrupted"))
        ckpts.append(saver.best)
    return ckpts


def run_demo(cfg: DemoConfig) -> dict:
    """Run every step; returns paths, the comparison and the seconds each step took."""
    from .evaluate import evaluate_checkpoints
    from .reporting.html import build_report

    clock = StepClock()
    graphs = _p(cfg, cfg.graphs_dir)
    with clock.step("dataset"):
        data_dir, caption = _dataset(cfg)
    with clock.step("crops"):
        crops_dir = _crops(cfg, data_dir)
    ckpts = _train(cfg, crops_dir, clock)
    with clock.step("evaluation"):
        say("== 4/5 evaluation on the test split")
        comparison = evaluate_checkpoints(ckpts, crops_dir=crops_dir, split="test", device=cfg.device,
                                          graphs_dir=graphs, caption=caption)
    with clock.step("report"):
        say("== 5/5 report")
        html, md = build_report(graphs, _p(cfg, cfg.reports_dir), dataset_note=caption)
    clock.write(graphs / TIMINGS_FILE, cfg.plan_name)
    say("\n" + (graphs / "results.md").read_text())
    say(f"Done in {clock.total / 60:.1f} min ({clock.line()}).\n  checkpoints: {_p(cfg, cfg.final_models)}\n"
        f"  figures and tables: {graphs}\n  report: {html}\n  crops: {crops_dir}")
    return {"comparison": comparison, "report_html": html, "report_md": md, "results_md": graphs / "results.md",
            "checkpoints": ckpts, "crops_dir": crops_dir, "data_dir": data_dir, "minutes": clock.total / 60,
            "timings": dict(clock.seconds)}


def with_fusion_branches(models: Sequence[str]) -> list[str]:
    """The models to train, in order; fusion brings the two models it starts from."""
    models = list(models)
    if "fusion" in models:
        models = [m for m in MODELS if m in set(models) | set(FUSION_BRANCHES)]
    return models
