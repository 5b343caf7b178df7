"""Reading HaGRID v1 and v2, class sets, subject splits and the dataset summary."""
from __future__ import annotations

import json
import logging
from collections import Counter

import numpy as np
import pytest
from hagrid_fixtures import count_hands, edit_record, make_specs, write_v1, write_v2

from common.errors import DataError
from data_loaders.classes import GESTURES_18, GESTURES_33, NO_GESTURE, make_class_set
from data_loaders.hagrid import detect_format, load_hagrid
from data_loaders.splits import find_subject_leaks, split_by_subject, subject_split
from data_loaders.summary import draw_samples, format_table, split_totals, summarize, write_summary_json

CLASSES3 = ("call", "fist", "palm")


@pytest.fixture
def v2_specs():
    return make_specs(CLASSES3, per_class=4)


@pytest.fixture
def v2_root(tmp_path, v2_specs):
    return write_v2(tmp_path / "v2", v2_specs)


# --------------------------------------------------------------------------- format detection
def test_detect_format(tmp_path, v2_root):
    assert detect_format(v2_root) == "v2"
    v1 = write_v1(tmp_path / "v1", make_specs(CLASSES3, 1, groups=("train_val",)))
    assert detect_format(v1) == "v1"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no HaGRID annotations found") as e:
        detect_format(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(e.value)
    with pytest.raises(DataError, match="does not exist"):
        detect_format(tmp_path / "nope")


# --------------------------------------------------------------------------- v2
@pytest.mark.parametrize("meta", ["absent", "null", "dict"])
def test_v2_records_match_annotations(tmp_path, v2_specs, meta):
    root = write_v2(tmp_path / "v2", v2_specs, meta=meta)
    ann = load_hagrid(root, make_class_set(CLASSES3, include_no_gesture=True))
    assert ann.format == "v2"
    assert len(ann.records) == sum(s.n_hands for s in v2_specs)
    by_key = {r.key: r for r in ann.records}
    for s in v2_specs:
        for i, (label, box, lm) in enumerate(zip(s.labels, s.bboxes, s.landmarks)):
            r = by_key[f"{s.uuid}_{i}"]
            assert (r.label, r.split, r.user_id, r.hand) == (label, s.group, s.user_id, i)
            assert r.bbox == pytest.approx(box)
            assert r.image_path.is_file() and r.image_path.name == f"{s.uuid}.jpg"
            if lm:
                assert r.landmarks.shape == (21, 2) and r.landmarks.dtype == np.float32
                np.testing.assert_allclose(r.landmarks, lm, atol=1e-6)
            else:
                assert r.landmarks is None  # empty list -> None, not an error
            assert r.leading_hand == (None if label == NO_GESTURE else "right")
    assert not ann.skipped.counts and not ann.degraded.counts


@pytest.mark.parametrize("which", ["all", "one"])  # one file-wide array / hand by hand
def test_xyz_landmarks_keep_xy(tmp_path, v2_specs, which):
    changed = v2_specs if which == "all" else v2_specs[1:2]
    for s in changed:
        s.landmarks = [[[x, y, 0.5] for x, y in lm] if lm else [] for lm in s.landmarks]
    ann = load_hagrid(write_v2(tmp_path / "v2", v2_specs), make_class_set(CLASSES3))
    for r in ann.records:
        s = next(s for s in v2_specs if s.uuid == r.uuid)
        if s.landmarks[r.hand]:
            np.testing.assert_allclose(r.landmarks, [p[:2] for p in s.landmarks[r.hand]], atol=1e-6)
    assert not ann.degraded.counts


def test_v2_splits_argument(v2_root, v2_specs):
    ann = load_hagrid(v2_root, make_class_set(CLASSES3), splits=["val"])
    assert {r.split for r in ann.records} == {"val"}
    assert len(ann.records) == count_hands([s for s in v2_specs if s.group == "val"], CLASSES3)
    with pytest.raises(DataError, match="unknown split"):
        load_hagrid(v2_root, make_class_set(CLASSES3), splits=["vall"])


# --------------------------------------------------------------------------- class sets
def test_class_sets(v2_root, v2_specs):
    n_gesture = count_hands(v2_specs, CLASSES3)
    n_ng = count_hands(v2_specs, [NO_GESTURE])
    ann = load_hagrid(v2_root)  # default: the 18 gestures
    assert ann.class_set.names == GESTURES_18 and len(ann.records) == n_gesture
    assert ann.excluded.counts == {"excluded_label:no_gesture": n_ng}  # counted, not an error
    assert not ann.skipped.counts
    with_ng = load_hagrid(v2_root, make_class_set("hagrid18", include_no_gesture=True))
    assert with_ng.class_set.names[-1] == NO_GESTURE and len(with_ng.class_set) == 19
    assert len(with_ng.records) == n_gesture + n_ng
    assert len(load_hagrid(v2_root, make_class_set("hagrid33")).class_set) == len(GESTURES_33)
    two = load_hagrid(v2_root, make_class_set("call,fist"))
    assert {r.label for r in two.records} == {"call", "fist"}
    # palm.json holds only palm and no_gesture hands: it is not even parsed
    assert two.excluded.counts["excluded_file:palm"] == 3  # one file per split


# --------------------------------------------------------------------------- v1
@pytest.mark.parametrize("layout", ["class_dirs", "archive"])
def test_v1_layouts_find_images(tmp_path, layout):
    specs = make_specs(CLASSES3, 6, groups=("train_val", "test"), n_users=6)
    root = write_v1(tmp_path / "v1", specs, layout=layout)
    ann = load_hagrid(root, make_class_set(CLASSES3, include_no_gesture=True))
    assert ann.format == "v1"
    assert len(ann.records) == sum(s.n_hands for s in specs)
    assert all(r.image_path.is_file() for r in ann.records)
    assert {r.split for r in ann.records} <= {"train", "val", "test"}
    test_uuids = {s.uuid for s in specs if s.group == "test"}
    assert {r.uuid for r in ann.records if r.split == "test"} == test_uuids
    r = next(r for r in ann.records if r.landmarks is not None)
    assert r.landmarks.shape == (21, 2)


def test_v1_train_val_split_by_subject(tmp_path):
    specs = make_specs(CLASSES3, 20, groups=("train_val",), n_users=30)
    root = write_v1(tmp_path / "v1", specs)
    ann = load_hagrid(root, make_class_set(CLASSES3), val_fraction=0.2, seed=1)
    splits = {r.split for r in ann.records}
    assert splits == {"train", "val"}
    assert find_subject_leaks((r.user_id, r.split) for r in ann.records) == {}
    again = load_hagrid(root, make_class_set(CLASSES3), val_fraction=0.2, seed=1)
    assert [r.split for r in again.records] == [r.split for r in ann.records]  # seeded
    other = load_hagrid(root, make_class_set(CLASSES3), val_fraction=0.2, seed=2)
    assert [r.split for r in other.records] != [r.split for r in ann.records]


def test_v1_subject_splits_do_not_depend_on_what_else_is_loaded(tmp_path):
    # the same person must land in the same split whichever classes (or no_gesture) are loaded,
    # or a model trained with one class set is evaluated on its own training subjects with another
    specs = make_specs(("call", "fist", "palm", "like"), 8, groups=("train_val",), n_users=24, no_gesture_every=2)
    root = write_v1(tmp_path / "v1", specs)
    loads = [make_class_set(["call", "fist", "palm", "like"]),
             make_class_set(["call", "fist", "palm", "like"], include_no_gesture=True),
             make_class_set(["fist"]), make_class_set(["palm", "like"], include_no_gesture=True)]
    seen: dict[str, set[str]] = {}
    for cs in loads:
        for r in load_hagrid(root, cs, val_fraction=0.3, seed=5).records:
            seen.setdefault(r.user_id, set()).add(r.split)
    assert len(seen) == 24
    assert {u: s for u, s in seen.items() if len(s) > 1} == {}
    assert set().union(*seen.values()) == {"train", "val"}


def test_split_by_subject_is_a_function_of_user_and_seed():
    fr = {"train": 0.8, "val": 0.1, "test": 0.1}
    users = [f"user-{i}" for i in range(4000)]
    out, _ = split_by_subject(users, fr, seed=7)
    share = Counter(out)
    for name, f in fr.items():  # shares hold in expectation over users
        assert abs(share[name] / len(users) - f) < 0.03
    mine = dict(zip(users, out))
    # another population (a subset, with repeats, in another order, with strangers) changes no one's split
    other = users[::-7] * 3 + [f"stranger-{i}" for i in range(100)]
    out2, _ = split_by_subject(other, fr, seed=7)
    assert all(mine[u] == s for u, s in zip(other, out2) if u in mine)
    assert [subject_split(u, fr, seed=7) for u in users[:50]] == out[:50]
    out3, _ = split_by_subject(users, fr, seed=8)
    assert out3 != out


def test_v1_missing_user_ids_form_one_group(tmp_path, caplog):
    specs = make_specs(CLASSES3, 10, groups=("train_val",), n_users=10, null_user_every=4)
    root = write_v1(tmp_path / "v1", specs)
    with caplog.at_level(logging.WARNING, logger="data_loaders.hagrid"):
        ann = load_hagrid(root, make_class_set(CLASSES3), val_fraction=0.3)
    n_null = sum(s.user_id is None for s in specs)
    assert n_null > 0
    assert {r.split for r in ann.records if r.user_id is None} == {"train"}
    msgs = [w for w in ann.warnings if "no user_id" in w]
    assert len(msgs) == 1 and msgs[0].startswith(f"{n_null} images")
    assert any("no user_id" in m for m in caplog.messages)


def test_v1_too_few_users_for_a_split_is_a_warning(tmp_path):
    specs = make_specs(CLASSES3, 1, groups=("train_val",), n_users=3)
    root = write_v1(tmp_path / "v1", specs)
    fr = {"train": 0.9, "val": 0.1}
    seed = next(k for k in range(100) if all(subject_split(s.user_id, fr, k) == "train" for s in specs))
    ann = load_hagrid(root, make_class_set(CLASSES3), val_fraction=0.1, seed=seed)
    assert {r.split for r in ann.records} == {"train"}
    assert any("val got no hands" in w and "3 user_ids" in w for w in ann.warnings)


def test_v1_subsample_gets_three_disjoint_splits(tmp_path):
    specs = make_specs(CLASSES3, 20, groups=("subsample",), n_users=40)
    ann = load_hagrid(write_v1(tmp_path / "v1", specs), make_class_set(CLASSES3))
    assert {r.split for r in ann.records} == {"train", "val", "test"}
    assert find_subject_leaks((r.user_id, r.split) for r in ann.records) == {}


def test_split_by_subject_keeps_users_together():
    users = [f"u{i % 17}" for i in range(500)] + [None] * 20
    out, n_unknown = split_by_subject(users, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=3)
    assert n_unknown == 20
    assert find_subject_leaks(zip(users, out)) == {}
    assert all(s == "train" for u, s in zip(users, out) if u is None)


def test_planted_leak_is_found(tmp_path, v2_specs):
    train_user = next(s.user_id for s in v2_specs if s.group == "train")
    val_spec = next(s for s in v2_specs if s.group == "val")
    root = write_v2(tmp_path / "v2", v2_specs)
    edit_record(root, val_spec, user_id=train_user)
    ann = load_hagrid(root, make_class_set(CLASSES3))
    leaks = find_subject_leaks((r.user_id, r.split) for r in ann.records)
    assert leaks == {train_user: ["train", "val"]}
    assert summarize(ann)["subject_leaks"] == leaks
    assert "SUBJECT LEAKS" in format_table(summarize(ann))


# --------------------------------------------------------------------------- summary
def test_summary_schema_and_counts(tmp_path, v2_root, v2_specs):
    ann = load_hagrid(v2_root, make_class_set(CLASSES3, include_no_gesture=True))
    s = summarize(ann)
    assert set(s) == {"dataset", "format", "class_names", "splits", "skipped", "subject_leaks", "split_totals"}
    assert s["format"] == "v2" and s["class_names"] == [*CLASSES3, NO_GESTURE]
    for split, per_class in s["splits"].items():
        assert set(per_class) == set(s["class_names"])
        for cls, row in per_class.items():
            assert set(row) == {"images", "hands", "hands_with_landmarks", "users"}
            mine = [x for x in v2_specs if x.group == split]
            hands = [(x, i) for x in mine for i, lab in enumerate(x.labels) if lab == cls]
            assert row["hands"] == len(hands)
            assert row["images"] == len({x.uuid for x, _ in hands})
            assert row["hands_with_landmarks"] == sum(bool(x.landmarks[i]) for x, i in hands)
            assert row["users"] == len({x.user_id for x, _ in hands})
    path = tmp_path / "g" / "data_summary.json"
    write_summary_json(s, path)
    assert json.loads(path.read_text()) == s
    totals = split_totals(ann)
    assert s["split_totals"] == totals
    assert totals["val"]["images"] == sum(x.group == "val" for x in v2_specs)
    table = format_table(s, totals)
    assert "no_gesture" in table and "subject leaks: none" in table


def test_draw_samples(tmp_path, v2_root):
    ann = load_hagrid(v2_root, make_class_set(CLASSES3, include_no_gesture=True))
    out = draw_samples(ann, tmp_path / "g" / "samples.png", n=4, seed=0)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- the real sample
@pytest.mark.sample
def test_real_sample_counts(hagrid_sample):
    ann = load_hagrid(hagrid_sample, make_class_set("hagrid18", include_no_gesture=True))
    assert ann.format == "v2"
    assert len(ann.records) == 1911
    assert sum(r.landmarks is not None for r in ann.records) == 1860
    s = summarize(ann)
    per_split = {sp: sum(row["hands"] for c, row in rows.items() if c != NO_GESTURE)
                 for sp, rows in s["splits"].items()}
    assert per_split == {"train": 1186, "val": 167, "test": 297}
    assert s["subject_leaks"] == {}
    assert not ann.skipped.counts and not ann.degraded.counts
    assert all(r.user_id is None for r in ann.records if r.split == "train")
