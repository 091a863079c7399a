"""Corruptions: identity at severity 0, deterministic per seed, distortion growing with severity."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from medtl.errors import ConfigError, UnknownChoiceError
from medtl.evaluate.corruptions import CORRUPTIONS, SEVERITIES, corrupt, get_corruption, list_corruptions

NAMES = list_corruptions()


def phantom(channels: int = 1, size: int = 48, offset: float = 0.0) -> torch.Tensor:
    """A brain-like phantom: bright ellipse, darker inner structures, sharp edges."""
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    img = 0.8 * ((xx / 0.8) ** 2 + (yy / 0.9) ** 2 < 1)
    img -= 0.3 * ((xx - 0.2) ** 2 + yy**2 < 0.1)
    img += 0.2 * ((xx + 0.3) ** 2 + (yy + 0.3) ** 2 < 0.05)
    img = np.stack([img * (1 - 0.1 * c) for c in range(channels)]) + offset
    return torch.from_numpy(img.astype(np.float32))


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.double() - b.double()) ** 2).mean())


def test_registry_has_the_issue_list():
    assert set(NAMES) == {
        "gaussian_noise",
        "rician_noise",
        "gaussian_blur",
        "contrast",
        "gamma",
        "bias_field",
        "gibbs_ringing",
        "kspace_spikes",
        "motion_ghosting",
        "downsample",
    }
    for corruption in CORRUPTIONS.values():
        assert len(corruption.levels) == len(SEVERITIES)
        assert corruption.description and corruption.parameter


@pytest.mark.parametrize("name", NAMES)
def test_severity_zero_is_identity(name):
    x = phantom()
    out = corrupt(x, name, 0, seed=3)
    assert torch.equal(out, x) and out is not x


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("offset", [0.0, -0.5])  # also z-scored-like images with negative values
def test_distortion_grows_with_severity(name, offset):
    x = phantom(offset=offset)
    errors = [mse(corrupt(x, name, s, seed=7), x) for s in SEVERITIES]
    assert errors[0] > 1e-7, "severity 1 changes the image"
    assert all(a < b for a, b in itertools.pairwise(errors)), errors


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_given_seed_and_keeps_shape_dtype_type(name):
    x = phantom(channels=3)
    a, b = corrupt(x, name, 3, seed=11), corrupt(x, name, 3, seed=11)
    assert torch.equal(a, b)
    assert a.shape == x.shape and a.dtype == x.dtype and type(a) is torch.Tensor
    assert torch.isfinite(a).all()
    arr = x.numpy().astype(np.float16)
    out = corrupt(arr, name, 2, seed=0)
    assert isinstance(out, np.ndarray) and out.dtype == np.float16 and out.shape == arr.shape
    assert np.array_equal(corrupt(x.numpy(), name, 3, seed=11), a.numpy())


@pytest.mark.parametrize("name", ["gaussian_noise", "rician_noise", "bias_field", "kspace_spikes"])
def test_seed_changes_random_corruptions(name):
    x = phantom()
    assert not torch.equal(corrupt(x, name, 3, seed=1), corrupt(x, name, 3, seed=2))


def test_noise_scales_with_intensity_range():
    # The same severity means the same relative noise whatever the store's normalisation.
    x = phantom()
    rel_small = mse(corrupt(x, "gaussian_noise", 3, seed=0), x)
    rel_large = mse(corrupt(x * 100, "gaussian_noise", 3, seed=0), x * 100) / 100**2
    assert rel_large == pytest.approx(rel_small, rel=1e-4)


def test_noise_std_matches_its_level():
    x = torch.zeros(1, 128, 128)
    x[0, 0, 0] = 1.0  # intensity range 1
    noisy = corrupt(x, "gaussian_noise", 5, seed=0)
    assert float(noisy[0, 1:].std()) == pytest.approx(get_corruption("gaussian_noise").levels[4], rel=0.05)


def test_downsample_removes_fine_detail_but_keeps_constant_images():
    flat = torch.full((1, 32, 32), 0.4)
    assert torch.allclose(corrupt(flat, "downsample", 5), flat, atol=1e-6)
    checker = torch.from_numpy((np.indices((32, 32)).sum(0) % 2).astype(np.float32))[None]
    assert float(corrupt(checker, "downsample", 1).std()) < 0.5 * float(checker.std())


def test_unknown_name_suggests_close_match():
    with pytest.raises(
        UnknownChoiceError, match="unknown corruption 'gausian_noise', did you mean 'gaussian_noise'"
    ):
        corrupt(phantom(), "gausian_noise", 1)


@pytest.mark.parametrize("severity", [6, -1, 2.5, True])
def test_bad_severity(severity):
    with pytest.raises(ConfigError, match="severity must be an integer 0-5"):
        corrupt(phantom(), "gamma", severity)


def test_bad_shape():
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        corrupt(torch.zeros(32, 32), "gamma", 1)
