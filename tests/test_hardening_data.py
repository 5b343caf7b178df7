"""Hardening of the data reading side (issue 9): each test pins one case a careful tester found."""
from __future__ import annotations

import logging
import shutil

import numpy as np
from hagrid_fixtures import annotation_file, edit_record, image_path

from data_loaders.classes import make_class_set
from data_loaders.hagrid import load_hagrid
from data_loaders.summary import format_table, summarize

CLASSES3 = ("call", "fist", "palm")
CS = make_class_set(CLASSES3)


# #11: Python's json.dumps writes NaN and Infinity; orjson rejects them
def test_nan_or_infinity_in_annotation_json_costs_only_those_hands(root, specs):
    box_bad, lm_bad = specs[0], specs[1]  # the same annotation file (call.json, split of user 0 and 1)
    edit_record(root, box_bad, bboxes=[[float("nan"), 0.3, 0.1, 0.1]])
    edit_record(root, lm_bad, hand_landmarks=[[[0.5, float("inf")]] + [[0.5, 0.5]] * 20])
    assert "NaN" in annotation_file(root, box_bad).read_text()
    assert "Infinity" in annotation_file(root, lm_bad).read_text()
    ann = load_hagrid(root, CS)  # used to abort: "malformed or truncated JSON"
    assert ann.skipped.counts == {"malformed_box": 1}
    assert str(annotation_file(root, box_bad)) in ann.skipped.examples["malformed_box"][0]
    assert box_bad.uuid in ann.skipped.examples["malformed_box"][0]
    # a hand with non-finite landmarks is kept without them, as any malformed landmarks are
    assert ann.degraded.counts == {"malformed_landmarks": 1}
    example = ann.degraded.examples["malformed_landmarks"][0]
    assert lm_bad.uuid in example and str(annotation_file(root, lm_bad)) in example and "NaN or inf" in example
    by_uuid = {r.uuid: r for r in ann.records}
    assert box_bad.uuid not in by_uuid and by_uuid[lm_bad.uuid].landmarks is None
    assert len(ann.records) == len(specs) - 1


# #12: MediaPipe gives [x, y, z] points
def test_landmark_points_with_three_coordinates_are_read_as_x_y(root, specs):
    one_z, all_z = specs[0], specs[1]
    points = [[0.1 + 0.01 * k, 0.2 + 0.01 * k] for k in range(21)]
    mixed = [p + [0.7] if k == 4 else p for k, p in enumerate(points)]  # one point with a z
    edit_record(root, one_z, hand_landmarks=[mixed])
    edit_record(root, all_z, hand_landmarks=[[p + [-0.02] for p in points]])
    ann = load_hagrid(root, CS)
    assert not ann.degraded.counts and not ann.skipped.counts
    by_uuid = {r.uuid: r for r in ann.records}
    for s in (one_z, all_z):
        np.testing.assert_allclose(by_uuid[s.uuid].landmarks, points, atol=1e-6)


def test_a_landmark_point_that_is_not_a_point_is_named(root, specs):
    bad = specs[0]
    edit_record(root, bad, hand_landmarks=[[[0.5, 0.5]] * 3 + [[0.5]] + [[0.5, 0.5]] * 17])
    ann = load_hagrid(root, CS)
    example = ann.degraded.examples["malformed_landmarks"][0]
    assert "landmark 3 is [0.5], not a point [x, y] or [x, y, z]" in example and bad.uuid in example


# #12: a missing image was reported under <root>/images/<class>/..., a folder never searched
def test_missing_class_folder_names_what_was_searched(root, specs):
    shutil.rmtree(image_path(root, specs[3]).parent)  # the fist folder
    ann = load_hagrid(root, CS)
    fist = [r for r in ann.records if r.label == "fist"]
    assert fist and all("images" not in r.image_path.parts for r in fist)
    assert all(r.image_path.parent == root / "hagrid_dataset_512" / "fist" for r in fist)  # where it belongs
    [warning] = [w for w in ann.warnings if "fist" in w]
    assert f"no image folder for class 'fist' ({len(fist)} images will be missing)" in warning
    assert f"below {root} for fist/, train_val_fist/ or test_fist/" in warning
    assert str(root / "hagrid_dataset_512") in warning  # where the other classes are
    shutil.rmtree(root / "hagrid_dataset_512")  # e.g. only the annotations were downloaded: one line in all
    [warning] = [w for w in load_hagrid(root, CS).warnings if "image" in w]
    assert f"no image folders found ({len(specs)} images of 3 classes will be missing)" in warning


# #12: inspect did not flag missing or corrupt images or sub-pixel boxes
def test_inspect_counts_the_hands_crop_will_skip(root, specs, caplog):
    clean = summarize(load_hagrid(root, CS))
    assert not any(k.startswith("crop_will_skip:") for k in clean["skipped"])
    assert "crop_will_skip" not in format_table(clean)  # the table of a clean dataset is as before
    image_path(root, specs[0]).unlink()
    image_path(root, specs[4]).write_bytes(b"not a jpeg" * 20)
    edit_record(root, specs[7], bboxes=[[0.3, 0.3, 0.005, 0.2]])  # 0.48 px wide in a 96 px image
    ann = load_hagrid(root, CS)
    with caplog.at_level(logging.WARNING, logger="data_loaders.summary"):
        s = summarize(ann)
    assert {k: v for k, v in s["skipped"].items() if k.startswith("crop_will_skip:")} == {
        "crop_will_skip:missing_image": 1, "crop_will_skip:corrupt_image": 1, "crop_will_skip:zero_size_box": 1}
    table = format_table(s)
    for line in ("crop_will_skip:missing_image: 1", "crop_will_skip:corrupt_image: 1",
                 "crop_will_skip:zero_size_box: 1", "`crop` will skip"):
        assert line in table
    [message] = [m for m in caplog.messages if "will be skipped by crop" in m]
    assert str(image_path(root, specs[0])) in message and "0.48x" in message

