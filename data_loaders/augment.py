"""On-device augmentation and normalisation of a dict batch.

Orientation-safe: horizontal flips and small rotations only (a large rotation turns like into
dislike). One flip, rotation and scale per hand applies to both its image and its landmarks, and
the whole batch is transformed on its device in one go. A flip also negates the hand's ``handedness``
(a mirrored right hand is a left hand): without that, a flipped right hand's back view would be a
left hand's palm view labelled with the back-view class (``stop_inverted`` vs ``stop``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .landmarks import MAX_SAFE_ROTATION_DEG, transform_landmarks

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
        """Read a model recipe's ``augment`` dict, written in this class's field names (lists become
        tuples); None = off. An unknown key is an error listing the known ones."""
        if recipe is None:
            return None
        known = set(cls.__dataclass_fields__)
        unknown = set(recipe) - known
        if unknown:
            raise ValueError(f"unknown augmentation settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in recipe.items()})

    def __post_init__(self) -> None:
        if self.rotation_deg > MAX_SAFE_ROTATION_DEG:
            raise ValueError(f"rotation {self.rotation_deg} deg exceeds {MAX_SAFE_ROTATION_DEG}: "
                             "it would swap orientation-paired gestures")


class BatchTransform:
    """Augment (training) and normalise a dict batch on its device.

    One flip, rotation and scale per hand applies to its image, its landmarks and its ``handedness``
    (negated where flipped; 0, unknown, stays 0). Evaluation (``train=False``) changes none of them.
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
            if "handedness" in batch:
                h = batch["handedness"]
                batch["handedness"] = torch.where(geom["flip"], -h, h)
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
