"""Every expected failure is one line and exit code 2, nothing half-written (issue 6, sections 4, 5).

Each case was a traceback (exit 1) or a silent loss on the landed main.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medtl.io.converters.phantom import phantom_subject, write_nifti
from medtl.io.store import Store, _NpyAppender
from medtl_cli.main import app
from tests.helpers import visible

runner = CliRunner()
PHANTOM = ("--subjects", "3", "--shape", "12", "12", "6", "--seed", "1")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def one_error(result, *parts: str) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = error_lines(result)
    assert len(lines) == 1, lines
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def brats_raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw") / "brats"
    assert invoke("prepare", "phantom", "brats", out, *PHANTOM).exit_code == 0
    return out


def class_folders(root: Path, n: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        for i in range(n):
            path = root / name / f"{name}{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(path)
    return root


# -- a text file renamed .mat ------------------------------------------------------------------------
@pytest.mark.parametrize("flags", [(), ("--strict",), ("--size", "8"), ("--size", "8", "--strict")])
def test_a_text_file_renamed_mat_is_one_line(tmp_path, flags):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "1.mat").write_text("these are my notes, not a MATLAB file\n")
    result = invoke("prepare", "ce-mri", raw, tmp_path / "s", *flags)
    line = one_error(result)
    if "--strict" in flags and "--size" in flags:
        assert line.startswith(f"error: {raw / '1.mat'}: not a readable .mat file")
    assert visible(tmp_path) == ["raw"]  # no store, no .s.partial


# -- read-only output directories ----------------------------------------------------------------------
def test_read_only_output_directories_are_one_line(tmp_path, read_only_dir, brats_raw):
    folder_raw = class_folders(tmp_path / "raw")
    cases = [
        ("prepare", "brats", brats_raw, read_only_dir / "s"),
        ("prepare", "folder", folder_raw, read_only_dir / "s"),
        ("prepare", "phantom", "brats", read_only_dir / "p", *PHANTOM),
    ]
    for args in cases:
        one_error(invoke(*args), f"error: {read_only_dir}: cannot be written")
    store = tmp_path / "store"
    assert invoke("prepare", "folder", folder_raw, store).exit_code == 0
    result = invoke(
        "data", "split", store, "--folds", "2", "--test-fold", "-1", "--out", read_only_dir / "x.json"
    )
    one_error(result, f"error: {read_only_dir / 'x.json'}: cannot be written")


# -- a full disk -----------------------------------------------------------------------------------------
def test_a_full_disk_is_one_line_and_the_rerun_resumes(tmp_path, small_disk, brats_raw):
    disk, resize = small_disk
    out = disk / "s"
    assert (
        invoke("prepare", "brats", brats_raw, tmp_path / "ref", "--slices", "all", "--size", "96").exit_code
        == 0
    )
    result = invoke("prepare", "brats", brats_raw, out, "--slices", "all", "--size", "96")
    line = one_error(result, "no space left on the device", "run the same command again")
    assert line.startswith(f"error: {disk}")
    assert not out.exists()
    resize("8m")  # space freed
    result = invoke("prepare", "brats", brats_raw, out, "--slices", "all", "--size", "96")
    assert result.exit_code == 0, result.output
    ref, store = Store(tmp_path / "ref"), Store(out)
    np.testing.assert_array_equal(ref.images, store.images)
    assert ref.samples == store.samples and ref.checksum == store.checksum


def test_a_write_failing_with_enospc_resumes_correctly(tmp_path, brats_raw, monkeypatch):
    """The same without a small file system: the third subject's write fails as on a full disk."""
    assert invoke("prepare", "brats", brats_raw, tmp_path / "ref").exit_code == 0
    real = _NpyAppender.append
    calls = {"n": 0}

    def append(self, rows):
        if self.path.name == "images.npy":
            calls["n"] += 1
            if calls["n"] == 3:
                self.fh.write(rows.tobytes()[:100])  # half a row reached the disk
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, rows)

    with monkeypatch.context() as m:
        m.setattr(_NpyAppender, "append", append)
        result = invoke("prepare", "brats", brats_raw, tmp_path / "s")
    one_error(result, f"error: {tmp_path / '.s.partial'}: no space left on the device")
    result = invoke("prepare", "brats", brats_raw, tmp_path / "s")
    assert result.exit_code == 0 and "2 already done by an earlier run" in result.stdout
    ref, store = Store(tmp_path / "ref"), Store(tmp_path / "s")
    np.testing.assert_array_equal(ref.images, store.images)
    assert ref.checksum == store.checksum


# -- BraTS: an odd first subject, a float16 overflow ------------------------------------------------------
def replace_subject(raw: Path, name: str, *, shape=None, t1=None) -> Path:
    folder = raw / name
    volumes, seg = phantom_subject(shape or (12, 12, 6), "HGG", 5, 0)
    if t1 is not None:
        volumes["t1"] = t1
    for modality, vol in volumes.items():
        write_nifti(folder / f"{name}_{modality}.nii.gz", vol)
    write_nifti(folder / f"{name}_seg.nii.gz", seg)
    return folder / f"{name}_t1.nii.gz"


