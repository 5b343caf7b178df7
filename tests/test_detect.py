"""The hand detector (MediaPipe, offline) on real sample frames, its options, and crops around landmark boxes."""
from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import data_loaders.detect as detect_mod
from common.errors import DataError, UsageError
from data_loaders.box_model import DEFAULT_BOX_MODEL, box_iou, landmark_box
from data_loaders.classes import make_class_set
from data_loaders.crop import crop_dataset
from data_loaders.detect import DetectorConfig, DetectorUnavailable, HandDetector, import_mediapipe
from data_loaders.manifest import load_crop_info, read_manifest

# a man raising his LEFT hand (viewer's right), palm to the camera: MediaPipe says "Right" (it assumes a mirror)
KNOWN = "hagrid_dataset_512/stop/0ae17593-07c9-4972-8d8a-6230a6f6a1db.jpg"
# val split, two official boxes (the raised "one" hand above a resting no_gesture hand), MediaPipe finds both
TWO_HANDS = ("val", "one", "d9f45680-9e76-4cec-88ec-939423f00fbe")
needs_mediapipe = pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None,
                                     reason="mediapipe is not installed (Python 3.13+)")


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def detector():
    with HandDetector() as d:
        yield d


@pytest.fixture(scope="module")
def known(hagrid_sample) -> np.ndarray:
    return _rgb(hagrid_sample / KNOWN)


@needs_mediapipe
def test_known_frame_is_the_persons_left_hand(detector, known):
    hands = detector.detect(known)
    assert len(hands) == 1
    h = hands[0]
    assert h.handedness == "left" and 0.5 < h.handedness_score <= 1.0
    assert h.landmarks.shape == (21, 3) and h.landmarks.dtype == np.float32 and h.landmarks_ok
    assert h.box == pytest.approx(landmark_box(h.landmarks[:, :2], (known.shape[1], known.shape[0])))
    assert h.box[0] > 0.5  # the viewer's right half of the frame
    # the same picture mirrored is the right hand, ...
    flipped = detector.detect(known[:, ::-1])
    assert [f.handedness for f in flipped] == ["right"]
    assert flipped[0].box[0] + flipped[0].box[2] == pytest.approx(1 - h.box[0], abs=0.02)


@needs_mediapipe
def test_mirrored_input_keeps_mediapipes_label(known):
    # ... and a selfie camera's (mirrored) picture of the same scene says which hand it really is
    with HandDetector(DetectorConfig(mirrored=True)) as d:
        assert [h.handedness for h in d.detect(known)] == ["right"]


@needs_mediapipe
def test_two_hands_top_to_bottom(detector, hagrid_sample):
    split, cls, uuid = TWO_HANDS
    record = json.loads((hagrid_sample / "hagrid_annotations" / split / f"{cls}.json").read_text())[uuid]
    assert len(record["bboxes"]) == 2
    hands = detector.detect(_rgb(hagrid_sample / "hagrid_dataset_512" / cls / f"{uuid}.jpg"))
    assert len(hands) == 2
    centres = [h.box[1] + h.box[3] / 2 for h in hands]
    assert centres == sorted(centres)
    assert {h.handedness for h in hands} == {"left", "right"}
    gesture = record["bboxes"][record["labels"].index(cls)]
    other = record["bboxes"][1 - record["labels"].index(cls)]
    # each detection is one of the official boxes; the upper one is the gesture hand
    assert box_iou([hands[0].box, hands[1].box], [gesture, other]) == pytest.approx([1, 1], abs=0.25)


