"""`medtl data info | split | check`: wiring, rendering and exit codes (behaviour: tests/data)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from medtl.io.store import SampleRecord, StoreWriter
from medtl_cli.main import app

runner = CliRunner()


def write_store(path, patients=6, seed=0):
    rng = np.random.default_rng(seed)
    with StoreWriter(
        path, task="classification", image_shape=(1, 4, 4), class_names=["lgg", "hgg"], label_shape=()
    ) as writer:
        for p in range(patients):
            records = [SampleRecord(f"P{p}", f"p{p}_{s}.nii.gz", s) for s in range(2)]
            images = rng.random((2, 1, 4, 4)).astype(np.float16)
            writer.add(f"P{p}", images, records, labels=np.full(2, p % 2, dtype=np.int64))
        writer.finish()
    return path


@pytest.fixture
def store(tmp_path):
    return write_store(tmp_path / "brats")


def invoke(*args: str):
    return runner.invoke(app, ["data", *map(str, args)])


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_info_prints_the_store(store):
    result = invoke("info", store)
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    for text in ("task │ classification", "samples │ 12", "patients │ 6", "1 x 4 x 4", "float16"):
        assert text in out
    assert "lgg │ 6" in out and "hgg │ 6" in out
    assert "no split file" in out


def test_info_json(store):
    result = invoke("info", store, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"] == {"lgg": 6, "hgg": 6}


def test_info_on_a_directory_that_is_not_a_store(tmp_path):
    result = invoke("info", tmp_path)
    assert result.exit_code == 2
    assert error_line(result).startswith(f"error: {tmp_path}: not a medtl store (manifest.json missing)")


def test_split_kfold_writes_the_file_beside_the_store(store, tmp_path):
    result = invoke("split", store, "--folds", 3, "--val-fold", 1, "--test-fold", 2, "--seed", 4)
    assert result.exit_code == 0, result.output
    path = tmp_path / "brats.split.json"
    assert f"wrote {path}" in " ".join(result.stdout.split())
    data = json.loads(path.read_text())
    assert data["method"] == "kfold" and data["seed"] == 4
    assert data["params"]["folds"] == 3 and data["counts"] == {"train": 4, "val": 4, "test": 4}
    assert not (store / "brats.split.json").exists()  # the store itself is left alone
    # the same command again is fine; a different split needs --overwrite
    assert invoke("split", store, "--folds", 3, "--val-fold", 1, "--test-fold", 2, "--seed", 4).exit_code == 0
    again = invoke("split", store, "--seed", 5, "--folds", 3)
    assert again.exit_code == 2
    assert error_line(again).startswith(f"error: {path}: output already exists")
    assert invoke("split", store, "--seed", 5, "--folds", 3, "--overwrite").exit_code == 0
    # info now shows the partitions
    out = " ".join(invoke("info", store).stdout.split())
    assert "kfold" in out and "train │ 4 │ 2" in out


def test_split_fractions_and_few_shot_to_a_chosen_file(store, tmp_path):
    out = tmp_path / "few.json"
    result = invoke("split", store, "--val", 0.2, "--test", 0.2, "--fraction", 0.5, "--out", out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["method"] == "fraction" and data["few_shot"]["fraction"] == 0.5
    assert data["few_shot"]["train_before"] == 2 * data["counts"]["train"]
    assert "few-shot fraction 0.5" in " ".join(result.stdout.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fraction", "1.5"], r"fraction must be in (0, 1], got 1.5"),
        (["--fraction", "0"], r"fraction must be in (0, 1], got 0.0"),
        (["--folds", "7"], "cannot make 7 folds: the store has only 6 patients"),
        (["--folds", "3", "--val", "0.1"], "choose a k-fold split (--folds) or fractions (--val/--test)"),
    ],
)
def test_split_bad_parameters(store, tmp_path, args, message):
    result = invoke("split", store, *args)
    assert result.exit_code == 2
    assert message in error_line(result)
    assert not (tmp_path / "brats.split.json").exists()


def test_split_file_of_another_store(store, tmp_path):
    other = write_store(tmp_path / "other", seed=1)
    assert invoke("split", other, "--folds", 3).exit_code == 0
    foreign = tmp_path / "other.split.json"
    for command in ("info", "check"):
        result = invoke(command, store, "--split", foreign)
        assert result.exit_code == 2
        line = error_line(result)
        assert line.startswith(f"error: {foreign}: split file was made for another store")


def test_split_file_that_is_not_json(store, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("train: 1, 2, 3")
    result = invoke("info", store, "--split", bad)
    assert result.exit_code == 2
    assert error_line(result).startswith(f"error: {bad}: not a JSON split file")


def test_check_passes_a_medtl_split(store):
    assert invoke("split", store, "--folds", 3).exit_code == 0
    result = invoke("check", store)
    assert result.exit_code == 0, result.output
    assert "no leakage" in result.stdout and "0 leaking patients" in result.stdout


def test_check_fails_on_leakage_with_a_table(store, tmp_path):
    assert invoke("split", store, "--folds", 3).exit_code == 0
    path = tmp_path / "brats.split.json"
    data = json.loads(path.read_text())
    # move one image of a test patient into train: that patient now leaks
    moved = data["partitions"]["test"].pop()
    data["partitions"]["train"].append(moved)
    path.write_text(json.dumps(data))
    result = invoke("check", store)
    assert result.exit_code == 2
    out = " ".join(result.stdout.split())
    assert "patients in more than one partition" in out and "1 leaking patients" in out
    assert "leakage between partitions (1 patients" in error_line(result)


def test_data_commands_do_not_import_torch():
    code = "import sys; from medtl_cli.main import app; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
