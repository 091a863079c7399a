"""The run's checks (medtl.engine.guards), one by one (issue 6, sections 2-5)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from medtl.engine.guards import (
    check_classes,
    check_identity,
    check_phases,
    check_split,
    end_status,
    record_identity,
    record_verified,
    terminated_as_interrupt,
    verify_store,
    write_failure,
)
from medtl.errors import ConfigError, InputError, OutputError, StoreError, TrainingError
from medtl.io.store import SampleRecord, Store, StoreWriter
from medtl.models import build_model
from medtl.strategies import load_strategy_file


def write_store(path, labels, patients=None, classes=("a", "b"), size=4):
    patients = patients or [f"P{i}" for i in range(len(labels))]
    with StoreWriter(
        path, task="classification", image_shape=(1, size, size), class_names=list(classes), label_shape=()
    ) as writer:
        for i, (label, pid) in enumerate(zip(labels, patients)):
            images = np.full((1, 1, size, size), 0.1 + 0.01 * i, np.float32)
            writer.add(f"u{i}", images, [SampleRecord(pid, f"{i}.png")], labels=np.array([label]))
        writer.finish()
    return Store(path)


def parts(train, val=(), test=()):
    return {k: np.asarray(v, dtype=np.int64) for k, v in (("train", train), ("val", val), ("test", test))}


def test_a_new_store_is_verified_in_full_then_quickly(tmp_path):
    store = write_store(tmp_path / "s", [0, 1] * 20, size=64)  # 320 KB: more than the sampled blocks
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert verify_store(store, run_dir) == "full"
    record_verified(store, run_dir)
    assert verify_store(store, run_dir) == "quick"
    assert verify_store(store, run_dir, full=True) == "full"  # --verify
    with open(store.path / "images.npy", "r+b") as fh:  # a byte the quick check does not read
        fh.seek(256 + 4096 + 40)
        fh.write(b"\x01")
    assert verify_store(Store(store.path), run_dir) == "quick"
    with pytest.raises(StoreError, match=r"images\.npy: content does not match"):
        verify_store(Store(store.path), run_dir, full=True)


def test_a_store_prepared_again_is_new_to_the_run(tmp_path):
    store = write_store(tmp_path / "s", [0, 1, 0, 1])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    record_verified(store, run_dir)
    again = write_store(tmp_path / "t", [1, 0, 1, 0])  # other labels: other content
    assert verify_store(again, run_dir) == "full"


def test_leakage_is_refused_unless_allowed_and_then_recorded(tmp_path):
    store = write_store(tmp_path / "s", [0, 1, 0, 1, 0, 1], patients=["A", "B", "C", "A", "D", "E"])
    split = parts([0, 1, 2], [4], [3, 5])  # patient A in train and test
    with pytest.raises(InputError) as err:
        check_split(store, split, tmp_path / "s.split.json")
    assert err.value.message == (
        f"{tmp_path / 's.split.json'}: 1 patients have samples in more than one partition "
        "(first: A in train (1) and test (1)); test metrics would be inflated"
    )
    assert "--allow-leakage" in err.value.hint
    assert check_split(store, split, "x", allow_leakage=True) == {
        "allowed": True,
        "patients": 1,
        "examples": ["A"],
    }
    assert check_split(store, parts([0, 1, 2], [4], [5]), "x") is None


def test_single_class_stores_are_refused(tmp_path):
    one = write_store(tmp_path / "one", [0, 0, 0], classes=("tumour",))
    with pytest.raises(InputError, match="has one class only \\('tumour'\\); a classifier needs two"):
        check_classes(one, parts([0, 1], [2]))
    same = write_store(tmp_path / "same", [1, 1, 1, 1])
    with pytest.raises(InputError, match="all 4 samples are of one class \\('b'\\)"):
        check_split(same, parts([0, 1], [2], [3]), "x")


def test_a_class_missing_from_training_is_refused(tmp_path):
    store = write_store(tmp_path / "s", [0, 0, 1, 1])
    with pytest.raises(InputError, match="leaves class 'b' out of training \\(train 0, val 1, test 1"):
        check_split(store, parts([0, 1], [2], [3]), "x")


def test_a_run_goes_on_only_with_the_files_it_started_with(tmp_path):
    files = {"data": "the store /data/s", "strategy": "the strategy 'mine.toml'"}
    check_identity(tmp_path, {"data": "store:a"}, files)  # nothing recorded: an older run
    record_identity(tmp_path, {"data": "store:a", "strategy": "sha256:1", "seed": 0})
    check_identity(tmp_path, {"data": "store:a", "strategy": "sha256:1", "seed": 0}, files)
    with pytest.raises(TrainingError) as err:
        check_identity(tmp_path, {"data": "store:b", "strategy": "sha256:1", "seed": 0}, files)
    assert err.value.message == f"{tmp_path}: the store /data/s changed since this run started"


def test_every_phase_is_resolved_before_training(tmp_path):
    path = tmp_path / "two.toml"
    path.write_text(
        '[[phases]]\nname = "head"\ntrainable = ["head"]\nepochs = 1\nlr = 0.01\n'
        '[[phases]]\nname = "late"\ntrainable = ["stage9"]\nepochs = 1\nlr = 0.001\n'
    )
    with pytest.raises(ConfigError) as err:
        check_phases(build_model("resnet10t", 2), load_strategy_file(path))
    assert err.value.message.startswith(f"{path}: phase 'late': unknown selector 'stage9'")


SLEEPER = textwrap.dedent(
    """
    import time
    from medtl.engine.guards import end_status, terminated_as_interrupt

    try:
        with terminated_as_interrupt():
            print("ready", flush=True)
            time.sleep(60)
    except KeyboardInterrupt as exc:
        print(end_status(exc), type(exc).__name__, flush=True)
    """
)


def test_sigterm_becomes_an_interruption(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out.split() == ["interrupted", "Terminated"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # this process is untouched
    with terminated_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert end_status(RuntimeError()) == "failed"


def test_a_full_disk_while_saving_is_one_line(small_disk):
    from safetensors.torch import save_file

    disk, _ = small_disk
    tensors = {"w": torch.zeros(200_000)}  # 800 KB on a 256 KiB file system
    with pytest.raises(Exception) as saved:
        save_file(tensors, str(disk / "last.safetensors"))
    error = write_failure(saved.value, disk)
    assert isinstance(error, OutputError) and error.message == f"{disk}: no space left on the device"
    with pytest.raises(Exception) as saved:
        torch.save(tensors, disk / "resume.pt")
    error = write_failure(saved.value, disk)
    assert isinstance(error, OutputError) and error.message.startswith(f"{disk}: a checkpoint could not be")
    assert "KiB free on the device; is the disk full?" in error.message
    assert write_failure(ValueError("a bug"), disk) is None