@needs_mediapipe
def test_frames_without_hands(detector, known):
    assert detector.detect(np.full((240, 320, 3), 128, np.uint8)) == []
    assert detector.detect(known[: known.shape[0] // 4]) == []  # the top of the known frame: ceiling and head


@needs_mediapipe
def test_bad_frames_and_closed_detector():
    grey = np.full((60, 80, 3), 128, np.uint8)
    d = HandDetector()
    for bad in (grey.astype(np.float32), grey[..., 0], grey[:0]):
        with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
            d.detect(bad)
    assert d.detect(grey[:, ::-1]) == []  # a non-contiguous view is fine
    d.close()
    d.close()
    with pytest.raises(RuntimeError, match="close"):
        d.detect(grey)


@needs_mediapipe
def test_video_mode_tracks_a_stream(known):
    with HandDetector(DetectorConfig(static_image_mode=False)) as d:
        boxes = [d.detect(known)[0].box for _ in range(3)]
    assert box_iou(boxes[1:], boxes[:2]).min() > 0.9


@pytest.mark.parametrize("field, value, option", [
    ("max_num_hands", 0, "--max-hands"), ("max_num_hands", 1.5, "--max-hands"),
    ("model_complexity", 2, "--model-complexity"),
    ("min_detection_confidence", 1.5, "--min-detection-confidence"),
    ("min_tracking_confidence", -0.1, "--min-tracking-confidence"),
    ("min_detection_confidence", float("nan"), "--min-detection-confidence"),
    ("static_image_mode", "no", "--video-mode"), ("hand_model", "", "--hand-model"),
])
def test_option_ranges_name_the_option(field, value, option):
    with pytest.raises(UsageError, match=option):
        DetectorConfig(**{field: value})


def test_unavailable_mediapipe_says_what_to_do(monkeypatch):
    with pytest.raises(DetectorUnavailable, match=r"Python 3\.13.*3\.10-3\.12"):
        import_mediapipe((3, 13, 0))
    monkeypatch.setitem(__import__("sys").modules, "mediapipe", None)  # makes `import mediapipe` fail
    with pytest.raises(DetectorUnavailable, match="cannot import mediapipe.*uv sync"):
        HandDetector()


def test_module_import_does_not_need_mediapipe(monkeypatch):
    """The module loads where mediapipe cannot be imported (Python 3.13+): only a HandDetector needs it."""
    import importlib.util
    import sys

    monkeypatch.setitem(sys.modules, "mediapipe", None)
    spec = importlib.util.spec_from_file_location("data_loaders._detect_probe", detect_mod.__file__)
    probe = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, probe)  # dataclasses look their module up there
    spec.loader.exec_module(probe)  # a top-level `import mediapipe` would raise here
    assert probe.DetectorConfig().max_num_hands == 2


def _task_bundle(path: Path) -> Path:
    """A MediaPipe Tasks .task bundle made from the models the legacy wheel ships (no download). Their
    files carry no label metadata, so its handedness labels mean nothing; the landmarks are the same."""
    mp = Path(detect_mod.import_mediapipe().__file__).parent / "modules"
    with zipfile.ZipFile(path, "w") as z:
        z.write(mp / "palm_detection" / "palm_detection_full.tflite", "hand_detector.tflite")
        z.write(mp / "hand_landmark" / "hand_landmark_full.tflite", "hand_landmarks_detector.tflite")
    return path


@needs_mediapipe
def test_task_model_file(tmp_path, detector, known):
    bundle = _task_bundle(tmp_path / "hand.task")
    want = detector.detect(known)[0].box
    for video in (False, True):
        with HandDetector(DetectorConfig(hand_model=str(bundle), static_image_mode=not video)) as d:
            got = [d.detect(known, timestamp_ms=t) for t in (0, 40)]
        assert [len(g) for g in got] == [1, 1]
        assert box_iou([g[0].box for g in got], [want, want]).min() > 0.85
    with pytest.raises(DataError, match="missing.task: hand model file not found"):
        HandDetector(DetectorConfig(hand_model=str(tmp_path / "missing.task")))
    (tmp_path / "junk.task").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.task: not a usable MediaPipe hand landmarker"):
        HandDetector(DetectorConfig(hand_model=str(tmp_path / "junk.task")))


# --------------------------------------------------------------------------- crop --box-source landmarks
@pytest.fixture
def specs():
    from hagrid_fixtures import make_specs

    # every 5th hand without landmarks
    return make_specs(("call", "fist", "palm"), per_class=3, no_gesture_every=0, empty_landmarks_every=5)


def test_crop_around_landmark_boxes(tmp_path, root):
    cs = make_class_set(("call", "fist", "palm"))
    out = tmp_path / "crops"
    summary = crop_dataset(root, out, class_set=cs, workers=1, progress=False, box_source="landmarks")
    lines = read_manifest(out / "manifest.jsonl")
    skipped = summary.skipped.counts["no_landmarks_for_box"]
    assert skipped > 0 and len(lines) + skipped == 9
    assert all(e["landmarks"] is not None for e in lines)
    for e in lines:  # each square is centred on the box model's box around the landmarks, not the annotation
        W, H = e["image_size"]
        x, y, w, h = landmark_box(np.array(e["landmarks"]), (W, H))
        x0, y0, side = e["crop_box"]
        assert (x0 + side / 2, y0 + side / 2) == pytest.approx(((x + w / 2) * W, (y + h / 2) * H), abs=1)
        assert side == round(max(w * W, h * H) * 1.5)
    info = load_crop_info(out)
    assert info.box_source == "landmarks" and info.box_model == DEFAULT_BOX_MODEL.to_dict()
    assert "no_landmarks_for_box" in (out / "skipped.csv").read_text()
    # the same folder cropped around the annotated boxes is a settings change, refused without --overwrite
    with pytest.raises(DataError, match="box_source"):
        crop_dataset(root, out, class_set=cs, workers=1, progress=False)
    crop_dataset(root, out, class_set=cs, workers=1, progress=False, overwrite=True)
    assert load_crop_info(out).box_source == "annotation"
    assert len(read_manifest(out / "manifest.jsonl")) == 9
    with pytest.raises(UsageError, match="--box-source"):
        crop_dataset(root, out, class_set=cs, box_source="face")


def test_native_chatter_is_dropped_and_everything_else_replayed(capfd):
    """What native code writes to fd 2 during a detector call: MediaPipe's chatter goes, any other line is
    kept (after the call), also from overlapping calls (one redirection, restored when the last ends)."""
    import os

    quiet = detect_mod._NativeStderrFilter()
    for _ in range(2):  # the temporary file is reused: nothing is replayed twice
        with quiet.hold():
            os.write(2, b"W0000 landmark_projection_calculator.cc:186] Using NORM_RECT without IMAGE_DIMENSIONS\n")
            with quiet.hold():
                os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nE0000 a real error\n")
            os.write(2, b"W0000 inference_feedback_manager.cc:114] Feedback manager requires a model\n")
            assert capfd.readouterr().err == ""  # held back while a call runs
        os.write(2, b"after\n")
        assert capfd.readouterr().err.splitlines() == ["E0000 a real error", "after"]
