"""End-to-end accuracy (engine.end_to_end): matching, intervals, the detection cache, and a run on a few real
sample frames with untrained checkpoints (figures are meaningless; counts, caching and errors are not).
Also runs the prediction speed benchmark in its quick form, so that it does not rot."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from engine import end_to_end as e2e
from engine.end_to_end import DetectionCache, greedy_match, run_end_to_end, wilson_interval

REPO = Path(__file__).resolve().parents[1]

#: Six test frames of the sample, by class: (uuid, what it adds). The first frame is the one whose detection a
#: test removes; its gesture hand has annotated landmarks, so MediaPipe finds it with the project's settings.
FRAMES = {
    "call": ["07e18fcb-47bc-4ec4-b1a0-0303d534c70c",   # one gesture hand
             "0eae11fb-20b3-4469-ae30-773cec087cc4"],  # + a no_gesture hand
    "dislike": ["032e257f-54cc-461f-a148-cfca249111d5"],  # no_gesture box listed first
    "fist": ["59463673-451b-474f-9208-663dae287aa1"],
    "like": ["27e67b42-6e4e-4ff2-8c93-5daeb70a7d60"],  # gesture hand without annotated landmarks
    "mute": ["0501361b-8ef9-4f1b-a1a2-a4ee4efdcab6"],
}
BROKEN = ("palm", "00000000-0000-0000-0000-00000000bad0")  # an image file that is not an image
LANDMARK_MODELS = {"mlp", "gcn"}


# --------------------------------------------------------------------------- matching and intervals
def _box(x: float, w: float = 0.2) -> list[float]:
    return [x, 0.3, w, 0.2]


def test_greedy_match_takes_the_highest_iou_first_and_each_box_once():
    # two boxes of side 0.2 shifted by s along x have IoU (0.2 - s) / (0.2 + s)
    ann = [_box(0.10), _box(0.14)]          # ann 1 overlaps ann 0
    det = [_box(0.14), _box(0.10 - 0.02)]   # det 0 = ann 1 exactly (IoU 1), IoU 0.67 with ann 0; det 1: 0.82 with ann 0
    assert greedy_match(det, ann, 0.5).tolist() == [1, 0]
    # one detection, two boxes: it goes to the better one; the other is left unmatched
    assert greedy_match([_box(0.13)], ann, 0.5).tolist() == [-1, 0]
    # greedy by IoU, not by annotation order: det 0 is ann 0's best (0.67) but ann 1's better (1.0)
    assert greedy_match([_box(0.14), _box(0.5)], ann, 0.5).tolist() == [-1, 0]


def test_greedy_match_threshold_and_empty_inputs():
    half = [0.0, 0.0, 0.5, 0.25]  # IoU exactly 0.5 with [0, 0, 0.5, 0.5] (binary fractions: no rounding)
    assert greedy_match([half], [[0.0, 0.0, 0.5, 0.5]], 0.5).tolist() == [0]  # IoU >= threshold
    s = 0.2 / 3 + 1e-3  # two side-0.2 boxes shifted by s: IoU just below 0.5
    assert greedy_match([_box(0.1 + s)], [_box(0.1)], 0.5).tolist() == [-1]
    assert greedy_match([_box(0.1 + s)], [_box(0.1)], 0.4).tolist() == [0]
    assert greedy_match([], [_box(0.1)], 0.5).tolist() == [-1]
    assert greedy_match([_box(0.1)], np.zeros((0, 4)), 0.5).tolist() == []


def test_a_detection_on_a_no_gesture_hand_is_not_credited_to_the_gesture_beside_it():
    gesture, no_gesture = _box(0.10), _box(0.16)
    det = [_box(0.155)]  # IoU 0.56 with the gesture box, 0.94 with the no_gesture box
    assert greedy_match(det, [gesture], 0.5).tolist() == [0]
    assert greedy_match(det, [gesture, no_gesture], 0.5).tolist() == [-1, 0]


def test_wilson_interval():
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(10 / (10 + 1.959964**2), abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.2775, abs=1e-3)
    lo, hi = wilson_interval(50, 100)
    assert lo < 0.5 < hi and hi - 0.5 == pytest.approx(0.5 - lo)
    assert all(np.isnan(wilson_interval(0, 0)))


# --------------------------------------------------------------------------- cache
def test_detection_cache_survives_a_torn_line_and_a_changed_image(tmp_path):
    img_a, img_b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    img_a.write_bytes(b"a" * 10)
    img_b.write_bytes(b"b" * 10)
    hand = {"box": [0.1, 0.1, 0.2, 0.2], "landmarks": [[0.1, 0.1, 0.0]] * 21, "handedness": "left", "score": 0.9,
            "landmarks_ok": True}
    path = tmp_path / "cache" / "test_x.jsonl"
    c = DetectionCache(path)
    c.add("a", img_a, [hand])
    c.add("b", img_b, [])
    with open(path, "ab") as f:  # an interrupted run: half a line
        f.write(b'{"uuid": "c", "fi')
    c2 = DetectionCache(path)
    assert c2.get("a", img_a) == [hand] and c2.get("b", img_b) == [] and c2.get("c", img_a) is None
    assert c2.n_bad_lines == 1
    c2.add("c", img_a, [])  # appended after the torn line, which stays unreadable on its own
    c3 = DetectionCache(path)
    assert c3.get("c", img_a) == [] and c3.n_bad_lines == 1 and len(c3.entries) == 3
    img_b.write_bytes(b"b" * 11)  # another image under the same name: detected again
    assert c3.get("b", img_b) is None


# --------------------------------------------------------------------------- a run on sample frames
def _tiny_root(sample: Path, out: Path) -> Path:
    """A HaGRID v2 root holding ``FRAMES`` of the sample's test split (annotations copied, images linked) and
    one frame whose image is not an image."""
    ann_dir, img_dir = out / "hagrid_annotations" / "test", out / "hagrid_dataset_512"
    ann_dir.mkdir(parents=True)
    for cls, uuids in FRAMES.items():
        records = json.loads((sample / "hagrid_annotations" / "test" / f"{cls}.json").read_text())
        (ann_dir / f"{cls}.json").write_text(json.dumps({u: records[u] for u in uuids}))
        (img_dir / cls).mkdir(parents=True)
        for u in uuids:
            (img_dir / cls / f"{u}.jpg").symlink_to(sample / "hagrid_dataset_512" / cls / f"{u}.jpg")
    cls, uuid = BROKEN
    (img_dir / cls).mkdir()
    (img_dir / cls / f"{uuid}.jpg").write_bytes(b"not a jpeg")
    (ann_dir / f"{cls}.json").write_text(json.dumps({uuid: {
        "bboxes": [[0.4, 0.4, 0.2, 0.2]], "labels": [cls], "user_id": "u", "hand_landmarks": [[]]}}))
    return out


@pytest.fixture
def counted_detector(monkeypatch):
    """Counts the detector's calls; ``drop`` holds the call numbers (0-based) that return no hand."""
    from data_loaders.detect import HandDetector

    state = {"calls": 0, "drop": set()}
    original = HandDetector.detect

    def detect(self, rgb):
        k, state["calls"] = state["calls"], state["calls"] + 1
        return [] if k in state["drop"] else original(self, rgb)

    monkeypatch.setattr(HandDetector, "detect", detect)
    return state


