"""HandTable: streaming the crop manifest into arrays, class subsets, and annotation records with bad images."""
from __future__ import annotations

import logging
import tracemalloc

import numpy as np
import pytest
from hagrid_fixtures import image_path, make_specs, write_v2

from common.errors import DataError
from data_loaders.classes import NO_GESTURE, make_class_set
from data_loaders.hagrid import load_hagrid
from data_loaders.hand_table import HandTable
from data_loaders.images import image_size
from data_loaders.manifest import MANIFEST_NAME, CropInfo, read_manifest, write_crop_info, write_manifest

CLASSES = ("call", "fist", "palm", NO_GESTURE)


def _entry(i: int, label: str, split: str = "train", landmarks: bool = True) -> dict:
    rng = np.random.default_rng(i)
    return {
        "key": f"u{i:06d}_0", "uuid": f"u{i:06d}", "hand": 0, "split": split, "label": label,
        "user_id": f"user{i % 7}", "crop": f"{split}/{label}/u{i:06d}_0.jpg", "image": f"/data/{label}/u{i:06d}.jpg",
        "image_size": [1920, 1080], "bbox": [0.1, 0.2, 0.3, 0.4], "crop_box": [100, 50, 600],
        "landmarks": np.round(rng.uniform(0, 1, (21, 2)), 6).tolist() if landmarks else None,
        "leading_hand": "right",
    }


def _crops_dir(tmp_path, entries, class_names=CLASSES, blank_lines=False, name="crops"):
    out = tmp_path / name
    out.mkdir(exist_ok=True)
    write_crop_info(out, CropInfo(size=64, box_scale=1.5, class_names=list(class_names), source="/data", format="v2"))
    write_manifest(out / MANIFEST_NAME, entries)
    if blank_lines:
        p = out / MANIFEST_NAME
        p.write_bytes(p.read_bytes().replace(b"\n", b"\n\n", 3))
    return out


def _entries(n=40):
    labels = ["call", "fist", NO_GESTURE, "palm"]
    return [_entry(i, labels[i % 4], ("train", "val", "test")[i % 3], landmarks=i % 5 != 0) for i in range(n)]


# --------------------------------------------------------------------------- from_manifest
@pytest.mark.parametrize("blank_lines", [False, True])
def test_from_manifest_fills_arrays_row_by_row(tmp_path, blank_lines):
    entries = _entries()
    out = _crops_dir(tmp_path, entries, blank_lines=blank_lines)
    t = HandTable.from_manifest(out)
    assert t.class_names == CLASSES and len(t) == len(entries)
    assert t.landmarks.shape == (len(entries), 21, 2) and t.image_size.shape == (len(entries), 2)
    for i, e in enumerate(entries):
        assert t.keys[i] == e["key"] and t.split[i] == e["split"] and t.user_id[i] == e["user_id"]
        assert t.class_names[t.labels[i]] == e["label"]
        assert t.crop_paths[i] == str(out / e["crop"])
        assert t.has_landmarks[i] == (e["landmarks"] is not None)
        if e["landmarks"] is not None:
            np.testing.assert_allclose(t.landmarks[i], e["landmarks"], atol=1e-6)
        else:
            assert not t.landmarks[i].any()
        np.testing.assert_allclose(t.bbox[i], e["bbox"])
    assert (t.image_size == [1920, 1080]).all() and (t.index == np.arange(len(entries))).all()
    assert t.meta["dropped_labels"] == {} and t.meta["crop_info"]["class_names"] == list(CLASSES)


def test_from_manifest_streams_instead_of_holding_every_entry(tmp_path):
    # a list of dicts with nested landmark lists is ~30x the size of the arrays (GBs on full HaGRID)
    out = _crops_dir(tmp_path, [_entry(i, "call") for i in range(3000)])
    tracemalloc.start()
    try:
        read_manifest(out / MANIFEST_NAME)
        as_list = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        t = HandTable.from_manifest(out)
        streamed = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(t) == 3000
    assert streamed < as_list / 4, (streamed, as_list)


