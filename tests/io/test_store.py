"""The store: streamed .npy writing, atomic completion, resuming, memory-mapped reading."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from medtl.errors import InputError, OutputExistsError, StoreError
from medtl.io.store import SampleRecord, Store, StoreWriter, file_checksum
from tests.helpers import visible

CLASSES = ["LGG", "HGG"]


def unit_arrays(u: int, n: int = 3, shape=(2, 4, 5)) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic images/labels for unit ``u`` (n rows)."""
    rng = np.random.default_rng(u)
    return rng.random((n, *shape), dtype=np.float32), np.full(n, u % 2, dtype=np.int64)


def records(u: int, n: int = 3) -> list[SampleRecord]:
    return [SampleRecord(f"P{u:02d}", f"P{u:02d}/t1.nii.gz", k, CLASSES[u % 2]) for k in range(n)]


def writer_for(out, **kwargs) -> StoreWriter:
    kwargs = {
        "task": "classification",
        "image_shape": (2, 4, 5),
        "class_names": CLASSES,
        "label_shape": (),
        "source": {"root": "/raw", "opt": 1},
        **kwargs,
    }
    return StoreWriter(out, **kwargs)


def write_units(writer: StoreWriter, units) -> None:
    for u in units:
        if writer.done(f"u{u}"):
            continue
        images, labels = unit_arrays(u)
        writer.add(f"u{u}", images, records(u), labels=labels)


def full_store(out, units=range(5)) -> Store:
    with writer_for(out) as writer:
        write_units(writer, units)
        writer.finish()
    return Store(out)


def test_arrays_round_trip_through_np_load_and_memmap(tmp_path):
    store = full_store(tmp_path / "s")
    expected = np.concatenate([unit_arrays(u)[0] for u in range(5)]).astype(np.float16)
    # The rewritten fixed-size header is a valid .npy header for np.load with and without mmap.
    plain = np.load(tmp_path / "s" / "images.npy")
    assert plain.shape == (15, 2, 4, 5) and plain.dtype == np.float16
    np.testing.assert_array_equal(plain, expected)
    assert isinstance(store.images, np.memmap)
    np.testing.assert_array_equal(store.images, expected)
    np.testing.assert_array_equal(store.labels, [0, 0, 0, 1, 1, 1] * 2 + [0, 0, 0])
    assert store.labels.dtype == np.int64 and store.labels.shape == (15,)
    assert len(store) == 15 and store.shape == (2, 4, 5) and store.class_names == CLASSES


@pytest.mark.parametrize(
    ("task", "dtype", "label_shape", "mask_shape", "label_dtype"),
    [
        ("classification", "uint8", (), None, np.int64),
        ("multilabel", "float16", (3,), None, np.float32),
        ("segmentation", "float16", None, (3, 4, 5), None),
    ],
)
def test_header_matches_every_layout(tmp_path, task, dtype, label_shape, mask_shape, label_dtype):
    names = ["a", "b", "c"]
    with StoreWriter(
        tmp_path / "s",
        task=task,
        image_shape=(1, 4, 5),
        class_names=names,
        dtype=dtype,
        label_shape=label_shape,
        mask_shape=mask_shape,
    ) as writer:
        for u in range(3):
            images = np.full((2, 1, 4, 5), u + 1, dtype=dtype)
            labels = None if label_shape is None else np.ones((2, *label_shape), dtype=label_dtype)
            masks = None if mask_shape is None else np.full((2, *mask_shape), u, dtype=np.uint8)
            writer.add(f"u{u}", images, [SampleRecord(f"p{u}", "f")] * 2, labels=labels, masks=masks)
        writer.finish()
    images = np.load(tmp_path / "s" / "images.npy")
    assert images.shape == (6, 1, 4, 5) and images.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(images[:, 0, 0, 0], [1, 1, 2, 2, 3, 3])
    store = Store(tmp_path / "s")
    if label_shape is not None:
        assert store.labels.shape == (6, *label_shape) and store.labels.dtype == label_dtype
    if mask_shape is not None:
        assert store.masks.shape == (6, *mask_shape) and store.masks.dtype == np.uint8
        np.testing.assert_array_equal(store.masks[:, 2, 3, 4], [0, 0, 1, 1, 2, 2])


def test_manifest_samples_and_report(tmp_path):
    store = full_store(tmp_path / "s")
    m = store.manifest
    assert m["task"] == "classification" and m["num_samples"] == 15 and m["num_patients"] == 5
    assert m["counts"] == {"LGG": 9, "HGG": 6}
    assert m["shape"] == [2, 4, 5] and m["dtype"] == "float16"
    assert m["checksums"]["images.npy"] == file_checksum(tmp_path / "s" / "images.npy")
    assert store.samples[4] == {
        "index": "4",
        "patient_id": "P01",
        "source_file": "P01/t1.nii.gz",
        "slice": "1",
        "label": "HGG",
    }
    assert list(store.patient_ids[:4]) == ["P00", "P00", "P00", "P01"]
    report = json.loads((tmp_path / "s" / "prepare_report.json").read_text())
    assert report == {"skipped": [], "num_samples": 15}
    assert not (tmp_path / "s" / "progress.json").exists()
    assert visible(tmp_path) == ["s"]  # no partial directory left


def test_checksums_detect_a_changed_array(tmp_path):
    store = full_store(tmp_path / "s")
    store.verify()
    store.verify(quick=True)
    assert store.checksum.startswith("sha256:")
    with open(tmp_path / "s" / "labels.npy", "r+b") as fh:
        fh.seek(-1, 2)
        fh.write(b"\x07")
    for quick in (True, False):
        with pytest.raises(StoreError, match="does not match the checksum") as err:
            Store(tmp_path / "s").verify(quick=quick)
        assert err.value.path == tmp_path / "s" / "labels.npy"


