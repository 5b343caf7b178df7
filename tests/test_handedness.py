"""Handedness as an optional model input: the table column, the batch field, the flip that negates it, the
models that read it (mlp, gcn, fusion with ``handedness=True``), training's checks, the checkpoint's recorded
inputs, ONNX export and prediction. Small written datasets only (no network, no shared folders)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from checkpoint_fixtures import CROP_INFO
from hagrid_fixtures import make_specs, write_v2
from PIL import Image

from common.errors import CheckpointMismatchError, UsageError
from data_loaders.augment import AugmentConfig, BatchTransform
from data_loaders.batches import fields
from data_loaders.classes import make_class_set
from data_loaders.crop import crop_dataset
from data_loaders.hagrid import load_hagrid
from data_loaders.hand_table import HandTable, handedness_code
from data_loaders.images import image_size
from data_loaders.manifest import MANIFEST_NAME, CropInfo, write_crop_info, write_manifest
from engine.checkpoint import build_model, load_checkpoint, make_checkpoint, save_checkpoint
from engine.cli import parse_key_values
from engine.predictor import GesturePredictor, HandInput
from engine.train import TrainConfig, fit
from model_classes import create_model, model_spec
from model_classes.registry import model_inputs

CLASSES = ("call", "fist", "palm")
SIDES = ("right", "left", None)


def _write_crops(root, out, sides):
    """A tiny v2 dataset (24 frames, users split train/val/test) whose images cycle through ``sides`` as their
    ``leading_hand`` (the train split's frames too: they are every third one), cropped into ``out``."""
    specs = make_specs(CLASSES, per_class=8, no_gesture_every=0, empty_landmarks_every=0)
    for i, s in enumerate(specs):
        s.leading_hand = sides[i // 3 % len(sides)]
    write_v2(root, specs)
    crop_dataset(root, out, class_set=make_class_set(CLASSES), size=32, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """Crops whose hands are right, left and unknown in turn (train split: 6 of 8 known)."""
    tmp = tmp_path_factory.mktemp("hand_crops")
    return _write_crops(tmp / "v2", tmp / "crops", SIDES)


def _checkpoint(path, model_name, **hparams):
    """An untrained checkpoint written as training writes it, preprocessing from the spec's inputs alone."""
    torch.manual_seed(0)
    model = create_model(model_name, len(CLASSES), **hparams).eval()
    spec = model_spec(model_name)
    pre = {"inputs": list(spec.inputs), "image_size": spec.image_size, "landmark_norm": "wrist",
           "crop": dict(CROP_INFO)}
    return save_checkpoint(path, make_checkpoint(model, model_name=model_name, class_names=CLASSES,
                                                 preprocessing=pre, args={"crops_dir": None}))


# --------------------------------------------------------------------------- data
def test_table_column_from_manifest_and_records(tmp_path):
    values = ["right", "left", None, "Left", "ambidextrous"]
    out = tmp_path / "crops"
    out.mkdir()
    write_crop_info(out, CropInfo(size=32, box_scale=1.5, class_names=list(CLASSES), source="/d", format="v2"))
    write_manifest(out / MANIFEST_NAME, [
        {"key": f"u{i}_0", "uuid": f"u{i}", "hand": 0, "split": "train" if i < 3 else "val", "label": "call",
         "user_id": None, "crop": f"train/call/u{i}_0.jpg", "image": f"/d/u{i}.jpg", "image_size": [64, 48],
         "bbox": [0.1, 0.1, 0.3, 0.3], "crop_box": [0, 0, 20], "landmarks": None, "leading_hand": v}
        for i, v in enumerate(values)])
    t = HandTable.from_manifest(out)
    assert t.handedness.dtype == np.float32 and t.handedness.tolist() == [1, -1, 0, -1, 0]
    assert t.split_view("val").handedness.tolist() == [-1, 0] and t.subset([0, 2]).handedness.tolist() == [1, 0]
    assert t.handedness_known == pytest.approx(3 / 5)
    assert fields(t, "wrist")["handedness"].tolist() == [1, -1, 0, -1, 0]
    specs = make_specs(CLASSES, per_class=1, no_gesture_every=0)
    for s, side in zip(specs, SIDES):
        s.leading_hand = side
    cs = make_class_set(CLASSES)
    records = load_hagrid(write_v2(tmp_path / "v2", specs), cs).records
    table = HandTable.from_records(records, cs, image_size)
    assert table.handedness.tolist() == [handedness_code(r.leading_hand) for r in records]
    assert sorted(table.handedness.tolist()) == [-1, 0, 1]


def test_flip_negates_handedness_of_exactly_the_flipped_hands():
    g = torch.Generator().manual_seed(0)
    n = 64
    batch = {"landmarks": torch.randn(n, 21, 2, generator=g), "has_landmarks": torch.ones(n, dtype=torch.bool),
             "handedness": torch.tensor([1.0, -1.0, 0.0] * 21 + [1.0]), "label": torch.zeros(n, dtype=torch.long),
             "image": torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)}
    aug = AugmentConfig(flip_p=0.5, rotation_deg=0.0, scale_range=(1.0, 1.0), translate=0.0, brightness=0.0,
                        contrast=0.0, saturation=0.0, landmark_jitter=0.0)
    out = BatchTransform("wrist", 8, aug, seed=3)(batch, train=True)
    mirrored = torch.allclose(out["landmarks"], batch["landmarks"] * torch.tensor([-1.0, 1.0]), atol=1e-6)
    flipped = torch.isclose(out["landmarks"][..., 0], -batch["landmarks"][..., 0], atol=1e-6).all(1)
    assert not mirrored and 0 < int(flipped.sum()) < n  # some hands flipped, some not
    kept = torch.isclose(out["landmarks"], batch["landmarks"], atol=1e-6).all(2).all(1)
    assert bool((flipped ^ kept).all())
    assert torch.equal(out["handedness"], torch.where(flipped, -batch["handedness"], batch["handedness"]))
    plain = BatchTransform("wrist", 8, None)(batch, train=False)
    img_flipped = torch.isclose(out["image"], plain["image"].flip(-1), atol=1e-4).flatten(1).all(1)
    assert bool((img_flipped | ~flipped).all())  # the image flips with its landmarks and handedness
    assert torch.equal(BatchTransform("wrist", 8, aug)(batch, train=False)["handedness"], batch["handedness"])


# --------------------------------------------------------------------------- models
@pytest.mark.parametrize("name", ["mlp", "gcn", "fusion"])
def test_models_read_handedness_only_when_asked(name):
    torch.manual_seed(0)
    small = {"resnet": {"weights": None}} if name == "fusion" else {}
    batch = {"landmarks": torch.randn(4, 21, 2), "has_landmarks": torch.ones(4, dtype=torch.bool),
             "image": torch.randn(4, 3, 32, 32)}  # small: the ResNet pools whatever size it gets
    right, left = dict(batch, handedness=torch.ones(4)), dict(batch, handedness=-torch.ones(4))
    with torch.no_grad():
        on = create_model(name, 3, **small, handedness=True).eval()
        assert not torch.allclose(on(right), on(left))
        assert "handedness" in on.inputs and model_inputs(name, on.hparams)[-1] == "handedness"
        off = create_model(name, 3, **small).eval()
        assert torch.equal(off(right), off(left)) and torch.equal(off(right), off(batch))
        assert "handedness" not in off.inputs and off.hparams["handedness"] is False
    with pytest.raises(ValueError, match="handedness must be true or false"):
        create_model(name, 3, **small, handedness="True")


def test_hparam_flag_parses_to_a_bool_and_fusion_follows_its_gcn():
    assert parse_key_values(["handedness=true"]) == {"handedness": True}
    assert model_inputs("fusion", {"gcn": {"handedness": True}})[-1] == "handedness"
    fusion = create_model("fusion", 3, resnet={"weights": None}, gcn={"handedness": True})
    assert fusion.hparams["handedness"] is True and fusion.graph_branch.hparams["handedness"] is True


def test_checkpoint_records_the_input_and_refuses_to_hide_it(tmp_path):
    path = _checkpoint(tmp_path / "mlp.pt", "mlp", handedness=True)
    ckpt = load_checkpoint(path)
    assert ckpt["preprocessing"]["inputs"] == ["landmarks", "handedness"]
    build_model(ckpt, path)
    ckpt["preprocessing"]["inputs"] = ["landmarks"]
    with pytest.raises(CheckpointMismatchError, match="reads \\['handedness'\\]"):
        build_model(ckpt, path)


# --------------------------------------------------------------------------- training
def _train(tmp_path, crops, **kw):
    return TrainConfig(model="mlp", crops_dir=str(crops), out_dir=str(tmp_path / "models"), classes=",".join(CLASSES),
                       graphs_dir=str(tmp_path / "graphs"), progress=False, tensorboard=False, device="cpu",
                       epochs=1, patience=0, **kw)


def test_fit_records_handedness_and_refuses_data_without_it(tmp_path, crops, capsys):
    cfg = _train(tmp_path, crops, hparams={"handedness": True})
    cfg.progress = True
    res = fit(cfg)
    assert load_checkpoint(res.best_checkpoint)["preprocessing"]["inputs"] == ["landmarks", "handedness"]
    assert "handedness is an input: known for 75.0% of the train hands" in capsys.readouterr().out
    plain = fit(_train(tmp_path, crops, run_name="plain"))
    assert load_checkpoint(plain.best_checkpoint)["preprocessing"]["inputs"] == ["landmarks"]
    unknown = _write_crops(tmp_path / "v2_unknown", tmp_path / "crops_unknown", (None, None, "right"))
    with pytest.raises(UsageError, match=r"only 25\.0% .*hand-gestures annotate --hagrid"):
        fit(_train(tmp_path, unknown, hparams={"handedness": True}, run_name="refused"))


# --------------------------------------------------------------------------- export and prediction
class _FakeHand:
    def __init__(self, handedness, landmarks):
        self.box, self.landmarks, self.landmarks_ok = (0.3, 0.3, 0.3, 0.3), landmarks, True
        self.handedness, self.handedness_score = handedness, 0.9


class _FakeDetector:
    def __init__(self, hands):
        self.hands = hands

    def detect(self, image):
        return list(self.hands)


def test_export_and_prediction_supply_handedness(tmp_path, crops):
    from engine.export import OnnxClassifier, export_checkpoint

    path = _checkpoint(tmp_path / "mlp.pt", "mlp", handedness=True)
    report = export_checkpoint(path, check_data=crops)
    assert report.same_argmax and "handedness" in report.input_names
    assert OnnxClassifier(report.path).input_names == ("landmarks", "handedness")
    lm = np.random.default_rng(0).uniform(0.35, 0.55, (21, 3)).astype(np.float32)
    hands = [_FakeHand(side, lm) for side in ("right", "left", None)]
    image = np.zeros((96, 128, 3), np.uint8)
    probs = {}
    for backend in ("torch", "onnxruntime"):
        p = GesturePredictor.from_checkpoint(path, backend=backend, detector=_FakeDetector(hands))
        probs[backend] = np.stack([h.probs for h in p.predict(image)])
        batch = p.batch(Image.fromarray(image), [h.box for h in hands], [lm] * 3, np.ones(3, bool),
                        handedness=[h.handedness for h in hands])
        assert batch["handedness"].tolist() == [1.0, -1.0, 0.0]
        assert p.classify(image, [HandInput(hands[0].box, lm)])[0].probs == pytest.approx(probs[backend][2])
    assert not np.allclose(probs["torch"][0], probs["torch"][1])  # the same landmarks, right vs left
    np.testing.assert_allclose(probs["torch"], probs["onnxruntime"], atol=1e-5)


def test_mirrored_pictures_feed_the_pictured_hand(tmp_path):
    """In a mirrored (selfie) picture the person's right hand looks like a left hand, and its landmarks are
    mirrored too: the model gets the hand as pictured (left), while the output names the person's own (right)."""
    path = _checkpoint(tmp_path / "mlp.pt", "mlp", handedness=True)
    lm = np.random.default_rng(0).uniform(0.35, 0.55, (21, 3)).astype(np.float32)
    image = np.zeros((96, 128, 3), np.uint8)
    mirrored = _FakeDetector([_FakeHand("right", lm)])
    mirrored.config = type("Config", (), {"mirrored": True})()
    as_left = GesturePredictor.from_checkpoint(path, detector=_FakeDetector([_FakeHand("left", lm)])).predict(image)
    selfie = GesturePredictor.from_checkpoint(path, detector=mirrored).predict(image)
    assert selfie[0].handedness == "right"
    np.testing.assert_allclose(selfie[0].probs, as_left[0].probs, atol=1e-6)
    assert HandInput((0, 0, 1, 1), handedness="right", mirrored=True).pictured_handedness == "left"
    assert HandInput((0, 0, 1, 1), handedness=None, mirrored=True).pictured_handedness is None


def test_evaluation_refuses_hands_without_handedness(tmp_path, crops):
    """A handedness model scored on hands that mostly do not know theirs would read 0 for each: refused."""
    from common.errors import CheckpointMismatchError
    from data_loaders.hand_table import HandTable
    from engine.evaluate import predict_checkpoint

    path = _checkpoint(tmp_path / "mlp.pt", "mlp", handedness=True)
    assert len(predict_checkpoint(path, HandTable.from_manifest(crops), split="val"))
    unknown = _write_crops(tmp_path / "v2_unknown", tmp_path / "crops_unknown", (None, None, None))
    with pytest.raises(CheckpointMismatchError, match="annotate --hagrid"):
        predict_checkpoint(path, HandTable.from_manifest(unknown), split="val")
