"""No command deletes or overwrites what it did not create (issue 6, section 1).

Each case was seen on the landed main: ``prepare brats RAW RAW --overwrite`` and friends exited 0
and left only the store, the raw NIfTI/PNG files gone.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medtl.engine.run_config import RunConfig
from medtl.errors import ConfigError
from medtl.io.store import Store
from medtl_cli.main import app
from tests.io.test_ce_mri import write_ce_mat

runner = CliRunner()


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def snapshot(root: Path) -> dict[str, str]:
    """Every file below ``root`` with the hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((12, 12), value, np.uint8)
    image[0, 0] = 0
    Image.fromarray(image).save(path)


@pytest.fixture(scope="module")
def brats_raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("brats") / "raw"
    result = invoke("prepare", "phantom", "brats", out, "--subjects", "2", "--shape", "12", "12", "6")
    assert result.exit_code == 0, result.output
    return out


def folder_raw(root: Path) -> Path:
    for k, name in enumerate(("a", "b")):
        for i in range(2):
            png(root / name / f"{name}{i}.png", 40 + 60 * k + i)
    return root


def ce_raw(root: Path) -> Path:
    root.mkdir(parents=True)
    for label in (1, 2, 3):
        write_ce_mat(root / f"{label}.mat", label=label)
    return root


def list_raw(root: Path) -> Path:
    for i in range(4):
        png(root / f"img{i}.png", 50 + 20 * i)
    (root / "labels.csv").write_text(
        "name,label\n" + "".join(f"img{i}.png,{'ab'[i % 2]}\n" for i in range(4))
    )
    return root


def seg_raw(root: Path) -> Path:
    for i in range(2):
        png(root / "images" / f"{i}.png", 90 + i)
        mask = np.zeros((12, 12), np.uint8)
        mask[2:6, 3:8] = 255
        Image.fromarray(mask).save(_mkdir(root / "masks") / f"{i}.png")
    return root


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# (command, how to make its raw data, arguments before OUT given the raw root, the input folder)
SOURCES = {
    "folder": (folder_raw, lambda r: ["prepare", "folder", r], lambda r: r),
    "ce-mri": (ce_raw, lambda r: ["prepare", "ce-mri", r], lambda r: r),
    "list": (list_raw, lambda r: ["prepare", "list", r / "labels.csv", "--images", r], lambda r: r),
    "seg": (
        seg_raw,
        lambda r: ["prepare", "seg", r / "images", "--masks", r / "masks"],
        lambda r: r / "images",
    ),
}


def raw_for(source: str, tmp_path: Path, brats_raw: Path) -> tuple[Path, list, Path]:
    """(raw root, command before OUT, the input directory the command reads)."""
    if source == "brats":
        return brats_raw, ["prepare", "brats", brats_raw], brats_raw
    make, command, folder = SOURCES[source]
    root = make(tmp_path / "raw")
    return root, command(root), folder(root)


@pytest.mark.parametrize("source", ["brats", *SOURCES])
@pytest.mark.parametrize("where", ["same", "above", "inside", "symlink"])
def test_an_output_that_is_contains_or_lies_inside_an_input_is_refused(tmp_path, brats_raw, source, where):
    raw, command, folder = raw_for(source, tmp_path, brats_raw)
    before = snapshot(raw)
    out = {
        "same": folder,
        "above": folder.parent,
        "inside": folder / "store",
        "symlink": tmp_path / "link",
    }[where]
    if where == "symlink":
        out.symlink_to(folder, target_is_directory=True)
    result = invoke(*command, out, "--overwrite")
    assert result.exit_code == 2, result.output
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith(f"error: {out}: "), lines
    assert ("inside the input" if where == "inside" else "input") in lines[0]
    assert snapshot(raw) == before  # nothing deleted, nothing written