def test_existing_output_is_refused_and_overwrite_replaces_it(tmp_path):
    full_store(tmp_path / "s", units=range(2))
    with pytest.raises(OutputExistsError, match="output already exists") as err:
        writer_for(tmp_path / "s")
    assert str(tmp_path / "s") in err.value.message
    with writer_for(tmp_path / "s", overwrite=True) as writer:
        write_units(writer, range(4))
        writer.finish()
    assert len(Store(tmp_path / "s")) == 12
    assert visible(tmp_path) == ["s"]


def test_interrupted_writer_leaves_no_loadable_store(tmp_path):
    out = tmp_path / "s"
    with pytest.raises(KeyboardInterrupt), writer_for(out) as writer:
        write_units(writer, range(2))
        raise KeyboardInterrupt
    assert not out.exists()
    with pytest.raises(StoreError, match=r"manifest\.json missing") as err:
        Store(out)
    assert "rerun the same command" in err.value.hint
    # The partial directory is hidden and holds no manifest.
    partial = tmp_path / ".s.partial"
    assert partial.is_dir() and not (partial / "manifest.json").exists()


def test_rerun_continues_and_equals_an_uninterrupted_run(tmp_path):
    reference = full_store(tmp_path / "ref")

    out = tmp_path / "s"
    with pytest.raises(RuntimeError), writer_for(out) as writer:
        write_units(writer, range(2))
        # A crash in the middle of a unit: rows and CSV lines written but never committed.
        images, labels = unit_arrays(2)
        writer._images.append(images)
        writer._labels.append(labels)
        writer._csv.write("999,junk,junk,0,junk\n")
        raise RuntimeError("killed")

    with writer_for(out) as writer:
        assert writer.resumed_units == 2 and writer.rows == 6
        assert writer.done("u0") and writer.done("u1") and not writer.done("u2")
        write_units(writer, range(5))
        writer.finish()
    store = Store(out)
    np.testing.assert_array_equal(store.images, reference.images)
    np.testing.assert_array_equal(store.labels, reference.labels)
    assert store.samples == reference.samples
    assert store.manifest == reference.manifest


def test_resume_keeps_skips_and_non_ascii_ids(tmp_path):
    out = tmp_path / "s"
    with pytest.raises(RuntimeError), writer_for(out) as writer:
        writer.skip("bad", "/raw/bad.nii.gz", "truncated")
        writer.add(
            "u0",
            *unit_arrays(0)[:1],
            [SampleRecord("Pé", "é.nii", k) for k in range(3)],
            labels=unit_arrays(0)[1],
        )
        raise RuntimeError
    with writer_for(out) as writer:
        write_units(writer, [1])
        writer.finish()
    store = Store(out)
    assert [s["patient_id"] for s in store.samples] == ["Pé"] * 3 + ["P01"] * 3
    assert [s["index"] for s in store.samples] == [str(i) for i in range(6)]
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["skipped"] == [{"file": "/raw/bad.nii.gz", "reason": "truncated"}]
    assert store.manifest["skipped"] == 1


def test_a_different_fingerprint_starts_over(tmp_path):
    out = tmp_path / "s"
    with pytest.raises(RuntimeError), writer_for(out) as writer:
        write_units(writer, range(3))
        raise RuntimeError
    with writer_for(out, source={"root": "/raw", "opt": 2}) as writer:
        assert writer.resumed_units == 0 and writer.rows == 0 and not writer.done("u0")
        write_units(writer, [4])
        writer.finish()
    assert len(Store(out)) == 3
    with open(out / "samples.csv", newline="") as fh:
        assert [row["patient_id"] for row in csv.DictReader(fh)] == ["P04"] * 3


def test_abort_removes_everything(tmp_path):
    with writer_for(tmp_path / "s") as writer:
        write_units(writer, range(2))
        writer.abort()
    assert visible(tmp_path) == []


def test_no_samples_is_an_error_that_leaves_nothing(tmp_path):
    with pytest.raises(InputError, match="no samples were converted") as err, writer_for(tmp_path / "s") as w:
        w.skip("u0", "/raw/a.nii", "corrupt")
        w.finish()
    assert str(err.value.path) == "/raw"
    assert visible(tmp_path) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"images": np.zeros((3, 1, 4, 5), np.float32)}, "image shape"),
        ({"labels": None}, "labels given/expected mismatch"),
        ({"labels": np.zeros(2, np.int64)}, "labels: 2 rows for 3 images"),
    ],
)
def test_add_rejects_inconsistent_units(tmp_path, kwargs, message):
    images, labels = unit_arrays(0)
    args = {"images": images, "labels": labels, **kwargs}
    with writer_for(tmp_path / "s") as writer, pytest.raises(ValueError, match=message):
        writer.add("u0", args["images"], records(0), labels=args["labels"])


def test_store_errors_name_the_file(tmp_path):
    full_store(tmp_path / "s")
    manifest = tmp_path / "s" / "manifest.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "num_samples": 16}))
    with pytest.raises(StoreError, match="has 15 rows, manifest says 16") as err:
        Store(tmp_path / "s").images  # noqa: B018
    assert err.value.path == tmp_path / "s" / "images.npy"
    manifest.write_text(json.dumps({**data, "format_version": 99}))
    with pytest.raises(StoreError, match="newer than this medtl"):
        Store(tmp_path / "s")
    with pytest.raises(StoreError, match=r"manifest\.json missing") as err:
        Store(tmp_path / "nothing")
    assert err.value.hint == "run `medtl prepare` first"
