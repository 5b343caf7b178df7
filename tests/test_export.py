"""ONNX export (engine.export): all five models export with a dynamic batch axis and match PyTorch on real
hands (a few sample test crops when ../shared/hagrid_sample is there, synthetic hands otherwise); the file's
metadata gives back what prediction needs; a file that is not one of ours, or a failed parity check, is one
line. Each model is exported once per module (ResNet-34 and fusion take seconds)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time

import numpy as np
import onnx
import pytest
import torch
from checkpoint_fixtures import random_checkpoint

from common.errors import CheckpointMismatchError, UserFacingError
from data_loaders.classes import make_class_set
from data_loaders.crop import crop_dataset
from data_loaders.hagrid import load_hagrid
from engine import export
from engine.checkpoint import load_checkpoint
from engine.export import OnnxClassifier, export_checkpoint

#: The graph inputs each model's forward reads.
EXPECTED_INPUTS = {"mlp": ("landmarks",), "gcn": ("landmarks",), "cnn": ("image",), "resnet34": ("image",),
                   "fusion": ("image", "landmarks", "has_landmarks")}
SAMPLE_HANDS = 28


@pytest.fixture(scope="module")
def check_crops(request, tmp_path_factory):
    """A tiny crops folder of sample test hands, or None (the export then uses synthetic hands)."""
    try:
        sample = request.getfixturevalue("hagrid_sample")
    except pytest.skip.Exception:
        return None
    ann = load_hagrid(sample, make_class_set(), splits=["test"])
    step = max(1, len(ann.records) // SAMPLE_HANDS)
    ann = dataclasses.replace(ann, records=ann.records[::step][:SAMPLE_HANDS])
    out = tmp_path_factory.mktemp("sample_crops")
    crop_dataset(sample, out, annotations=ann, splits=["test"], workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def exported(random_checkpoints, check_crops, tmp_path_factory):
    """``{model: (report, seconds)}``: every model exported once, beside copies outside the shared folder."""
    out = tmp_path_factory.mktemp("onnx")
    done = {}
    for name, ckpt in random_checkpoints.items():
        t0 = time.perf_counter()
        report = export_checkpoint(ckpt, out / f"{name}.onnx", check_data=check_crops)
        done[name] = (report, time.perf_counter() - t0)
        print(f"{name}: {report.size_bytes / 1e6:.1f} MB in {done[name][1]:.1f} s; " + " | ".join(report.lines()))
    return done


def _batch(n: int, image_size: int | None, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s = image_size or 8
    return {"image": torch.randn(n, 3, s, s, generator=g), "landmarks": torch.randn(n, 21, 2, generator=g) * 0.5,
            "has_landmarks": torch.arange(n) % 3 != 1, "label": torch.zeros(n, dtype=torch.int64)}


def test_every_model_exports_and_matches_pytorch(exported, check_crops, random_checkpoints):
    assert set(exported) == set(EXPECTED_INPUTS) == set(random_checkpoints)
    for name, (report, _) in exported.items():
        assert report.path.is_file() and report.path.stat().st_size == report.size_bytes
        assert report.same_argmax and report.max_abs_prob_diff < export.PARITY_LIMIT, report.lines()
        assert report.n_checked >= export.PARITY_MIN_HANDS
        assert report.batch_sizes[0] == 1 and max(report.batch_sizes) > 1 and sum(report.batch_sizes) == report.n_checked
        assert report.input_source.startswith("crops folder" if check_crops else "synthetic"), report.input_source
        assert report.input_names == EXPECTED_INPUTS[name]
        graph = onnx.load(str(report.path), load_external_data=False).graph
        assert [i.name for i in graph.input] == list(EXPECTED_INPUTS[name])
        assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == export.BATCH_AXIS
        assert len(report.lines()) == 2 and "parity" in report.lines()[1]


@pytest.fixture(scope="module")
def classifiers(exported):
    """``{model: OnnxClassifier}`` on each exported file (one onnxruntime session per model)."""
    return {name: OnnxClassifier(report.path) for name, (report, _) in exported.items()}


def test_metadata_round_trips(classifiers, random_checkpoints):
    for name, clf in classifiers.items():
        ckpt = load_checkpoint(random_checkpoints[name])
        assert clf.class_names == list(ckpt["class_names"])
        assert clf.preprocessing == json.loads(json.dumps(ckpt["preprocessing"]))
        assert clf.model_name == name and clf.temperature == 1.0
        assert clf.input_names == EXPECTED_INPUTS[name]
        assert clf.checkpoint_sha256 == hashlib.sha256(random_checkpoints[name].read_bytes()).hexdigest()


def test_temperature_is_stored(tmp_path):
    ckpt = random_checkpoint("mlp", tmp_path / "mlp.pt", calibration={"temperature": 1.7, "split": "val"})
    report = export_checkpoint(ckpt)  # no crops anywhere: synthetic hands
    assert report.path == tmp_path / "mlp.onnx" and report.input_source.startswith("synthetic")
    assert OnnxClassifier(report.path).temperature == pytest.approx(1.7)


def test_dynamic_batch(classifiers, random_checkpoints):
    """Batches of 1 and 7 from the file (the export's parity check already compared both with PyTorch):
    the same hand scores the same alone and in a batch; numpy and torch inputs give the same logits."""
    for name, clf in classifiers.items():
        size = clf.preprocessing.get("image_size")
        batch7 = _batch(7, size)
        got7 = clf(batch7)  # torch tensors, an extra key ("label") ignored
        got1 = clf({k: v[3:4].numpy() for k, v in batch7.items()})
        assert got7.shape == (7, len(clf.class_names)) and got1.shape == (1, len(clf.class_names)), name
        assert got7.dtype == np.float32 and np.isfinite(got7).all(), name
        np.testing.assert_allclose(got1[0], got7[3], atol=1e-5, rtol=1e-5, err_msg=name)
        if "has_landmarks" in clf.input_names:  # hands without landmarks take the image-only path
            moved = dict(batch7, landmarks=batch7["landmarks"] + 1)
            np.testing.assert_allclose(clf(moved)[~batch7["has_landmarks"].numpy()],
                                       got7[~batch7["has_landmarks"].numpy()], atol=1e-5)
            assert not np.allclose(clf(moved)[batch7["has_landmarks"].numpy()], got7[batch7["has_landmarks"].numpy()])


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text
    return text


def test_files_that_are_not_our_exports(tmp_path, exported):
    text = tmp_path / "notes.onnx"
    text.write_text("not a model\n")
    with pytest.raises(CheckpointMismatchError) as e:
        OnnxClassifier(text)
    assert str(text) in _one_line(e) and "not an ONNX model" in str(e.value)

    foreign = tmp_path / "linear.onnx"  # a valid ONNX model without our metadata
    proto = onnx.load(str(exported["mlp"][0].path))
    del proto.metadata_props[:]
    onnx.save(proto, str(foreign))
    with pytest.raises(CheckpointMismatchError) as e:
        OnnxClassifier(foreign)
    assert str(foreign) in _one_line(e) and "not an ONNX export of this project" in str(e.value)

    with pytest.raises(FileNotFoundError, match="ONNX model not found"):
        OnnxClassifier(tmp_path / "missing.onnx")


def test_failed_parity_is_one_line_and_writes_nothing(tmp_path, monkeypatch, random_checkpoints, check_crops):
    real_call = OnnxClassifier.__call__

    def skewed(self, batch):  # an export whose numbers drift from PyTorch's
        logits = real_call(self, batch)
        return logits + np.linspace(0, 3, logits.shape[1], dtype=np.float32)

    monkeypatch.setattr(OnnxClassifier, "__call__", skewed)
    out = tmp_path / "mlp.onnx"
    with pytest.raises(UserFacingError) as e:
        export_checkpoint(random_checkpoints["mlp"], out, check_data=check_crops)
    msg = _one_line(e)
    assert str(out) in msg and "parity check failed" in msg and "max |dprobability|" in msg
    assert "file not written" in msg and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_check_data_must_be_a_crops_folder(tmp_path, random_checkpoints):
    with pytest.raises(UserFacingError, match="not a crops folder") as e:
        export_checkpoint(random_checkpoints["mlp"], tmp_path / "x.onnx", check_data=tmp_path)
    assert str(tmp_path) in _one_line(e) and not (tmp_path / "x.onnx").exists()
