"""`medtl finetune` and `medtl extract`: wiring, printed tables, exit code 2 with one line for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from medtl.io.store import SampleRecord, StoreWriter
from medtl_cli.main import app

runner = CliRunner()
QUICK = [
    "--backbone", "resnet10t", "--init", "random", "--epochs", "head=1", "--lr", "0.01",
    "--normalise", "none", "--device", "cpu", "--workers", "0", "--batch-size", "8", "--bootstrap", "10",
]  # fmt: skip


def write_store(path, task="classification", n=24, classes=2):
    """Class k: a bright square in the k-th corner on noise; every sample its own patient."""
    rng = np.random.default_rng(0)
    kwargs = {"label_shape": ()} if task == "classification" else {"mask_shape": (1, 16, 16)}
    with StoreWriter(
        path, task=task, image_shape=(1, 16, 16), class_names=["a", "b"][:classes], **kwargs
    ) as w:
        for i in range(n):
            image = rng.normal(0.3, 0.1, (1, 1, 16, 16)).astype(np.float32)
            image[0, 0, (i % 2) * 8 : (i % 2) * 8 + 6, :6] += 0.6
            labels = np.array([i % 2]) if task == "classification" else None
            masks = (image > 0.6).astype(np.uint8) if task == "segmentation" else None
            w.add(f"s{i}", image, [SampleRecord(f"P{i}", f"{i}.png")], labels=labels, masks=masks)
        w.finish()
    return path


@pytest.fixture
def store(tmp_path):
    return write_store(tmp_path / "store")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_finetune_prints_phases_and_metrics(store, tmp_path):
    result = invoke("finetune", "--data", store, *QUICK, "--out", tmp_path / "runs", "--run-name", "r1")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "r1"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    text = " ".join(result.stdout.split())
    assert "head" in text and "1/1" in text and " 513 " in text  # one logit: 512 weights + bias
    assert f"{metrics['test']['auroc']:.4f}" in text
    assert "kWh" in text and "cpu-time-estimate (estimated)" in text
    assert metrics["task"] == "binary"
    # the same command again returns the finished run
    again = invoke("finetune", "--data", store, *QUICK, "--out", tmp_path / "runs", "--run-name", "r1")
    assert again.exit_code == 0 and f"{metrics['test']['auroc']:.4f}" in " ".join(again.stdout.split())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--epochs", "head"], "error: --epochs 'head': expected PHASE=N"),
        (["--amp", "fp8"], "error: finetune options: amp: Input should be 'none', 'bf16' or 'fp16'"),
        (["--backbone", "resnet10x"], "error: unknown backbone 'resnet10x'"),
        (["--class-weights", "1,x"], "error: --class-weights '1,x': expected none, balanced or numbers"),
        (["--monitor", "aucroc"], "error: unknown monitor metric 'aucroc', did you mean 'auroc'?"),
        (["--label-smoothing", "1.5"], "error: finetune options: objective.label_smoothing: Input should be"),
    ],
)
def test_bad_options(store, tmp_path, extra, message):
    result = invoke("finetune", "--data", store, *QUICK, "--out", tmp_path / "runs", *extra)
    assert result.exit_code == 2
    assert error_line(result).startswith(message)


def test_classification_flags_on_a_mask_store_are_refused(tmp_path):
    seg = write_store(tmp_path / "seg", task="segmentation")
    result = invoke("finetune", "--data", seg, *QUICK, "--task", "binary", "--out", tmp_path / "runs")
    assert result.exit_code == 2
    assert error_line(result).startswith(f"error: {seg}: is a segmentation store")
    assert not (tmp_path / "runs").exists()


def test_mask_store_trains_a_unet(tmp_path):
    seg = write_store(tmp_path / "seg", task="segmentation")
    result = invoke("finetune", "--data", seg, *QUICK, "--out", tmp_path / "runs", "--run-name", "u")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "runs" / "u" / "metrics.json").read_text())
    assert metrics["objective"] == "segmentation" and metrics["monitor"] == "dice"
    assert metrics["phases"][0]["trained_groups"] == ["decoder", "head"]
    assert "dice" in result.stdout


def test_split_of_another_store(store, tmp_path):
    other = write_store(tmp_path / "other", n=30)
    split = tmp_path / "other.split.json"
    assert invoke("data", "split", other, "--out", split).exit_code == 0
    result = invoke("finetune", "--data", store, "--split", split, *QUICK, "--out", tmp_path / "runs")
    assert result.exit_code == 2
    assert error_line(result).startswith(f"error: {split}: split file was made for another store")


def test_resume_with_other_config(store, tmp_path):
    runs = tmp_path / "runs"
    assert invoke("finetune", "--data", store, *QUICK, "--out", runs, "--run-name", "x").exit_code == 0
    result = invoke("finetune", "--data", store, *QUICK, "--out", runs, "--run-name", "x", "--seed", "5")
    assert result.exit_code == 2
    assert error_line(result).startswith(
        f"error: {runs / 'x'}: holds a run with a different config (differs in: seed)"
    )


def test_nan_loss(store, tmp_path):
    strategy = tmp_path / "explode.toml"
    strategy.write_text(
        '[[phases]]\nname = "all"\ntrainable = ["all"]\nepochs = 2\noptimizer = "sgd"\nlr = 1e12\n'
    )
    args = [a for a in QUICK if a not in ("--epochs", "head=1", "--lr", "0.01")]
    result = invoke("finetune", "--data", store, *args, "--strategy", strategy, "--out", tmp_path / "runs")
    assert result.exit_code == 2
    line = error_line(result)
    assert "loss is not finite in phase 'all'" in line and "lower the learning rate" in line


def test_extract_writes_features_per_split(store, tmp_path):
    out = tmp_path / "feats"
    result = invoke(
        "extract", "resnet10t", "--data", store, "--out", out, "--init", "random", "--normalise", "none",
        "--device", "cpu", "--workers", "0",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "features.json").read_text())
    assert meta["splits"] == {"all": 24} and meta["dim"] == 512
    assert np.load(out / "features_all.npy").shape == (24, 512)
    assert "all" in result.stdout and "512" in result.stdout


def test_extract_refuses_existing_output_and_segmentation(store, tmp_path):
    (tmp_path / "feats").mkdir()
    result = invoke("extract", "resnet10t", "--data", store, "--out", tmp_path / "feats", "--init", "random")
    assert result.exit_code == 2 and error_line(result).startswith(
        f"error: {tmp_path / 'feats'}: output already exists"
    )
    seg = write_store(tmp_path / "seg", task="segmentation")
    result = invoke("extract", "resnet10t", "--data", seg, "--out", tmp_path / "f2", "--init", "random")
    assert result.exit_code == 2 and error_line(result).startswith(f"error: {seg}: is a segmentation store")


def test_task_flag_that_contradicts_the_store(store, tmp_path):
    result = invoke("finetune", "--data", store, *QUICK, "--task", "multilabel", "--out", tmp_path / "runs")
    assert result.exit_code == 2
    assert error_line(result).startswith(f"error: {store}: has one class per sample; task 'multilabel'")
    assert not (tmp_path / "runs").exists()


def test_help_shows_the_models_descriptions_and_defaults():
    result = runner.invoke(app, ["finetune", "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.stdout.split())
    assert result.exit_code == 0
    assert "backbone name (see `medtl models list`) (default: resnet50)" in text
    assert "validation metric for the best checkpoint and early stopping, or 'loss' (default: auroc)" in text
