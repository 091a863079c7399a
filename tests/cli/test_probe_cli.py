"""`medtl probe`: wiring, the printed table, and exit code 2 with one line for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from medtl.io.features import FeatureSplit, save_features
from medtl_cli.main import app

runner = CliRunner()


@pytest.fixture
def features(tmp_path):
    rng = np.random.default_rng(0)

    def part(n):
        y = rng.integers(0, 2, n)
        x = rng.normal(size=(n, 6)) + 3 * y[:, None]
        return FeatureSplit(x.astype(np.float32), y, np.arange(n), np.array([f"p{i}" for i in range(n)]))

    return save_features(
        tmp_path / "feats",
        {"train": part(30), "val": part(10), "test": part(10)},
        backbone="resnet10t",
        task="classification",
        class_names=["no", "yes"],
    )


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_probe_prints_final_auroc_and_writes_outputs(features, tmp_path):
    out = tmp_path / "probe"
    result = runner.invoke(
        app,
        ["probe", str(features), "--head", "mlp-64-32", "--epochs", "3", "--lr", "0.01", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "probe.json").read_text())
    text = " ".join(result.stdout.split())
    assert "mlp-64-32" in text and "binary" in text
    assert f"{saved['metrics']['test']['auroc']:.4f}" in text
    assert f"{saved['metrics']['val']['auroc']:.4f}" in text
    assert saved["settings"]["lr"] == 0.01 and saved["epochs_run"] == 3
    assert (out / "curves.csv").read_text().count("\n") == 4


def test_logreg_with_default_output(features):
    result = runner.invoke(app, ["probe", str(features), "--head", "logreg", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert (features / "probe-logreg" / "probe.json").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--head", "svm"], "error: unknown probe head 'svm'"),
        (["--epochs", "0"], "error: probe epochs must be at least 1, got 0"),
    ],
)
def test_bad_options(features, args, expected):
    result = runner.invoke(app, ["probe", str(features), *args])
    assert result.exit_code == 2
    assert error_line(result).startswith(expected)


def test_missing_features_file_exit_2(features):
    (features / "labels_val.npy").unlink()
    result = runner.invoke(app, ["probe", str(features), "--epochs", "1"])
    assert result.exit_code == 2
    line = error_line(result)
    assert "labels_val.npy: missing (features.json lists split 'val')" in line
    assert "medtl extract" in line  # the hint names the command that makes it


def test_existing_output_exit_2(features):
    assert runner.invoke(app, ["probe", str(features), "--epochs", "1"]).exit_code == 0
    result = runner.invoke(app, ["probe", str(features), "--epochs", "1"])
    assert result.exit_code == 2
    assert "probe-linear: output already exists" in error_line(result)
