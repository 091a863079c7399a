"""CUDA paths (AMP, channels_last, compile, batch augmentation on the device). Run with `pytest -m gpu`
on a machine with a GPU; they are skipped elsewhere and deselected by default."""

from __future__ import annotations

import json

import pytest
import torch

from medtl.engine import run

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize(
    ("amp", "channels_last", "compile_model"),
    [("none", False, False), ("bf16", True, False), ("fp16", True, False), ("bf16", True, True)],
)
def test_cuda_run_trains_with_each_precision(make_config, amp, channels_last, compile_model):
    config = make_config(
        device="cuda",
        strategy="full",
        phase_epochs={"all": 2},
        amp=amp,
        channels_last=channels_last,
        compile=compile_model,
        augment="flip",
    )
    result = run(config)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    history = [h for h in metrics["history"] if "train_loss" in h]
    assert history, "no epochs recorded"
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in history)
    assert 0.0 <= metrics["test"]["auroc"] <= 1.0
    assert metrics["energy"]["method"] in {"nvml", "rapl", "cpu-time-estimate"}
