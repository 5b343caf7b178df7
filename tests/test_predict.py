"""Prediction on any picture: the Python API (GesturePredictor) and `hand-gestures predict`, on real sample
frames with the bundled MediaPipe models and untrained checkpoints of the five models (only the structure of
the answers is checked: the weights are random)."""
from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.errors import CheckpointMismatchError, UserFacingError
from data_loaders.images import open_rgb
from engine.cli import main
from engine.predictor import NOTE_IMAGE_ONLY, NOTE_NO_LANDMARKS, UNKNOWN, GesturePredictor, HandInput, geometry_is_true
from engine.sources import Source, VideoFile  # imported here as `predict` imports it: before any video is opened

#: The sample's known frame: a man raising his LEFT hand (viewer's right), one hand in the picture.
ONE_HAND = "stop/0ae17593-07c9-4972-8d8a-6230a6f6a1db.jpg"
#: Two hands, both with landmarks in the sample (a test frame).
TWO_HANDS = "call/0eae11fb-20b3-4469-ae30-773cec087cc4.jpg"
MODELS = ("mlp", "cnn", "gcn", "resnet34", "fusion")


@pytest.fixture(scope="module")
def frames(hagrid_sample) -> dict[str, Path]:
    root = hagrid_sample / "hagrid_dataset_512"
    return {"one": root / ONE_HAND, "two": root / TWO_HANDS}


@pytest.fixture(scope="module")
def detector():
    from data_loaders.detect import DetectorUnavailable, HandDetector

    try:
        det = HandDetector()
    except DetectorUnavailable as e:
        pytest.skip(str(e))
    yield det
    det.close()


@pytest.fixture(scope="module")
def predictors(random_checkpoints, detector) -> dict[str, GesturePredictor]:
    return {m: GesturePredictor.from_checkpoint(random_checkpoints[m], detector=detector) for m in MODELS}


def check_hand(hand, class_names) -> None:
    """The fields a caller relies on, whatever the weights."""
    assert hand.label in class_names
    assert hand.probs.shape == (len(class_names),) and abs(hand.probs.sum() - 1) < 1e-6
    probs = [p for _, p in hand.top3]
    assert len(hand.top3) == 3 and probs == sorted(probs, reverse=True)
    assert hand.top3[0] == (hand.label, hand.probability) and hand.probability == pytest.approx(hand.probs.max())
    x, y, w, h = hand.box
    assert 0 <= x < x + w <= 1 and 0 <= y < y + h <= 1
    assert hand.landmarks.shape == (21, 3) and hand.handedness in ("left", "right")


def test_every_checkpoint_classifies_the_hand_of_a_frame(predictors, frames):
    boxes = []
    for name in MODELS:
        p = predictors[name]
        hands = p.predict(frames["one"])
        assert len(hands) == 1, name
        check_hand(hands[0], p.class_names)
        assert hands[0].handedness == "left"  # the person's own hand (MediaPipe says "Right")
        rec = hands[0].to_json(source="x.jpg", frame=0)
        assert json.loads(json.dumps(rec)) == rec and rec["label"] == hands[0].label and rec["hand"] == 0
        boxes.append(hands[0].box)
    assert all(b == boxes[0] for b in boxes)  # one detector, one box: only the classifier differs


def test_a_frame_with_two_hands_gives_two_hands_top_to_bottom(predictors, frames):
    hands = predictors["gcn"].predict(Image.open(frames["two"]))
    assert [h.index for h in hands] == [0, 1]
    assert hands[0].box[1] < hands[1].box[1]
    for h in hands:
        check_hand(h, predictors["gcn"].class_names)


def test_a_frame_with_no_hand_gives_no_hand(predictors):
    assert predictors["cnn"].predict(np.full((480, 640, 3), 127, np.uint8)) == []


def test_exif_rotated_photo_is_predicted_upright(predictors, frames, tmp_path):
    """Pixels stored turned by 90 degrees with EXIF orientation 6 (display turned back): same hand, same box."""
    upright = open_rgb(frames["one"])
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a phone stores; orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, quality=95, exif=exif.tobytes())
    original, rotated = predictors["mlp"].predict(frames["one"]), predictors["mlp"].predict(path)
    assert len(rotated) == 1
    assert np.allclose(rotated[0].box, original[0].box, atol=0.01), (rotated[0].box, original[0].box)
    assert rotated[0].handedness == "left"


