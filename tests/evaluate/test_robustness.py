"""Robustness table with a tiny deterministic classifier whose failure modes are known.

The classifier scores fine texture (mean absolute horizontal difference): class 1 images carry a
checkerboard of varying amplitude, class 0 images are smooth. Blur and down-sampling erase the
texture, so AUROC must fall with severity; a linear contrast change scales every score alike, so
the ranking and hence AUROC must not change at all.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from medtl.errors import ConfigError, UnknownChoiceError
from medtl.evaluate.corruptions import corrupt
from medtl.evaluate.robustness import CorruptedDataset, batch_scorer, evaluate_robustness


class TextureSet(torch.utils.data.Dataset):
    def __init__(self, n: int = 16, size: int = 32) -> None:
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:size, 0:size] / size
        checker = (np.indices((size, size)).sum(0) % 2) - 0.5
        self.items = []
        for i in range(n):
            label = i % 2
            base = 0.3 + 0.4 * xx * rng.uniform(0.5, 1.0) + 0.1 * yy
            amplitude = rng.uniform(0.02, 0.2) if label else 0.0
            noise = rng.normal(0, 0.01, (size, size))
            image = (base + amplitude * checker + noise).astype(np.float32)
            self.items.append((torch.from_numpy(image)[None], torch.tensor(label)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def texture_score(images: torch.Tensor) -> torch.Tensor:
    return images.diff(dim=-1).abs().mean(dim=(1, 2, 3))


def test_known_drop_directions():
    result = evaluate_robustness(
        texture_score,
        TextureSet(),
        task="binary",
        corruptions=["gaussian_blur", "downsample", "contrast"],
        batch_size=5,
    )
    rows = {(r["corruption"], r["severity"]): r for r in result.rows}
    assert len(result.rows) == 1 + 3 * 5
    clean = rows[("clean", 0)]["auroc"]
    assert clean == 1.0 and rows[("clean", 0)]["drop"] == 0.0
    for name in ("gaussian_blur", "downsample"):
        drops = [rows[(name, s)]["drop"] for s in range(1, 6)]
        assert min(drops) >= 0 and drops[-1] > 0.2, (name, drops)
    # Blur erases the texture gradually; down-sampling by 1.5 already removes a 1-pixel checkerboard.
    blur = [rows[("gaussian_blur", s)]["drop"] for s in range(1, 6)]
    assert all(b >= a for a, b in itertools.pairwise(blur)), blur
    assert all(rows[("contrast", s)]["drop"] == pytest.approx(0.0) for s in range(1, 6))
    summary = result.summary
    assert summary["clean"] == clean
    assert summary["mean_drop"] == pytest.approx(np.mean([r["drop"] for r in result.rows[1:]]))
    assert summary["per_corruption"]["contrast"]["mean_drop"] == pytest.approx(0.0)
    assert summary["per_corruption"]["gaussian_blur"]["worst"] == min(
        rows[("gaussian_blur", s)]["auroc"] for s in range(1, 6)
    )
    assert summary["relative_mean_drop"] == pytest.approx(summary["mean_drop"] / clean)
    assert set(result.to_dict()) == {"metric", "rows", "summary"}


def test_rows_carry_every_scalar_metric_and_rerun_is_identical():
    kwargs = dict(task="binary", corruptions=["gaussian_noise"], severities=[2, 5], metric="accuracy")
    a = evaluate_robustness(lambda x: (texture_score(x) > 0.05).float(), TextureSet(), **kwargs)
    b = evaluate_robustness(lambda x: (texture_score(x) > 0.05).float(), TextureSet(), **kwargs)
    assert a.rows == b.rows
    assert [r["severity"] for r in a.rows] == [0, 2, 5]
    assert {"accuracy", "balanced_accuracy", "auroc", "precision", "recall", "f1", "drop"} <= set(a.rows[0])
    assert a.rows[1]["drop"] == pytest.approx(a.rows[0]["accuracy"] - a.rows[1]["accuracy"])


def test_score_fn_and_transform_after_corruption():
    seen = []

    def score_fn(dataset):
        images = torch.stack([dataset[i][0] for i in range(len(dataset))])
        seen.append(float(images.mean()))
        targets = np.array([int(dataset[i][1]) for i in range(len(dataset))])
        return texture_score(images).numpy(), targets

    # The transform shifts every image by +10 after the corruption: noise levels stay relative to
    # the raw image's range, and the mean seen by the scorer is ~10 higher.
    result = evaluate_robustness(
        None,
        TextureSet(),
        task="binary",
        corruptions=["gamma"],
        severities=[1],
        transform=lambda x: x + 10,
        score_fn=score_fn,
    )
    assert len(result.rows) == 2 and all(m > 10 for m in seen)


def test_corrupted_dataset_seeds_each_sample():
    data = TextureSet(n=4)
    ds = CorruptedDataset(data, "gaussian_noise", 3, seed=5)
    noise0 = ds[0][0] - data[0][0]
    noise1 = ds[1][0] - data[1][0]
    assert not torch.allclose(noise0, noise1)
    assert torch.equal(ds[1][0], corrupt(data[1][0], "gaussian_noise", 3, seed=6))  # seed + index
    assert torch.equal(CorruptedDataset(data, None)[2][0], data[2][0])


def test_batch_scorer_concatenates_in_order():
    scores, targets = batch_scorer(texture_score, batch_size=3)(TextureSet(n=7))
    assert scores.shape == (7,) and targets.tolist() == [0, 1, 0, 1, 0, 1, 0]


def test_bad_arguments():
    with pytest.raises(UnknownChoiceError, match="unknown corruption 'blur'"):
        evaluate_robustness(texture_score, TextureSet(n=4), task="binary", corruptions=["blur"])
    with pytest.raises(ConfigError, match="severity must be an integer 1-5"):
        evaluate_robustness(texture_score, TextureSet(n=4), task="binary", severities=[0, 1])
    with pytest.raises(ConfigError, match="robustness metric must be one of"):
        evaluate_robustness(texture_score, TextureSet(n=4), task="binary", metric="dice")


def test_undefined_metric_gives_nan_drop_not_crash():
    one_class = torch.utils.data.Subset(TextureSet(n=8), [1, 3, 5])
    result = evaluate_robustness(
        texture_score, one_class, task="binary", corruptions=["gamma"], severities=[1]
    )
    assert math.isnan(result.summary["clean"]) and math.isnan(result.summary["mean_drop"])
