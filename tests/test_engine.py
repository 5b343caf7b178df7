"""The training engine: checkpoints, exact resume, mismatch errors, learning on real data, DDP."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.errors import CheckpointMismatchError, DataError
from data_loaders.augment import BatchTransform
from data_loaders.batches import make_batches, usable_rows
from data_loaders.crop import crop_dataset
from data_loaders.hand_table import HandTable
from engine.checkpoint import load_checkpoint, load_model, save_checkpoint
from engine.evaluate import predict_checkpoint
from engine.train import TrainConfig, fit
from model_classes import create_model, model_spec

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sample_crops(hagrid_sample, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample_crops")
    crop_dataset(hagrid_sample, out, progress=False)
    return out


def _cfg(tmp_path: Path, crops: Path, model: str = "mlp", **kw) -> TrainConfig:
    base = dict(crops_dir=str(crops), out_dir=str(tmp_path / "models"), graphs_dir=str(tmp_path / "graphs"),
                progress=False, tensorboard=False, device="cpu", epochs=3, patience=0)
    base.update(kw)
    return TrainConfig(model=model, **base)


# --------------------------------------------------------------------------- checkpoints
def test_fit_writes_self_describing_checkpoint_history_and_curves(tmp_path, synth_crops):
    res = fit(_cfg(tmp_path, synth_crops, "gcn"))
    ck = load_checkpoint(res.best_checkpoint)
    assert ck["model_name"] == "gcn" and ck["num_classes"] == 18 and len(ck["class_names"]) == 18
    assert ck["preprocessing"]["landmark_norm"] == "wrist" and ck["preprocessing"]["inputs"] == ["landmarks"]
    assert ck["optimizer"] is not None and ck["epoch"] >= 0
    hist = (tmp_path / "graphs" / "gcn_history.csv").read_text().splitlines()
    assert hist[0].startswith("epoch,train_loss,train_acc,val_loss,val_acc") and len(hist) == 4
    assert (tmp_path / "graphs" / "gcn_curves.png").stat().st_size > 1000
    # rebuilt without the training code's config: same predictions as the checkpointed weights
    model, _ = load_model(res.best_checkpoint)
    table = HandTable.from_manifest(synth_crops)
    a = predict_checkpoint(res.best_checkpoint, table, split="val")
    assert a.y_pred.shape == a.y_true.shape and len(a.index) == int(usable_rows(table.split_view("val"), ("landmarks",)).__len__())
    assert res.best_val_acc == pytest.approx(float((a.y_pred == a.y_true).mean()))


def test_checkpoint_mismatch_errors_name_the_difference(tmp_path, synth_crops):
    res = fit(_cfg(tmp_path, synth_crops, "mlp", epochs=1))
    with pytest.raises(CheckpointMismatchError, match="model: checkpoint has 'mlp', asked for 'gcn'"):
        load_model(res.best_checkpoint, model_name="gcn")
    with pytest.raises(CheckpointMismatchError, match="classes"):
        load_model(res.best_checkpoint, class_names=["a", "b"])
    with pytest.raises(CheckpointMismatchError, match="hparam hidden"):
        load_model(res.best_checkpoint, hparams={"hidden": [128]})
    ck = load_checkpoint(res.best_checkpoint)
    ck["state_dict"] = {k + "_renamed": v for k, v in ck["state_dict"].items()}
    bad = save_checkpoint(tmp_path / "bad.pt", ck)
    with pytest.raises(CheckpointMismatchError, match="weights do not fit"):
        load_model(bad)
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(res.best_checkpoint.read_bytes()[:200])
    with pytest.raises(CheckpointMismatchError, match="trunc.pt"):
        load_model(trunc)
    # resuming with other hyperparameters is refused, not silently mixed
    with pytest.raises(CheckpointMismatchError, match="hidden"):
        fit(_cfg(tmp_path, synth_crops, "mlp", epochs=2, resume=True, hparams={"hidden": [16]}))


def test_no_stray_temp_files_after_training(tmp_path, synth_crops):
    fit(_cfg(tmp_path, synth_crops, "mlp", epochs=2))
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["mlp.last.pt", "mlp.pt"]


# --------------------------------------------------------------------------- resume
class _Crash(Exception):
    pass


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_resume_equals_uninterrupted(tmp_path, synth_crops, model):
    kw = dict(epochs=3, batch_size=16, seed=3)
    full = fit(_cfg(tmp_path / "a", synth_crops, model, **kw))

    def crash_after_first(epoch, row):
        if epoch == 0:
            raise _Crash

    with pytest.raises(_Crash):
        fit(_cfg(tmp_path / "b", synth_crops, model, **kw), callbacks=[crash_after_first])
    resumed = fit(_cfg(tmp_path / "b", synth_crops, model, resume=True, **kw))
    a, b = load_checkpoint(full.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    assert a["epoch"] == b["epoch"] == 2
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])


# --------------------------------------------------------------------------- learning on real data
@pytest.mark.parametrize("model,batch,steps", [("mlp", 64, 40), ("gcn", 64, 40), ("cnn", 32, 15),
                                               ("resnet34", 4, 3), ("fusion", 4, 3)])
def test_optimisation_steps_reduce_loss_on_sample(sample_crops, model, batch, steps):
    spec = model_spec(model)
    torch.manual_seed(0)
    table = usable_rows(HandTable.from_manifest(sample_crops).split_view("train"), spec.inputs)
    table = table.subset(np.arange(batch))
    batches = make_batches(table, inputs=spec.inputs, image_size=spec.image_size, landmark_norm="wrist",
                           batch_size=batch, shuffle=False, seed=0, device=torch.device("cpu"))
    b = BatchTransform("wrist", spec.image_size, None)(next(iter(batches)), train=False)
    hp = {"resnet34": {"weights": None}, "fusion": {"resnet": {"weights": None}}}.get(model, {})
    net = create_model(model, 18, **hp)
    net.train()
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(net(b), b["label"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0] * (0.5 if steps > 10 else 0.98), losses


def test_image_model_needs_crops(tmp_path):
    with pytest.raises(DataError, match="hand-gestures crop"):
        fit(_cfg(tmp_path, tmp_path / "nowhere", "cnn"))


def test_landmark_model_trains_from_annotations_without_crops(tmp_path, hagrid_sample):
    res = fit(_cfg(tmp_path, tmp_path / "no_crops", "mlp", data_dir=str(hagrid_sample), epochs=2))
    assert load_checkpoint(res.best_checkpoint)["num_classes"] == 18


# --------------------------------------------------------------------------- fusion
def test_fusion_trains_from_unimodal_and_scores_hands_without_landmarks(tmp_path, synth_crops):
    fit(_cfg(tmp_path, synth_crops, "gcn", epochs=1))
    fit(_cfg(tmp_path, synth_crops, "resnet34", epochs=1, max_train_batches=1, hparams={"weights": None}))
    models = tmp_path / "models"
    res = fit(_cfg(tmp_path, synth_crops, "fusion", epochs=1, max_train_batches=1,
                   init_from={"resnet34": str(models / "resnet34.pt"), "gcn": str(models / "gcn.pt")}))
    table = HandTable.from_manifest(synth_crops)
    assert (~table.has_landmarks).any(), "fixture should contain hands without landmarks"
    preds = predict_checkpoint(res.best_checkpoint, table, split="test")
    test_rows = table.split_view("test")
    assert len(preds.index) == len(test_rows)  # every hand scored, with or without landmarks
    # a hand without landmarks is classified from its image alone: whatever sits in its landmark slot
    model, _ = load_model(res.best_checkpoint)
    model.eval()
    rows = table.subset(~table.has_landmarks)
    batches = make_batches(rows, inputs=("image", "landmarks"), image_size=128, landmark_norm="wrist",
                           batch_size=8, shuffle=False, seed=0, device=torch.device("cpu"))
    b = BatchTransform("wrist", 128, None)(next(iter(batches)), train=False)
    with torch.no_grad():
        ref = model(b)
        noisy = model({**b, "landmarks": torch.randn_like(b["landmarks"])})
    assert torch.allclose(ref, noisy)


# --------------------------------------------------------------------------- DataLoader path
def test_crops_read_from_disk_train_and_resume_like_in_memory(tmp_path, synth_crops):
    kw = dict(epochs=2, batch_size=16, seed=4, in_memory="no", num_workers=1)
    full = fit(_cfg(tmp_path / "a", synth_crops, "cnn", **kw))

    def crash(epoch, row):
        raise _Crash

    with pytest.raises(_Crash):
        fit(_cfg(tmp_path / "b", synth_crops, "cnn", **kw), callbacks=[crash])
    resumed = fit(_cfg(tmp_path / "b", synth_crops, "cnn", resume=True, **kw))
    a, b = load_checkpoint(full.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    assert all(torch.equal(v, b["state_dict"][k]) for k, v in a["state_dict"].items())
    in_memory = fit(_cfg(tmp_path / "c", synth_crops, "cnn", **{**kw, "in_memory": "yes"}))
    c = load_checkpoint(in_memory.last_checkpoint)
    assert all(torch.allclose(v.float(), c["state_dict"][k].float(), atol=1e-5) for k, v in a["state_dict"].items())


def test_bad_crop_inside_a_loader_worker_is_a_one_line_data_error(tmp_path, synth_crops):
    crops = tmp_path / "crops"
    shutil.copytree(synth_crops, crops)
    victim = sorted((crops / "train").rglob("*.jpg"))[0]
    victim.write_bytes(b"not a jpeg")
    with pytest.raises(DataError) as e:
        fit(_cfg(tmp_path, crops, "cnn", epochs=1, in_memory="no", num_workers=1))
    assert victim.name in str(e.value) and "Traceback" not in str(e.value)


def test_resume_refuses_other_settings_and_says_when_there_is_nothing_to_resume(tmp_path, synth_crops, capsys):
    fit(_cfg(tmp_path, synth_crops, "mlp", epochs=2, resume=True))
    assert "nothing to resume" in capsys.readouterr().out
    with pytest.raises(CheckpointMismatchError, match="lr: checkpoint has"):
        fit(_cfg(tmp_path, synth_crops, "mlp", epochs=2, resume=True, lr=0.5))


# --------------------------------------------------------------------------- DDP
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("model,batch", [("mlp", 23), ("cnn", 16)])
def test_two_process_ddp_on_cpu(tmp_path, synth_crops, model, batch):
    table = HandTable.from_manifest(synth_crops)
    if model == "mlp":  # odd number of hands, batch of half: unequal shards would give one rank an extra step
        n = int(((table.split == "train") & table.has_landmarks).sum())
        assert n % 2 == 1 and n // 2 == batch
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    out = tmp_path / "models"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "engine.cli", "train", "--model", model, "--crops-dir", str(synth_crops), "--out-dir", str(out),
           "--graphs-dir", str(tmp_path / "graphs"), "--epochs", "2", "--device", "cpu", "--no-progress",
           "--batch-size", str(batch), "--workers", "0"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ck = load_checkpoint(out / f"{model}.last.pt")
    assert ck["args"]["model"] == model and len(ck["history"]) == 2
    # validation metrics were reduced over both ranks: they equal a single-process evaluation of the same weights
    preds = predict_checkpoint(out / f"{model}.last.pt", table, split="val")
    assert ck["history"][-1]["val_acc"] == pytest.approx(float((preds.y_pred == preds.y_true).mean()))
    assert sorted(p.name for p in out.iterdir()) == [f"{model}.last.pt", f"{model}.pt"]
    # the temperature was fitted on the whole validation split, not on rank 0's shard
    n_val = len(predict_checkpoint(out / f"{model}.pt", table, split="val"))
    assert load_checkpoint(out / f"{model}.pt")["calibration"]["n"] == n_val
