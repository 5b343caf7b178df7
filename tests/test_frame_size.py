"""The 'wrist' landmark normalisation works in pixels: an unknown frame size is refused, never guessed."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from common.errors import DataError
from data_loaders.batches import make_batches
from data_loaders.crop import crop_dataset
from data_loaders.hand_table import HandTable
from data_loaders.landmarks import frame_sizes, normalize_landmarks


def _hands(n=3, seed=0):
    return np.random.default_rng(seed).uniform(0.3, 0.6, (n, 21, 2)).astype(np.float32)


@pytest.mark.parametrize("bad", [[0, 683], [512, -1], [np.nan, 683], [np.inf, 683]])
def test_a_bad_frame_size_is_a_one_line_data_error_naming_the_hand(bad):
    sizes = np.array([[512, 683], bad, [683, 512]], np.float32)
    with pytest.raises(DataError) as e:
        normalize_landmarks(_hands(), "wrist", image_size=sizes, source="m.jsonl", names=["a_0", "b_0", "c_0"])
    msg = str(e.value)
    assert msg.startswith("m.jsonl: hand b_0: frame size") and "1 of 3 hands" in msg and "\n" not in msg


def test_no_frame_size_at_all_is_refused_and_the_aspect_ratio_matters():
    with pytest.raises(DataError, match="frame size .* unknown"):
        normalize_landmarks(_hands(), "wrist")
    with pytest.raises(DataError, match="3 \\(width, height\\) pairs"):
        frame_sizes([512, 683], 3)
    lm = _hands(1)
    portrait = normalize_landmarks(lm, "wrist", image_size=np.array([[512, 683]], np.float32))
    assumed = normalize_landmarks(lm, "wrist", image_size=np.array([[1920, 1080]], np.float32))
    assert not np.allclose(portrait, assumed, atol=0.05)  # why a guessed 16:9 size is not harmless


def test_unknown_frame_sizes_stop_at_the_manifest_or_at_landmark_batches(tmp_path, root):
    out = tmp_path / "crops"
    crop_dataset(root, out, size=32, workers=1, progress=False)
    good = (out / "manifest.jsonl").read_text()
    lines = [json.loads(x) for x in good.splitlines()]
    lines[1]["image_size"] = [0, 0]
    (out / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(DataError, match=f"line 2: image_size: expected 2 positive numbers.*{lines[1]['key']}|"
                       f"{lines[1]['key']}.*line 2: image_size"):
        HandTable.from_manifest(out)
    (out / "manifest.jsonl").write_text(good)
    table = HandTable.from_manifest(out)
    table.image_size[1] = 0  # e.g. a table built by other code without the frames
    kw = dict(inputs=("landmarks",), image_size=None, batch_size=4, shuffle=False, seed=0, device=torch.device("cpu"))
    with pytest.raises(DataError, match="frame size 0x0 is unknown or not positive"):
        make_batches(table, landmark_norm="wrist", **kw)
    make_batches(table, landmark_norm="bbox", **kw)  # the box normalisation needs no frame size
