"""``hand-gestures annotate``: an image folder built from sample frames becomes a HaGRID v2 dataset that the
loader, the crop step and training read; crops mode, hagrid mode, the cache, bad files; and (no MediaPipe)
the gesture-hand rule, split assignment, uuids and the reader's per-hand handedness."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_loaders import annotate as A
from data_loaders.annotate import AnnotateConfig, ImageItem, run_annotate
from data_loaders.classes import ClassSet
from data_loaders.hagrid import load_hagrid

LABELS = ("call", "fist", "palm")
CLASSES = ClassSet((*LABELS, "no_gesture"))


# --------------------------------------------------------------------------- no MediaPipe needed
def _hand(box, wrist_y=0.5):
    return {"box": box, "landmarks": [[0.5, wrist_y, 0.0]] * 21}


def test_gesture_hand_rule_picks_the_higher_hand():
    low, high = _hand([0.1, 0.6, 0.2, 0.3], 0.9), _hand([0.5, 0.1, 0.1, 0.2], 0.3)
    for rule in ("centre", "top", "wrist"):
        assert A.gesture_hand_order([low, high], rule) == [1, 0]
    assert A.gesture_hand_order([low, high], "largest") == [0, 1]
    assert A.gesture_hand_order([high], "centre") == [0]
    with pytest.raises(ValueError):
        A.gesture_hand_order([low, high], "leftmost")


def _items(rels):
    return [ImageItem(r, Path("/x") / r, r.split("/")[-2], None) for r in rels]


def test_split_assignment_by_group_user_ids_and_per_image(tmp_path):
    rels = [f"fist/{u}_{i}.jpg" for u in ("ann", "bob", "cy", "dee", "eve", "fay") for i in range(3)]
    items = _items(rels)
    warn = A.assign_splits(items, AnnotateConfig(out=tmp_path, images=tmp_path, group_by=r"/([a-z]+)_",
                                                 val_fraction=0.3, test_fraction=0.3))
    assert not warn and {it.user_id for it in items} == {"ann", "bob", "cy", "dee", "eve", "fay"}
    by_user = {}
    for it in items:
        by_user.setdefault(it.user_id, set()).add(it.split)
    assert all(len(s) == 1 for s in by_user.values())  # no subject in two splits
    csv = tmp_path / "users.csv"
    csv.write_text("path,user_id\nfist/ann_0.jpg,u1\nbob_1,u2\n")
    items = _items(rels)
    warn = A.assign_splits(items, AnnotateConfig(out=tmp_path, images=tmp_path, user_ids=csv))
    assert [it.user_id for it in items[:5]] == ["u1", None, None, None, "u2"]
    assert any("no entry in --user-ids" in w for w in warn)
    items = _items(rels)
    assert A.assign_splits(items, AnnotateConfig(out=tmp_path, images=tmp_path)) == [A.LEAK_WARNING]
    items = _items(rels)
    A.assign_splits(items, AnnotateConfig(out=tmp_path, images=tmp_path, split="train"))
    assert {it.split for it in items} == {"train"} and {it.user_id for it in items} == {None}
    items = _items(rels)
    items[0].split = "val"
    with pytest.raises(A.UsageError):
        A.assign_splits(items, AnnotateConfig(out=tmp_path, images=tmp_path, split="train"))


def test_uuids_are_unique_across_labels():
    items = _items(["fist/a.jpg", "palm/a.png", "palm/b.jpg"])
    A.assign_uuids(items)
    assert items[2].uuid == "b" and items[0].uuid.startswith("a_") and items[0].uuid != items[1].uuid


def _v2(root: Path, record: dict, name: str = "u1.png") -> Path:
    (root / "hagrid_annotations" / "train").mkdir(parents=True)
    (root / "hagrid_dataset" / "fist").mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(root / "hagrid_dataset" / "fist" / name)
    (root / "hagrid_annotations" / "train" / "fist.json").write_text(json.dumps({"u1": record}))
    return root


def test_reader_takes_per_hand_handedness_and_meta_file(tmp_path):
    rec = {"bboxes": [[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.3, 0.3]], "labels": ["fist", "no_gesture"],
           "handedness": ["left", None], "leading_hand": "right", "meta": {"file": "u1.png"}}
    ann = load_hagrid(_v2(tmp_path / "a", rec), CLASSES)
    assert [r.leading_hand for r in ann.records] == ["left", None]
    assert ann.records[0].image_path.name == "u1.png" and ann.records[0].image_path.exists()
    bad = dict(rec, handedness=["left"], meta={"file": "../x.png"})  # wrong length; a path is not a file name
    ann = load_hagrid(_v2(tmp_path / "b", bad), CLASSES)
    assert [r.leading_hand for r in ann.records] == ["right", None]  # falls back to the image-level field
    assert ann.degraded.counts["malformed_handedness"] == 2 and ann.records[0].image_path.name == "u1.jpg"
    ann = load_hagrid(_v2(tmp_path / "c", dict(rec, handedness=["up", "left"])), CLASSES)
    assert [r.leading_hand for r in ann.records] == [None, "left"] and ann.degraded.counts["malformed_handedness"] == 1


# --------------------------------------------------------------------------- with MediaPipe and the sample
@pytest.fixture(scope="module")
def sample(hagrid_sample):
    pytest.importorskip("mediapipe")
    try:
        from data_loaders.detect import import_mediapipe

        import_mediapipe()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"mediapipe unusable here: {e}")
    return hagrid_sample


def _frames(sample: Path, split: str, label: str, n: int) -> list[tuple[str, dict]]:
    data = json.loads((sample / "hagrid_annotations" / split / f"{label}.json").read_text())
    return [(u, r) for u, r in data.items() if len(r["bboxes"]) == 1][:n]


def _image(sample: Path, label: str, uuid: str) -> Path:
    return sample / "hagrid_dataset_512" / label / f"{uuid}.jpg"


@pytest.fixture(scope="module")
def photos(sample, tmp_path_factory):
    """12 sample frames in <root>/<split>/<label>/ (symlinks; one saved as PNG), a corrupt file; annotated."""
    root = tmp_path_factory.mktemp("photos")
    for split in ("train", "val"):
        for label in LABELS:
            d = root / split / label
            d.mkdir(parents=True)
            for uuid, _ in _frames(sample, split, label, 2):
                os.symlink(_image(sample, label, uuid), d / f"{uuid}.jpg")
    first = next((root / "train" / "call").iterdir())
    Image.open(first).save(first.with_suffix(".png"))
    first.unlink()
    (root / "train" / "fist" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path_factory.mktemp("photos_out") / "ds"
    counts = run_annotate(AnnotateConfig(out=out, images=root, workers=1, progress=False), log=lambda s: None)
    return root, out, counts


def test_photos_become_a_v2_dataset(photos):
    root, out, counts = photos
    assert counts.images == 13 and counts.unreadable == 1 and A.exit_code(counts) == 1
    assert counts.annotated + counts.no_hand == 12 and counts.annotated >= 10
    report = (out / A.REPORT_NAME).read_text()
    assert "train/fist/broken.jpg,fist,train,unreadable" in report
    info = json.loads((out / A.INFO_NAME).read_text())
    assert info["counts"]["unreadable"] == 1 and info["mode"] == "photos"
    recs = json.loads((out / "hagrid_annotations" / "train" / "call.json").read_text())
    png = [r for r in recs.values() if r["meta"]["file"].endswith(".png")]
    assert len(png) == 1
    for uuid, r in recs.items():
        assert r["labels"][0] == "call" and set(r["labels"][1:]) <= {"no_gesture"}
        assert len(r["bboxes"]) == len(r["hand_landmarks"]) == len(r["handedness"]) == len(r["handedness_score"])
        assert all(0 <= v <= 1 for b in r["bboxes"] for v in b) and len(r["hand_landmarks"][0]) == 21
        assert r["handedness"][0] in ("left", "right") and r["user_id"] is None
        link = out / "hagrid_dataset" / "call" / r["meta"]["file"]
        assert link.is_symlink() and Path(os.readlink(link)) == (root / r["meta"]["source"]).absolute()


def test_rerun_reuses_the_cache(photos, monkeypatch):
    root, out, _ = photos
    monkeypatch.setattr(A, "detect_image", lambda path: pytest.fail("detected again"))
    counts = run_annotate(AnnotateConfig(out=out, images=root, workers=1, progress=False), log=lambda s: None)
    assert counts.detected_now == 0 and counts.images == 13


def test_annotated_photos_load_crop_and_train(photos, tmp_path):
    from data_loaders.crop import crop_dataset
    from engine.train import TrainConfig, fit

    _, out, counts = photos
    ann = load_hagrid(out, CLASSES)
    assert {r.split for r in ann.records} == {"train", "val"} and not ann.skipped.total()
    gestures = [r for r in ann.records if r.label != "no_gesture"]
    assert len(gestures) == counts.annotated and all(r.leading_hand in ("left", "right") for r in gestures)
    assert all(r.landmarks is not None and r.image_path.exists() for r in gestures)
    crops = tmp_path / "crops"
    summary = crop_dataset(out, crops, class_set=CLASSES, size=64, workers=1, progress=False)
    assert summary.n_crops == len(ann.records)
    res = fit(TrainConfig(model="mlp", crops_dir=str(crops), out_dir=str(tmp_path / "m"), graphs_dir=str(tmp_path / "g"),
                          classes=",".join(LABELS), include_no_gesture=True, epochs=1, max_train_batches=1,
                          progress=False, tensorboard=False, device="cpu", patience=0))
    assert Path(res.best_checkpoint).exists()


def test_crops_mode_keeps_every_crop(sample, tmp_path):
    root = tmp_path / "crops"
    for label in LABELS:
        (root / label).mkdir(parents=True)
        for uuid, rec in _frames(sample, "val", label, 2):
            im = Image.open(_image(sample, label, uuid))
            x, y, w, h = rec["bboxes"][0]
            im.crop((int(x * im.width), int(y * im.height), int((x + w) * im.width), int((y + h) * im.height))
                    ).save(root / label / f"{uuid}.jpg")
    out = tmp_path / "out"
    counts = run_annotate(AnnotateConfig(out=out, images=root, crops=True, split="train", workers=1, progress=False),
                          log=lambda s: None)
    assert counts.annotated == 6 and counts.unreadable == 0 and sum(counts.crops_with_landmarks.values()) >= 3
    info = json.loads((out / A.INFO_NAME).read_text())
    assert set(info["share_with_landmarks"]) == set(LABELS)
    ann = load_hagrid(out, CLASSES)
    assert len(ann.records) == 6 and all(r.bbox == (0.0, 0.0, 1.0, 1.0) for r in ann.records)
    with_lm = [r for r in ann.records if r.landmarks is not None]
    assert with_lm and all(r.leading_hand in ("left", "right") for r in with_lm)
    assert all(-0.5 < float(np.median(r.landmarks)) < 1.5 for r in with_lm)  # crop-normalised, not canvas


def test_hagrid_mode_adds_handedness(sample, tmp_path):
    src = tmp_path / "mini"
    for label in LABELS:
        frames = dict(_frames(sample, "test", label, 2))
        (src / "hagrid_annotations" / "test").mkdir(parents=True, exist_ok=True)
        (src / "hagrid_annotations" / "test" / f"{label}.json").write_text(json.dumps(frames))
        (src / "hagrid_dataset_512" / label).mkdir(parents=True)
        for uuid in frames:
            os.symlink(_image(sample, label, uuid), src / "hagrid_dataset_512" / label / f"{uuid}.jpg")
    out = tmp_path / "out"
    counts = run_annotate(AnnotateConfig(out=out, hagrid=src, workers=1, progress=False), log=lambda s: None)
    assert counts.images == 6 and counts.hands == 6 and counts.hands_with_handedness >= 4
    assert (out / "hagrid_dataset_512").is_symlink()
    recs = json.loads((out / "hagrid_annotations" / "test" / "call.json").read_text())
    orig = json.loads((src / "hagrid_annotations" / "test" / "call.json").read_text())
    for uuid, r in recs.items():
        assert {k: v for k, v in r.items() if k != "handedness"} == orig[uuid]
        assert len(r["handedness"]) == len(r["bboxes"])
    ann = load_hagrid(out, CLASSES)
    assert len(ann.records) == 6 and sum(r.leading_hand is not None for r in ann.records) >= 4


def test_own_gesture_names_from_the_command_line(sample, tmp_path, capsys):
    """The README's "Train on your own gestures" path with labels HaGRID does not have: annotate -> crop
    --classes dataset -> train --classes dataset -> predict, all through the CLI."""
    from engine import cli

    root = tmp_path / "mine"
    for split in ("train", "val"):
        for own, label in (("thumb_up_mine", "like"), ("flat_hand", "palm")):
            d = root / split / own
            d.mkdir(parents=True)
            for uuid, _ in _frames(sample, split, label, 2):
                os.symlink(_image(sample, label, uuid), d / f"{uuid}.jpg")
    ds, crops, models = tmp_path / "ds", tmp_path / "crops", tmp_path / "models"
    assert cli.main(["annotate", "--images", str(root), "--out", str(ds), "--workers", "1", "--no-progress"]) == 0
    assert cli.main(["crop", "--data-dir", str(ds), "--out", str(crops), "--classes", "dataset", "--workers", "1",
                     "--no-progress"]) == 0
    assert json.loads((crops / "crop_info.json").read_text())["class_names"] == ["flat_hand", "thumb_up_mine"]
    assert cli.main(["train", "--model", "mlp", "--crops-dir", str(crops), "--classes", "dataset", "--out-dir",
                     str(models), "--graphs-dir", str(tmp_path / "g"), "--epochs", "2", "--device", "cpu",
                     "--no-progress"]) == 0
    frame = next((root / "val" / "flat_hand").iterdir())
    capsys.readouterr()
    assert cli.main(["predict", str(frame), "--model", str(models / "mlp.pt")]) == 0
    hand = json.loads(capsys.readouterr().out.splitlines()[0])
    assert hand["label"] in ("flat_hand", "thumb_up_mine", "unknown")
    assert cli.main(["crop", "--data-dir", str(ds), "--out", str(tmp_path / "c2"), "--classes", "stop_invertd,palm"]) == 2
    assert "did you mean stop_inverted?" in capsys.readouterr().err


def test_few_people_still_fill_val_and_test():
    """Three people hashed to splits often leave val or test empty; each empty split gets a train group."""
    rels = [f"wave/{p}_{i}.jpg" for p in ("anna", "ben", "cleo") for i in range(3)]
    for seed in range(6):
        items = _items(rels)
        warnings = A.assign_splits(items, AnnotateConfig(out=Path("/x"), images=Path("/x"),
                                                         group_by=r"^[^/]+/([^_]+)_", seed=seed))
        by_person = {}
        for it in items:
            by_person.setdefault(it.user_id, set()).add(it.split)
        assert all(len(s) == 1 for s in by_person.values())  # still subject-disjoint
        assert {"val", "test"} <= {it.split for it in items}, (seed, warnings)
