"""The command-line wiring of the prediction-era steps: each option reaches the function it names (the
functions themselves are replaced by recorders here; their own tests live beside them)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.cli import build_parser, detector_config_from_args, main


def record(monkeypatch, target: str, result):
    """Replace ``target`` with a function that records its arguments and returns ``result``."""
    calls = []

    def fake(*args, **kwargs):
        calls.append((args, kwargs))
        return result

    monkeypatch.setattr(target, fake)
    return calls


def test_detector_options_map_to_the_config_and_default_to_it():
    from data_loaders.detect import DetectorConfig

    argv = ["predict", "x.jpg", "--model", "m.pt"]
    assert detector_config_from_args(build_parser(argv).parse_args(argv)) == DetectorConfig()
    argv += ["--video-mode", "--max-hands", "4", "--model-complexity", "0", "--min-detection-confidence", "0.6",
             "--min-tracking-confidence", "0.7", "--mirrored", "--hand-model", "h.task"]
    assert detector_config_from_args(build_parser(argv).parse_args(argv)) == DetectorConfig(
        static_image_mode=False, max_num_hands=4, model_complexity=0, min_detection_confidence=0.6,
        min_tracking_confidence=0.7, mirrored=True, hand_model="h.task")


def test_export_wiring(monkeypatch, tmp_path, capsys):
    report = SimpleNamespace(lines=lambda: ["wrote x.onnx", "parity ok"])
    calls = record(monkeypatch, "engine.export.export_checkpoint", report)
    assert main(["export", "--model", "m.pt", "--out", str(tmp_path / "o.onnx"), "--check-data", "crops"]) == 0
    assert calls == [((Path("m.pt"), tmp_path / "o.onnx"), {"check_data": Path("crops")})]
    assert capsys.readouterr().out == "wrote x.onnx\nparity ok\n"


def test_calibrate_wiring(monkeypatch, capsys):
    stored = {"temperature": 1.5, "split": "val", "n": 10, "nll_before": 1.0, "nll_after": 0.8,
              "ece_before": 0.2, "ece_after": 0.05}
    calls = record(monkeypatch, "engine.calibration.calibrate_checkpoint", stored)
    assert main(["calibrate", "a.pt", "b.pt", "--crops-dir", "c"]) == 0
    assert [c[0][0] for c in calls] == [Path("a.pt"), Path("b.pt")]
    assert calls[0][1] == {"crops_dir": "c", "data_dir": None, "split": "val", "device": "cpu"}
    out = capsys.readouterr().out
    assert "a.pt: temperature 1.500" in out and "ECE 0.2000 -> 0.0500" in out


def test_evaluate_end_to_end_wiring(monkeypatch, capsys):
    from data_loaders.detect import DetectorConfig

    calls = record(monkeypatch, "engine.end_to_end.run_end_to_end", SimpleNamespace(lines=lambda: ["table"]))
    assert main(["evaluate", "--end-to-end", "--data-dir", "d", "--models-dir", "m", "--iou", "0.6",
                 "--max-hands", "3", "--no-progress"]) == 0
    (args, kw), = calls
    assert args == (Path("m"), "d")
    assert kw["iou_threshold"] == 0.6 and kw["detector"] == DetectorConfig(max_num_hands=3)
    assert kw["split"] == "test" and kw["progress"] is False
    assert capsys.readouterr().out == "table\n"
    assert main(["evaluate", "--end-to-end"]) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_crop_box_source_wiring(monkeypatch):
    calls = record(monkeypatch, "data_loaders.crop.crop_dataset", SimpleNamespace(out_dir=Path("o")))
    assert main(["crop", "--data-dir", "d", "--out", "o", "--box-source", "landmarks"]) == 0
    assert calls[0][1]["box_source"] == "landmarks"
    with pytest.raises(SystemExit):
        main(["crop", "--box-source", "segmentation"])


def test_predict_refuses_contradicting_detection_modes(random_checkpoints, capsys):
    assert main(["predict", "x.jpg", "--model", str(random_checkpoints["mlp"]), "--static", "--video-mode"]) == 2
    assert "--static and --video-mode" in capsys.readouterr().err


def test_predict_help_documents_output_and_exit_status(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    out = capsys.readouterr().out
    assert '"hands": 0' in out and "exit status" in out and "--jsonl" in out


def test_camera_loop_draws_each_frame_and_quits_on_q(random_checkpoints, monkeypatch, tmp_path, capsys):
    """The camera loop with OpenCV's window and the camera replaced: every frame is shown annotated (FPS in
    the corner), its hands are printed, `q` stops it, and --save keeps the stream as an mp4."""
    import cv2
    import numpy as np

    import engine.predict_run as run
    from engine.sources import Frame

    def frames(source):
        for i in range(10):
            yield Frame(source, np.full((240, 320, 3), 90, np.uint8), index=i, fps=30.0)

    shown, keys = [], iter([-1, -1, ord("q")])
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(run, "read_frames", frames)
    monkeypatch.setattr(cv2, "namedWindow", lambda *a: None)
    monkeypatch.setattr(cv2, "destroyWindow", lambda *a: None)
    monkeypatch.setattr(cv2, "imshow", lambda title, img: shown.append(img.copy()))
    monkeypatch.setattr(cv2, "waitKey", lambda ms: next(keys))
    rc = main(["predict", "--camera", "0", "--model", str(random_checkpoints["mlp"]), "--save", str(tmp_path)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert len(shown) == 3 and (shown[0] != 90).any()  # the FPS tag is drawn on a blank frame
    assert [json.loads(line)["frame"] for line in cap.out.splitlines()] == [0, 1, 2]
    assert "3 frames" in cap.err
    video = cv2.VideoCapture(str(tmp_path / "camera0.mp4"))
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    video.release()