def test_reject_option_reports_unknown(random_checkpoints, detector, frames):
    with GesturePredictor.from_checkpoint(random_checkpoints["mlp"], detector=detector, min_confidence=1.0) as p:
        hands = p.predict(frames["two"])
    assert len(hands) == 2
    for h in hands:
        assert h.label == UNKNOWN and h.probability < 1.0 and h.note
        assert h.top3[0][0] in p.class_names  # the best guess is still reported
    # a threshold just below a hand's probability keeps its label; just above, it is rejected
    for i, hand in enumerate(hands):
        for threshold, kept in ((hand.probability - 1e-6, True), (hand.probability + 1e-6, False)):
            with GesturePredictor.from_checkpoint(random_checkpoints["mlp"], detector=detector,
                                                  min_confidence=threshold) as q:
                h = q.predict(frames["two"])[i]
            assert h.probability == pytest.approx(hand.probability)
            assert (h.label == hand.top3[0][0]) is kept and (h.label == UNKNOWN) is not kept


def test_hands_without_usable_landmarks(predictors, frames):
    """Landmark models answer "unknown" with a note; fusion falls back on its image branch; image models
    do not care; nothing crashes."""
    box = (0.6, 0.33, 0.12, 0.15)
    lm = np.full((21, 3), 0.5, np.float32)
    missing = [HandInput(box), HandInput(box, landmarks=lm, landmarks_ok=False)]
    for name in ("mlp", "gcn"):
        for h in predictors[name].classify(frames["one"], missing):
            assert (h.label, h.note, h.probability, h.top3) == (UNKNOWN, NOTE_NO_LANDMARKS, 0.0, [])
    fused = predictors["fusion"].classify(frames["one"], missing)
    for h in fused:
        assert h.label in predictors["fusion"].class_names and h.note == NOTE_IMAGE_ONLY
        assert abs(h.probs.sum() - 1) < 1e-6
    # has_landmarks False: fusion's missing-landmarks path ignores the landmark values entirely
    assert np.allclose(fused[0].probs, fused[1].probs, atol=1e-6)
    assert predictors["cnn"].classify(frames["one"], missing)[0].note == ""


def test_classify_given_boxes_needs_no_detector_and_no_labels(random_checkpoints, frames, monkeypatch):
    def no_detector(*a, **k):
        raise AssertionError("classify() must not make a detector")

    monkeypatch.setattr("data_loaders.detect.HandDetector", no_detector)
    p = GesturePredictor.from_checkpoint(random_checkpoints["cnn"])
    img = open_rgb(frames["one"])
    hands = [HandInput((0.62, 0.34, 0.1, 0.13)), HandInput((0.1, 0.1, 0.2, 0.2))]
    from_pil, from_array = p.classify(img, hands), p.classify(np.asarray(img), hands)
    assert [h.label for h in from_pil] == [h.label for h in from_array]
    assert np.allclose(from_pil[0].probs, from_array[0].probs, atol=1e-6)
    assert not np.allclose(from_pil[0].probs, from_pil[1].probs)  # the crop follows the box
    p.close()