def test_end_to_end_on_sample_frames(hagrid_sample, random_checkpoints, tmp_path, counted_detector):
    # ResNet-34 is the slow one on a CPU: fusion (which holds one) stands for it in the first run only
    models = {m: random_checkpoints[m] for m in ("mlp", "gcn", "cnn", "fusion")}
    root = _tiny_root(hagrid_sample, tmp_path / "root")
    graphs = tmp_path / "graphs"
    res = run_end_to_end(models, root, graphs_dir=graphs, progress=False)
    n_gesture = sum(len(u) for u in FRAMES.values())  # one gesture hand per frame
    assert counted_detector["calls"] == res.detected_now == res.n_frames == n_gesture  # broken frame: not detected
    assert len(res.unreadable) == 1 and BROKEN[1] in res.unreadable[0]
    assert any(BROKEN[1] in line for line in res.lines())
    rows = {r["model"]: r for r in res.rows}
    assert list(rows) == list(models)
    assert {r["n_hands"] for r in rows.values()} == {n_gesture}
    recall = {r["detection_recall"] for r in rows.values()}
    assert len(recall) == 1 and 0 <= recall.pop() <= 1
    assert res.matched[0], "MediaPipe should find the first frame's hand (it has annotated landmarks)"
    for name, r in rows.items():
        assert r["e2e_accuracy"] <= r["e2e_accuracy_detected"] + 1e-12
        assert r["e2e_accuracy_ci_low"] <= r["e2e_accuracy"] <= r["e2e_accuracy_ci_high"]
        assert r["annotated_no_landmarks"] == (1 if name in LANDMARK_MODELS else 0)  # the `like` hand
        p = res.predictions[name]
        assert ((p["end_to_end"] >= 0) <= res.matched).all()  # a prediction only for a matched hand
        assert r["e2e_accuracy"] == pytest.approx(np.mean(p["end_to_end"] == res.y_true))
    md = (graphs / "end_to_end.md").read_text()
    assert "| model | hands | detection recall |" in md and "greedy one-to-one by IoU" in md and BROKEN[1] in md
    csv_lines = (graphs / "end_to_end.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(rows) and csv_lines[0].startswith("model,checkpoint,n_hands,detected")

    # a second run reads every detection from the cache
    light = {m: models[m] for m in ("mlp", "cnn")}
    again = run_end_to_end(light, root, graphs_dir=graphs, progress=False)
    assert counted_detector["calls"] == n_gesture and again.detected_now == 0
    assert again.rows == [rows["mlp"], rows["cnn"]]

    # a hand the detector misses is an end-to-end error for every model (fresh cache; first frame finds nothing)
    counted_detector["drop"] = {counted_detector["calls"]}
    missed = run_end_to_end(light, root, graphs_dir=None, cache_dir=tmp_path / "cache2", progress=False, limit=2)
    assert missed.n_frames == 2 and missed.hand_keys[0] == f"{FRAMES['call'][0]}_0"
    assert missed.matched.tolist() == [False, bool(res.matched[1])]
    for r in missed.rows:
        e2e_pred = missed.predictions[r["model"]]["end_to_end"]
        assert e2e_pred[0] == -1 and r["detected"] == int(res.matched[1])
        assert r["e2e_accuracy"] == pytest.approx(np.mean(e2e_pred == missed.y_true))


def test_video_mode_request_runs_static_and_says_so(hagrid_sample, random_checkpoints, tmp_path):
    from data_loaders.detect import DetectorConfig

    root = _tiny_root(hagrid_sample, tmp_path / "root")
    res = run_end_to_end({"mlp": random_checkpoints["mlp"]}, root, graphs_dir=None, cache_dir=tmp_path / "c",
                         detector=DetectorConfig(static_image_mode=False), progress=False, limit=2)
    assert res.detector.static_image_mode and res.n_frames == 2
    assert any("static image mode" in n for n in res.notes)
    assert e2e.cache_file(tmp_path, "test", DetectorConfig()) == e2e.cache_file(tmp_path, "test", res.detector)


# --------------------------------------------------------------------------- the speed benchmark
@pytest.mark.slow
def test_bench_predict_quick(hagrid_sample, capsys):
    spec = importlib.util.spec_from_file_location("_bench_predict", REPO / "benchmarks" / "bench_predict.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.main(["--quick", "--data-dir", str(hagrid_sample)])
    out = capsys.readouterr().out
    assert res["detector_ms"]["static"] > 0 and res["detector_ms"]["video"] > 0
    assert res["rows"] and all(r["frames_per_s"] > 0 and r["classify_ms"] > 0 for r in res["rows"])
    assert {r["backend"] for r in res["rows"]} == {"torch", "onnxruntime"}
    assert "random (untrained) checkpoints" in out and ">= 30 frames/s" in out and "0.7 ms" in out
