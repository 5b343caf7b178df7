"""engine.evaluate on a tiny synthetic crops folder: common hands, crop-setting and class-set checks, the CLI."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from common.errors import CheckpointMismatchError
from data_loaders.crop import crop_dataset
from data_loaders.hand_table import HandTable
from data_loaders.synthetic.generate import generate_synthetic_hagrid
from engine import cli
from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.evaluate import dropped_note, evaluate_checkpoints, find_checkpoints, predict_checkpoint
from engine.reporting.tables import read_csv_rows
from engine.train import TrainConfig, fit


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """Crops of a tiny synthetic set and an mlp and a cnn trained on them for one epoch."""
    root = tmp_path_factory.mktemp("evaluate")
    generate_synthetic_hagrid(root / "data", n_subjects=8, images_per_subject=4, seed=5, progress=False)
    crop_dataset(root / "data", root / "crops", workers=1, progress=False)
    out = {"root": root, "crops": root / "crops", "models": root / "models"}
    for model in ("mlp", "cnn"):
        res = fit(TrainConfig(
            model=model, crops_dir=str(root / "crops"), out_dir=str(root / "models"), graphs_dir=str(root / "graphs"),
            device="cpu", progress=False, tensorboard=False, epochs=1, patience=0, num_workers=0,
        ))
        out[model] = Path(res.best_checkpoint)
    return out


def _edited(src: Path, dst: Path, edit) -> Path:
    ckpt = load_checkpoint(src)
    edit(ckpt)
    return save_checkpoint(dst, ckpt)


def _set_box_scale(value):
    def edit(ckpt):
        ckpt["preprocessing"]["crop"]["box_scale"] = value
    return edit


def test_evaluate_checkpoints_scores_both_models_on_the_same_hands(trained, tmp_path):
    assert find_checkpoints(trained["models"]) == [trained["mlp"], trained["cnn"]]  # no .last files, display order
    g = tmp_path / "graphs"
    cmp = evaluate_checkpoints([trained["cnn"], trained["mlp"]], crops_dir=trained["crops"], device="cpu",
                               graphs_dir=g, caption="tiny synthetic set")
    assert set(cmp.models) == {"mlp", "cnn"}
    rows = {r["model"]: r for r in read_csv_rows(g / "results.csv")}
    assert set(rows) == {"mlp", "cnn"}
    # the cnn scores every test hand, the mlp only those with landmarks: compared on the hands both score
    assert rows["mlp"]["n_common"] == rows["cnn"]["n_common"] == str(cmp.n_common) == rows["mlp"]["n_all"]
    assert int(rows["cnn"]["n_all"]) >= cmp.n_common > 0
    assert (g / "mlp_confusion.png").is_file() and (g / "cnn_confusion.png").is_file()
    assert "tiny synthetic set" in (g / "results.md").read_text()


def test_image_model_on_crops_made_with_other_settings_is_refused(trained, tmp_path):
    crops = trained["crops"]
    info = HandTable.from_manifest(crops).meta["crop_info"]
    assert load_checkpoint(trained["cnn"])["preprocessing"]["crop"]["box_scale"] == info["box_scale"]
    bad = _edited(trained["cnn"], tmp_path / "cnn.pt", _set_box_scale(info["box_scale"] + 0.5))
    with pytest.raises(CheckpointMismatchError) as e:
        evaluate_checkpoints([trained["mlp"], bad], crops_dir=crops, device="cpu", graphs_dir=None)
    msg = str(e.value)
    assert "box_scale" in msg and str(bad) in msg and str(crops) in msg
    assert repr(info["box_scale"] + 0.5) in msg and repr(info["box_scale"]) in msg
    assert "\n" not in msg
    # several differences are all named
    def two(ckpt):
        ckpt["preprocessing"]["crop"].update(box_scale=9.0, size=info["size"] * 2)
    with pytest.raises(CheckpointMismatchError, match=r"box_scale .*; size "):
        predict_checkpoint(_edited(trained["cnn"], tmp_path / "two.pt", two), HandTable.from_manifest(crops))


def test_crop_check_skips_unknown_values_and_landmark_models(trained, tmp_path):
    table = HandTable.from_manifest(trained["crops"])
    info = table.meta["crop_info"]

    def unknown_and_tuple(ckpt):  # None = not recorded; a tuple equals the JSON list of crop_info.json
        crop = ckpt["preprocessing"]["crop"]
        crop["box_scale"] = None
        if isinstance(info.get("fill"), list):
            crop["fill"] = tuple(info["fill"])
        crop["not_in_crop_info"] = 123
    ok = _edited(trained["cnn"], tmp_path / "cnn.pt", unknown_and_tuple)
    assert len(predict_checkpoint(ok, table, max_batches=1).index) > 0
    # landmark models do not read the crops: their crop settings do not matter
    mlp = _edited(trained["mlp"], tmp_path / "mlp.pt", _set_box_scale(info["box_scale"] + 0.5))
    assert len(predict_checkpoint(mlp, table).index) > 0


def test_checkpoints_with_different_class_sets_are_refused(trained, tmp_path):
    names = load_checkpoint(trained["cnn"])["class_names"]

    def reorder(ckpt):
        ckpt["class_names"] = list(reversed(names))
    def fewer(ckpt):
        ckpt["class_names"] = names[:-1]
        ckpt["num_classes"] = len(names) - 1
    for edit, what in ((reorder, "same classes in another order"), (fewer, f"lacks {[names[-1]]!r}")):
        other = _edited(trained["cnn"], tmp_path / "cnn.pt", edit)
        with pytest.raises(CheckpointMismatchError, match="different class sets") as e:
            evaluate_checkpoints([trained["mlp"], other], crops_dir=trained["crops"], device="cpu", graphs_dir=None)
        assert what in str(e.value) and str(other) in str(e.value) and str(trained["mlp"]) in str(e.value)


def test_dropped_note():
    t = replace(_empty_table(), meta={"dropped_labels": {"extra_a": 2, "extra_b": 1}, "source": "x/manifest.jsonl"})
    assert dropped_note(t) == ("3 hands in x/manifest.jsonl with labels outside the checkpoints' 2 classes left out: "
                               "extra_a (2), extra_b (1).")
    assert dropped_note(replace(t, meta={"dropped_labels": 1})).startswith("1 hand in the data with labels")
    assert dropped_note(replace(t, meta={})) == ""


def _empty_table() -> HandTable:
    import numpy as np

    obj = np.array([], dtype=object)
    return HandTable(class_names=("a", "b"), keys=obj, split=obj, labels=np.zeros(0, np.int64),
                     landmarks=np.zeros((0, 21, 2), np.float32), has_landmarks=np.zeros(0, bool),
                     image_size=np.zeros((0, 2), np.float32), bbox=np.zeros((0, 4), np.float32), user_id=obj,
                     index=np.zeros(0, np.int64))


def test_crops_folder_with_extra_classes_is_scored_on_the_checkpoints_classes(trained, tmp_path):
    """Hands with labels the checkpoints do not know are left out (HandTable.from_manifest with
    class_names drops them and counts them in meta["dropped_labels"]) and the caption says so."""
    import shutil

    crops = tmp_path / "crops"
    shutil.copytree(trained["crops"], crops)
    manifest = crops / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    extra = [json.loads(x) for x in lines if json.loads(x)["split"] == "test"][:2]
    for i, e in enumerate(extra):
        e.update(key=f"{e['key']}_extra{i}", label="not_a_trained_class")
    manifest.write_text("\n".join(lines + [json.dumps(e) for e in extra]) + "\n")
    g = tmp_path / "graphs"
    cmp = evaluate_checkpoints([trained["mlp"], trained["cnn"]], crops_dir=crops, device="cpu", graphs_dir=g)
    assert set(cmp.models) == {"mlp", "cnn"}
    md = (g / "results.md").read_text()
    assert "2 hands" in md and "left out" in md and "not_a_trained_class" in md


def test_cli_evaluate_mismatched_checkpoint_is_one_error_line(trained, tmp_path, capsys):
    bad = _edited(trained["cnn"], tmp_path / "bad.pt", _set_box_scale(9.0))
    rc = cli.main(["evaluate", str(bad), "--crops-dir", str(trained["crops"]), "--graphs-dir", str(tmp_path / "g"),
                   "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "box_scale" in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "g" / "results.csv").exists()


def test_models_on_differently_framed_crops_pair_by_hand_key(trained, tmp_path):
    """A model trained on box-only crops is scored on its own crops folder and compared with a model of the
    square folder on the same hands (paired by key); scoring it on square crops is refused."""
    box_crops = tmp_path / "crops_box"
    crop_dataset(trained["root"] / "data", box_crops, workers=1, progress=False, box_scale=1.0, context="box")
    res = fit(TrainConfig(model="cnn", crops_dir=str(box_crops), out_dir=str(tmp_path / "m"), run_name="cnn_box",
                          graphs_dir=str(tmp_path / "g"), device="cpu", progress=False, tensorboard=False, epochs=1,
                          patience=0, num_workers=0))
    ckpt = Path(res.best_checkpoint)
    assert load_checkpoint(ckpt)["preprocessing"]["crop"]["context"] == "box"
    alone = evaluate_checkpoints([trained["mlp"]], crops_dir=trained["crops"], device="cpu", graphs_dir=None)
    both = evaluate_checkpoints([trained["mlp"], ckpt], crops_dir=trained["crops"], crops_dirs={ckpt: box_crops},
                                device="cpu", graphs_dir=None)
    assert set(both.models) == {"mlp", "cnn_box"}
    assert both.n_common == alone.n_common > 0  # every hand the mlp scores is paired with its box-only crop
    with pytest.raises(CheckpointMismatchError, match="context"):
        evaluate_checkpoints([ckpt], crops_dir=trained["crops"], device="cpu", graphs_dir=None)
