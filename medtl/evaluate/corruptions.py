"""Image corruptions for robustness evaluation: 10 kinds, severities 1-5, deterministic per seed.

Each corruption is a registered entry (name, description, one parameter per severity) over a
function ``(image, level, seed) -> image`` built on MONAI transforms. Images are (C, H, W) floats
as stored (any intensity range); severity 0 returns the image unchanged.

To make a severity mean the same thing whatever normalisation a store applied, additive noise and
k-space spikes are scaled by the image's intensity range (max - min), blur and ghosting by its
size (sigma in pixels at 224 px), and Rician noise and the bias field act on the image shifted to
a minimum of 0 (they model magnitude images). With the same seed, every severity uses the same
random draw (noise pattern, bias-field shape, spike positions), scaled up, so distortion grows
monotonically with severity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from monai.transforms import (
    AdjustContrast,
    GaussianSmooth,
    GibbsNoise,
    KSpaceSpikeNoise,
    RandBiasField,
    RandGaussianNoise,
    RandRicianNoise,
    Resize,
)
from monai.transforms.utils import Fourier
from monai.utils import convert_to_tensor

from medtl.errors import ConfigError, UnknownChoiceError

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
ImageT = TypeVar("ImageT", torch.Tensor, np.ndarray)
CorruptionFn = Callable[[torch.Tensor, Any, int], torch.Tensor]


@dataclass(frozen=True)
class Corruption:
    """A registered corruption: ``levels[s - 1]`` is its parameter at severity ``s``."""

    name: str
    description: str
    parameter: str
    levels: tuple[Any, ...]
    fn: CorruptionFn

    def __call__(self, image: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
        return self.fn(image, self.levels[severity - 1], seed)


CORRUPTIONS: dict[str, Corruption] = {}


def register(name: str, description: str, parameter: str, levels: tuple[Any, ...]):
    def wrap(fn: CorruptionFn) -> CorruptionFn:
        if len(levels) != len(SEVERITIES):
            raise ValueError(f"{name}: one level per severity is required")
        CORRUPTIONS[name] = Corruption(name, description, parameter, tuple(levels), fn)
        return fn

    return wrap


def list_corruptions() -> list[str]:
    return list(CORRUPTIONS)


def get_corruption(name: str) -> Corruption:
    try:
        return CORRUPTIONS[name]
    except KeyError:
        raise UnknownChoiceError("corruption", name, CORRUPTIONS) from None


def corrupt(image: ImageT, name: str, severity: int, seed: int = 0) -> ImageT:
    """Apply corruption ``name`` at ``severity`` (0 = none, 1-5) to a (C, H, W) image.

    Returns the same type (tensor or array), shape and dtype as the input.
    """
    corruption = get_corruption(name)
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 0 <= severity <= 5:
        raise ConfigError(f"corruption severity must be an integer 0-5, got {severity!r}")
    is_numpy = isinstance(image, np.ndarray)
    x = torch.as_tensor(image)
    if x.ndim != 3:
        raise ValueError(f"corruptions take (C, H, W) images, got shape {tuple(x.shape)}")
    if severity == 0:
        out = x.clone()
    else:
        work = x.detach().to("cpu", torch.float32)
        out = convert_to_tensor(corruption(work, int(severity), int(seed) % 2**32), track_meta=False)
        out = out.to(x.device, x.dtype)
    return out.numpy() if is_numpy else out


# -- helpers -------------------------------------------------------------------------------------


def _intensity_range(x: torch.Tensor) -> float:
    span = float(x.max() - x.min())
    return span if span > 0 else 1.0


def _on_nonnegative(x: torch.Tensor, transform: Callable[[torch.Tensor], Any]) -> torch.Tensor:
    """Apply ``transform`` to the image shifted to min 0 (magnitude-image models), then shift back."""
    low = x.min()
    return convert_to_tensor(transform(x - low), track_meta=False).float() + low


def _scale_to_size(sigma_at_224: float, x: torch.Tensor) -> float:
    return sigma_at_224 * max(x.shape[-2:]) / 224.0


# -- the corruptions -----------------------------------------------------------------------------


@register(
    "gaussian_noise",
    "additive Gaussian noise",
    "std as a fraction of the intensity range",
    (0.02, 0.04, 0.07, 0.10, 0.15),
)
def _gaussian_noise(x: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    t = RandGaussianNoise(prob=1.0, std=fraction * _intensity_range(x), sample_std=False)
    t.set_random_state(seed)
    return t(x)


@register(
    "rician_noise",
    "Rician noise (magnitude of complex Gaussian noise, as in MR magnitude images)",
    "std as a fraction of the intensity range",
    (0.02, 0.04, 0.07, 0.10, 0.15),
)
def _rician_noise(x: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    t = RandRicianNoise(prob=1.0, std=fraction * _intensity_range(x), sample_std=False)
    t.set_random_state(seed)
    return _on_nonnegative(x, t)


@register("gaussian_blur", "Gaussian blur", "sigma in pixels at 224 px", (0.75, 1.25, 2.0, 3.0, 4.0))
def _gaussian_blur(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    return GaussianSmooth(sigma=_scale_to_size(sigma, x))(x)


@register(
    "contrast",
    "contrast reduction towards each channel's mean",
    "remaining contrast factor",
    (0.75, 0.6, 0.45, 0.3, 0.15),
)
def _contrast(x: torch.Tensor, factor: float, seed: int) -> torch.Tensor:
    # MONAI's AdjustContrast is a gamma curve (the next entry); plain contrast is a linear squeeze.
    mean = x.mean(dim=(-2, -1), keepdim=True)
    return mean + factor * (x - mean)


@register(
    "gamma",
    "gamma curve on the min-max normalised intensities",
    "gamma",
    (1.25, 1.5, 2.0, 2.5, 3.0),
)
def _gamma(x: torch.Tensor, gamma: float, seed: int) -> torch.Tensor:
    return AdjustContrast(gamma=gamma)(x)


@register(
    "bias_field",
    "smooth multiplicative MR bias field (degree-3 Legendre polynomial)",
    "coefficient range (±)",
    (0.05, 0.1, 0.15, 0.2, 0.3),
)
def _bias_field(x: torch.Tensor, coeff: float, seed: int) -> torch.Tensor:
    t = RandBiasField(degree=3, coeff_range=(-coeff, coeff), prob=1.0)
    t.set_random_state(seed)
    return _on_nonnegative(x, t)


@register(
    "gibbs_ringing",
    "Gibbs ringing from truncating high k-space frequencies",
    "alpha (fraction of k-space radius removed)",
    (0.4, 0.5, 0.6, 0.7, 0.8),
)
def _gibbs(x: torch.Tensor, alpha: float, seed: int) -> torch.Tensor:
    return GibbsNoise(alpha=alpha)(x)


@register(
    "kspace_spikes",
    "k-space spikes (herringbone artefact)",
    "(spikes, stripe amplitude as a fraction of the intensity range)",
    ((1, 0.03), (2, 0.05), (3, 0.08), (4, 0.12), (5, 0.16)),
)
def _kspace_spikes(x: torch.Tensor, level: tuple[int, float], seed: int) -> torch.Tensor:
    count, fraction = level
    h, w = x.shape[-2:]
    rng = np.random.default_rng(seed)
    # The same positions for every severity, severity s using s of them. They lie in the outer
    # k-space (20-45% of the size from the centre), where the image itself has little energy, so
    # the spike rather than the replaced coefficient sets the artefact.
    offsets: list[tuple[int, int]] = []
    while len(offsets) < len(SEVERITIES):
        radius, angle = rng.uniform(0.2, 0.45), rng.uniform(0, 2 * np.pi)
        loc = (h // 2 + round(radius * h * np.sin(angle)), w // 2 + round(radius * w * np.cos(angle)))
        if loc not in offsets:
            offsets.append(loc)
    # A spike of magnitude A in the unnormalised FFT is a grating of amplitude A / (H W) in the image.
    log_magnitude = float(np.log(fraction * _intensity_range(x) * h * w))
    return KSpaceSpikeNoise(loc=offsets[:count], k_intensity=[log_magnitude] * count)(x)


@register(
    "motion_ghosting",
    "motion ghosting: every n-th phase-encoding line of k-space attenuated",
    "attenuation of the affected lines",
    (0.2, 0.35, 0.5, 0.7, 0.9),
)
def _motion_ghosting(x: torch.Tensor, intensity: float, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    axis = -2 if rng.random() < 0.5 else -1  # phase-encoding direction
    every = int(rng.integers(4, 9))  # ghosts appear at 1/every of the field of view
    k = Fourier.shift_fourier(x, 2)
    centre = k.shape[axis] // 2
    lines = [slice(None)] * k.ndim
    lines[axis] = slice(None, None, every)
    keep = k.select(axis, centre).clone()
    k[tuple(lines)] *= 1.0 - intensity
    # The centre line carries most of the image contrast; keeping it is how ghosting looks in MR.
    index = [slice(None)] * k.ndim
    index[axis] = centre
    k[tuple(index)] = keep
    return Fourier.inv_shift_fourier(k, 2).to(x.dtype)


@register(
    "downsample",
    "down-sampling (area) and back up (bilinear), losing resolution",
    "down-sampling factor",
    (1.5, 2.0, 3.0, 4.0, 6.0),
)
def _downsample(x: torch.Tensor, factor: float, seed: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    small = Resize((max(1, round(h / factor)), max(1, round(w / factor))), mode="area")(x)
    return Resize((h, w), mode="bilinear", align_corners=False)(small)