def test_overwrite_replaces_only_a_store_or_an_empty_directory(tmp_path):
    raw = folder_raw(tmp_path / "raw")
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("weeks of work")
    (mine / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    result = invoke("prepare", "folder", raw, mine, "--overwrite")
    assert result.exit_code == 2
    assert error_lines(result) == [
        f"error: {mine}: is not a medtl store (no manifest.json written by medtl); --overwrite replaces "
        "only a medtl store or an empty directory (choose a new output path, or remove the directory "
        "yourself)"
    ]
    assert (mine / "chapter1.tex").read_text() == "weeks of work"

    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep")
    result = invoke("prepare", "folder", raw, a_file, "--overwrite")
    assert result.exit_code == 2 and "is a file, not a medtl store" in result.stderr
    assert a_file.read_text() == "keep"

    empty = tmp_path / "empty"
    empty.mkdir()
    assert invoke("prepare", "folder", raw, empty, "--overwrite").exit_code == 0
    assert len(Store(empty)) == 4
    # A store medtl wrote is replaced.
    assert invoke("prepare", "folder", raw, empty, "--overwrite", "--size", "8").exit_code == 0
    assert Store(empty).shape == (1, 8, 8)


def test_a_failed_overwrite_keeps_the_old_store(tmp_path):
    raw = folder_raw(tmp_path / "raw")
    out = tmp_path / "store"
    assert invoke("prepare", "folder", raw, out).exit_code == 0
    old = snapshot(out)
    (raw / "a" / "bad.png").write_bytes(b"not a png")
    result = invoke("prepare", "folder", raw, out, "--overwrite", "--strict")
    assert result.exit_code == 2 and "bad.png" in result.stderr
    assert snapshot(out) == old
    Store(out).verify()


def test_phantom_overwrite_never_replaces_a_real_dataset(tmp_path, brats_raw):
    real = tmp_path / "BraTS2020"
    real.mkdir()
    (real / "name_mapping.csv").write_text("Grade,BraTS_2020_subject_ID\nHGG,BraTS20_Training_001\n")
    args = ("prepare", "phantom", "brats", real, "--subjects", "1", "--shape", "8", "8", "4", "--overwrite")
    result = invoke(*args)
    assert result.exit_code == 2 and "is not a medtl phantom dataset" in result.stderr
    assert (real / "name_mapping.csv").read_text().startswith("Grade")
    # An earlier phantom is replaced.
    phantom = tmp_path / "phantom"
    assert invoke(*args[:3], phantom, *args[4:]).exit_code == 0
    assert invoke(*args[:3], phantom, *args[4:]).exit_code == 0
    assert (phantom / "BraTS20_Training_001").is_dir()


@pytest.fixture
def store(tmp_path) -> Path:
    raw = folder_raw(tmp_path / "raw")
    out = tmp_path / "store"
    assert invoke("prepare", "folder", raw, out).exit_code == 0
    return out


@pytest.mark.parametrize("target", ["manifest.json", "samples.csv", "my.split.json", "."])
def test_split_files_are_never_written_inside_a_store(store, target):
    before = snapshot(store)
    out = store / target
    result = invoke("data", "split", store, "--folds", "2", "--test-fold", "-1", "--out", out, "--overwrite")
    assert result.exit_code == 2, result.output
    lines = error_lines(result)
    assert len(lines) == 1 and "inside the store" in lines[0] and lines[0].startswith(f"error: {out}")
    assert snapshot(store) == before


def test_split_overwrite_replaces_only_a_split_file(store, tmp_path):
    other = tmp_path / "notes.json"
    other.write_text('{"mine": true}')
    result = invoke(
        "data", "split", store, "--folds", "2", "--test-fold", "-1", "--out", other, "--overwrite"
    )
    assert result.exit_code == 2 and "not a medtl split file" in result.stderr
    assert other.read_text() == '{"mine": true}'
    split = tmp_path / "s.split.json"
    assert invoke("data", "split", store, "--folds", "2", "--test-fold", "-1", "--out", split).exit_code == 0
    result = invoke(
        "data", "split", store, "--folds", "2", "--test-fold", "-1", "--seed", "3", "--out", split
    )
    assert result.exit_code == 2  # a different split needs --overwrite
    args = ("data", "split", store, "--folds", "2", "--test-fold", "-1", "--seed", "3", "--out", split)
    assert invoke(*args, "--overwrite").exit_code == 0


@pytest.mark.parametrize("name", ["../escaped", "a/b", "..", ".", ""])
def test_run_names_are_single_path_components(tmp_path, name):
    with pytest.raises(ConfigError, match="run_name"):
        RunConfig.parse({"data": str(tmp_path), "out": str(tmp_path / "runs"), "run_name": name})
    config = RunConfig(data=tmp_path, out=tmp_path / "runs", run_name="ok-name_1.2")
    assert config.run_dir == (tmp_path / "runs" / "ok-name_1.2").resolve()


def test_finetune_refuses_an_escaping_run_name_before_writing(store, tmp_path):
    runs = tmp_path / "runs"
    result = invoke(
        "finetune", "--data", store, "--out", runs, "--run-name", "../escaped", "--init", "random"
    )
    assert result.exit_code == 2, result.output
    assert "run_name" in result.stderr and "single folder name" in result.stderr
    assert not (tmp_path / "escaped").exists() and not runs.exists()


def test_extract_and_probe_refuse_to_write_over_their_inputs(store, tmp_path):
    before = snapshot(store)
    base = (
        "extract",
        "resnet18",
        "--data",
        store,
        "--init",
        "random",
        "--image-size",
        "16",
        "--device",
        "cpu",
    )
    result = invoke(*base, "--out", store, "--overwrite")
    assert result.exit_code == 2 and "is also an input" in result.stderr
    result = invoke(*base, "--out", store / "features", "--overwrite")
    assert result.exit_code == 2 and "inside the input" in result.stderr
    assert snapshot(store) == before
    feats = tmp_path / "feats"
    split = tmp_path / "store.split.json"  # the default split file: train and val partitions
    assert invoke("data", "split", store, "--folds", "2", "--test-fold", "-1", "--out", split).exit_code == 0
    assert invoke(*base, "--out", feats, "--workers", "0").exit_code == 0
    features_before = snapshot(feats)
    result = invoke("probe", feats, "--out", feats, "--overwrite", "--epochs", "1", "--device", "cpu")
    assert result.exit_code == 2 and "is also an input" in result.stderr
    result = invoke("probe", feats, "--out", tmp_path, "--overwrite", "--epochs", "1", "--device", "cpu")
    assert result.exit_code == 2 and "contains the input" in result.stderr
    assert snapshot(feats) == features_before


def test_evaluation_names_cannot_escape_the_run_directory(tmp_path):
    from medtl.evaluate.evaluate import evaluation_path

    run_dir = tmp_path / "runs" / "abc"
    assert evaluation_path(run_dir, "ext-test") == run_dir / "evaluation_ext-test.json"
    with pytest.raises(ConfigError, match="single"):
        evaluation_path(run_dir, "../../x")


def test_an_output_reached_through_a_symlinked_parent_is_resolved(tmp_path):
    """An output reached through a symlinked parent is compared by its real location."""
    raw = folder_raw(tmp_path / "raw")
    os.symlink(raw, tmp_path / "alias")
    result = invoke("prepare", "folder", raw, tmp_path / "alias" / "a", "--overwrite")
    assert result.exit_code == 2 and "input" in result.stderr
    assert (raw / "a" / "a0.png").is_file()
