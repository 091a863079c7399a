"""SimCLR's strong augmentations, two views per image: on whole batches on the device, or per sample.

The recipe (Chen et al. 2020, as the domain-boundaries study ran it): random resized crop to one
size, horizontal flip, colour jitter (brightness/contrast/saturation 0.8 s, hue 0.2 s) applied with
probability 0.8, grayscale with probability 0.2, and Gaussian blur (kernel ~10% of the size, sigma
0.1-2) with probability 0.5 behind a switch (the study left it out).

Batch form: kornia.augmentation draws every random parameter per sample (``same_on_batch=False``),
so one call on a (B, C, H, W) batch on the GPU gives B independently augmented images. torchvision's
v2 transforms draw one parameter set per call, so on a batch every image would get the same crop and
jitter; they are used for the per-sample form, which runs in DataLoader workers image by image.

Images are expected in [0, 1] (what ``medtl prepare`` writes, except z-scored stores): an image whose
values leave [0, 1] is min-max rescaled to it first. Saturation, hue and grayscale need three channels
and are left out for single-channel images (brightness and contrast still apply).
Normalisation (ImageNet statistics by default) runs after augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from medtl.data.transforms import normalisation_stats
from medtl.errors import ConfigError


@dataclass(frozen=True)
class SimCLRAugment:
    """Parameters of the view augmentation; ``size`` is the output side length of every view."""

    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    jitter_strength: float = 1.0
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur: bool = False
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ConfigError(f"SimCLR view size must be at least 8 pixels, got {self.size}")
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ConfigError(f"crop scale must satisfy 0 < min <= max <= 1, got {self.scale}")
        for name in ("hflip", "jitter_p", "grayscale_p", "blur_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} is a probability, got {getattr(self, name)}")

    @property
    def jitter(self) -> tuple[float, float, float, float]:
        s = self.jitter_strength
        return 0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s

    @property
    def blur_kernel(self) -> int:
        """About 10% of the view size, odd (as in SimCLR)."""
        k = max(3, int(0.1 * self.size))
        return k if k % 2 else k + 1


def to_unit_range(x: Tensor) -> Tensor:
    """Images (..., C, H, W) with values outside [0, 1] min-max rescaled per image; others unchanged."""
    lo = x.amin(dim=(-3, -2, -1), keepdim=True)
    hi = x.amax(dim=(-3, -2, -1), keepdim=True)
    outside = (lo < 0) | (hi > 1)
    rescaled = (x - lo) / (hi - lo).clamp_min(1e-6)
    return torch.where(outside, rescaled, x)


class Normalise(nn.Module):
    """Per-channel normalisation of a batch; ``normalise`` is a preset of ``medtl.data.transforms``."""

    def __init__(self, normalise: str, channels: int) -> None:
        super().__init__()
        stats = normalisation_stats(normalise, channels)
        if normalise == "minmax":
            raise ConfigError("SimCLR views are already in [0, 1]; use --normalise none instead of minmax")
        mean, std = stats if stats is not None else ([0.0] * channels, [1.0] * channels)
        self.register_buffer("mean", torch.tensor(mean).view(1, channels, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, channels, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


class BatchViews(nn.Module):
    """Two independently augmented, normalised views of a batch (B, C, H, W), on the batch's device.

    ``forward(images, seed)`` draws the random parameters from a generator seeded with ``seed``
    (for instance derived from the run seed and the step), so a resumed run augments the same way;
    without a seed the global RNG is used.
    """

    def __init__(self, config: SimCLRAugment, channels: int, normalise: str = "imagenet") -> None:
        super().__init__()
        import kornia.augmentation as K

        c = config
        steps: list[nn.Module] = [
            K.RandomResizedCrop((c.size, c.size), scale=c.scale, ratio=c.ratio),
            K.RandomHorizontalFlip(p=c.hflip),
        ]
        b, k, s, h = c.jitter
        if channels == 3:
            steps.append(K.ColorJitter(b, k, s, h, p=c.jitter_p))
            steps.append(K.RandomGrayscale(p=c.grayscale_p))
        else:
            steps.append(K.ColorJitter(b, k, 0.0, 0.0, p=c.jitter_p))
        if c.blur:
            steps.append(K.RandomGaussianBlur((c.blur_kernel, c.blur_kernel), c.blur_sigma, p=c.blur_p))
        self.augment = K.AugmentationSequential(*steps)
        self.normalise = Normalise(normalise, channels)
        self.channels = channels

    def one_view(self, images: Tensor) -> Tensor:
        return self.normalise(self.augment(images))

    def forward(self, images: Tensor, seed: int | None = None) -> tuple[Tensor, Tensor]:
        if images.ndim != 4 or images.shape[1] != self.channels:
            raise ValueError(f"expected (B, {self.channels}, H, W) images, got {tuple(images.shape)}")
        images = to_unit_range(images.float())
        if seed is None:
            return self.one_view(images), self.one_view(images)
        # kornia draws from the global RNG: fork it so the seed neither leaks nor is disturbed.
        devices = [images.device] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return self.one_view(images), self.one_view(images)


class SampleViews:
    """The per-sample form: ``image (C, H, W) -> (view1, view2)`` for DataLoader workers
    (torchvision v2, a fresh random draw per call; picklable, so spawned workers receive it)."""

    def __init__(self, config: SimCLRAugment, channels: int, normalise: str = "imagenet") -> None:
        from torchvision.transforms import v2

        c = config
        steps: list[Any] = [
            v2.RandomResizedCrop(c.size, scale=c.scale, ratio=c.ratio, antialias=True),
            v2.RandomHorizontalFlip(p=c.hflip),
        ]
        b, k, s, h = c.jitter
        if channels == 3:
            steps.append(v2.RandomApply([v2.ColorJitter(b, k, s, h)], p=c.jitter_p))
            steps.append(v2.RandomGrayscale(p=c.grayscale_p))
        else:
            steps.append(v2.RandomApply([v2.ColorJitter(b, k)], p=c.jitter_p))
        if c.blur:
            steps.append(v2.RandomApply([v2.GaussianBlur(c.blur_kernel, c.blur_sigma)], p=c.blur_p))
        self.pipeline = v2.Compose(steps)
        self.normalise = Normalise(normalise, channels)
        self.channels = channels

    def one_view(self, image: Tensor) -> Tensor:
        return self.normalise(self.pipeline(image).unsqueeze(0))[0]

    def __call__(self, image: Tensor) -> tuple[Tensor, Tensor]:
        if image.ndim != 3 or image.shape[0] != self.channels:
            raise ValueError(f"expected a ({self.channels}, H, W) image, got {tuple(image.shape)}")
        image = to_unit_range(image.float())
        return self.one_view(image), self.one_view(image)
