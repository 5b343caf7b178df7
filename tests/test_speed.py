"""What the quick demo rests on: one checkpoint write per epoch, ``--image-size``, the demo plans and the
ResNet-34 start (ImageNet weights used when cached, said either way)."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from common.errors import CheckpointMismatchError, UsageError
from data_loaders.hand_table import HandTable
from engine.checkpoint import CheckpointSaver, load_checkpoint
from engine.demo import DemoConfig, _previous_run, resnet_start, train_configs
from engine.evaluate import predict_checkpoint
from engine.recipes import CPU_PLAN, DEFAULT_DEMO_PLAN, QUICK_PLAN
from engine.train import TrainConfig, fit
from model_classes.resnet import ResNet34Classifier, imagenet_cache_path


@pytest.fixture
def crops(synth_crops) -> Path:
    return synth_crops


def _cfg(tmp_path: Path, crops: Path, model: str, **kw) -> TrainConfig:
    base = dict(crops_dir=str(crops), out_dir=str(tmp_path / "models"), graphs_dir=str(tmp_path / "graphs"),
                progress=False, tensorboard=False, device="cpu", epochs=1, patience=0, max_train_batches=1)
    return TrainConfig(model=model, **{**base, **kw})


# --------------------------------------------------------------------------- checkpoints: one write per epoch
def test_checkpoint_saver_writes_an_improved_epoch_once_and_keeps_the_best(tmp_path):
    saver = CheckpointSaver(tmp_path, "m")
    saver.save({"epoch": 0, "w": torch.tensor([1.0])}, improved=True)
    assert saver.best.read_bytes() == saver.last.read_bytes()
    if hasattr(os, "link"):
        assert saver.best.stat().st_ino == saver.last.stat().st_ino  # a hard link: the bytes were written once
    saver.save({"epoch": 1, "w": torch.tensor([2.0])}, improved=False)
    assert torch.load(saver.best)["epoch"] == 0 and torch.load(saver.last)["epoch"] == 1  # the link was broken
    saver.save({"epoch": 2, "w": torch.tensor([3.0])}, improved=True)
    assert torch.load(saver.best)["epoch"] == torch.load(saver.last)["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.last.pt", "m.pt"]  # no temporary file left


def test_checkpoint_saver_copies_where_there_are_no_hard_links(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError("hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    saver = CheckpointSaver(tmp_path, "m")
    saver.save({"epoch": 0}, improved=True)
    assert saver.best.read_bytes() == saver.last.read_bytes()
    assert saver.best.stat().st_ino != saver.last.stat().st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.last.pt", "m.pt"]


# --------------------------------------------------------------------------- --image-size
def test_image_size_is_trained_recorded_and_used_by_evaluation(tmp_path, crops):
    res = fit(_cfg(tmp_path, crops, "cnn", image_size=32))
    ck = load_checkpoint(res.best_checkpoint)
    assert ck["preprocessing"]["image_size"] == 32 and ck["args"]["image_size"] == 32
    seen = []
    model_forward = torch.nn.Module.__call__

    def spy(self, *a, **kw):
        if a and isinstance(a[0], dict) and "image" in a[0]:
            seen.append(tuple(a[0]["image"].shape[-2:]))
        return model_forward(self, *a, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.nn.Module, "__call__", spy)
        preds = predict_checkpoint(res.best_checkpoint, HandTable.from_manifest(crops), split="val")
    assert len(preds.y_pred) > 0 and set(seen) == {(32, 32)}  # evaluation resizes as training did
    with pytest.raises(CheckpointMismatchError, match="image_size: checkpoint has 32, asked for 48"):
        fit(_cfg(tmp_path, crops, "cnn", image_size=48, epochs=2, resume=True))


@pytest.mark.parametrize("model, size, match", [("mlp", 64, "reads no image"), ("cnn", 16, "--image-size")])
def test_image_size_refusals_name_the_flag(tmp_path, crops, model, size, match):
    with pytest.raises(UsageError, match=match):
        _cfg(tmp_path, crops, model, image_size=size).validate()


def test_fusion_takes_its_resnet_branch_image_size(tmp_path, crops):
    resnet = fit(_cfg(tmp_path, crops, "resnet34", image_size=32, hparams={"weights": None}, max_eval_batches=1))
    gcn = fit(_cfg(tmp_path, crops, "gcn"))
    fusion = fit(_cfg(tmp_path, crops, "fusion", max_eval_batches=1,
                      init_from={"resnet34": str(resnet.best_checkpoint), "gcn": str(gcn.best_checkpoint)},
                      hparams={"freeze_branches": True, "mode": "logit"}))
    assert load_checkpoint(fusion.best_checkpoint)["preprocessing"]["image_size"] == 32


# --------------------------------------------------------------------------- demo plans
def test_demo_plans_quick_by_default_and_cpu_on_request(tmp_path):
    assert DEFAULT_DEMO_PLAN == "quick"
    quick = {tc.model: tc for tc, _, _ in train_configs(DemoConfig(work_dir=str(tmp_path)), tmp_path / "crops")}
    assert quick["resnet34"].image_size == QUICK_PLAN["resnet34"]["image_size"] == 48
    assert quick["fusion"].image_size is None  # takes the ResNet-34's
    cpu = {tc.model: tc for tc, _, _ in train_configs(DemoConfig(work_dir=str(tmp_path), plan_name="cpu"),
                                                      tmp_path / "crops")}
    assert cpu["resnet34"].image_size is None and cpu["resnet34"].epochs == CPU_PLAN["resnet34"]["epochs"]
    assert cpu["cnn"].epochs > quick["cnn"].epochs


def test_demo_reuses_a_finished_run_only_with_the_same_image_size(tmp_path, crops):
    tc = _cfg(tmp_path, crops, "cnn", image_size=32, max_train_batches=None)
    fit(tc)
    assert _previous_run(tc, epochs=1, patience=0) == "finished"
    assert _previous_run(replace(tc, image_size=48), epochs=1, patience=0) == "none"
    assert _previous_run(replace(tc, lr=0.5), epochs=1, patience=0) == "none"


# --------------------------------------------------------------------------- ResNet-34 start
def test_resnet_start_uses_cached_imagenet_weights_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights, line = resnet_start(None)
    assert weights is None and "trains from scratch" in line and str(imagenet_cache_path()) in line
    cached = imagenet_cache_path()
    cached.parent.mkdir(parents=True)
    reference = ResNet34Classifier(18, weights=None).backbone
    torch.save({**reference.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}, cached)
    weights, line = resnet_start(None)
    assert weights == "imagenet" and "found in the torch hub cache" in line and str(cached) in line
    model = ResNet34Classifier(18, weights=weights)  # read from the cache: no network here
    assert model.pretrained == "imagenet"
    assert torch.equal(model.backbone.conv1.weight, reference.conv1.weight)
    assert resnet_start("none")[0] is None and resnet_start("my.pth") == ("my.pth", "[resnet34] starts from "
                                                                                   "--pretrained my.pth")
