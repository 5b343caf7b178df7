"""Landmark normalisation, orientation-safe augmentation and the batch sources."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from data_loaders.augment import AugmentConfig, BatchTransform
from data_loaders.batches import TensorBatches, shard
from data_loaders.landmarks import hand_size, normalize_landmarks, transform_landmarks
from engine.recipes import recipe
from model_classes import list_models


def _hand(n: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 + 0.4 * rng.random((n, 21, 2))).astype(np.float32)


# --------------------------------------------------------------------------- normalisation
def test_wrist_normalisation_is_invariant_to_position_and_scale_but_keeps_aspect():
    lm = _hand()
    size = np.array([[640, 480]] * 4, np.float32)
    a = normalize_landmarks(lm, "wrist", image_size=size)
    assert np.allclose(a[:, 0], 0) and a.shape == (4, 21, 2)
    # the same hand moved and zoomed in the frame gives the same features
    moved = (lm - lm[:, :1]) * 0.5 + 0.5
    assert np.allclose(normalize_landmarks(moved, "wrist", image_size=size), a, atol=1e-5)
    # pixel units: the same normalised coordinates in a 2:1 frame are a different (wider) hand shape
    wide = normalize_landmarks(lm, "wrist", image_size=np.array([[960, 480]] * 4, np.float32))
    assert not np.allclose(wide, a)
    px = lm * size[:, None, :]
    assert np.allclose(np.abs(a).max(), np.abs((px - px[:, :1]) / hand_size(px)[:, None, None]).max())


def test_bbox_normalisation_reproduces_the_seed_and_clamps():
    lm = np.array([[[0.1, 0.2]] * 21], np.float32)
    lm[0, 1] = [0.9, 0.9]  # outside the box
    out = normalize_landmarks(lm, "bbox", bbox=np.array([[0.0, 0.0, 0.5, 0.5]], np.float32))
    assert np.allclose(out[0, 0], [0.2, 0.4]) and np.allclose(out[0, 1], [1.0, 1.0])
    with pytest.raises(ValueError, match="needs the annotated box"):
        normalize_landmarks(lm, "bbox")


# --------------------------------------------------------------------------- augmentation
def test_flip_is_horizontal_and_rotation_has_the_image_sense():
    x = torch.tensor([[[0.0, 0.0], [1.0, -2.0]] + [[0.0, 0.0]] * 19])  # index-ish point right of and above wrist
    no = torch.zeros(1)
    flipped = transform_landmarks(x, method="wrist", flip=torch.tensor([True]), theta=no, scale=torch.ones(1))
    assert torch.allclose(flipped[0, 1], torch.tensor([-1.0, -2.0]))  # x mirrored, y (up/down) kept
    rot = transform_landmarks(x, method="wrist", flip=torch.tensor([False]), theta=torch.tensor([math.pi / 2]),
                              scale=torch.ones(1))
    # y points down in image coordinates: +90 deg turns "up" (0, -1) into "right" (1, 0) = clockwise on screen
    assert torch.allclose(rot[0, 1], torch.tensor([2.0, 1.0]), atol=1e-6)


def _marker_batch(size: int = 32) -> dict[str, torch.Tensor]:
    """One hand whose image has a bright dot exactly where its (bbox-normalised) landmark 8 is."""
    img = torch.zeros(1, 3, size, size, dtype=torch.uint8)
    lm = torch.full((1, 21, 2), 0.5)
    lm[0, 8] = torch.tensor([0.75, 0.25])
    r, c = int(0.25 * size), int(0.75 * size)
    img[0, :, r - 1:r + 2, c - 1:c + 2] = 255
    return {"image": img, "landmarks": lm, "has_landmarks": torch.tensor([True]), "label": torch.tensor([0]),
            "index": torch.tensor([0])}


@pytest.mark.parametrize("seed", range(6))
def test_image_and_landmarks_share_flip_rotation_and_scale(seed):
    aug = AugmentConfig(flip_p=0.5, rotation_deg=25, scale_range=(0.8, 1.2), translate=0.0, brightness=0,
                        contrast=0, saturation=0, landmark_jitter=0.0)
    t = BatchTransform("bbox", 32, aug, seed=seed)
    out = t(_marker_batch(), train=True)
    img = out["image"][0].mean(0)
    r, c = divmod(int(img.argmax()), 32)
    x, y = out["landmarks"][0, 8].tolist()
    assert abs((c + 0.5) / 32 - x) < 0.08 and abs((r + 0.5) / 32 - y) < 0.08, (seed, (c, r), (x, y))


def test_evaluation_transform_only_normalises():
    b = _marker_batch()
    out = BatchTransform("bbox", 32, AugmentConfig(), seed=0)(b, train=False)
    assert torch.equal(out["landmarks"], b["landmarks"])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    assert torch.allclose(out["image"][0], (b["image"][0].float() / 255 - mean) / std)


def test_missing_landmarks_stay_zero_after_augmentation():
    b = _marker_batch()
    b["has_landmarks"] = torch.tensor([False])
    out = BatchTransform("wrist", 32, AugmentConfig(), seed=1)(b, train=True)
    assert torch.count_nonzero(out["landmarks"]) == 0


def test_rotations_that_swap_orientation_pairs_are_refused():
    with pytest.raises(ValueError, match="orientation"):
        AugmentConfig(rotation_deg=45)


@pytest.mark.parametrize("name", list_models())
def test_every_recipe_has_a_readable_augmentation(name):
    aug = AugmentConfig.from_recipe(recipe(name)["augment"])
    assert aug is None or (0 <= aug.flip_p <= 1 and aug.rotation_deg <= 30)


# --------------------------------------------------------------------------- sources
def test_training_shards_are_equal_and_disjoint_evaluation_shards_cover_everything():
    idx = torch.arange(1001)
    train = [shard(idx, r, 2, even=True) for r in range(2)]
    assert len(train[0]) == len(train[1]) == 500 and not set(train[0].tolist()) & set(train[1].tolist())
    evals = [shard(idx, r, 2) for r in range(2)]
    assert sorted(torch.cat(evals).tolist()) == list(range(1001))


def test_tensor_batches_same_order_on_resume_and_same_step_count_on_every_rank():
    t = {"label": torch.arange(101), "x": torch.arange(101)}
    a = TensorBatches(t, 10, shuffle=True, seed=3)
    a.set_epoch(4)
    b = TensorBatches(t, 10, shuffle=True, seed=3)
    b.set_epoch(4)
    assert [x["label"].tolist() for x in a] == [x["label"].tolist() for x in b]
    ranks = [TensorBatches(t, 10, shuffle=True, seed=3, rank=r, world=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(list(ranks[0])) == len(list(ranks[1])) == 5
