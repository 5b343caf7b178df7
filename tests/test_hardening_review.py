"""Neighbours of the hardening cases that a review found: each a one-line error, never a traceback."""
from __future__ import annotations

import pytest
from PIL import Image

from common.errors import CheckpointMismatchError, UsageError
from engine import cli


@pytest.mark.parametrize("argv, flag", [
    (["synth", "--subjects", "0"], "--subjects"),
    (["synth", "--second-hand-p", "2"], "--second-hand-p"),
    (["demo", "--epochs-scale", "nan"], "--epochs-scale"),
    (["demo", "--synth-subjects", "0"], "--synth-subjects"),
    (["crop", "--size", "100000"], "--size"),
])
def test_out_of_range_options_are_refused_by_the_parser(argv, flag, capsys):
    with pytest.raises(SystemExit) as e:
        cli.build_parser(argv).parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err


def test_negative_seed_is_a_usage_error(tmp_path, capsys):
    rc = cli.main(["train", "--model", "mlp", "--crops-dir", str(tmp_path / "none"), "--seed", "-1",
                   "--out-dir", str(tmp_path / "m"), "--graphs-dir", str(tmp_path / "g")])
    err = capsys.readouterr().err
    assert rc == 2 and "--seed" in err and len(err.strip().splitlines()) == 1


def test_a_hyperparameter_value_the_model_refuses_is_a_usage_error(tmp_path):
    from engine.train import TrainConfig, _build_model

    cfg = TrainConfig(model="mlp", hparams={"dropout": 5})
    with pytest.raises(UsageError, match="dropout"):
        _build_model(cfg, ["a", "b"], None, tmp_path / "x.last.pt")


def test_a_crop_with_a_zeroed_header_is_not_whole(tmp_path):
    from data_loaders.crop import crop_is_whole

    path = tmp_path / "c.jpg"
    Image.new("RGB", (32, 32), (120, 30, 200)).save(path, quality=90)
    assert crop_is_whole(path)
    data = bytearray(path.read_bytes())
    data[2:len(data) - 2] = bytes(len(data) - 4)  # markers intact, header gone
    path.write_bytes(bytes(data))
    assert not crop_is_whole(path)


def test_a_file_that_is_not_a_checkpoint_gets_no_advice_to_unpickle_it(tmp_path):
    from engine.checkpoint import load_checkpoint

    path = tmp_path / "README.md"
    path.write_text("# not a checkpoint\n")
    with pytest.raises(CheckpointMismatchError) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert str(path) in msg and "weights_only" not in msg and len(msg.splitlines()) == 1
