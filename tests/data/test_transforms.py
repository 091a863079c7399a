"""Augmentation, normalisation presets, channel repeat and GPU-style batch augmentation."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors

from medtl.data.transforms import (
    adjust_intensity,
    batch_augment,
    build_transforms,
    has_augmentation,
    normalisation_stats,
    parse_augment,
    split_augment,
)
from medtl.errors import ConfigError, UnknownChoiceError


@pytest.mark.parametrize(
    ("augment", "expected"),
    [
        (None, []),
        ("none", []),
        ("", []),
        ("default", ["crop", "hflip", "rotate", "intensity"]),
        ("rotate,hflip", ["hflip", "rotate"]),
        (["flip", "vflip", "hflip"], ["hflip", "vflip"]),
        ("light", ["hflip", "intensity"]),
    ],
)
def test_parse_augment(augment, expected):
    assert parse_augment(augment) == expected
    assert has_augmentation(augment) is bool(expected)


def test_unknown_augmentation_suggests_names():
    with pytest.raises(UnknownChoiceError, match="unknown augmentation 'rotation', did you mean 'rotate'"):
        parse_augment("hflip,rotation")


def test_split_augment_moves_flips_and_intensity_to_the_batch():
    assert split_augment("default") == (["crop", "rotate"], ["hflip", "intensity"])


@pytest.mark.parametrize(
    ("normalise", "channels", "mean", "std"),
    [
        ("imagenet", 3, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ("imagenet", 1, [0.449], [0.226]),
        ("clip", 3, [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]),
        ("half", 1, [0.5], [0.5]),
        ("half", 4, [0.5] * 4, [0.5] * 4),
    ],
)
def test_normalisation_stats(normalise, channels, mean, std):
    got_mean, got_std = normalisation_stats(normalise, channels)
    assert got_mean == pytest.approx(mean) and got_std == pytest.approx(std)


def test_unknown_normalisation():
    with pytest.raises(UnknownChoiceError, match="unknown normalisation 'imagnet', did you mean 'imagenet'"):
        build_transforms(False, normalise="imagnet")


@pytest.mark.parametrize(
    ("normalise", "in_chans", "expected"),
    [
        ("imagenet", 3, [(0.6 - 0.485) / 0.229, (0.6 - 0.456) / 0.224, (0.6 - 0.406) / 0.225]),
        ("imagenet", 1, [(0.6 - 0.449) / 0.226]),
        ("half", 1, [0.2]),
        ("none", 3, [0.6, 0.6, 0.6]),
    ],
)
def test_eval_transform_values(normalise, in_chans, expected):
    image = torch.full((1, 8, 8), 0.6)
    out = build_transforms(False, size=16, normalise=normalise, in_chans=in_chans)(image)
    assert out.shape == (in_chans, 16, 16)
    torch.testing.assert_close(out[:, 3, 5], torch.tensor(expected), rtol=1e-5, atol=1e-5)


def test_minmax_is_per_image():
    image = torch.linspace(-3, 5, 2 * 6 * 6).reshape(2, 6, 6)
    out = build_transforms(False, normalise="minmax")(image)
    assert out.min().item() == pytest.approx(0) and out.max().item() == pytest.approx(1)
    torch.testing.assert_close(out, (image + 3) / 8)


def test_channel_repeat_needs_one_channel():
    out = build_transforms(False, in_chans=3)(torch.rand(1, 4, 4))
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    with pytest.raises(ConfigError, match="images have 4 channels but the model takes 3"):
        build_transforms(False, in_chans=3)(torch.rand(4, 4, 4))


def test_eval_ignores_augmentation_and_train_applies_it():
    image = torch.rand(1, 16, 16)
    evaluation = build_transforms(False, size=16, augment="default", normalise="half")
    assert torch.equal(evaluation(image), evaluation(image))
    train = build_transforms(True, size=12, augment="default", normalise="half")
    torch.manual_seed(0)
    outs = [train(image) for _ in range(4)]
    assert all(o.shape == (1, 12, 12) for o in outs)
    assert not torch.allclose(outs[0], outs[1])


def test_crop_without_size_keeps_the_input_size():
    out = build_transforms(True, augment="crop")(torch.rand(1, 20, 20))
    assert out.shape == (1, 20, 20)


@pytest.mark.parametrize("seed", range(4))
def test_geometry_moves_image_and_mask_alike(seed):
    torch.manual_seed(seed)
    mask = torch.zeros(1, 64, 64, dtype=torch.int64)
    mask[:, 8:28, 12:52] = 1  # off-centre, asymmetric: any mismatch in flips or crops shows
    image = mask.float().repeat(2, 1, 1)
    transform = build_transforms(True, size=48, augment=["crop", "hflip", "vflip", "rotate"])
    out_image, out_mask = transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
    assert isinstance(out_mask, tv_tensors.Mask) and out_mask.shape == (1, 48, 48)
    assert set(out_mask.unique().tolist()) <= {0, 1}  # nearest neighbour: no new labels
    agree = ((out_image[0] > 0.5) == (out_mask[0] == 1)).float().mean().item()
    assert agree > 0.95  # only edge pixels differ (bilinear image, nearest mask); a missed flip gives ~0.6


def test_intensity_and_normalisation_leave_masks_alone():
    mask = tv_tensors.Mask(torch.randint(0, 3, (1, 8, 8)))
    transform = build_transforms(True, augment="intensity", normalise="imagenet", in_chans=3)
    image, out_mask = transform(tv_tensors.Image(torch.rand(1, 8, 8)), mask)
    assert image.shape == (3, 8, 8)
    assert torch.equal(out_mask, mask)


def test_intensity_commutes_with_per_channel_normalisation():
    x = torch.rand(4, 3, 8, 8)
    scale, shift = (
        torch.tensor([2.0, 0.5, 4.0]).view(1, 3, 1, 1),
        torch.tensor([-1.0, 3.0, 0.2]).view(1, 3, 1, 1),
    )
    factors = {"brightness": torch.tensor([0.1, -0.05, 0, 0.02]), "contrast": 1.1, "gamma": 0.8}
    torch.testing.assert_close(
        adjust_intensity(x * scale + shift, **factors), adjust_intensity(x, **factors) * scale + shift
    )
    assert torch.allclose(adjust_intensity(x), x, atol=1e-6)  # identity factors


def test_intensity_gamma_and_contrast_values():
    x = torch.tensor([[[0.0, 0.25], [0.5, 1.0]]])
    torch.testing.assert_close(adjust_intensity(x, gamma=2.0), x**2)
    torch.testing.assert_close(adjust_intensity(x, contrast=0.0), torch.full_like(x, x.mean()))
    torch.testing.assert_close(adjust_intensity(x, brightness=0.1), x + 0.1)


def test_batch_flips_each_image_and_its_mask():
    images = torch.arange(64 * 4 * 4, dtype=torch.float32).reshape(64, 1, 4, 4)
    masks = (images > images.mean()).long()
    out, out_masks = batch_augment(images, "hflip", torch.Generator().manual_seed(0), masks=masks)
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, images)])
    unchanged = torch.tensor([torch.equal(o, i) for o, i in zip(out, images)])
    assert bool((flipped | unchanged).all()) and 10 < int(flipped.sum()) < 54
    assert torch.equal(out_masks, (out > images.mean()).long())
    again = batch_augment(images, "hflip", torch.Generator().manual_seed(0))
    assert torch.equal(again, out)


def test_batch_intensity_changes_images_independently():
    images = torch.rand(8, 3, 6, 6, dtype=torch.float64)
    masks = torch.ones(8, 1, 6, 6, dtype=torch.long)
    out, out_masks = batch_augment(
        images, ["intensity", "crop"], torch.Generator().manual_seed(1), masks=masks
    )
    assert out.dtype == torch.float64 and out.shape == images.shape
    assert torch.equal(out_masks, masks)
    change = (out - images).abs().mean(dim=(1, 2, 3))
    assert (change > 0).all() and len(set(change.tolist())) == 8
    assert torch.equal(batch_augment(images, "rotate"), images)  # loader-only names do nothing here


# -- segmentation: image and mask move together ------------------------------------------------------
def _disc_pair(size: int = 48, height: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """An image whose only structure is a labelled off-centre blob (labels 0/1/2/4, as BraTS)."""
    height = height or size
    y, x = torch.meshgrid(torch.arange(height), torch.arange(size), indexing="ij")
    r = ((x - size * 0.35) ** 2 + (y - height * 0.4) ** 2).sqrt()
    mask = torch.zeros(1, height, size, dtype=torch.long)
    mask[0][r < 14], mask[0][r < 9], mask[0][r < 4] = 2, 1, 4
    return (mask.float() / 4).expand(3, height, size).clone(), mask


def test_split_augment_geometric_moves_crop_and_rotation_to_the_batch():
    assert split_augment("default", geometric=True) == ([], ["crop", "hflip", "rotate", "intensity"])


@pytest.mark.parametrize("augment", ["crop", "rotate", "hflip,vflip", "default"])
def test_per_sample_augmentation_moves_masks_with_images_by_nearest_neighbour(augment):
    image, mask = _disc_pair()
    transform = build_transforms(True, augment=augment.replace("default", "crop,rotate,hflip"))
    torch.manual_seed(3)
    for _ in range(5):
        out_image, out_mask = transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
        assert out_mask.shape == mask.shape and out_mask.dtype == torch.long
        assert set(out_mask.unique().tolist()) <= {0, 1, 2, 4}  # nearest: no blended labels
        # the image still shows the mask: labelled pixels are where the blob is
        inside = out_image[0] > 0.3
        agree = (inside == (out_mask[0] >= 2)).float().mean()
        assert agree > 0.9  # borders blur; a mask left behind would miss ~a third of the blob


@pytest.mark.parametrize("height", [48, 32])
def test_batch_crop_and_rotation_warp_masks_with_images(height):
    image, mask = _disc_pair(48, height)
    images, masks = image.expand(16, -1, -1, -1).clone(), mask.expand(16, -1, -1, -1).clone()
    out, out_masks = batch_augment(
        images, "crop,rotate", torch.Generator().manual_seed(0), masks=masks, geometric=True
    )
    assert out.shape == images.shape and out_masks.shape == masks.shape and out_masks.dtype == torch.long
    assert set(out_masks.unique().tolist()) <= {0, 1, 2, 4}
    moved = [not torch.equal(o, m) for o, m in zip(out_masks, masks)]
    assert sum(moved) >= 14  # each image gets its own crop and angle
    agree = ((out[:, 0] > 0.3) == (out_masks[:, 0] >= 2)).float().mean()
    assert agree > 0.95
    # no extra label mass appears: the blob shrinks or grows only with the crop's zoom
    again, again_masks = batch_augment(
        images, "crop,rotate", torch.Generator().manual_seed(0), masks=masks, geometric=True
    )
    assert torch.equal(again, out) and torch.equal(again_masks, out_masks)


def test_batch_rotation_keeps_a_centred_disc_in_place():
    """A centred disc is rotation-invariant: the warp is a pure rotation about the image centre."""
    y, x = torch.meshgrid(torch.arange(41), torch.arange(41), indexing="ij")
    disc = ((((x - 20) ** 2 + (y - 20) ** 2) < 100).long())[None, None].expand(8, 1, -1, -1).clone()
    _, out = batch_augment(
        disc.float(), "rotate", torch.Generator().manual_seed(0), masks=disc, geometric=True
    )
    assert (out != disc).float().mean() < 0.01
