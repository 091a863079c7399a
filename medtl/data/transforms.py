"""Augmentation and normalisation for store images (float tensors (C, H, W)), on torchvision v2.

Geometric transforms apply identically to an image and its ``tv_tensors.Mask``; intensity and
normalisation leave masks alone. Intensity changes are defined relative to each image channel's
own range and mean, so they commute with any per-channel normalisation: the same change can run in
the loader before normalising or on the GPU on a normalised batch (``batch_augment``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from medtl.errors import ConfigError, UnknownChoiceError

AUGMENTATIONS = ("crop", "hflip", "vflip", "rotate", "intensity")
AUGMENT_PRESETS: dict[str, tuple[str, ...]] = {
    "none": (),
    "flip": ("hflip",),
    "light": ("hflip", "intensity"),
    "default": ("crop", "hflip", "rotate", "intensity"),
}
# Augmentations that run on whole batches on the device (see batch_augment).
BATCH_AUGMENTATIONS = ("hflip", "vflip", "intensity")
# ... and those that can too when asked (``geometric``): one affine warp per image, masks by nearest.
BATCH_GEOMETRY = ("crop", "rotate")
NORMALISATIONS = ("imagenet", "clip", "half", "minmax", "none")
NORMALISATION_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}

CROP_SCALE = (0.7, 1.0)  # milder than ImageNet's (0.08, 1): lesions must stay in view
CROP_RATIO = (0.9, 1.1)
ROTATION_DEGREES = 15.0
BRIGHTNESS = 0.1  # shift by up to this fraction of the channel's range
CONTRAST = (0.8, 1.2)  # scale around the channel's mean
GAMMA = (0.7, 1.5)


def parse_augment(augment: str | Sequence[str] | None) -> list[str]:
    """Expand ``"default"``, ``"hflip,rotate"`` or a list of names/presets into augmentation names."""
    if augment is None:
        return []
    items = augment.split(",") if isinstance(augment, str) else list(augment)
    names: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if item in AUGMENT_PRESETS:
            expanded: Sequence[str] = AUGMENT_PRESETS[item]
        elif item in AUGMENTATIONS:
            expanded = (item,)
        else:
            raise UnknownChoiceError("augmentation", item, [*AUGMENTATIONS, *AUGMENT_PRESETS])
        names.extend(n for n in expanded if n not in names)
    return [n for n in AUGMENTATIONS if n in names]


def has_augmentation(augment: str | Sequence[str] | None) -> bool:
    """True when training images change from epoch to epoch (so features cannot be cached)."""
    return bool(parse_augment(augment))


def split_augment(
    augment: str | Sequence[str] | None, *, geometric: bool = False
) -> tuple[list[str], list[str]]:
    """(loader part, batch part): what the DataLoader must do and what ``batch_augment`` can do;
    ``geometric`` moves crop and rotation to the batch part too (segmentation warps masks along)."""
    names = parse_augment(augment)
    on_batch = BATCH_AUGMENTATIONS + (BATCH_GEOMETRY if geometric else ())
    return [n for n in names if n not in on_batch], [n for n in names if n in on_batch]


def normalisation_stats(normalise: str, channels: int) -> tuple[list[float], list[float]] | None:
    """Mean and std per channel; 3-channel statistics are averaged for other channel counts."""
    if normalise not in NORMALISATIONS:
        raise UnknownChoiceError("normalisation", normalise, NORMALISATIONS)
    if normalise not in NORMALISATION_STATS:
        return None
    mean, std = NORMALISATION_STATS[normalise]
    if channels == 3:
        return list(mean), list(std)
    return [sum(mean) / 3] * channels, [sum(std) / 3] * channels


# -- intensity --------------------------------------------------------------------------------------
def adjust_intensity(
    x: torch.Tensor,
    brightness: torch.Tensor | float = 0.0,
    contrast: torch.Tensor | float = 1.0,
    gamma: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """Gamma, contrast and brightness relative to each channel's range and mean.

    ``x`` is (..., C, H, W); the factors are scalars or shaped like ``x``'s leading dims (one per
    image). Gamma is applied to the channel rescaled to [0, 1] and mapped back, so it works on
    z-scored or normalised data too.
    """

    def per_image(v: torch.Tensor | float) -> torch.Tensor | float:
        if isinstance(v, torch.Tensor) and v.ndim:
            return v.reshape(*v.shape, *([1] * (x.ndim - v.ndim)))
        return v

    lo = x.amin(dim=(-2, -1), keepdim=True)
    span = (x.amax(dim=(-2, -1), keepdim=True) - lo).clamp_min(1e-6)
    y = ((x - lo) / span).clamp(0, 1) ** per_image(gamma)
    mean = y.mean(dim=(-2, -1), keepdim=True)
    y = mean + per_image(contrast) * (y - mean) + per_image(brightness)
    return y * span + lo


def _sample_intensity(shape: tuple[int, ...], generator: torch.Generator | None, device: Any) -> tuple:
    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=generator, device=device)

    gamma = torch.exp(uniform(math.log(GAMMA[0]), math.log(GAMMA[1])))
    return uniform(-BRIGHTNESS, BRIGHTNESS), uniform(*CONTRAST), gamma


class _ImageOnly(v2.Transform):
    """A transform that changes images and passes masks (and other tv_tensors) through."""

    def _apply(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.TVTensor) and not isinstance(inpt, tv_tensors.Image):
            return inpt
        out = self._apply(inpt.as_subclass(torch.Tensor), params)
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.Image) else out


class RandomIntensity(_ImageOnly):
    """Random brightness, contrast and gamma (see ``adjust_intensity``)."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        brightness, contrast, gamma = _sample_intensity((), None, "cpu")
        return {"brightness": brightness.item(), "contrast": contrast.item(), "gamma": gamma.item()}

    def _apply(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        return adjust_intensity(x, **params)


class MinMaxNormalise(_ImageOnly):
    """Rescale each image to [0, 1] by its own minimum and maximum."""

    def _apply(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        lo = x.amin(dim=(-3, -2, -1), keepdim=True)
        span = (x.amax(dim=(-3, -2, -1), keepdim=True) - lo).clamp_min(1e-6)
        return (x - lo) / span


class RepeatChannels(_ImageOnly):
    """Repeat a 1-channel image to ``channels`` (for backbones whose first conv stays 3-channel)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def _apply(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        have = x.shape[-3]
        if have == self.channels:
            return x
        if have != 1:
            raise ConfigError(f"images have {have} channels but the model takes {self.channels}")
        # A view: normalisation (or the batch collation) writes the repeated copy once.
        return x.expand(*x.shape[:-3], self.channels, *x.shape[-2:])


class RandomResizedCropSameSize(v2.RandomResizedCrop):
    """Random resized crop back to the input's own size (when no image size is asked for)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(size=1, **kwargs)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        params = super().make_params(flat_inputs)
        params["size"] = list(F.get_size(flat_inputs[0]))
        return params

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(
            F.resized_crop, inpt, **params, interpolation=self.interpolation, antialias=self.antialias
        )


def build_transforms(
    train: bool,
    *,
    size: int | None = None,
    augment: str | Sequence[str] | None = None,
    normalise: str = "none",
    in_chans: int | None = None,
) -> Callable[..., Any]:
    """The per-sample pipeline: [crop/resize] -> [flips, rotation, intensity] -> repeat -> normalise.

    Call it with an image, or ``(image, mask)`` as ``tv_tensors.Image`` / ``tv_tensors.Mask`` so
    that geometry applies to both. Augmentations run only when ``train``. ``in_chans`` repeats
    1-channel images to that many channels; normalisation statistics follow it.
    """
    names = parse_augment(augment) if train else []
    stats = normalisation_stats(normalise, in_chans or 1)
    steps: list[Callable[..., Any]] = []
    if "crop" in names:
        kwargs = {"scale": CROP_SCALE, "ratio": CROP_RATIO, "antialias": True}
        steps.append(v2.RandomResizedCrop(size, **kwargs) if size else RandomResizedCropSameSize(**kwargs))
    elif size:
        steps.append(v2.Resize((size, size), antialias=True))
    if "hflip" in names:
        steps.append(v2.RandomHorizontalFlip())
    if "vflip" in names:
        steps.append(v2.RandomVerticalFlip())
    if "rotate" in names:
        steps.append(v2.RandomRotation(ROTATION_DEGREES, interpolation=v2.InterpolationMode.BILINEAR))
    if "intensity" in names:
        steps.append(RandomIntensity())
    if in_chans:
        steps.append(RepeatChannels(in_chans))
    if normalise == "minmax":
        steps.append(MinMaxNormalise())
    elif stats is not None:
        steps.append(v2.Normalize(*stats))
    pipeline = v2.Compose(steps) if steps else v2.Identity()
    # Without random steps the same pipeline can run once on a whole batch (StoreDataset does).
    pipeline.batchable = not names
    return pipeline


def _random_affine(
    names: Sequence[str], shape: torch.Size, generator: torch.Generator | None, device: Any
) -> torch.Tensor | None:
    """(B, 2, 3) affine matrices (output -> input, normalised coordinates) of a random resized crop
    (``CROP_SCALE``, ``CROP_RATIO``) and a rotation within ``ROTATION_DEGREES``, one per image."""
    if not any(n in names for n in BATCH_GEOMETRY):
        return None
    n, height, width = shape[0], shape[-2], shape[-1]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator, device=device)

    theta = torch.zeros(n, 2, 3, device=device)
    sx = sy = torch.ones(n, device=device)
    if "crop" in names:
        area = uniform(*CROP_SCALE)
        ratio = torch.exp(uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
        sx, sy = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)
        theta[:, 0, 2], theta[:, 1, 2] = uniform(-1, 1) * (1 - sx), uniform(-1, 1) * (1 - sy)
    angle = (
        uniform(-ROTATION_DEGREES, ROTATION_DEGREES) if "rotate" in names else torch.zeros(n, device=device)
    )
    cos, sin = torch.cos(torch.deg2rad(angle)), torch.sin(torch.deg2rad(angle))
    # A rotation in pixels, expressed in coordinates normalised per side (non-square images stay true).
    theta[:, 0, 0], theta[:, 0, 1] = cos * sx, -sin * sy * height / width
    theta[:, 1, 0], theta[:, 1, 1] = sin * sx * width / height, cos * sy
    return theta


def _warp(x: torch.Tensor, theta: torch.Tensor, mode: str) -> torch.Tensor:
    import torch.nn.functional as TF

    grid = TF.affine_grid(theta.to(torch.float32), list(x.shape), align_corners=False)
    out = TF.grid_sample(x.float(), grid, mode=mode, padding_mode="zeros", align_corners=False)
    return out.to(x.dtype)


def batch_augment(
    images: torch.Tensor,
    augment: str | Sequence[str] | None,
    generator: torch.Generator | None = None,
    masks: torch.Tensor | None = None,
    *,
    geometric: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Random flips and intensity changes of a whole batch (B, C, H, W) where it lives (GPU).

    Each image gets its own random draw. Only the batch-capable names (``BATCH_AUGMENTATIONS``, and
    with ``geometric`` also crop and rotation as one affine warp per image) act; the rest belong to
    the loader (``split_augment``). Masks (B, M, H, W), when given, move with their images (flipped,
    warped by nearest neighbour, zero outside the image) and are returned too.
    """
    names = parse_augment(augment)
    n, device = images.shape[0], images.device
    theta = _random_affine(names, images.shape, generator, device) if geometric else None
    if theta is not None:
        images = _warp(images, theta, "bilinear")
        if masks is not None:
            masks = _warp(masks.reshape(n, -1, *masks.shape[-2:]), theta, "nearest").reshape(masks.shape)

    def coin() -> torch.Tensor:
        return torch.rand(n, generator=generator, device=device) < 0.5

    for name, dim in (("hflip", -1), ("vflip", -2)):
        if name in names:
            flip = coin()
            images = torch.where(flip.view(n, 1, 1, 1), images.flip(dim), images)
            if masks is not None:
                view = flip.view(n, *([1] * (masks.ndim - 1)))
                masks = torch.where(view, masks.flip(dim), masks)
    if "intensity" in names:
        brightness, contrast, gamma = _sample_intensity((n,), generator, device)
        dtype = images.dtype
        images = adjust_intensity(images.float(), brightness, contrast, gamma).to(dtype)
    return images if masks is None else (images, masks)
