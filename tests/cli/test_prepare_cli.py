"""`medtl prepare`: wiring of flags and settings, error lines, exit codes, resuming a killed run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medtl.io.store import Store
from medtl_cli.main import app
from tests.helpers import visible

runner = CliRunner()
PHANTOM = ["--subjects", "4", "--shape", "24", "24", "12", "--seed", "1"]


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "raw"
    result = runner.invoke(app, ["prepare", "phantom", "brats", str(out), *PHANTOM])
    assert result.exit_code == 0, result.output
    assert "4 phantom subjects of shape (24, 24, 12)" in result.stdout
    return out


def invoke(*args: str | Path):
    return runner.invoke(app, ["prepare", *[str(a) for a in args]])


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_brats_writes_the_store_and_prints_the_summary(raw, tmp_path):
    result = invoke("brats", raw, tmp_path / "s", "-m", "t1,flair", "--size", "16", "--workers", "2")
    assert result.exit_code == 0, result.output
    store = Store(tmp_path / "s")
    assert store.images.shape[1:] == (2, 16, 16) and store.images.dtype == np.float16
    assert store.class_names == ["LGG", "HGG"]
    assert f"{tmp_path / 's'}: {len(store)} samples from 4 inputs, 0 skipped" in result.stdout
    assert "prepare brats: 4/4" in result.stdout  # plain progress lines when not on a terminal


def test_options_reach_the_converter(raw, tmp_path):
    result = invoke(
        "brats",
        raw,
        tmp_path / "s",
        "--labels",
        "regions",
        "--axis",
        "coronal",
        "--slices",
        "all",
        "--norm",
        "zscore",
    )
    assert result.exit_code == 0, result.output
    store = Store(tmp_path / "s")
    assert store.task == "segmentation" and store.masks.shape[1:] == (3, 24, 12)
    assert len(store) == 4 * 24 and store.manifest["normalisation"] == "zscore"


def test_dtype_comes_from_settings_and_the_flag_wins(raw, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTL_PREPARE__DTYPE", "uint8")
    assert invoke("brats", raw, tmp_path / "env").exit_code == 0
    assert Store(tmp_path / "env").images.dtype == np.uint8
    assert invoke("brats", raw, tmp_path / "flag", "--dtype", "float16").exit_code == 0
    assert Store(tmp_path / "flag").images.dtype == np.float16
    result = invoke("brats", raw, tmp_path / "bad", "--dtype", "int7")
    assert result.exit_code == 2 and "prepare.dtype" in result.stderr


def test_existing_output_exits_2_and_overwrite_replaces(raw, tmp_path):
    (tmp_path / "s").mkdir()
    result = invoke("brats", raw, tmp_path / "s")
    assert result.exit_code == 2
    assert error_lines(result) == [
        f"error: {tmp_path / 's'}: output already exists (pass --overwrite to replace it)"
    ]
    assert invoke("brats", raw, tmp_path / "s", "--overwrite").exit_code == 0
    assert len(Store(tmp_path / "s")) > 0
    result = invoke("phantom", "brats", raw, *PHANTOM)
    assert result.exit_code == 2 and "output already exists" in result.stderr


def test_unknown_choice_suggests_the_right_one(raw, tmp_path):
    result = invoke("brats", raw, tmp_path / "s", "--norm", "min-max")
    assert result.exit_code == 2
    assert error_lines(result) == ["error: unknown normalisation 'min-max', did you mean 'minmax'?"]


@pytest.fixture
def raw_with_bad_subject(tmp_path) -> tuple[Path, Path]:
    out = tmp_path / "raw"
    assert invoke("phantom", "brats", out, *PHANTOM).exit_code == 0
    bad = out / "BraTS20_Training_002" / "BraTS20_Training_002_t1.nii.gz"
    bad.write_bytes(bad.read_bytes()[:-500])
    return out, bad


def test_bad_input_is_skipped_and_reported(raw_with_bad_subject, tmp_path):
    raw, bad = raw_with_bad_subject
    result = invoke("brats", raw, tmp_path / "s")
    assert result.exit_code == 0, result.output
    assert "from 4 inputs, 1 skipped" in result.stdout
    assert f"skipped {bad}: truncated gzip stream" in result.stdout
    report = json.loads((tmp_path / "s" / "prepare_report.json").read_text())
    assert report["skipped"] == [
        {"file": str(bad), "reason": "truncated gzip stream (the file is incomplete)"}
    ]


def test_strict_exits_2_naming_the_file_and_leaves_nothing(raw_with_bad_subject, tmp_path):
    raw, bad = raw_with_bad_subject
    out = tmp_path / "stores" / "s"
    result = invoke("brats", raw, out, "--strict", "--workers", "2")
    assert result.exit_code == 2
    assert error_lines(result) == [f"error: {bad}: truncated gzip stream (the file is incomplete)"]
    assert visible(out.parent) == []


KILL_AT_THIRD_SUBJECT = textwrap.dedent(
    """
    import os, signal, sys
    from medtl.io.converters import brats
    from medtl_cli.main import app

    real = brats.load_subject

    def load(subject, *args):
        if subject.name.endswith("_003"):
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup at all, as with kill -9 or an OOM kill
        return real(subject, *args)

    brats.load_subject = load
    app(["prepare", "brats", sys.argv[1], sys.argv[2]])
    """
)


def test_a_killed_run_resumes_to_the_same_store(raw, tmp_path):
    assert invoke("brats", raw, tmp_path / "ref").exit_code == 0
    out = tmp_path / "s"
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AT_THIRD_SUBJECT, str(raw), str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert killed.returncode == -9, killed.stderr
    assert not out.exists() and (tmp_path / ".s.partial").is_dir()
    result = invoke("brats", raw, out)
    assert result.exit_code == 0, result.output
    assert "(2 already done by an earlier run)" in result.stdout
    ref, store = Store(tmp_path / "ref"), Store(out)
    np.testing.assert_array_equal(ref.images, store.images)
    np.testing.assert_array_equal(ref.labels, store.labels)
    assert ref.samples == store.samples and ref.manifest == store.manifest
    assert not (tmp_path / ".s.partial").exists()


HELP_WITHOUT_TORCH = textwrap.dedent(
    """
    import sys
    from typer.testing import CliRunner
    from medtl_cli.main import app

    for args in (["--help"], ["prepare", "--help"], ["prepare", "brats", "--help"],
                 ["prepare", "phantom", "brats", "--help"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    brats_help = CliRunner().invoke(app, ["prepare", "brats", "--help"]).output
    print("torch" in sys.modules, "--modalities" in brats_help)
    """
)


def test_help_does_not_import_torch():
    done = subprocess.run([sys.executable, "-c", HELP_WITHOUT_TORCH], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
