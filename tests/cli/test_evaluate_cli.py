"""`medtl evaluate`: wiring, the printed tables, and exit code 2 with one line for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from medtl.io.store import SampleRecord, StoreWriter
from medtl_cli.main import app

runner = CliRunner()


def write_store(out, names, n=18, seed=0):
    rng = np.random.default_rng(seed)
    with StoreWriter(
        out, task="classification", image_shape=(1, 32, 32), class_names=names, label_shape=()
    ) as w:
        for i in range(n):
            image = rng.normal(0.3, 0.1, (1, 1, 32, 32)).astype(np.float32)
            image[0, 0, 2 + 10 * (i % 2) : 10 + 10 * (i % 2), 2:10] += 0.6
            w.add(f"u{i}", image, [SampleRecord(f"P{i}", f"{i}.png")], labels=np.array([i % len(names)]))
        return w.finish()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from medtl.engine import run
    from medtl.engine.run_config import RunConfig

    root = tmp_path_factory.mktemp("evaluate_cli")
    store = write_store(root / "xray", ["normal", "pneumonia"])
    config = RunConfig(
        data=store,
        backbone="resnet10t",
        init="random",
        strategy="linear",
        epochs_scale=0.05,
        batch_size=8,
        num_workers=0,
        bootstrap=0,
        device="cpu",
        out=root / "runs",
    )
    return run(config).run_dir, store, root


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_evaluate_prints_metrics_and_writes_json(trained):
    run_dir, store, _ = trained
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(run_dir),
            "--data",
            str(store),
            "--bootstrap",
            "20",
            "--robustness",
            "--corruptions",
            "gamma,gaussian_blur",
        ],
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((run_dir / "evaluation_xray-test.json").read_text())
    text = " ".join(result.stdout.split())
    assert "the run's store, test" in text
    assert f"auroc │ {saved['metrics']['auroc']:.4f} │" in text
    low, high = saved["metrics"]["ci95"]["auroc"]
    assert f"{low:.4f} - {high:.4f}" in text
    assert "sensitivity" in text and "pneumonia" in text
    assert "auroc under corruption" in text and "gaussian_blur" in text and "columns: severity" in text
    assert [r["corruption"] for r in saved["robustness"]["rows"]] == ["clean"] + ["gamma"] * 5 + [
        "gaussian_blur"
    ] * 5


def test_external_store_with_class_map(trained):
    run_dir, _, root = trained
    external = write_store(root / "kaggle", ["NORMAL", "PNEUMONIA", "COVID"], n=9, seed=1)
    mapping = root / "map.toml"
    mapping.write_text('NORMAL = "normal"\nPNEUMONIA = "pneumonia"\n')
    result = runner.invoke(
        app,
        ["evaluate", str(run_dir), "--data", str(external), "--class-map", str(mapping), "--bootstrap", "0"],
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "external store, all, 6 samples" in text
    assert "dropped external classes without a run class: COVID (3)" in text


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--tta", "fivecrop"], "error: unknown test-time augmentation 'fivecrop'"),
        (["--split", "tests"], "error: unknown split 'tests', did you mean 'test'?"),
        (["--corruptions", "blur"], "error: unknown corruption 'blur'"),
        (["--checkpoint", "first"], "error: unknown checkpoint 'first'"),
    ],
)
def test_bad_choices_exit_2(trained, extra, expected):
    run_dir, store, _ = trained
    result = runner.invoke(app, ["evaluate", str(run_dir), "--data", str(store), "--robustness", *extra])
    assert result.exit_code == 2
    assert error_line(result).startswith(expected)


def test_bad_class_map_exit_2(trained):
    run_dir, _, root = trained
    external = write_store(root / "other", ["NORMAL", "PNEUMONIA"], n=4, seed=2)
    mapping = root / "bad.json"
    mapping.write_text('{"NORMAL": "normal", "PNEUMONA": "pneumonia"}')
    result = runner.invoke(
        app, ["evaluate", str(run_dir), "--data", str(external), "--class-map", str(mapping)]
    )
    assert result.exit_code == 2
    assert error_line(result) == (
        f"error: {mapping}: unknown store class 'PNEUMONA', did you mean 'PNEUMONIA'?"
    )


def test_not_a_run_exit_2(trained, tmp_path):
    _, store, _ = trained
    result = runner.invoke(app, ["evaluate", str(tmp_path), "--data", str(store)])
    assert result.exit_code == 2
    assert error_line(result) == f"error: {tmp_path}: not a medtl run directory (config.toml missing)"