def test_batch_matches_training_inputs(random_checkpoints, tmp_path):
    """The image batch is, to the bit, what training read for the same hands: `hand-gestures crop`'s JPEG crops
    (the decode drafted for a big square, black fill past the edge) read by load_crops (PIL's resize to 64 px
    for the CNN) and normalised by BatchTransform."""
    from hagrid_fixtures import ImageSpec, write_v2

    from data_loaders.augment import BatchTransform
    from data_loaders.batches import load_crops
    from data_loaders.classes import make_class_set
    from data_loaders.crop import crop_dataset
    from data_loaders.hand_table import HandTable
    from data_loaders.manifest import read_manifest

    specs = [ImageSpec(f"{c}-0000-0000-0000-00000000000{i}", c, "train", f"u{i}", [c], [box], [[]], size=wh)
             for i, (c, box, wh) in enumerate([
                 ("call", [0.2, 0.1, 0.5, 0.6], (640, 480)),  # a 432 px square: the crop step decodes at 1/2
                 ("fist", [0.85, 0.7, 0.2, 0.35], (320, 240)),  # past the image's corner
                 ("fist", [0.3, 0.3, 0.1, 0.15], (96, 72))])]  # a 16 px square, enlarged
    root = write_v2(tmp_path / "v2", specs)
    crop_dataset(root, tmp_path / "crops", class_set=make_class_set(("call", "fist")), workers=1, progress=False)
    entries, table = read_manifest(tmp_path / "crops" / "manifest.jsonl"), HandTable.from_manifest(tmp_path / "crops")
    assert [e["key"] for e in entries] == list(table.keys) and len(entries) == 3
    for name, size in (("resnet34", 128), ("cnn", 64)):
        p = GesturePredictor.from_checkpoint(random_checkpoints[name])
        want = BatchTransform("wrist", size, None)({"image": load_crops(table, size)}, train=False)["image"]
        for e, w in zip(entries, want):
            img = open_rgb(e["image"])
            got = p.batch(img, [e["bbox"]], [None], np.array([False]), path=e["image"])
            assert set(got) == {"image"} and got["image"].shape == (1, 3, size, size)
            assert torch.equal(got["image"][0], w), (name, e["key"])
        # the big square's crop needs the crop step's drafted decode: without the file it is not the same
        undrafted = p.batch(open_rgb(entries[0]["image"]), [entries[0]["bbox"]], [None], np.array([False]))
        assert not torch.equal(undrafted["image"][0], want[0])
    # (the CNN) classify() reads a file as the crop step does, whether given its path or its image and path
    e, hand = entries[0], [HandInput(entries[0]["bbox"])]
    by_path, by_image = p.classify(e["image"], hand), p.classify(open_rgb(e["image"]), hand, path=e["image"])
    assert np.array_equal(by_path[0].probs, by_image[0].probs)