def test_an_odd_first_brats_subject_is_skipped_not_the_others(tmp_path, brats_raw):
    raw = tmp_path / "raw"
    subprocess.run(["cp", "-r", str(brats_raw), str(raw)], check=True)
    odd = replace_subject(raw, "BraTS20_Training_001", shape=(10, 12, 6))
    result = invoke("prepare", "brats", raw, tmp_path / "s")
    assert result.exit_code == 0, result.output
    store = Store(tmp_path / "s")
    assert store.shape[1:] == (12, 12)
    assert sorted(set(store.patient_ids)) == ["BraTS20_Training_002", "BraTS20_Training_003"]
    report = json.loads((tmp_path / "s" / "prepare_report.json").read_text())
    assert report["skipped"] == [
        {
            "file": str(odd),
            "reason": "slice shape (10, 12) differs from the store's (12, 12); pass --size to resize",
        }
    ]


def test_a_study_range_overflowing_float16_is_skipped_and_reported(tmp_path, brats_raw):
    raw = tmp_path / "raw"
    subprocess.run(["cp", "-r", str(brats_raw), str(raw)], check=True)
    rng = np.random.default_rng(0)
    hot = (100000 + rng.random((12, 12, 6))).astype(np.float32)
    path = replace_subject(raw, "BraTS20_Training_001", t1=hot)
    result = invoke("prepare", "brats", raw, tmp_path / "s")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "s" / "prepare_report.json").read_text())
    assert [s["file"] for s in report["skipped"]] == [str(path)]
    assert "beyond float16's 65504" in report["skipped"][0]["reason"]
    assert np.isfinite(Store(tmp_path / "s").images).all()
    assert invoke("data", "check", tmp_path / "s").exit_code == 0
    # minmax normalisation fits, and --strict stops with the reason.
    assert invoke("prepare", "brats", raw, tmp_path / "m", "--norm", "minmax").exit_code == 0
    assert len(set(Store(tmp_path / "m").patient_ids)) == 3
    one_error(invoke("prepare", "brats", raw, tmp_path / "t", "--strict"), f"error: {path}: study-range")
    assert nib.load(str(path)).get_fdata().min() >= 100000  # the raw file is untouched


# -- class folders: broken symbolic links ----------------------------------------------------------------
def test_broken_symlinks_in_a_class_folder_are_reported(tmp_path):
    raw = class_folders(tmp_path / "raw")
    link = raw / "a" / "gone.png"
    os.symlink(tmp_path / "elsewhere" / "gone.png", link)
    result = invoke("prepare", "folder", raw, tmp_path / "s")
    assert result.exit_code == 0, result.output
    assert f"skipped {link}: broken symbolic link" in result.stdout
    report = json.loads((tmp_path / "s" / "prepare_report.json").read_text())
    assert report["skipped"] == [
        {
            "file": str(link),
            "reason": f"broken symbolic link (to {tmp_path / 'elsewhere' / 'gone.png'}, missing)",
        }
    ]
    one_error(invoke("prepare", "folder", raw, tmp_path / "t", "--strict"), f"error: {link}: broken symbolic")


# -- strategy files ---------------------------------------------------------------------------------------
def test_strategy_errors_found_against_the_model_name_the_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[[phases]]\nname = "p1"\ntrainable = ["stage9"]\nepochs = 1\nlr = 0.01\n')
    result = invoke("strategies", "show", path, "--arch", "resnet18")
    one_error(result, f"error: {path}: phase 'p1': unknown selector 'stage9'")


# -- interruptions -----------------------------------------------------------------------------------------
INTERRUPT_AT_SECOND_SUBJECT = textwrap.dedent(
    """
    import sys
    from medtl.io.converters import brats
    from medtl_cli.main import app

    real = brats.load_subject

    def load(subject, *args):
        if subject.name.endswith("_002"):
            raise KeyboardInterrupt  # Ctrl-C
        return real(subject, *args)

    brats.load_subject = load
    app(["prepare", "brats", sys.argv[1], sys.argv[2]])
    """
)


def test_an_interrupted_prepare_says_interrupted_not_done(tmp_path, brats_raw):
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPT_AT_SECOND_SUBJECT, str(brats_raw), str(tmp_path / "s")],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 130, done.stderr
    assert "prepare brats: interrupted after" in done.stdout and "prepare brats: done" not in done.stdout
    assert done.stderr.strip().splitlines() == ["interrupted (run the same command again to continue)"]
    assert (tmp_path / ".s.partial").is_dir()


# -- splits ------------------------------------------------------------------------------------------------
def test_a_kfold_split_without_training_folds_is_refused(tmp_path):
    raw = class_folders(tmp_path / "raw", n=2)
    store = tmp_path / "s"
    assert invoke("prepare", "folder", raw, store).exit_code == 0
    for p in (raw / "b").iterdir():
        p.unlink()
    result = invoke("data", "split", store, "--folds", "2")
    one_error(result, "2 folds with a validation and a test fold leave no fold for training")
    assert not (tmp_path / "s.split.json").exists()
