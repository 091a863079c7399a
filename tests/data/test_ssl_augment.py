"""SimCLR views: per-sample random parameters on a batch, seeded, blur switch, the per-sample form."""

from __future__ import annotations

import pickle

import pytest
import torch

from medtl.data.ssl_augment import BatchViews, SampleViews, SimCLRAugment, to_unit_range
from medtl.errors import ConfigError


def batch(n=6, c=3, size=32):
    g = torch.Generator().manual_seed(0)
    one = torch.rand(1, c, size, size, generator=g)
    return one.expand(n, -1, -1, -1).clone()  # the same image n times


def test_every_image_of_a_batch_gets_its_own_augmentation():
    views = BatchViews(SimCLRAugment(size=16), channels=3, normalise="none")
    a, b = views(batch(), seed=1)
    assert a.shape == b.shape == (6, 3, 16, 16)
    # one image repeated: per-sample crops and jitter make the copies differ from each other
    diffs = [(a[0] - a[i]).abs().mean().item() for i in range(1, 6)]
    assert min(diffs) > 1e-3
    assert (a - b).abs().mean() > 1e-3  # the two views of an image differ too


def test_seed_makes_views_reproducible_and_leaves_global_rng_alone():
    views = BatchViews(SimCLRAugment(size=16, blur=True), channels=3)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = views(batch(), seed=7)
    assert torch.rand(1) == expected_next  # the fork kept the global stream where it was
    second = views(batch(), seed=7)
    third = views(batch(), seed=8)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], third[0])


def test_blur_is_behind_a_switch():
    import kornia.augmentation as K

    def names(blur):
        return [type(m) for m in BatchViews(SimCLRAugment(size=32, blur=blur), 3).augment.children()]

    assert K.RandomGaussianBlur not in names(False)
    assert K.RandomGaussianBlur in names(True)
    assert SimCLRAugment(size=224).blur_kernel == 23  # ~10% of the view, odd


def test_single_channel_images_get_brightness_and_contrast_only():
    import kornia.augmentation as K

    views = BatchViews(SimCLRAugment(size=16, jitter_p=1.0), channels=1, normalise="imagenet")
    kinds = [type(m) for m in views.augment.children()]
    assert K.RandomGrayscale not in kinds
    a, _ = views(batch(c=1), seed=0)
    assert a.shape == (6, 1, 16, 16)


def test_normalisation_follows_augmentation():
    views = BatchViews(SimCLRAugment(size=16, jitter_p=0, grayscale_p=0, hflip=0, scale=(1, 1)), 3)
    x = torch.full((2, 3, 16, 16), 0.485)
    a, _ = views(x, seed=0)
    assert torch.allclose(a[:, 0], torch.zeros(2, 16, 16), atol=1e-5)  # ImageNet mean of the red channel


def test_wrong_channels_and_bad_options():
    with pytest.raises(ValueError, match=r"expected \(B, 3, H, W\)"):
        BatchViews(SimCLRAugment(size=16), 3)(torch.rand(2, 1, 16, 16))
    with pytest.raises(ConfigError, match="probability"):
        SimCLRAugment(size=16, jitter_p=1.5)
    with pytest.raises(ConfigError, match="crop scale"):
        SimCLRAugment(size=16, scale=(0.5, 0.2))


def test_out_of_range_images_are_rescaled_per_image():
    x = torch.stack([torch.linspace(-3, 5, 16).view(1, 4, 4), torch.full((1, 4, 4), 0.5)])
    y = to_unit_range(x)
    assert y[0].min() == 0 and y[0].max() == 1
    assert torch.equal(y[1], x[1])


def test_per_sample_form_makes_two_views_and_pickles():
    views = pickle.loads(pickle.dumps(SampleViews(SimCLRAugment(size=12, blur=True), 3)))
    a, b = views(torch.rand(3, 20, 24))
    assert a.shape == b.shape == (3, 12, 12)
    assert not torch.equal(a, b)
    one_channel = SampleViews(SimCLRAugment(size=12, jitter_p=1.0), 1)
    assert one_channel(torch.rand(1, 20, 20))[0].shape == (1, 12, 12)