def test_from_manifest_names_the_line_of_a_bad_entry(tmp_path):
    entries = _entries(6)
    entries[4]["bbox"] = [0.1, 0.2]
    out = _crops_dir(tmp_path, entries)
    with pytest.raises(DataError, match="line 5: bbox: expected 4 numbers") as e:
        HandTable.from_manifest(out)
    assert e.value.path == str(out / MANIFEST_NAME)
    entries[4] = _entry(4, "like")  # not in crop_info's class list, no class list asked for
    out = _crops_dir(tmp_path, entries)
    with pytest.raises(DataError, match="line 5: label 'like' is not in the class set"):
        HandTable.from_manifest(out)


def test_from_manifest_drops_labels_outside_the_requested_classes(tmp_path, caplog):
    # e.g. an 18-class checkpoint evaluated on crops made with no_gesture as a 19th class
    entries = _entries()
    out = _crops_dir(tmp_path, entries)
    asked = ("palm", "call", "fist")  # the checkpoint's order, not crop_info's
    with caplog.at_level(logging.INFO, logger="data_loaders.hand_table"):
        t = HandTable.from_manifest(out, asked)
    keep = [e for e in entries if e["label"] in asked]
    assert t.class_names == asked and len(t) == len(keep)
    assert t.meta["dropped_labels"] == {NO_GESTURE: len(entries) - len(keep)}
    assert [t.class_names[k] for k in t.labels] == [e["label"] for e in keep]
    assert list(t.keys) == [e["key"] for e in keep] and (t.index == np.arange(len(keep))).all()
    assert any("dropped" in m for m in caplog.messages)

    # a requested class that was not cropped is an empty class (and a warning), not an error
    with caplog.at_level(logging.WARNING, logger="data_loaders.hand_table"):
        t = HandTable.from_manifest(out, ("call", "like"))
    assert t.class_names == ("call", "like") and set(t.labels) == {0}
    assert any("like" in m for m in caplog.messages)

    with pytest.raises(DataError, match="none of the requested classes"):
        HandTable.from_manifest(out, ("like", "peace"))
    # crop_info lists fist, but no fist hand was cropped
    only_call = _crops_dir(tmp_path, [e for e in entries if e["label"] == "call"], name="only_call")
    with pytest.raises(DataError, match="no rows of the requested classes"):
        HandTable.from_manifest(only_call, ("fist",))


# --------------------------------------------------------------------------- from_records
def test_from_records_leaves_out_hands_whose_image_cannot_be_read(tmp_path, caplog):
    specs = make_specs(("call", "fist", "palm"), per_class=3)
    root = write_v2(tmp_path / "v2", specs)
    cs = make_class_set(("call", "fist", "palm"), include_no_gesture=True)
    ann = load_hagrid(root, cs)
    missing, corrupt = specs[1], specs[3]
    image_path(root, missing).unlink()
    image_path(root, corrupt).write_bytes(b"not a jpeg at all")
    bad = {missing.uuid: "missing_image", corrupt.uuid: "corrupt_image"}
    with caplog.at_level(logging.WARNING, logger="data_loaders.hand_table"):
        t = HandTable.from_records(ann.records, cs, image_size)
    good = [r for r in ann.records if r.uuid not in bad]
    assert len(t) == len(good) and list(t.keys) == [r.key for r in good]
    assert (t.index == np.arange(len(good))).all() and (t.image_size == [96, 72]).all()
    expected = {}
    for r in ann.records:
        if r.uuid in bad:
            expected[bad[r.uuid]] = expected.get(bad[r.uuid], 0) + 1
    assert t.meta["skipped"] == expected and t.meta["skipped_hands"] == sum(expected.values())
    assert any(missing.uuid in x for x in t.meta["skipped_examples"])
    assert any(str(image_path(root, corrupt)) in x for x in t.meta["skipped_examples"])
    warnings = [m for m in caplog.messages if "left out" in m]
    assert len(warnings) == 1
    assert [t.class_names[k] for k in t.labels] == [r.label for r in good]
    m = np.array([r.landmarks is not None for r in good])
    assert (t.has_landmarks == m).all()


def test_from_records_with_every_image_readable_skips_nothing(tmp_path):
    specs = make_specs(("call",), per_class=2)
    root = write_v2(tmp_path / "v2", specs)
    cs = make_class_set(["call"])
    t = HandTable.from_records(load_hagrid(root, cs).records, cs, image_size)
    assert len(t) == 2 and t.meta["skipped"] == {} and t.meta["skipped_hands"] == 0
