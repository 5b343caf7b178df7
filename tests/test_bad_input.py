"""Every kind of bad input is a clear DataError naming the file (and record) or a counted skip naming it."""
from __future__ import annotations

import csv
import json
import struct

import numpy as np
import pytest
from hagrid_fixtures import annotation_file, edit_record, image_path, write_jpeg
from PIL import Image, ImageFile

import data_loaders.crop as crop_mod
from common.errors import DataError
from data_loaders.classes import make_class_set
from data_loaders.crop import crop_dataset, cut_square
from data_loaders.hagrid import load_hagrid
from data_loaders.images import IMAGE_NOT_FOUND, image_size, open_rgb
from data_loaders.manifest import iter_manifest, read_manifest, write_manifest
from engine.cli import main

CLASSES3 = ("call", "fist", "palm")
CS = make_class_set(CLASSES3, include_no_gesture=True)


def _crop(root, out):
    return crop_dataset(root, out, class_set=CS, size=24, workers=1, progress=False)


def _csv_rows(out):
    with open(out / "skipped.csv", newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- images
@pytest.mark.parametrize("damage, reason", [
    ("corrupt", "corrupt_image"), ("missing", "missing_image"), ("truncated", "corrupt_image"),
])
def test_bad_image_is_a_counted_skip_naming_the_file(tmp_path, root, specs, damage, reason):
    bad = specs[1]
    p = image_path(root, bad)
    if damage == "corrupt":
        p.write_bytes(b"this is not a jpeg" * 10)
    elif damage == "missing":
        p.unlink()
    else:
        p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    with pytest.raises(DataError) as e:
        open_rgb(p)
    assert str(p) in str(e.value)

    s = _crop(root, tmp_path / "out")
    assert s.skipped.counts == {reason: 1}
    assert str(p) in s.skipped.examples[reason][0] and bad.uuid in s.skipped.examples[reason][0]
    assert s.n_crops == len(specs) - 1
    rows = _csv_rows(tmp_path / "out")
    assert [(r["file"], r["uuid"], r["hand"], r["reason"]) for r in rows] == [(str(p), bad.uuid, "0", reason)]
    assert f"{reason}: 1" in str(s)


def test_truncated_image_header_still_readable(tmp_path, root, specs):
    p = image_path(root, specs[0])
    p.write_bytes(p.read_bytes()[:-200])
    assert image_size(p) == specs[0].size  # header only
    with pytest.raises(DataError, match="corrupt or truncated"):
        open_rgb(p)


@pytest.mark.parametrize("exc", [
    OSError("broken data stream"), ValueError("tile cannot extend outside image"), SyntaxError("broken PNG file"),
    Image.DecompressionBombError("too many pixels"), EOFError(), struct.error("unpack requires a buffer"),
    IndexError("index out of range"), TypeError("bad tile"), ZeroDivisionError(), MemoryError(),
], ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("stage", ["open", "decode"])
def test_open_rgb_turns_every_pil_failure_into_a_data_error(root, specs, monkeypatch, exc, stage):
    p = image_path(root, specs[0])

    def fail(*a, **k):
        raise exc

    if stage == "open":
        monkeypatch.setattr(Image, "open", fail)
    else:
        monkeypatch.setattr(ImageFile.ImageFile, "load", fail)
    with pytest.raises(DataError, match="corrupt or truncated image") as e:
        open_rgb(p, draft_to=(10, 10))
    assert e.value.path == str(p) and type(exc).__name__ in e.value.problem
    if stage == "open":
        with pytest.raises(DataError, match="cannot read image header") as e:
            image_size(p)
        assert e.value.path == str(p)


def test_decompression_bomb_is_a_data_error(tmp_path, monkeypatch):
    p = write_jpeg(tmp_path / "big.jpg", (200, 100))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 20000 px > 2x the limit: PIL raises, not warns
    with pytest.raises(DataError, match="DecompressionBombError") as e:
        open_rgb(p)
    assert e.value.path == str(p)
    with pytest.raises(DataError, match=IMAGE_NOT_FOUND):
        open_rgb(tmp_path / "absent.jpg")


def test_worker_exception_never_escapes(tmp_path, root, specs, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("resize exploded")

    monkeypatch.setattr(crop_mod, "cut_square", boom)
    with pytest.raises(DataError, match="nothing was cropped") as e:  # every hand failed: the run fails (issue 9)
        _crop(root, tmp_path / "out")
    assert f"(crop_error {len(specs)}; e.g." in str(e.value)
    assert "RuntimeError: resize exploded" in str(e.value)
    assert [r["reason"] for r in _csv_rows(tmp_path / "out")] == ["crop_error"] * len(specs)


# --------------------------------------------------------------------------- annotation files
def test_truncated_json_names_the_file(root, specs):
    f = annotation_file(root, specs[0])
    f.write_bytes(f.read_bytes()[:-40])
    with pytest.raises(DataError, match="malformed or truncated JSON") as e:
        load_hagrid(root, CS)
    assert e.value.path == str(f)


@pytest.mark.parametrize("content", ['{"a": [1, 2,]}', "[1, 2, 3]", ""])
def test_malformed_json_names_the_file(root, specs, content):
    f = annotation_file(root, specs[0])
    f.write_text(content)
    with pytest.raises(DataError) as e:
        load_hagrid(root, CS)
    assert str(f) in str(e.value)


def test_cli_prints_one_line_error_and_exits_2(tmp_path, root, specs, capsys):
    f = annotation_file(root, specs[0])
    f.write_text("{broken")
    code = main(["crop", "--data-dir", str(root), "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: {f}: malformed or truncated JSON") and err.count("\n") == 1
    assert "Traceback" not in err
    assert main(["inspect", "--data-dir", str(tmp_path / "missing")]) == 2
    assert main(["inspect", "--data-dir", str(root), "--classes", "fisst"]) == 2
    assert "unknown class(es) fisst" in capsys.readouterr().err


# --------------------------------------------------------------------------- records
@pytest.mark.parametrize("change, reason", [
    ({"labels": ["thumbs_sideways"]}, "unknown_label"),
    ({"bboxes": [[1.2, 0.3, 0.1, 0.1]]}, "box_outside_image"),
    ({"bboxes": [[-5, -5, 10, 10]]}, "box_outside_image"),  # would be a ~28800 px padded square
    ({"bboxes": [[-0.6, 0.3, 0.3, 0.3]]}, "box_outside_image"),
    ({"bboxes": [[0.3, 0.9, 0.2, 0.7]]}, "box_outside_image"),
    ({"bboxes": [[-0.2, 0.1, 1.6, 0.3]]}, "box_outside_image"),
    ({"bboxes": [[0.3, 0.3, 0.0, 0.1]]}, "zero_size_box"),
    ({"bboxes": [[0.3, "x", 0.1, 0.1]]}, "malformed_box"),
    ({"bboxes": [[0.3, 0.3, 0.1]]}, "malformed_box"),
    ({"labels": ["call", "call"]}, "malformed_record"),
])
def test_bad_hand_is_skipped_naming_file_and_uuid(tmp_path, root, specs, change, reason):
    bad = specs[0]
    edit_record(root, bad, **change)
    ann = load_hagrid(root, CS)
    assert ann.skipped.counts == {reason: 1}
    assert str(annotation_file(root, bad)) in ann.skipped.examples[reason][0]
    assert bad.uuid in ann.skipped.examples[reason][0]
    assert len(ann.records) == len(specs) - 1
    s = _crop(root, tmp_path / "out")  # and it reaches the crop summary and skipped.csv
    assert s.annotation_skipped.counts == {reason: 1}
    assert [(r["uuid"], r["reason"]) for r in _csv_rows(tmp_path / "out")] == [(bad.uuid, reason)]


def test_box_with_less_than_a_pixel_is_skipped_when_cropping(tmp_path, root, specs):
    edit_record(root, specs[0], bboxes=[[0.3, 0.3, 0.005, 0.2]])  # 0.48 px wide in a 96 px image
    s = _crop(root, tmp_path / "out")
    assert s.skipped.counts == {"zero_size_box": 1}
    assert "px" in s.skipped.examples["zero_size_box"][0]


def test_box_partly_outside_is_cropped_with_padding(tmp_path, root, specs):
    edit_record(root, specs[0], bboxes=[[0.9, 0.9, 0.3, 0.3]])
    s = _crop(root, tmp_path / "out")
    assert not s.skipped.counts and s.n_crops == len(specs)


def test_huge_box_reaching_the_worker_is_a_counted_skip(tmp_path, root, specs):
    # records built elsewhere (not by the loader) still never make a worker allocate a huge padded square
    ann = load_hagrid(root, CS)
    bad = ann.records[0]
    bad.bbox = (-5.0, -5.0, 10.0, 10.0)
    s = crop_dataset(root, tmp_path / "out", class_set=CS, size=24, workers=1, progress=False, annotations=ann)
    assert s.skipped.counts == {"box_outside_image": 1}
    example = s.skipped.examples["box_outside_image"][0]
    assert str(bad.image_path) in example and bad.uuid in example
    assert [(r["uuid"], r["reason"]) for r in _csv_rows(tmp_path / "out")] == [(bad.uuid, "box_outside_image")]
    assert s.n_crops == len(ann.records) - 1


def test_cut_square_memory_is_bounded_by_the_visible_part(tmp_path, monkeypatch):
    img = open_rgb(write_jpeg(tmp_path / "a.jpg", (100, 80)))
    limit = max(100 * 80, (4 * 32 + 2) ** 2)  # the visible part, or the reduced canvas
    real_new, real_crop, biggest = Image.new, Image.Image.crop, []

    def check(size):
        biggest.append(size[0] * size[1])
        assert size[0] * size[1] <= limit, f"allocates a {size[0]}x{size[1]} image"

    def new(mode, size, *a, **k):
        check(size)
        return real_new(mode, size, *a, **k)

    def crop(self, box=None):
        if box is not None:
            check((box[2] - box[0], box[3] - box[1]))
        return real_crop(self, box)

    monkeypatch.setattr(Image, "new", new)
    monkeypatch.setattr(Image.Image, "crop", crop)
    out = cut_square(img, (-14350, -14360, 28800), 32)  # the square of a [-5, -5, 10, 10] box
    assert out.size == (32, 32) and max(biggest) <= limit


@pytest.mark.parametrize("landmarks, problem", [
    ([[[0.5, 0.5]] * 20], "expected 21x2 landmarks"),
    ([[[0.5, 1e300]] * 21], "NaN or inf"),  # finite JSON, inf as float32
    ([[["a", "b"]] * 21], "not numbers"),
    ([[[0.5, 0.5]] * 21, [[0.5, 0.5]] * 21], "2 landmark sets for 1 boxes"),
    ({"not": "a list"}, "not a list"),
])
def test_bad_landmarks_are_dropped_and_counted(root, specs, landmarks, problem):
    bad = specs[0]
    f = annotation_file(root, bad)
    edit_record(root, bad, hand_landmarks=landmarks)
    ann = load_hagrid(root, CS)
    r = next(r for r in ann.records if r.uuid == bad.uuid)
    assert r.landmarks is None  # kept, without landmarks
    assert ann.degraded.counts == {"malformed_landmarks": 1}
    example = ann.degraded.examples["malformed_landmarks"][0]
    assert bad.uuid in example and str(f) in example
    assert problem in example
    assert not ann.skipped.counts


def test_empty_landmarks_are_none_not_errors(root, specs):
    edit_record(root, specs[0], hand_landmarks=[[]])
    edit_record(root, specs[1], hand_landmarks=[])
    edit_record(root, specs[2], hand_landmarks=None)
    ann = load_hagrid(root, CS)
    got = {r.uuid: r.landmarks for r in ann.records}
    assert all(got[s.uuid] is None for s in specs[:3])
    assert all(got[s.uuid] is not None for s in specs[3:])
    assert not ann.degraded.counts and not ann.skipped.counts


def test_duplicate_image_is_skipped(root, specs):
    other = annotation_file(root, specs[-1])
    data = json.loads(other.read_text())
    src = json.loads(annotation_file(root, specs[0]).read_text())
    data[specs[0].uuid] = src[specs[0].uuid]
    other.write_text(json.dumps(data))
    ann = load_hagrid(root, CS)
    assert ann.skipped.counts == {"duplicate_image": 1}
    assert len({r.key for r in ann.records}) == len(ann.records)


# --------------------------------------------------------------------------- crop outputs
GOOD_LINE = {"key": "u_0", "uuid": "u", "hand": 0, "split": "train", "label": "call", "user_id": None,
             "crop": "train/call/u_0.jpg", "image": "x.jpg", "image_size": [10, 10], "bbox": [0, 0, 1, 1],
             "crop_box": [0, 0, 10], "landmarks": None, "leading_hand": None}


def test_malformed_manifest_line_names_file_and_line(tmp_path):
    p = tmp_path / "manifest.jsonl"
    good = GOOD_LINE
    write_manifest(p, [good, good])
    assert len(read_manifest(p)) == 2
    p.write_bytes(p.read_bytes() + b'{"key": "u_1", "uuid"\n')
    with pytest.raises(DataError, match="line 3: malformed JSON") as e:
        read_manifest(p)
    assert e.value.path == str(p)
    write_manifest(p, [good, {k: v for k, v in good.items() if k != "crop_box"}])
    with pytest.raises(DataError, match="line 2: missing crop_box"):
        read_manifest(p)


@pytest.mark.parametrize("change, problem", [
    ({"label": 3}, "label: expected a string"),
    ({"crop": ["train", "call"]}, "crop: expected a string"),
    ({"hand": "0"}, "hand: expected an integer"),
    ({"user_id": 17}, "user_id: expected a string or null"),
    ({"image_size": [10]}, "image_size: expected 2 positive numbers"),
    ({"image_size": [10, 0]}, "image_size: expected 2 positive numbers"),
    ({"image_size": ["10", "10"]}, "image_size: expected 2 positive numbers"),
    ({"bbox": [0, 0, 1]}, "bbox: expected 4 numbers"),
    ({"bbox": [0, 0, True, 1]}, "bbox: expected 4 numbers"),
    ({"crop_box": "0,0,10"}, "crop_box: expected 3 numbers"),
    ({"landmarks": [[0.5, 0.5]] * 20}, "landmarks: expected null or 21x2"),
    ({"landmarks": [[0.5, 0.5, 0.1]] * 21}, "landmarks: expected null or 21x2"),
    ({"landmarks": [["a", "b"]] * 21}, "landmarks: expected null or 21x2"),
    ({"landmarks": ["ab"] * 21}, "landmarks: expected null or 21x2"),
    ({"landmarks": {"x": 1}}, "landmarks: expected null or 21x2"),
])
def test_manifest_fields_are_checked_per_line(tmp_path, change, problem):
    p = tmp_path / "manifest.jsonl"
    ok = dict(GOOD_LINE, landmarks=np.full((21, 2), 0.5).tolist())
    write_manifest(p, [ok, GOOD_LINE, dict(GOOD_LINE, **change)])
    it = iter_manifest(p)
    assert next(it) == ok and next(it) == GOOD_LINE  # streamed: good lines come before the bad one is read
    with pytest.raises(DataError, match=f"line 3: {problem}") as e:
        next(it)
    assert e.value.path == str(p) and e.value.uuid == "u_0"


def test_resume_with_other_settings_is_refused(tmp_path, root):
    out = tmp_path / "out"
    _crop(root, out)
    with pytest.raises(DataError, match="other settings.*size: 24 != 32"):
        crop_dataset(root, out, class_set=CS, size=32, workers=1, progress=False)
    assert crop_dataset(root, out, class_set=CS, size=32, workers=1, progress=False, overwrite=True).n_written