@pytest.mark.parametrize("model,change,words", [
    ("mlp", {"landmark_norm": "palm"}, "landmark_norm 'palm'"),
    ("cnn", {"crop": {"box_source": "segmentation"}}, "box_source 'segmentation'"),
    ("cnn", {"image_size": None}, "image_size"),
    ("cnn", {"crop": {"size": None}}, r"does not record size \("),
    ("cnn", {"crop": {"box_scale": None}}, r"does not record box_scale \("),
])
def test_checkpoint_whose_preprocessing_cannot_be_reproduced(random_checkpoints, tmp_path, model, change, words):
    ckpt = torch.load(random_checkpoints[model], weights_only=True)
    for k, v in change.items():
        ckpt["preprocessing"][k] = {**ckpt["preprocessing"][k], **v} if isinstance(v, dict) else v
    path = tmp_path / f"{model}.pt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointMismatchError, match=words) as e:
        GesturePredictor.from_checkpoint(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_landmark_checkpoint_needs_no_crop_settings(random_checkpoints, tmp_path):
    """A landmark model cuts no crop: training without crops records none, and it still loads."""
    ckpt = torch.load(random_checkpoints["mlp"], weights_only=True)
    ckpt["preprocessing"]["crop"] = {"size": None, "box_scale": None, "fill": None, "resample": None}
    torch.save(ckpt, tmp_path / "mlp.pt")
    assert GesturePredictor.from_checkpoint(tmp_path / "mlp.pt").spec.landmarks_only


def test_stale_original_size_of_a_resized_or_cut_image_is_not_used(random_checkpoints, frames):
    """PIL keeps open_rgb's info (original_size, scale) through resize() and crop(): there it no longer
    describes the pixels, and the image is scored as the plain array it is."""
    cnn, mlp = (GesturePredictor.from_checkpoint(random_checkpoints[m]) for m in ("cnn", "mlp"))
    img, drafted = open_rgb(frames["one"]), open_rgb(frames["one"], draft_to=(100, 100))
    assert drafted.info["scale"] < 0.5 and geometry_is_true(drafted)  # a drafted decode is described
    small, top = img.resize((img.width // 2, img.height // 2)), img.crop((0, 0, img.width, img.height // 2))
    big = drafted.resize((300, 400))
    assert small.info["original_size"] == top.info["original_size"] == big.info["original_size"] == img.size
    assert not any(geometry_is_true(pic) for pic in (small, top, big))  # stale
    box = HandInput((0.6, 0.3, 0.15, 0.3), landmarks=np.random.default_rng(0).uniform(0.3, 0.6, (21, 3)))
    for p, pic in ((cnn, small), (cnn, big), (mlp, top)):
        (stale,), (plain,) = p.classify(pic, [box]), p.classify(np.asarray(pic), [box])
        assert np.array_equal(stale.probs, plain.probs)
    assert pic.info["original_size"] == img.size  # the caller's image is left as it was


def test_landmark_box_checkpoint_gets_the_box_of_its_recorded_box_model(random_checkpoints, detector, frames,
                                                                        tmp_path):
    """A model trained on crops centred on landmark boxes is given the box its own box model draws."""
    from data_loaders.box_model import DEFAULT_BOX_MODEL, BoxModel, landmark_box

    wide = BoxModel(**{k: 2 * v for k, v in DEFAULT_BOX_MODEL.to_dict().items()})
    ckpt = torch.load(random_checkpoints["cnn"], weights_only=True)
    ckpt["preprocessing"]["crop"].update(box_source="landmarks", box_model=wide.to_dict())
    torch.save(ckpt, tmp_path / "cnn.pt")
    (hand,) = GesturePredictor.from_checkpoint(tmp_path / "cnn.pt", detector=detector).predict(frames["one"])
    (default,) = detector.detect(np.asarray(open_rgb(frames["one"])))
    want = landmark_box(default.landmarks[:, :2], open_rgb(frames["one"]).size, wide)
    assert np.allclose(hand.box, want) and hand.box[2] > default.box[2] * 1.3


def test_onnx_backend_without_export_says_how_to_make_it(random_checkpoints, tmp_path):
    path = Path(shutil.copy(random_checkpoints["mlp"], tmp_path / "mlp.pt"))
    with pytest.raises(UserFacingError, match=r"hand-gestures export --model .*mlp\.pt"):
        GesturePredictor.from_checkpoint(path, backend="onnxruntime")


# --------------------------------------------------------------------------- the command line
def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_cli_folder_recursive_with_an_unreadable_file(random_checkpoints, frames, tmp_path, capsys):
    folder = tmp_path / "in"
    (folder / "a").mkdir(parents=True)
    (folder / "b" / "c").mkdir(parents=True)
    shutil.copy(frames["one"], folder / "a" / "one.jpg")
    shutil.copy(frames["two"], folder / "b" / "c" / "two.jpg")
    Image.new("RGB", (320, 240), (127, 127, 127)).save(folder / "b" / "empty.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "preds.jsonl"
    rc = main(["predict", str(folder), "--model", str(random_checkpoints["mlp"]), "--jsonl", str(out),
               "--save", str(tmp_path / "saved"), "--no-progress"])
    cap = capsys.readouterr()
    assert rc == 1  # some files unreadable, the others predicted
    assert cap.out == ""  # --jsonl: the lines go to the file
    recs = json_lines(out.read_text())
    by_source = {}
    for r in recs:
        by_source.setdefault(Path(r["source"]).relative_to(folder).as_posix(), []).append(r)
    assert list(by_source) == ["a/one.jpg", "b/c/two.jpg", "b/empty.png"]  # sorted, recursive
    assert [r["hand"] for r in by_source["b/c/two.jpg"]] == [0, 1]
    assert by_source["b/empty.png"] == [{"source": str(folder / "b" / "empty.png"), "frame": 0, "hands": 0}]
    assert sum("broken.jpg" in line for line in cap.err.splitlines()) == 1  # named once
    assert "1 unreadable" in cap.err and "1 frames with no hand" in cap.err
    assert "3 frames" in cap.err and "3 hands" in cap.err
    saved = sorted(p.relative_to(tmp_path / "saved").as_posix() for p in (tmp_path / "saved").rglob("*.*"))
    assert saved == ["a/one.jpg", "b/c/two.jpg", "b/empty.png"]
    assert open_rgb(tmp_path / "saved" / "a" / "one.jpg").size == open_rgb(frames["one"]).size


def write_video(path: Path, frames: list[np.ndarray], fps: float = 5.0) -> Path:
    import cv2

    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        vw.write(np.ascontiguousarray(f[:, :, ::-1]))
    vw.release()
    return path


def test_cli_video_gives_every_frame_and_an_annotated_video(random_checkpoints, frames, tmp_path, capsys):
    import cv2

    one = np.asarray(open_rgb(frames["one"]))[:682]  # even sides: mp4v drops an odd row
    shifted = [np.roll(one, 4 * i, axis=1) for i in range(5)]  # five frames of a slowly moving hand
    video = write_video(tmp_path / "clip.mp4", shifted)
    # frames come out in RGB: each channel is within mp4v's error of the picture's, far from the swapped one's
    with VideoFile(Source("video", video, Path("clip.mp4"))) as v:
        first = next(v.frames()).rgb.astype(int)
    err = np.abs(first - shifted[0]).mean(axis=(0, 1))
    swapped = np.abs(first - shifted[0][:, :, ::-1]).mean(axis=(0, 1))
    assert err.max() < 6 and min(swapped[0], swapped[2]) > 3 * err.max(), (err, swapped)
    save = tmp_path / "saved"
    rc = main(["predict", str(video), "--model", str(random_checkpoints["cnn"]), "--save", str(save),
               "--no-progress"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    recs = json_lines(cap.out)
    assert sorted({r["frame"] for r in recs}) == [0, 1, 2, 3, 4]
    assert all(r["source"] == str(video) for r in recs) and sum("label" in r for r in recs) >= 4
    out = cv2.VideoCapture(str(save / "clip.mp4"))
    got = []
    while True:
        ok, f = out.read()
        if not ok:
            break
        got.append(f)
    out.release()
    assert len(got) == 5 and got[0].shape == one.shape
    assert np.abs(got[0].astype(int)[:, :, ::-1] - shifted[0]).max() > 100  # the drawing is there
    assert not list(save.glob(".tmp-*"))


def test_cli_bad_and_truncated_videos_are_named_once_and_the_rest_goes_on(random_checkpoints, frames, tmp_path,
                                                                          capfd):
    """A file that is no video: one line, no FFmpeg noise ("moov atom not found") nor MediaPipe chatter on the
    standard error. A video cut short (its header promises 5 frames): its frames are predicted, one warning
    says where it stopped, the summary counts it."""
    import cv2

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 64)
    small = np.asarray(open_rgb(frames["one"]).resize((256, 342)))
    whole = tmp_path / "whole.avi"
    vw = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (256, 342))
    for i in range(5):
        vw.write(np.ascontiguousarray(np.roll(small, 3 * i, axis=1)[:, :, ::-1]))
    vw.release()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])  # the frame count sits in the header
    rc = main(["predict", str(bad), str(cut), str(frames["one"]), "--model", str(random_checkpoints["mlp"]),
               "--no-progress"])
    cap = capfd.readouterr()
    assert rc == 1 and sum("bad.mp4" in line for line in cap.err.splitlines()) == 1
    assert not re.search(r"moov atom|XNNPACK|inference_feedback|landmark_projection", cap.err), cap.err
    recs = json_lines(cap.out)
    read = [r["frame"] for r in recs if r["source"] == str(cut)]
    assert 0 < len(read) < 5 and sorted(set(read)) == list(range(max(read) + 1))
    (warning,) = [line for line in cap.err.splitlines() if "cut.avi" in line]
    assert f"stopped at frame {max(read) + 1} of 5" in warning
    assert "1 videos stopped early" in cap.err
    assert recs[-1]["source"] == str(frames["one"])


def test_cli_errors_are_one_line(random_checkpoints, tmp_path, capsys, monkeypatch):
    mlp = str(random_checkpoints["mlp"])
    assert main(["predict", str(tmp_path / "missing.jpg"), "--model", mlp]) == 2  # nothing could be read
    assert "missing.jpg" in capsys.readouterr().err
    tmp_path.joinpath("x.jpg").write_bytes(b"")
    assert main(["predict", str(tmp_path), "--model", mlp, "--save", str(tmp_path)]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert main(["predict", "--model", mlp]) == 2
    assert "--camera" in capsys.readouterr().err
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["predict", "--camera", "0", "--model", mlp]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "display" in err and "Traceback" not in err


def test_onnx_backend_gives_the_torch_probabilities(random_checkpoints, detector, frames, tmp_path, caplog):
    from engine.export import export_checkpoint

    path = Path(shutil.copy(random_checkpoints["mlp"], tmp_path / "mlp.pt"))
    onnx = export_checkpoint(path).path
    torch_hands = GesturePredictor.from_checkpoint(path, detector=detector).predict(frames["two"])
    with caplog.at_level(logging.WARNING, logger="engine.predictor"):
        for p in (GesturePredictor.from_checkpoint(path, backend="onnxruntime", detector=detector),
                  GesturePredictor.from_checkpoint(onnx, detector=detector)):
            hands = p.predict(frames["two"])
            assert [h.label for h in hands] == [h.label for h in torch_hands]
            assert np.abs(np.stack([h.probs for h in hands]) - np.stack([h.probs for h in torch_hands])).max() < 1e-4
        assert not caplog.records  # exported from this very file
        # the checkpoint changed since the export (e.g. recalibrated): one warning; absent: nothing to compare
        ckpt = torch.load(path, weights_only=True)
        ckpt["calibration"] = {"temperature": 2.0}
        torch.save(ckpt, path)
        GesturePredictor.from_checkpoint(path, backend="onnxruntime")
        assert [r.getMessage().count("hand-gestures export --model") for r in caplog.records] == [1]
        path.unlink()
        GesturePredictor.from_checkpoint(path, backend="onnxruntime")
        assert len(caplog.records) == 1


def test_batch_matches_box_context_training_inputs(random_checkpoints, tmp_path):
    """A model trained on crops that show only the hand's box (crop --context box) is fed the same at prediction,
    to the bit; a square-context crop of the same hand differs."""
    from hagrid_fixtures import ImageSpec, write_v2

    from data_loaders.augment import BatchTransform
    from data_loaders.batches import load_crops
    from data_loaders.classes import make_class_set
    from data_loaders.crop import crop_dataset
    from data_loaders.hand_table import HandTable
    from data_loaders.manifest import read_manifest
    from engine.checkpoint import load_checkpoint, save_checkpoint

    specs = [ImageSpec("call-0000-0000-0000-000000000001", "call", "train", "u1", ["call"], [[0.2, 0.1, 0.3, 0.6]],
                       [[]], size=(640, 480))]
    root = write_v2(tmp_path / "v2", specs)
    crop_dataset(root, tmp_path / "crops", class_set=make_class_set(("call",)), workers=1, progress=False,
                 box_scale=1.0, context="box")
    e, table = read_manifest(tmp_path / "crops" / "manifest.jsonl")[0], HandTable.from_manifest(tmp_path / "crops")
    ckpt = load_checkpoint(random_checkpoints["cnn"])
    ckpt["preprocessing"]["crop"].update(box_scale=1.0, context="box")
    boxed = GesturePredictor.from_checkpoint(save_checkpoint(tmp_path / "cnn_box.pt", ckpt))
    want = BatchTransform("wrist", 64, None)({"image": load_crops(table, 64)}, train=False)["image"]
    got = boxed.batch(open_rgb(e["image"]), [e["bbox"]], [None], np.array([False]), path=e["image"])
    assert torch.equal(got["image"][0], want[0])
    ckpt["preprocessing"]["crop"]["context"] = "square"
    square = GesturePredictor.from_checkpoint(save_checkpoint(tmp_path / "cnn_square.pt", ckpt))
    assert not torch.equal(square.batch(open_rgb(e["image"]), [e["bbox"]], [None], np.array([False]),
                                        path=e["image"])["image"][0], want[0])
