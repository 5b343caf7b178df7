"""The crop step: geometry, draft decoding, manifest, resuming, the CLI, and the real sample."""
from __future__ import annotations

import json
import math
import os
import shutil
from collections import Counter

import numpy as np
import pytest
from hagrid_fixtures import ImageSpec, count_hands, image_path, make_specs, write_jpeg, write_v2
from PIL import Image

import data_loaders.crop as crop_mod
from common.errors import DataError
from common.files import TMP_PREFIX, TMP_SUFFIX
from data_loaders.classes import NO_GESTURE, make_class_set
from data_loaders.crop import crop_dataset, cut_square, draft_request, square_box
from data_loaders.hagrid import load_hagrid
from data_loaders.hand_table import HandTable
from data_loaders.images import open_rgb
from data_loaders.manifest import MANIFEST_KEYS, load_crop_info, read_crop_info, read_manifest
from data_loaders.summary import SUMMARY_NAME
from engine.cli import main

CLASSES3 = ("call", "fist", "palm")


@pytest.fixture
def specs():
    return make_specs(CLASSES3, per_class=3)


def _crop(root, out, **kw):
    kw.setdefault("class_set", make_class_set(CLASSES3, include_no_gesture=True))
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    return crop_dataset(root, out, **kw)


def _tree(out):
    """{relative path: bytes} of every crop."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.jpg"))}


# --------------------------------------------------------------------------- geometry
def test_square_box_is_centred_and_scaled():
    # box 100x25 px at (100, 100): centre (150, 112.5), side 150
    assert square_box((0.25, 0.5, 0.25, 0.125), (400, 200), 1.5) == (75, 38, 150)
    assert square_box((0.25, 0.5, 0.25, 0.125), (400, 200), 1.0) == (100, 62, 100)


def test_padding_where_the_square_leaves_the_image(tmp_path):
    p = tmp_path / "white.jpg"
    Image.new("RGB", (100, 80), (255, 255, 255)).save(p, quality=95)
    img = open_rgb(p)
    box = square_box((0.0, 0.0, 0.2, 0.25), (100, 80), 2.0)  # top-left corner box: square starts at -10,-10
    assert box[:2] == (-10, -10)
    crop = np.asarray(cut_square(img, box, 40))
    assert crop[:8, :8].max() < 10  # padded with the constant fill (0)
    assert crop[-8:, -8:].min() > 240  # image content


def test_draft_decode_keeps_enough_pixels_and_matches_full_decode(tmp_path):
    from hagrid_fixtures import write_jpeg

    p = write_jpeg(tmp_path / "big.jpg", (800, 600), seed=3)
    bbox = (0.3, 0.3, 0.4, 0.5)
    box = square_box(bbox, (800, 600), 1.5)  # side 450 px
    want = draft_request((800, 600), [box[2]], 64)
    drafted = open_rgb(p, draft_to=want)
    scale = drafted.info["scale"]
    assert scale == 0.125 or scale == 0.25 or scale == 0.5
    assert box[2] * scale >= 64  # still at least `size` source pixels per side
    full = open_rgb(p)
    assert full.info["scale"] == 1.0 and drafted.info["original_size"] == (800, 600)
    a = np.asarray(cut_square(drafted, box, 64), dtype=np.float32)
    b = np.asarray(cut_square(full, box, 64), dtype=np.float32)
    assert np.abs(a - b).mean() < 6  # same region, same content
    assert draft_request((800, 600), [100], 128) is None  # upscaled crop: full decode


def _full_size_cut(img, box, size):
    """The reference: the whole padded square at decoded scale, then resized (unbounded memory)."""
    s = img.info.get("scale", 1.0)
    fx0, fy0, fx1, fy1 = box[0] * s, box[1] * s, (box[0] + box[2]) * s, (box[1] + box[2]) * s
    ix0, iy0 = math.floor(fx0), math.floor(fy0)
    region = img.crop((ix0, iy0, math.ceil(fx1), math.ceil(fy1)))  # PIL pads with 0
    return region.resize((size, size), Image.Resampling.BICUBIC, box=(fx0 - ix0, fy0 - iy0, fx1 - ix0, fy1 - iy0))


@pytest.mark.parametrize("box, size", [
    ((100, 100, 200), 64), ((-50, -30, 300), 64), ((700, 500, 250), 128),  # canvas at full size: identical
    ((-300, -300, 1400), 16), ((-2000, -2000, 4800), 32), ((-7, -9, 600), 16), ((790, 590, 700), 32),  # reduced
])
def test_cut_square_matches_the_full_size_padded_square(tmp_path, box, size):
    img = open_rgb(write_jpeg(tmp_path / "a.jpg", (800, 600), seed=1))
    a = np.asarray(cut_square(img, box, size), np.float32)
    b = np.asarray(_full_size_cut(img, box, size), np.float32)
    if box[2] < 4 * size:
        assert (a == b).all()
    else:  # averaged over blocks first: within rounding, and no shifted edge
        assert np.abs(a - b).mean() < 0.6 and np.abs(a - b).max() < 16


# --------------------------------------------------------------------------- pixel alignment
MARKERS = [(0.4123, 0.6071), (0.0312, 0.0457)]  # the second hand's square leaves the image (padded)


def _marker_dataset(root):
    """A 1920x1080 JPEG, black with a white disk at landmark 0 of each hand (centred in continuous
    pixel coordinates ``lm * (W, H)``), annotated as HaGRID v2."""
    W, H = 1920, 1080
    boxes = [[0.34, 0.5, 0.15, 0.25], [0.0, 0.0, 0.09, 0.14]]
    lms = [[list(m)] + [[b[0] + b[2] / 2, b[1] + b[3] / 2]] * 20 for m, b in zip(MARKERS, boxes)]
    spec = ImageSpec(uuid="marker-0000", cls="call", group="train", user_id="u1", labels=["call", "call"],
                     bboxes=boxes, landmarks=lms, size=(W, H))
    write_v2(root, [spec])
    yy, xx = np.mgrid[0:H, 0:W] + 0.5  # pixel centres
    img = np.zeros((H, W), np.uint8)
    for mx, my in MARKERS:
        img[(xx - mx * W) ** 2 + (yy - my * H) ** 2 <= 12 ** 2] = 255
    Image.fromarray(img).convert("RGB").save(image_path(root, spec), quality=95)
    return root


@pytest.mark.parametrize("draft", [True, False])
def test_landmarks_land_on_the_crop_pixels_they_mark(tmp_path, monkeypatch, draft):
    root = _marker_dataset(tmp_path / "v2")
    scales = []
    real_open = crop_mod.open_rgb

    def open_and_record(path, draft_to=None):
        img = real_open(path, draft_to=draft_to if draft else None)
        scales.append(img.info["scale"])
        return img

    monkeypatch.setattr(crop_mod, "open_rgb", open_and_record)
    size = 64
    _crop(root, tmp_path / "out", class_set=make_class_set(["call"]), size=size)
    assert scales == ([0.25] if draft else [1.0])  # 1/4 draft: the 432 px square still has >= 64 px
    entries = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert len(entries) == 2 and entries[1]["crop_box"][0] < 0  # the second square is padded
    for e in entries:
        lm0 = np.array(e["landmarks"][0])
        want = (lm0 * e["image_size"] - e["crop_box"][:2]) / e["crop_box"][2] * size  # architecture.md
        crop = np.asarray(Image.open(tmp_path / "out" / e["crop"]).convert("L"), np.float64)
        w = np.where(crop > crop.max() / 2, crop, 0.0)
        yy, xx = np.mgrid[0:size, 0:size] + 0.5
        got = np.array([(w * xx).sum(), (w * yy).sum()]) / w.sum()
        assert np.abs(got - want).max() < 0.4, (e["key"], got, want)  # a half-pixel slip would show


# --------------------------------------------------------------------------- outputs
def test_crop_outputs_and_manifest(tmp_path, root, specs):
    out = tmp_path / "crops"
    s = _crop(root, out, size=32, box_scale=1.5)
    n = sum(x.n_hands for x in specs)
    assert s.n_written == n and s.n_reused == 0 and not s.skipped.counts
    entries = read_manifest(out / "manifest.jsonl")
    assert len(entries) == n
    for e in entries:
        assert tuple(e) == MANIFEST_KEYS
        crop = out / e["crop"]
        assert crop.name == f"{e['uuid']}_{e['hand']}.jpg" and crop.parent.parent.name == e["split"]
        with Image.open(crop) as im:
            assert im.size == (32, 32) and im.format == "JPEG"
        W, H = e["image_size"]
        x, y, w, h = e["bbox"]
        x0, y0, side = e["crop_box"]
        assert abs(side - max(w * W, h * H) * 1.5) <= 1
        assert abs(x0 + side / 2 - (x + w / 2) * W) <= 1 and abs(y0 + side / 2 - (y + h / 2) * H) <= 1
        if e["landmarks"] is not None:
            lm = (np.array(e["landmarks"]) * [W, H] - [x0, y0]) / side  # crop coordinates
            assert ((lm > 0) & (lm < 1)).all()
    info = load_crop_info(out)
    assert (info.size, info.box_scale, info.format) == (32, 1.5, "v2")
    assert info.class_names == [*CLASSES3, NO_GESTURE]
    assert read_crop_info(out)["class_names"] == info.class_names  # dict form, for checkpoints
    assert (out / "skipped.csv").read_text().splitlines() == ["file,uuid,hand,reason,outcome,detail"]
    (out / "plain").write_text("")  # atomic writes get the permissions of a plain open()
    assert os.stat(out / "manifest.jsonl").st_mode == os.stat(out / "plain").st_mode


def test_pool_workers_give_the_same_result(tmp_path, root):
    _crop(root, tmp_path / "a", size=32, workers=1)
    _crop(root, tmp_path / "b", size=32, workers=2)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert (tmp_path / "a/manifest.jsonl").read_bytes() == (tmp_path / "b/manifest.jsonl").read_bytes()


def test_excluded_no_gesture_is_counted_not_skipped(tmp_path, root, specs):
    s = _crop(root, tmp_path / "c", class_set=make_class_set(CLASSES3), size=32)
    assert s.n_crops == count_hands(specs, CLASSES3)
    assert s.excluded.counts == {"excluded_label:no_gesture": count_hands(specs, [NO_GESTURE])}
    assert not s.skipped.counts and not s.annotation_skipped.counts
    assert "excluded by the class set (not errors)" in str(s)


# --------------------------------------------------------------------------- resuming
def test_resume_after_interruption(tmp_path, root, monkeypatch):
    ref = tmp_path / "ref"
    _crop(root, ref, size=32)
    out = tmp_path / "out"

    # 1. interrupt a run after a few crops (like Ctrl-C): no manifest yet, complete crops only
    real_save, calls = crop_mod.atomic_save_jpeg, []

    def save_then_interrupt(img, path, quality):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(path)
        real_save(img, path, quality)

    monkeypatch.setattr(crop_mod, "atomic_save_jpeg", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        _crop(root, out, size=32)
    monkeypatch.undo()
    assert not (out / "manifest.jsonl").exists() and len(_tree(out)) == 5

    # 2. a killed process may also leave a temp file, and a crop may have been deleted
    kept = sorted(out.rglob("*.jpg"))
    kept[0].unlink()
    kept = kept[1:]
    stray = kept[0].parent / f"{TMP_PREFIX}{kept[0].name}.dead{TMP_SUFFIX}"
    stray.write_bytes(b"half a jpeg")
    mtimes = {p: p.stat().st_mtime_ns for p in kept}

    s = _crop(root, out, size=32)
    assert s.n_reused == len(kept) and s.n_written == s.n_crops - len(kept)
    assert {p: p.stat().st_mtime_ns for p in kept} == mtimes  # existing crops untouched
    assert not stray.exists()
    assert _tree(out) == _tree(ref)
    assert (out / "manifest.jsonl").read_bytes() == (ref / "manifest.jsonl").read_bytes()

    # 3. a finished run resumed again decodes nothing
    monkeypatch.setattr(crop_mod, "open_rgb", lambda *a, **k: pytest.fail("decoded an image"))
    again = _crop(root, out, size=32)
    assert again.n_written == 0 and again.n_reused == s.n_crops


def test_crop_writes_the_manifest_as_a_stream(tmp_path, root, specs, monkeypatch):
    real, seen = crop_mod.write_manifest, []

    def write(path, entries):
        seen.append(type(entries))
        assert not isinstance(entries, (list, tuple)), "the whole manifest was built in memory"
        return real(path, entries)

    monkeypatch.setattr(crop_mod, "write_manifest", write)
    s = _crop(root, tmp_path / "o", size=24)
    assert seen and len(read_manifest(tmp_path / "o" / "manifest.jsonl")) == s.n_crops


def test_cropping_some_splits_keeps_the_other_splits_in_the_manifest(tmp_path, root, specs):
    out = tmp_path / "o"
    full = _crop(root, out, size=24)
    before = (out / "manifest.jsonl").read_bytes().splitlines()
    by_split = Counter(json.loads(x)["split"] for x in before)
    assert set(by_split) == {"train", "val", "test"}

    # redo val only (the CLI, as a user would), with a narrower class set (no no_gesture)
    assert main(["crop", "--data-dir", str(root), "--out", str(out), "--classes", ",".join(CLASSES3),
                 "--splits", "val", "--size", "24", "--workers", "1", "--no-progress"]) == 0
    after = (out / "manifest.jsonl").read_bytes().splitlines()
    kept = [x for x in before if json.loads(x)["split"] != "val"]
    assert after[:len(kept)] == kept  # train and test lines unchanged
    val = [json.loads(x) for x in after[len(kept):]]
    assert {e["split"] for e in val} == {"val"} and NO_GESTURE not in {e["label"] for e in val}
    assert len(val) == count_hands([x for x in specs if x.group == "val"], CLASSES3)
    info = load_crop_info(out)
    assert info.splits == ["val"] and info.class_names == [*CLASSES3, NO_GESTURE]  # kept labels still listed
    per = Counter((json.loads(x)["split"], json.loads(x)["label"]) for x in after)
    assert info.counts == {sp: {c: per[sp, c] for c in info.class_names} for sp in ("train", "test", "val")}
    table = HandTable.from_manifest(out)
    assert set(table.split) == {"train", "val", "test"} and len(table) == len(after)
    assert sum(info.counts["train"].values()) == sum(full.counts()["train"].values())

    # a run over every split replaces the manifest
    again = _crop(root, out, size=24)
    assert sorted((out / "manifest.jsonl").read_bytes().splitlines()) == sorted(before)
    assert again.n_reused == full.n_crops and not again.kept

    # kept lines from crops made with other settings would be wrong: with --overwrite they are dropped
    s = _crop(root, out, size=32, splits=["val"], overwrite=True)
    assert {e["split"] for e in read_manifest(out / "manifest.jsonl")} == {"val"}
    assert any("were dropped" in w for w in s.warnings)


def test_resume_from_another_dataset_is_refused(tmp_path, root, specs):
    out = tmp_path / "o"
    _crop(root, out, size=24)
    other = shutil.copytree(root, tmp_path / "other")  # same uuids, same settings, another dataset
    with pytest.raises(DataError, match="made from another dataset") as e:
        _crop(other, out, size=24)
    assert str(other.resolve()) in str(e.value) and str(root.resolve()) in str(e.value)
    assert "--overwrite" in str(e.value) and "--out" in str(e.value)
    with pytest.raises(DataError, match="another dataset .* and with other settings .*size: 24 != 32"):
        _crop(other, out, size=32)
    s = _crop(other, out, size=24, overwrite=True)
    assert s.n_written == s.n_crops and load_crop_info(out).source == str(other.resolve())


def test_overwrite_redoes_crops(tmp_path, root):
    out = tmp_path / "o"
    first = _crop(root, out, size=32)
    again = _crop(root, out, size=32, overwrite=True)
    assert again.n_written == first.n_written and again.n_reused == 0


# --------------------------------------------------------------------------- CLI
def test_cli_crop_and_inspect_agree(tmp_path, root, capsys):
    out, graphs = tmp_path / "crops", tmp_path / "graphs"
    common = ["--data-dir", str(root), "--classes", ",".join(CLASSES3), "--include-no-gesture"]
    assert main(["crop", *common, "--out", str(out), "--size", "24", "--workers", "1", "--no-progress"]) == 0
    assert main(["inspect", *common, "--graphs-dir", str(graphs), "--samples", "2"]) == 0
    printed = capsys.readouterr().out
    assert "crops in" in printed and "subject leaks: none" in printed
    summary = json.loads((graphs / SUMMARY_NAME).read_text())
    assert (graphs / "data_samples.png").is_file()
    counts = load_crop_info(out).counts
    assert counts == {sp: {c: row["hands"] for c, row in rows.items()} for sp, rows in summary["splits"].items()}


def test_create_cropped_dataset_script_uses_the_cli(tmp_path, root, monkeypatch):
    import runpy
    import sys

    monkeypatch.setattr(sys, "argv", ["create_cropped_dataset.py", "--data-dir", str(root), "--out",
                                      str(tmp_path / "c"), "--classes", "call", "--workers", "1", "--no-progress"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(crop_mod.Path(__file__).parents[1] / "create_cropped_dataset.py"), run_name="__main__")
    assert e.value.code == 0
    assert len(read_manifest(tmp_path / "c" / "manifest.jsonl")) == 3


# --------------------------------------------------------------------------- the real sample
@pytest.fixture(scope="module")
def sample_crops(hagrid_sample, tmp_path_factory):
    """One full crop of the sample (18 gestures), then the same dir with no_gesture added (resumes)."""
    out = tmp_path_factory.mktemp("sample_crops")
    first = crop_dataset(hagrid_sample, out, class_set=make_class_set("hagrid18"), workers=2, progress=False)
    manifest18 = read_manifest(out / "manifest.jsonl")
    code = main(["crop", "--data-dir", str(hagrid_sample), "--out", str(out), "--include-no-gesture",
                 "--workers", "2", "--no-progress"])
    return first, manifest18, code, out


@pytest.mark.sample
@pytest.mark.slow
def test_real_sample_one_crop_per_hand(sample_crops, hagrid_sample):
    first, manifest18, code, out = sample_crops
    assert first.n_crops == first.n_written == 1650 and not first.skipped.counts
    assert len(manifest18) == 1650 and len({e["key"] for e in manifest18}) == 1650
    assert code == 0
    entries = read_manifest(out / "manifest.jsonl")
    assert len(entries) == 1911
    assert sum(e["label"] == NO_GESTURE for e in entries) == 261
    assert len(list(out.rglob("*.jpg"))) == 1911
    with Image.open(out / entries[0]["crop"]) as im:
        assert im.size == (128, 128)
    # the crop counts equal the annotation counts that `inspect` reports
    from data_loaders.summary import summarize

    ann = load_hagrid(hagrid_sample, make_class_set("hagrid18"))
    hands = {sp: {c: row["hands"] for c, row in rows.items()} for sp, rows in summarize(ann)["splits"].items()}
    assert first.counts() == hands


@pytest.mark.sample
def test_real_sample_val_subset(hagrid_sample, tmp_path):
    s = crop_dataset(hagrid_sample, tmp_path / "v", splits=["val"], size=64, workers=2, progress=False)
    assert s.n_crops == 167 and s.splits == ["val"]
    assert {e["split"] for e in read_manifest(tmp_path / "v" / "manifest.jsonl")} == {"val"}


def test_context_box_fills_the_square_outside_the_hand_box():
    """context "box" keeps only the hand's box: the rest of the square is the fill colour, as in HaGRID crop
    sets cut at the box; the square context is untouched otherwise."""
    from PIL import Image

    from data_loaders.crop import box_pixels, cut_square, square_box

    img = Image.new("RGB", (400, 300), (200, 200, 200))
    bbox = (0.25, 0.2, 0.25, 0.5)  # 100 x 150 px at (100, 60)
    sq = square_box(bbox, img.size, 1.0)  # 150 px square: 25 px either side of the box horizontally
    full = np.asarray(cut_square(img, sq, 60))
    boxed = np.asarray(cut_square(img, sq, 60, keep=box_pixels(bbox, img.size)))
    assert (full == 200).all()
    assert (boxed[:, :8] == 0).all() and (boxed[:, -8:] == 0).all()  # 10 px of 60 each side are outside the box
    assert (boxed[:, 12:-12] == 200).all()
