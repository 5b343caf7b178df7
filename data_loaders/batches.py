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
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from common.errors import DataError

from .classes import DEFAULT_CLASSES, ClassSet, make_class_set
from .crop import repair_command
from .hand_table import HandTable
from .images import IMAGE_NOT_FOUND, open_rgb
from .manifest import MANIFEST_NAME


# --------------------------------------------------------------------------- #
# raw per-hand fields
# --------------------------------------------------------------------------- #
def load_crop(path: str, size: int, repair: str | None = None) -> np.ndarray:
    """Read one crop as ``(3, size, size)`` uint8.

    A missing or damaged file is a :class:`DataError` naming it and ``repair``, the command that
    rebuilds it (:func:`~data_loaders.crop.repair_command`; by default one for the crop's folder).
    """
    try:
        im = open_rgb(path)
    except DataError as e:
        what = "crop file missing" if e.problem == IMAGE_NOT_FOUND else f"damaged crop ({e.problem})"
        p = Path(path)
        fix = repair or f"hand-gestures crop --data-dir <HaGRID root> --out {p.parents[min(2, len(p.parents) - 1)]}"
        raise DataError(path, f"{what}: `{fix}` rebuilds missing and damaged crops and keeps the others") from None
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))


def _repair(table: HandTable) -> str | None:
    """The command that rebuilds ``table``'s crops with their own settings, when it came from a crops folder."""
    info = table.meta.get("crop_info")
    return repair_command(info, table.crops_dir) if info and table.crops_dir is not None else None


def load_crops(table: HandTable, size: int, progress: bool = False) -> torch.Tensor:
    """All crops of ``table`` as one ``(N, 3, size, size)`` uint8 tensor."""
    if table.crop_paths is None:
        raise ValueError("this hand table has no crops; build it from a crop manifest")
    out = torch.empty((len(table), 3, size, size), dtype=torch.uint8)
    paths, repair = table.crop_paths, _repair(table)
    it = range(len(paths))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"loading {len(paths)} crops", unit="img", leave=False, disable=None)
    for i in it:
        out[i] = torch.from_numpy(load_crop(paths[i], size, repair))
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
        self.repair = _repair(table)
        self.fields = fields(table, landmark_norm)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        out = {k: v[i] for k, v in self.fields.items()}
        out["image"] = torch.from_numpy(load_crop(self.paths[i], self.size, self.repair))
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
# from a dataset folder to batches: shared by training, evaluation and the demo
# --------------------------------------------------------------------------- #
def load_hand_table(
    crops_dir: str | Path,
    data_dir: str | Path | None = None,
    *,
    classes: str = DEFAULT_CLASSES,
    include_no_gesture: bool = False,
    need_images: bool = True,
    class_names: Sequence[str] | None = None,
) -> HandTable:
    """The hands of a run: the crop manifest when there is one, else the annotations.

    Image models need crops (``hand-gestures crop``); landmark models can read the
    annotations directly (image sizes come from the JPEG headers).
    """
    crops_dir = Path(crops_dir)
    if (crops_dir / MANIFEST_NAME).is_file():
        return HandTable.from_manifest(crops_dir, class_names)
    if need_images or data_dir is None:
        raise DataError(
            crops_dir / MANIFEST_NAME,
            "crop manifest not found: run `hand-gestures crop --data-dir <HaGRID root> --out "
            f"{crops_dir}` first" + ("" if need_images else " (or pass --data-dir for landmark models)"),
        )
    from .hagrid import load_hagrid
    from .images import image_size

    class_set = ClassSet(tuple(class_names)) if class_names else make_class_set(classes, include_no_gesture)
    ann = load_hagrid(data_dir, class_set)
    return HandTable.from_records(ann.records, class_set, image_size)


def usable_rows(table: HandTable, inputs: Sequence[str]) -> HandTable:
    """Landmark-only models cannot score a hand without landmarks; image models take all hands."""
    if "image" not in inputs:
        return table.subset(table.has_landmarks)
    return table


def make_batches(
    table: HandTable,
    *,
    inputs: Sequence[str],
    image_size: int | None,
    landmark_norm: str,
    batch_size: int,
    shuffle: bool,
    seed: int,
    device: torch.device,
    rank: int = 0,
    world: int = 1,
    num_workers: int = 2,
    in_memory: str = "auto",
    progress: bool = False,
    split: str | None = None,
):
    """Batches of dicts for ``table``: tensors on the device when they fit, else a crop DataLoader.

    ``split`` names the table's split in the error raised when it has no hands.
    """
    if len(table) == 0:
        what = f"no hands of split {split!r} to batch" if split else "no hands to batch"
        raise DataError(str(table.meta.get("source", "hand table")),
                        f"{what} (is the split empty, or are its hands unusable by this model?)")
    needs_image = "image" in inputs
    if needs_image and (in_memory == "no" or (in_memory == "auto" and not fits_in_memory(len(table), image_size))):
        return crop_loader(table, image_size, landmark_norm, batch_size, shuffle=shuffle, seed=seed,
                           rank=rank, world=world, num_workers=num_workers, pin_memory=device.type == "cuda")
    tensors = fields(table, landmark_norm)
    if needs_image:
        tensors["image"] = load_crops(table, image_size, progress=progress)
    tensors = {k: v.to(device) for k, v in tensors.items()}
    return TensorBatches(tensors, batch_size, shuffle=shuffle, seed=seed, rank=rank, world=world)
