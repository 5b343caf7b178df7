"""Issue 9, crop / image / batch cases: each test pins one defect a careful tester found."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from hagrid_fixtures import ImageSpec, image_path, make_specs, write_v2
from PIL import Image, ImageOps

import data_loaders.crop as crop_mod
from common.errors import DataError, UsageError
from data_loaders.batches import CropDataset, load_crop, load_crops, make_batches
from data_loaders.classes import make_class_set
from data_loaders.crop import LOCK_NAME, crop_dataset
from data_loaders.hand_table import HandTable
from data_loaders.images import image_size, open_rgb
from data_loaders.manifest import load_crop_info, read_manifest
from engine.cli import main

CLASSES3 = ("call", "fist", "palm")
CS = make_class_set(CLASSES3, include_no_gesture=True)


@pytest.fixture
def specs():
    return make_specs(CLASSES3, per_class=3, no_gesture_every=0)


def _crop(root, out, **kw):
    kw.setdefault("class_set", CS)
    kw.setdefault("size", 32)
    return crop_dataset(root, out, workers=1, progress=False, **kw)


def _exif(orientation: int) -> bytes:
    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex.tobytes()


# ------------------------------------------------------------------ 1. EXIF orientation
def test_exif_orientation_is_applied_to_sizes_decodes_and_crops(tmp_path):
    # every orientation: the same pixels and size as PIL's exif_transpose, from header and decode alike
    small = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 50, 3), np.uint8))
    for o in range(1, 9):
        p = tmp_path / f"o{o}.png"
        small.save(p, exif=_exif(o))
        want = ImageOps.exif_transpose(Image.open(p)).convert("RGB")
        got = open_rgb(p)
        assert image_size(p) == got.info["original_size"] == got.size == want.size, o
        assert np.array_equal(np.asarray(got), np.asarray(want)), o

    # a phone photo stored rotated (orientation 6): the hand (a white disk) is where the box says
    W, H, centre = 800, 600, (0.25, 0.3)
    box = [centre[0] - 0.05, centre[1] - 0.05, 0.1, 0.1]
    spec = ImageSpec(uuid="rot-0000", cls="call", group="train", user_id="u1", labels=["call"], bboxes=[box],
                     landmarks=[[]], size=(W, H))
    root = write_v2(tmp_path / "v2", [spec])
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    shown = np.where((xx - centre[0] * W) ** 2 + (yy - centre[1] * H) ** 2 <= 30 ** 2, 255, 0).astype(np.uint8)
    stored = Image.fromarray(shown).convert("RGB").transpose(Image.Transpose.ROTATE_90)  # 600x800 on disk
    stored.save(image_path(root, spec), quality=95, exif=_exif(6))
    assert image_size(image_path(root, spec)) == (W, H)
    drafted = open_rgb(image_path(root, spec), draft_to=(W // 4, H // 4))
    assert drafted.info["original_size"] == (W, H) and drafted.info["scale"] == 0.25 and drafted.size == (200, 150)
    _crop(root, tmp_path / "out", class_set=make_class_set(["call"]))  # 120 px square -> 32 px: drafted
    (e,) = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert e["image_size"] == [W, H]
    crop = np.asarray(Image.open(tmp_path / "out" / e["crop"]).convert("L"), np.float32)
    assert crop[12:20, 12:20].mean() > 200 and crop[:3, :3].mean() < 40  # the disk, centred; dark around


# ------------------------------------------------------------------ 2. one writer per crop folder
def test_crop_folder_has_one_writer_and_settings_are_checked_under_its_lock(tmp_path, root, monkeypatch):
    out = tmp_path / "out"
    real_run, raced = crop_mod._run_tasks, []

    def run_while_another_starts(*a, **k):  # a second run (other size) starts while the first crops
        with pytest.raises(DataError, match="another crop run holds this folder") as e:
            _crop(root, out, size=64)
        raced.append(str(e.value))
        return real_run(*a, **k)

    monkeypatch.setattr(crop_mod, "_run_tasks", run_while_another_starts)
    first = _crop(root, out)
    monkeypatch.undo()
    assert raced and f"pid {os.getpid()}" in raced[0] and "delete" in raced[0] and "\n" not in raced[0]
    assert load_crop_info(out).size == 32 and first.n_written == first.n_crops
    assert {Image.open(p).size for p in out.rglob("*.jpg")} == {(32, 32)}
    assert not (out / LOCK_NAME).exists()  # released

    # released on an error path too
    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(crop_mod, "cut_square", interrupt)
    with pytest.raises(KeyboardInterrupt):
        _crop(root, out, overwrite=True)
    monkeypatch.undo()
    assert not (out / LOCK_NAME).exists()

    # a lock left by a killed run (its pid is gone on this host) is taken over, with a warning
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "then"}))
    s = _crop(root, out)
    assert any("took over the stale lock" in w and str(dead.pid) in w for w in s.warnings)
    assert not (out / LOCK_NAME).exists()


# ------------------------------------------------------------------ 3. damaged crops
def test_damaged_crop_is_redone_on_resume_and_named_when_training_reads_it(tmp_path, root):
    out, ref = tmp_path / "out", tmp_path / "ref"
    _crop(root, ref)
    _crop(root, out)
    crops = sorted(out.rglob("*.jpg"))
    truncated, empty = crops[0], crops[1]
    truncated.write_bytes(truncated.read_bytes()[:300])
    empty.write_bytes(b"")
    s = _crop(root, out)
    assert s.n_written == 2 and sorted(s.repaired) == sorted([str(truncated), str(empty)])
    assert "damaged crops written again: 2" in str(s)
    for p in (truncated, empty):
        assert p.read_bytes() == (ref / p.relative_to(out)).read_bytes()

    # training reads a crop damaged after the manifest was written: the error names it and the repair
    truncated.write_bytes(truncated.read_bytes()[:300])
    table = HandTable.from_manifest(out)
    with pytest.raises(DataError) as e:
        load_crops(table, 32)
    msg = str(e.value)
    assert msg.startswith(f"{truncated}: damaged crop") and "\n" not in msg
    command = msg.split("`")[1]
    assert command.startswith(f"hand-gestures crop --data-dir {root.resolve()} --out {out}")
    ds = CropDataset(table, 32, "wrist")
    i = list(table.crop_paths).index(str(truncated))
    with pytest.raises(DataError, match="rebuilds missing and damaged crops") as e2:
        ds[i]
    assert str(e2.value) == msg
    with pytest.raises(DataError, match=f"--out {out}`"):
        load_crop(str(truncated), 32)  # without a table: the crops folder is still named
    # and the command it names does repair the folder
    assert main([*shlex.split(command)[1:], "--workers", "1", "--no-progress"]) == 0
    assert truncated.read_bytes() == (ref / truncated.relative_to(out)).read_bytes()
    assert load_crops(HandTable.from_manifest(out), 32).shape[0] == len(table)


# ------------------------------------------------------------------ 4. the printed summary
def test_crop_summary_prints_counts_not_object_dumps(tmp_path, root, specs):
    image_path(root, specs[0]).unlink()
    s = _crop(root, tmp_path / "out", class_set=make_class_set(CLASSES3[:2]))  # palm excluded by the class set
    text = str(s)
    assert "bound method" not in text and "SkipLog" not in text
    assert "hands skipped while cropping: 1" in text and "missing_image: 1" in text
    assert "excluded by the class set (not errors): " in text
    excluded = s.excluded.total()
    assert excluded > 0 and f"excluded by the class set (not errors): {excluded}" in text


# ------------------------------------------------------------------ 5. 16-bit images
def test_16_bit_png_named_jpg_is_cropped_like_its_8_bit_version(tmp_path):
    spec = ImageSpec(uuid="deep-0000", cls="call", group="train", user_id="u1", labels=["call"],
                     bboxes=[[0.2, 0.2, 0.5, 0.5]], landmarks=[[]], size=(96, 72))
    grey8 = np.add.outer(np.arange(72) * 2, np.arange(96)).clip(0, 255).astype(np.uint8)
    crops = {}
    for name, img in (("8", Image.fromarray(grey8)), ("16", Image.fromarray(grey8.astype(np.uint16) * 257))):
        root = write_v2(tmp_path / name, [spec])
        img.save(image_path(root, spec), format="PNG")  # a PNG under a .jpg name, as found in the wild
        _crop(root, tmp_path / f"out{name}", class_set=make_class_set(["call"]))
        (e,) = read_manifest(tmp_path / f"out{name}" / "manifest.jsonl")
        crops[name] = np.asarray(Image.open(tmp_path / f"out{name}" / e["crop"]), np.float32)
    assert Image.open(image_path(tmp_path / "16", spec)).mode.startswith("I;16")
    assert crops["16"].mean() < 200  # not the all-white crop of a clipped conversion
    assert np.abs(crops["16"] - crops["8"]).max() <= 1


# ------------------------------------------------------------------ 8. nothing cropped is a failure
def test_non_finite_settings_are_refused_and_a_run_that_crops_nothing_fails(tmp_path, root, specs, capsys):
    common = ["crop", "--data-dir", str(root), "--classes", ",".join(CLASSES3), "--workers", "1", "--no-progress"]
    for bad in ("inf", "nan", "-inf"):
        with pytest.raises(SystemExit) as e:
            main([*common, "--out", str(tmp_path / "o"), f"--box-scale={bad}"])
        assert e.value.code == 2 and "must be a finite number > 0" in capsys.readouterr().err
    for box_scale in (float("inf"), float("nan")):
        with pytest.raises(UsageError, match="--box-scale must be a finite number > 0"):
            _crop(root, tmp_path / "o", box_scale=box_scale)
    with pytest.raises(UsageError, match="--size"):
        _crop(root, tmp_path / "o", size=float("inf"))
    assert not (tmp_path / "o").exists()

    for s in specs:
        image_path(root, s).unlink()
    assert main([*common, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {root.resolve()}: nothing was cropped")
    assert f"missing_image {len(specs)}" in err and "skipped.csv" in err


# ------------------------------------------------------------------ 12. splits named
def test_empty_split_is_named_and_a_missing_split_folder_is_warned(tmp_path, root, specs, capsys):
    shutil.rmtree(root / "hagrid_annotations" / "test")
    out = tmp_path / "out"
    assert main(["crop", "--data-dir", str(root), "--out", str(out), "--classes", ",".join(CLASSES3),
                 "--size", "32", "--workers", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"warning: split test: no hands of the class set found under {root.resolve()}" in printed

    empty = HandTable.from_manifest(out).split_view("test")
    with pytest.raises(DataError, match="no hands of split 'test' to batch"):
        make_batches(empty, inputs=("landmarks",), image_size=None, landmark_norm="wrist", batch_size=4,
                     shuffle=False, seed=0, device=torch.device("cpu"), split="test")
