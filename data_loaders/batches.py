"""Batches for every model: one dict per batch (see docs/architecture.md).

Three sources, one format (and the same batches, in the same order, for the same seed):

* :class:`TensorBatches` indexes tensors already on the device. Landmarks
  (42 numbers a hand) always go this way, and so do crops when the whole split
  fits in memory (``uint8``; the demo and the sample do).
* :class:`MemmapBatches` does the same for splits too large for memory, reading the crops from
  their decoded on-disk cache (:mod:`data_loaders.crop_cache`: decoded once, memory-mapped).
* :func:`crop_loader` is a ``DataLoader`` that decodes crop files every epoch (``decoded_cache=False``,
  or a crops folder where the cache cannot be written).

All yield raw samples (``uint8`` images, normalised landmarks);
:class:`BatchTransform` then augments and normalises the whole batch on the
device, so a flip of the image and of its landmarks is one decision.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from common.errors import DataError

from .classes import DEFAULT_CLASSES, ClassSet, make_class_set
from .crop_cache import decoded_crops, load_crop, table_repair_command
from .hand_table import HandTable
from .manifest import MANIFEST_NAME


# --------------------------------------------------------------------------- #
# raw per-hand fields
# --------------------------------------------------------------------------- #
def load_crops(table: HandTable, size: int, progress: bool = False) -> torch.Tensor:
    """All crops of ``table`` as one ``(N, 3, size, size)`` uint8 tensor."""
    if table.crop_paths is None:
        raise ValueError("this hand table has no crops; build it from a crop manifest")
    out = torch.empty((len(table), 3, size, size), dtype=torch.uint8)
    paths, repair = table.crop_paths, table_repair_command(table)
    it = range(len(paths))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"loading {len(paths)} crops", unit="img", leave=False, disable=None)
    for i in it:
        out[i] = torch.from_numpy(load_crop(paths[i], size, repair))
    return out


def fields(table: HandTable, landmark_norm: str) -> dict[str, torch.Tensor]:
    """The non-image batch fields of every row, as CPU tensors (``handedness``: +1 right, -1 left, 0 unknown,
    for every model: it is 4 bytes a hand, and only models built with ``handedness=True`` read it)."""
    return {
        "landmarks": torch.from_numpy(table.normalized_landmarks(landmark_norm)),
        "has_landmarks": torch.from_numpy(table.has_landmarks.copy()),
        "handedness": torch.from_numpy(table.handedness.astype(np.float32, copy=True)),
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


class MemmapBatches(TensorBatches):
    """:class:`TensorBatches` whose images come from a ``(N, 3, S, S)`` uint8 memmap (the decoded crop
    cache): the other fields sit on the device, each batch's images are read from the map, in sorted
    row order (the pages in file order), put back in batch order and copied to the device. The next
    batch is read in a background thread while the current one trains. Same order as TensorBatches."""

    def __init__(self, tensors: dict[str, torch.Tensor], images: np.ndarray, batch_size: int, **kw) -> None:
        super().__init__(tensors, batch_size, **kw)
        if len(images) != self.n:
            raise ValueError(f"{len(images)} cached images for {self.n} rows")
        self.images = images

    def _read(self, sel: np.ndarray) -> torch.Tensor:
        order = np.argsort(sel, kind="stable")
        block = np.empty((len(sel), *self.images.shape[1:]), np.uint8)
        block[order] = self.images[sel[order]]
        return torch.from_numpy(block)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        dev = next(iter(self.tensors.values())).device
        order = self._order()
        sels = [order[b * self.batch_size:(b + 1) * self.batch_size] for b in range(len(self))]
        with ThreadPoolExecutor(1) as pool:
            ahead = pool.submit(self._read, sels[0].numpy()) if sels else None
            for b, sel in enumerate(sels):
                images = ahead.result()
                if b + 1 < len(sels):
                    ahead = pool.submit(self._read, sels[b + 1].numpy())
                on_dev = sel.to(dev)
                yield {**{k: v[on_dev] for k, v in self.tensors.items()}, "image": images.to(dev)}


class CropDataset(Dataset):
    """Crops read from disk, for datasets too large to hold in memory."""

    def __init__(self, table: HandTable, size: int, landmark_norm: str) -> None:
        self.paths = table.crop_paths
        if self.paths is None:
            raise ValueError("this hand table has no crops; build it from a crop manifest")
        self.size = size
        self.repair = table_repair_command(table)
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
    decoded_cache: bool = True,
):
    """Batches of dicts for ``table``: tensors on the device when they fit (``in_memory``), else the
    crops read from their decoded on-disk cache (``decoded_cache``, built on first use with
    ``num_workers`` processes), else a DataLoader decoding the JPEGs every epoch.

    ``split`` names the table's split in the error raised when it has no hands.
    """
    if len(table) == 0:
        what = f"no hands of split {split!r} to batch" if split else "no hands to batch"
        raise DataError(str(table.meta.get("source", "hand table")),
                        f"{what} (is the split empty, or are its hands unusable by this model?)")
    needs_image = "image" in inputs
    if needs_image and (in_memory == "no" or (in_memory == "auto" and not fits_in_memory(len(table), image_size))):
        cached = decoded_crops(table, image_size, workers=num_workers, progress=progress) if decoded_cache else None
        if cached is None:
            return crop_loader(table, image_size, landmark_norm, batch_size, shuffle=shuffle, seed=seed,
                               rank=rank, world=world, num_workers=num_workers, pin_memory=device.type == "cuda")
        tensors = {k: v.to(device) for k, v in fields(table, landmark_norm).items()}
        return MemmapBatches(tensors, cached, batch_size, shuffle=shuffle, seed=seed, rank=rank, world=world)
    tensors = fields(table, landmark_norm)
    if needs_image:
        tensors["image"] = load_crops(table, image_size, progress=progress)
    tensors = {k: v.to(device) for k, v in tensors.items()}
    return TensorBatches(tensors, batch_size, shuffle=shuffle, seed=seed, rank=rank, world=world)
