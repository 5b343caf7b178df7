"""Batches for every model: one dict per batch (see docs/architecture.md).

Two sources, one format:

* :class:`TensorBatches` indexes tensors already on the device. Landmarks
  (42 numbers a hand) always go this way, and so do crops when the whole split
  fits in memory (``uint8``; the demo and the sample do).
* :func:`crop_loader` is a ``DataLoader`` over crop files for large datasets.

Both yield raw samples (``uint8`` images, normalised landmarks);
:class:`BatchTransform` then augments and normalises the whole batch on the
device, so a flip of the image and of its landmarks is one decision.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from .errors import DataError
from .hand_table import HandTable
from .image_io import IMAGE_NOT_FOUND, open_rgb
from .landmarks import MAX_SAFE_ROTATION_DEG, transform_landmarks

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- #
# raw per-hand fields
# --------------------------------------------------------------------------- #
def load_crop(path: str, size: int) -> np.ndarray:
    """Read one crop as ``(3, size, size)`` uint8; DataError names a bad or missing file."""
    try:
        im = open_rgb(path)
    except DataError as e:
        if e.problem == IMAGE_NOT_FOUND:
            raise DataError(path, "crop file missing: rerun `hand-gestures crop` (it resumes)") from None
        raise
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))


def load_crops(table: HandTable, size: int, progress: bool = False) -> torch.Tensor:
    """All crops of ``table`` as one ``(N, 3, size, size)`` uint8 tensor."""
    if table.crop_paths is None:
        raise ValueError("this hand table has no crops; build it from a crop manifest")
    out = torch.empty((len(table), 3, size, size), dtype=torch.uint8)
    paths = table.crop_paths
    it = range(len(paths))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"loading {len(paths)} crops", unit="img", leave=False, disable=None)
    for i in it:
        out[i] = torch.from_numpy(load_crop(paths[i], size))
    return out


def fields(table: HandTable, landmark_norm: str) -> dict[str, torch.Tensor]:
    """The non-image batch fields of every row, as CPU tensors."""
    return {
        "landmarks": torch.from_numpy(table.normalized_landmarks(landmark_norm)),
        "has_landmarks": torch.from_numpy(table.has_landmarks.copy()),
        "label": torch.from_numpy(table.labels.copy()),
        "index": torch.from_numpy(table.index.copy()),
    }


def fits_in_memory(n: int, size: int, budget_bytes: int = 2 << 30) -> bool:
    return n * 3 * size * size <= budget_bytes


# --------------------------------------------------------------------------- #
# sources
# --------------------------------------------------------------------------- #
def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The same shuffled order on every rank and on a resumed run: seeded by (seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g)


def shard(indices: torch.Tensor, rank: int, world: int, even: bool = False) -> torch.Tensor:
    """This rank's share, strided.

    ``even`` (training): every rank gets the same number of items (the last ``len % world`` of the
    shuffled order sit this epoch out), so every rank runs the same number of steps: DDP's gradient
    all-reduce needs that, and per-step schedules stay in lockstep. Without it (evaluation) nothing is
    dropped and metrics are summed across ranks.
    """
    if world <= 1:
        return indices
    if even:
        indices = indices[: len(indices) // world * world]
    return indices[rank::world]


class TensorBatches:
    """Iterate dict batches over tensors that already sit on the device."""

    def __init__(
        self,
        tensors: dict[str, torch.Tensor],
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        drop_last: bool = False,
    ) -> None:
        self.tensors = tensors
        self.n = len(next(iter(tensors.values())))
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world, self.drop_last = rank, world, drop_last
        self.even = shuffle  # training order: equal shares per rank (see shard)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> torch.Tensor:
        idx = epoch_permutation(self.n, self.seed, self.epoch) if self.shuffle else torch.arange(self.n)
        return shard(idx, self.rank, self.world, self.even)

    def __len__(self) -> int:
        m = len(shard(torch.arange(self.n), self.rank, self.world, self.even))
        return m // self.batch_size if self.drop_last else math.ceil(m / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        dev = next(iter(self.tensors.values())).device
        order = self._order().to(dev)
        for b in range(len(self)):
            sel = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield {k: v[sel] for k, v in self.tensors.items()}


class CropDataset(Dataset):
    """Crops read from disk, for datasets too large to hold in memory."""

    def __init__(self, table: HandTable, size: int, landmark_norm: str) -> None:
        self.paths = table.crop_paths
        if self.paths is None:
            raise ValueError("this hand table has no crops; build it from a crop manifest")
        self.size = size
        self.fields = fields(table, landmark_norm)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        out = {k: v[i] for k, v in self.fields.items()}
        out["image"] = torch.from_numpy(load_crop(self.paths[i], self.size))
        return out


class EpochSampler(Sampler[int]):
    """Shuffled (seeded by epoch) and sharded by rank, like DistributedSampler without padding."""

    def __init__(self, n: int, *, shuffle: bool, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.shuffle, self.seed, self.rank, self.world = n, shuffle, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        idx = epoch_permutation(self.n, self.seed, self.epoch) if self.shuffle else torch.arange(self.n)
        return iter(shard(idx, self.rank, self.world, even=self.shuffle).tolist())

    def __len__(self) -> int:
        return len(shard(torch.arange(self.n), self.rank, self.world, even=self.shuffle))


class LoaderBatches:
    """A DataLoader with ``set_epoch`` passed to its sampler."""

    def __init__(self, loader: DataLoader, sampler: EpochSampler) -> None:
        self.loader, self.sampler = loader, sampler

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return iter(self.loader)


def crop_loader(
    table: HandTable, size: int, landmark_norm: str, batch_size: int, *, shuffle: bool, seed: int,
    rank: int = 0, world: int = 1, num_workers: int = 2, pin_memory: bool = False,
) -> LoaderBatches:
    ds = CropDataset(table, size, landmark_norm)
    sampler = EpochSampler(len(ds), shuffle=shuffle, seed=seed, rank=rank, world=world)
    # its own generator: starting worker processes must not draw from the global RNG, or a resumed run's
    # dropout would differ from an uninterrupted one (workers only decode, they need no randomness)
    loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        pin_memory=pin_memory, persistent_workers=num_workers > 0,
                        generator=torch.Generator().manual_seed(seed))
    return LoaderBatches(loader, sampler)


# --------------------------------------------------------------------------- #
# on-device augmentation and normalisation
# --------------------------------------------------------------------------- #
@dataclass
class AugmentConfig:
    """Orientation-safe augmentation: horizontal flips, small rotations, scale, colour."""

    flip_p: float = 0.5
    rotation_deg: float = 15.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.05  # image only, fraction of the side
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    landmark_jitter: float = 0.01

    @classmethod
    def from_recipe(cls, recipe: dict | None) -> "AugmentConfig | None":
        """Read a model recipe's ``augment`` dict (``hflip``, ``max_rotation_deg``, ``scale``,
        ``color_jitter`` = (brightness, contrast, saturation, hue), ``landmark_jitter``); None = off."""
        if recipe is None:
            return None
        fields_ = set(cls.__dataclass_fields__)
        if set(recipe) <= fields_:  # already in this class's own terms
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in recipe.items()})
        known = {"hflip", "max_rotation_deg", "scale", "color_jitter", "translate", "landmark_jitter"}
        unknown = set(recipe) - known
        if unknown:
            raise ValueError(f"unknown augmentation settings {sorted(unknown)}; known: {sorted(known | fields_)}")
        out = cls()
        if "hflip" in recipe:
            out.flip_p = float(recipe["hflip"])
        if "max_rotation_deg" in recipe:
            out.rotation_deg = float(recipe["max_rotation_deg"])
        if "scale" in recipe:
            lo, hi = recipe["scale"]
            out.scale_range = (float(lo), float(hi))
        if "color_jitter" in recipe:
            b, c, s, *_ = recipe["color_jitter"]
            out.brightness, out.contrast, out.saturation = float(b), float(c), float(s)
        if "translate" in recipe:
            out.translate = float(recipe["translate"])
        if "landmark_jitter" in recipe:
            out.landmark_jitter = float(recipe["landmark_jitter"])
        out.__post_init__()
        return out

    def __post_init__(self) -> None:
        if self.rotation_deg > MAX_SAFE_ROTATION_DEG:
            raise ValueError(f"rotation {self.rotation_deg} deg exceeds {MAX_SAFE_ROTATION_DEG}: "
                             "it would swap orientation-paired gestures")


class BatchTransform:
    """Augment (training) and normalise a dict batch on its device.

    One flip, rotation and scale per hand applies to both its image and its landmarks.
    """

    def __init__(self, landmark_norm: str, image_size: int | None, augment: AugmentConfig | None,
                 seed: int = 0, rank: int = 0) -> None:
        self.landmark_norm = landmark_norm
        self.image_size = image_size
        self.augment = augment
        self.seed, self.rank = seed, rank
        self._gen: torch.Generator | None = None

    def set_epoch(self, epoch: int, device: torch.device) -> None:
        """Reseed per epoch (and rank) so a resumed run augments exactly as an uninterrupted one."""
        self._gen = torch.Generator(device=device).manual_seed(self.seed * 7919 + epoch + 1_000_003 * self.rank)

    def __call__(self, batch: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        batch = dict(batch)
        aug = self.augment if train else None
        geom = None
        if aug is not None:
            if self._gen is None:
                self.set_epoch(0, batch["label"].device)
            geom = self._sample_geometry(batch["label"].shape[0], batch["label"].device, aug)
            lm = transform_landmarks(batch["landmarks"], method=self.landmark_norm, flip=geom["flip"],
                                     theta=geom["theta"], scale=geom["scale"], noise=geom["noise"])
            batch["landmarks"] = torch.where(batch["has_landmarks"][:, None, None], lm, torch.zeros_like(lm))
        if "image" in batch:
            batch["image"] = self._image(batch["image"], aug, geom)
        return batch

    def _sample_geometry(self, b: int, dev: torch.device, aug: AugmentConfig) -> dict[str, torch.Tensor]:
        """One flip, rotation and scale per hand, shared by its image and its landmarks."""
        g = self._gen

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, device=dev, generator=g)

        lo, hi = aug.scale_range
        return {
            "flip": rand(b) < aug.flip_p,
            "theta": (rand(b) * 2 - 1) * math.radians(aug.rotation_deg),
            "scale": lo + (hi - lo) * rand(b),
            "shift": (rand(b, 2) * 2 - 1) * aug.translate * 2,  # image only: wrist-centred landmarks ignore it
            "noise": aug.landmark_jitter * torch.randn(b, 21, 2, device=dev, generator=g),
        }

    def _image(self, img: torch.Tensor, aug: AugmentConfig | None, geom: dict | None) -> torch.Tensor:
        x = img.float().div_(255.0) if img.dtype == torch.uint8 else img.float()
        if self.image_size is not None and x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True)
        if aug is not None:
            b, dev, g = x.shape[0], x.device, self._gen
            x = torch.where(geom["flip"][:, None, None, None], x.flip(-1), x)  # -1 = width: horizontal
            # affine_grid maps output to input coordinates, so the content moves by the inverse:
            # sampling with R(-theta)/s turns the content by +theta and scales it by s, as for the landmarks
            theta, s, t = geom["theta"], geom["scale"], geom["shift"]
            cos, sin = torch.cos(theta) / s, torch.sin(theta) / s
            mat = torch.stack([torch.stack([cos, sin, t[:, 0]], -1), torch.stack([-sin, cos, t[:, 1]], -1)], 1)
            grid = F.affine_grid(mat, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

            def jitter(amount: float) -> torch.Tensor:
                return 1 + (torch.rand(b, 1, 1, 1, device=dev, generator=g) * 2 - 1) * amount

            x = x * jitter(aug.brightness)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * jitter(aug.contrast) + mean
            gray = x.mean(dim=1, keepdim=True)
            x = (x - gray) * jitter(aug.saturation) + gray
            x = x.clamp_(0, 1)
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std
