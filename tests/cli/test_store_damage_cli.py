"""A store is verified and everything it holds is covered (issue 6, section 3).

Seen on the landed main: 200 KB of images.npy overwritten with zeros after prepare was accepted by
`data info`, `data check` and `data split`; a store prepared again with swapped HGG/LGG labels kept
its old split; damaged store files were tracebacks.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medtl.io.store import SampleRecord, Store, StoreWriter
from medtl_cli.main import app

runner = CliRunner()
PHANTOM = ("--subjects", "4", "--shape", "16", "16", "8", "--seed", "3")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def write_store(out: Path, patients: int = 8, size: int = 64) -> Path:
    """About 1 MB of float16 images, random so that zeros are a change."""
    rng = np.random.default_rng(0)
    with StoreWriter(
        out, task="classification", image_shape=(2, size, size), class_names=["a", "b"], label_shape=()
    ) as writer:
        for p in range(patients):
            images = rng.random((8, 2, size, size), dtype=np.float32)
            records = [SampleRecord(f"P{p}", f"p{p}.nii.gz", s, "ab"[p % 2]) for s in range(8)]
            writer.add(f"P{p}", images, records, labels=np.full(8, p % 2, dtype=np.int64))
        writer.finish()
    return out


@pytest.fixture
def store(tmp_path) -> Path:
    return write_store(tmp_path / "store")


def zero_bytes(path: Path, offset: int, length: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\0" * length)


def swap_labels(store: Path) -> None:
    labels = np.load(store / "labels.npy")
    with open(store / "labels.npy", "r+b") as fh:
        fh.seek(-labels.nbytes, 2)
        fh.write((1 - labels).astype(np.int64).tobytes())


def rename_patient(store: Path) -> None:
    data = (store / "samples.csv").read_bytes()
    (store / "samples.csv").write_bytes(data.replace(b",P3,", b",P1,"))  # same size


@pytest.mark.parametrize(
    ("damage", "name"),
    [
        (lambda s: zero_bytes(s / "images.npy", 400_000, 200_000), "images.npy"),
        (swap_labels, "labels.npy"),
        (rename_patient, "samples.csv"),
    ],
    ids=["images-zeroed", "labels-swapped", "patient-renamed"],
)
@pytest.mark.parametrize("command", ["check", "info", "split"])
def test_a_changed_store_file_is_one_line_naming_it(store, damage, name, command):
    damage(store)
    result = invoke("data", command, store)
    assert result.exit_code == 2, result.output
    lines = error_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {store / name}: content does not match the checksum in manifest.json")


def test_check_verifies_every_file_with_progress(store):
    result = invoke("data", "check", store)
    assert result.exit_code == 0, result.output
    assert "checksums match the manifest: images.npy, labels.npy, samples.csv" in result.stdout
    assert "verifying store:" in result.stdout  # plain progress lines when not on a terminal


def test_a_truncated_array_is_named(store):
    with open(store / "images.npy", "r+b") as fh:
        fh.truncate(1000)
    result = invoke("data", "info", store)
    assert result.exit_code == 2
    assert error_lines(result)[0].startswith(
        f"error: {store / 'images.npy'}: is 1000 bytes, the manifest says"
    )


def drop_checksums(store: Path) -> None:
    manifest = json.loads((store / "manifest.json").read_text())
    del manifest["checksums"]
    (store / "manifest.json").write_text(json.dumps(manifest))


def drop_rows(store: Path) -> None:
    lines = (store / "samples.csv").read_text().splitlines(keepends=True)
    (store / "samples.csv").write_text("".join(lines[:-5]))


DAMAGED = {
    "samples-missing": (lambda s: (s / "samples.csv").unlink(), "samples.csv", "missing"),
    "samples-not-utf8": (
        lambda s: (s / "samples.csv").write_bytes(b"index,patient_id\n\xff\xfe\x00bad\n"),
        "samples.csv",
        "is not UTF-8 text",
    ),
    "samples-short": (drop_rows, "samples.csv", "has 59 rows, the manifest says 64 samples"),
    "no-checksums": (drop_checksums, "manifest.json", "has no checksums"),
    "manifest-not-utf8": (
        lambda s: (s / "manifest.json").write_bytes(b"\xff\xfe{"),
        "manifest.json",
        "cannot be read as JSON",
    ),
    "labels-missing": (lambda s: (s / "labels.npy").unlink(), "labels.npy", "missing"),
}


@pytest.mark.parametrize("case", DAMAGED)
@pytest.mark.parametrize("command", ["check", "info", "split"])
def test_damaged_store_files_are_one_line_exit_2(store, case, command):
    damage, name, problem = DAMAGED[case]
    damage(store)
    result = invoke("data", command, store)
    assert result.exit_code == 2, result.output
    lines = error_lines(result)
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith(f"error: {store / name}: ") and problem in lines[0], lines


def test_check_reports_non_finite_pixels(tmp_path):
    out = tmp_path / "s"
    with StoreWriter(
        out, task="classification", image_shape=(1, 4, 4), class_names=["a", "b"], label_shape=()
    ) as writer:
        for p in range(4):
            images = np.full((1, 1, 4, 4), 0.1 * (p + 1), np.float32)
            if p == 2:
                images[0, 0, :2] = np.inf
            writer.add(f"p{p}", images, [SampleRecord(f"p{p}", "x")], labels=np.array([p % 2]))
        writer.finish()
    result = invoke("data", "check", out)
    assert result.exit_code == 2
    assert error_lines(result) == [
        f"error: {out}/images.npy: 8 pixels in 1 images are NaN or infinite (first: image 2); prepare the "
        "store again with another normalisation"
    ]


def grades(raw: Path) -> list[dict[str, str]]:
    with open(raw / "name_mapping.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_store_prepared_again_with_swapped_labels_rejects_its_old_split(tmp_path):
    raw = tmp_path / "raw"
    assert invoke("prepare", "phantom", "brats", raw, *PHANTOM).exit_code == 0
    store = tmp_path / "store"
    assert invoke("prepare", "brats", raw, store).exit_code == 0
    assert invoke("data", "split", store, "--folds", "2", "--test-fold", "-1").exit_code == 0
    rows = grades(raw)
    for row in rows:
        row["Grade"] = {"HGG": "LGG", "LGG": "HGG"}[row["Grade"]]
    with open(raw / "name_mapping.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert invoke("prepare", "brats", raw, store, "--overwrite").exit_code == 0
    split = tmp_path / "store.split.json"
    for command in ("info", "check"):
        result = invoke("data", command, store)
        assert result.exit_code == 2
        assert error_lines(result) == [
            f"error: {split}: split file was made for an earlier version of this store (its images, labels "
            f"or patients changed since) (run `medtl data split {store}` to make one for this store)"
        ]


def test_a_split_naming_only_the_images_checksum_is_refused(store, tmp_path):
    assert invoke("data", "split", store, "--folds", "2", "--test-fold", "-1").exit_code == 0
    split = tmp_path / "store.split.json"
    data = json.loads(split.read_text())
    data["store"]["checksum"] = Store(store).checksums["images.npy"]  # how older medtl tied splits
    split.write_text(json.dumps(data))
    result = invoke("data", "info", store)
    assert (
        result.exit_code == 2 and "predates splits tied to the store's labels and patients" in result.stderr
    )
