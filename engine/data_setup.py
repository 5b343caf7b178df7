"""From a dataset folder to batches for a model: shared by training, evaluation and the demo."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch

from data_loaders.batches import TensorBatches, crop_loader, fields, fits_in_memory, load_crops
from data_loaders.classes import ClassSet, make_class_set
from data_loaders.errors import DataError
from data_loaders.hand_table import MANIFEST_NAME, HandTable

log = logging.getLogger(__name__)


def load_hand_table(
    crops_dir: str | Path,
    data_dir: str | Path | None = None,
    *,
    classes: str = "hagrid18",
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
    from data_loaders.hagrid import load_hagrid
    from data_loaders.image_io import image_size

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
):
    """Batches of dicts for ``table``: tensors on the device when they fit, else a crop DataLoader."""
    if len(table) == 0:
        raise DataError(str(table.meta.get("source", "hand table")), "no hands to batch (empty split?)")
    needs_image = "image" in inputs
    if needs_image and (in_memory == "no" or (in_memory == "auto" and not fits_in_memory(len(table), image_size))):
        return crop_loader(table, image_size, landmark_norm, batch_size, shuffle=shuffle, seed=seed,
                           rank=rank, world=world, num_workers=num_workers, pin_memory=device.type == "cuda")
    tensors = fields(table, landmark_norm)
    if needs_image:
        tensors["image"] = load_crops(table, image_size, progress=progress)
    tensors = {k: v.to(device) for k, v in tensors.items()}
    return TensorBatches(tensors, batch_size, shuffle=shuffle, seed=seed, rank=rank, world=world)
