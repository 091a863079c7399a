"""`medtl finetune` and `medtl evaluate` refuse what they cannot vouch for (issue 6, sections 2-5).

Seen on the landed main: a second finetune on a run directory resumed the first's live state;
finetune trained on a store with 200 KB of images zeroed, on a split with a patient in two
partitions (no warning) and on a one-class store (accuracy 1.0); a store re-prepared with swapped
labels resumed "after 3 epochs" from weights fitted to the opposite labels; SIGTERM left status.json
at "running"; a full disk was a SafetensorError traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medtl.io.store import SampleRecord, StoreWriter
from medtl_cli.main import app
from tests.cli.test_finetune_cli import QUICK, write_store

runner = CliRunner()
MEDTL = [sys.executable, "-c", "from medtl_cli.main import main; main()"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_error(result, *parts: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "status.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture
def store(tmp_path) -> Path:
    return write_store(tmp_path / "store")


def swap_labels_and_prepare_again(store: Path) -> None:
    """The same images, the opposite labels: what a re-prepared store with swapped grades is."""
    from medtl.io.store import Store

    old = Store(store)
    images, labels, samples = np.asarray(old.images), np.asarray(old.labels), old.samples
    with StoreWriter(
        store, task="classification", image_shape=old.shape, class_names=old.class_names,
        label_shape=(), overwrite=True,
    ) as writer:  # fmt: skip
        for i, row in enumerate(samples):
            record = SampleRecord(row["patient_id"], row["source_file"], int(row["slice"]), row["label"])
            writer.add(f"s{i}", images[i : i + 1], [record], labels=1 - labels[i : i + 1])
        writer.finish()


LONG = ["--strategy", "full", "--epochs", "all=400"]


def test_a_second_finetune_is_refused_sigterm_interrupts_and_a_changed_store_is_not_resumed(store, tmp_path):
    runs, name = tmp_path / "runs", "r1"
    quick = [a for a in QUICK if a not in ("--epochs", "head=1")]
    args = ["finetune", "--data", store, *quick, *LONG, "--out", runs, "--run-name", name]
    first = subprocess.Popen(
        [*MEDTL, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    run_dir = runs / name
    deadline = time.monotonic() + 240
    while status(run_dir) != "running" and first.poll() is None:
        assert time.monotonic() < deadline, "the first finetune never started"
        time.sleep(0.2)
    assert first.poll() is None, first.communicate()[1]

    # One writer at a time: the second command fails at once, naming the first.
    second = invoke(*args)
    one_error(second, f"error: {run_dir}: run is in use by pid {first.pid} on ", "--wait")

    # SLURM's SIGTERM: the run stops like Ctrl-C and says so.
    first.send_signal(signal.SIGTERM)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 130, stderr
    assert "interrupted (run the same command again to continue)" in stderr
    assert status(run_dir) == "interrupted"

    # The store prepared again with swapped labels: the interrupted run is not resumed on it.
    swap_labels_and_prepare_again(store)
    result = invoke(*args)
    one_error(result, f"error: {run_dir}: the store {store} changed since this run started")


def test_a_changed_store_is_refused_before_training(store, tmp_path):
    with open(store / "images.npy", "r+b") as fh:  # 2 KB zeroed in the middle of the images
        fh.seek(6000)
        fh.write(b"\0" * 2000)
    result = invoke("finetune", "--data", store, *QUICK, "--out", tmp_path / "runs")
    one_error(result, f"error: {store / 'images.npy'}: content does not match the checksum")
    assert not any((tmp_path / "runs").glob("*/checkpoints"))


def test_verify_hashes_a_store_the_run_has_seen(store, tmp_path):
    args = ["finetune", "--data", store, *QUICK, "--out", tmp_path / "runs", "--run-name", "r"]
    assert invoke(*args).exit_code == 0
    verified = json.loads((tmp_path / "runs" / "r" / "verified_stores.json").read_text())
    assert len(verified) == 1
    result = invoke("evaluate", tmp_path / "runs" / "r", "--data", store, "--bootstrap", "0", "--verify")
    assert result.exit_code == 0, result.output


def test_leakage_is_refused_unless_allowed_and_then_recorded(tmp_path):
    # Two samples per patient, so that one can sit in train and the other in test.
    paired = tmp_path / "paired"
    rng = np.random.default_rng(0)
    with StoreWriter(
        paired, task="classification", image_shape=(1, 16, 16), class_names=["a", "b"], label_shape=()
    ) as writer:
        for p in range(12):
            images = rng.normal(0.3, 0.1, (2, 1, 16, 16)).astype(np.float32)
            images[:, 0, (p % 2) * 8 : (p % 2) * 8 + 6, :6] += 0.6
            records = [SampleRecord(f"P{p}", f"{p}_{s}.png", s) for s in range(2)]
            writer.add(f"P{p}", images, records, labels=np.full(2, p % 2))
        writer.finish()
    assert invoke("data", "split", paired, "--folds", "3", "--out", tmp_path / "ok.json").exit_code == 0
    split = json.loads((tmp_path / "ok.json").read_text())
    test = split["partitions"]["test"]
    split["partitions"]["train"].append(test[0])  # one sample of a test patient moves to train
    split["partitions"]["test"] = test[1:]
    leaky = tmp_path / "leaky.json"
    leaky.write_text(json.dumps(split))
    args = ["finetune", "--data", paired, *QUICK, "--split", leaky, "--out", tmp_path / "runs"]
    one_error(invoke(*args), f"error: {leaky}: 1 patients have samples in more than one partition")
    assert not (tmp_path / "runs").exists()
    result = invoke(*args, "--allow-leakage", "--run-name", "leaky")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "runs" / "leaky" / "metrics.json").read_text())
    assert metrics["data"]["leakage"]["allowed"] is True and metrics["data"]["leakage"]["patients"] == 1


def test_a_one_class_store_is_refused(tmp_path):
    one = tmp_path / "one"
    with StoreWriter(
        one, task="classification", image_shape=(1, 16, 16), class_names=["tumour"], label_shape=()
    ) as writer:
        for i in range(12):
            images = np.full((1, 1, 16, 16), 0.1 * (i % 5), np.float32)
            writer.add(f"s{i}", images, [SampleRecord(f"P{i}", f"{i}.png")], labels=np.zeros(1))
        writer.finish()
    result = invoke("finetune", "--data", one, *QUICK, "--out", tmp_path / "runs")
    one_error(result, f"error: {one}: has one class only ('tumour'); a classifier needs two")


def test_a_bad_selector_in_a_late_phase_fails_before_training(store, tmp_path):
    strategy = tmp_path / "mine.toml"
    strategy.write_text(
        '[[phases]]\nname = "head"\ntrainable = ["head"]\nepochs = 1\nlr = 0.01\n'
        '[[phases]]\nname = "late"\ntrainable = ["stage9"]\nepochs = 1\nlr = 0.001\n'
    )
    quick = [a for a in QUICK if a not in ("--epochs", "head=1")]
    result = invoke("finetune", "--data", store, *quick, "--strategy", strategy, "--out", tmp_path / "runs")
    one_error(result, f"error: {strategy}: phase 'late': unknown selector 'stage9'")
    assert not any((tmp_path / "runs").glob("*/checkpoints/*.safetensors"))


def test_a_full_disk_in_finetune_is_one_line_and_the_rerun_completes(store, small_disk):
    disk, resize = small_disk
    args = ["finetune", "--data", store, *QUICK, "--out", disk / "runs", "--run-name", "r"]
    result = invoke(*args)
    one_error(result, "no space left on the device")
    resize("256m")
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert status(disk / "runs" / "r") == "completed"
