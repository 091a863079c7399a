"""A resumed `prepare` never mixes old and new (issue 6, section 2).

When the inputs of the units an interrupted run already converted changed (a file rewritten,
removed, the label list or name_mapping.csv edited) or the options differ, the rerun starts over,
says so, and the store equals a fresh conversion of the current inputs.
"""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from PIL import Image

from medtl.io.converters import brats, folder, label_list
from medtl.io.converters.brats import convert_brats
from medtl.io.converters.folder import convert_folder
from medtl.io.converters.label_list import convert_label_list
from medtl.io.converters.phantom import write_phantom_brats
from medtl.io.store import Store
from medtl.progress import Progress


class Messages(Progress):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def png(path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((10, 10), value, np.uint8)
    image[0, 0] = 0
    Image.fromarray(image).save(path)


def interrupt_after(monkeypatch, module, name: str, calls: int) -> None:
    """Make ``module.name`` raise KeyboardInterrupt on call ``calls + 1`` (workers=1: in-process)."""
    real = getattr(module, name)
    count = {"n": 0}

    def load(*args):
        count["n"] += 1
        if count["n"] > calls:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(module, name, load)


def same_store(a: Store, b: Store) -> None:
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.samples == b.samples and a.checksum == b.checksum


@pytest.fixture
def classes(tmp_path):
    root = tmp_path / "raw"
    for k, name in enumerate(("a", "b")):
        for i in range(3):
            png(root / name / f"{name}{i}.png", 30 + 80 * k + 10 * i)
    return root


def test_unchanged_inputs_resume(tmp_path, classes, monkeypatch):
    with monkeypatch.context() as m:
        interrupt_after(m, folder, "load_folder_image", 3)
        with pytest.raises(KeyboardInterrupt):
            convert_folder(classes, tmp_path / "s")
    summary = convert_folder(classes, tmp_path / "s")
    assert summary.resumed_units == 3
    same_store(Store(tmp_path / "s"), Store(convert_folder(classes, tmp_path / "ref").store))


@pytest.mark.parametrize("change", ["rewritten", "removed", "options"])
def test_changed_inputs_start_over(tmp_path, classes, monkeypatch, change):
    with monkeypatch.context() as m:
        interrupt_after(m, folder, "load_folder_image", 3)
        with pytest.raises(KeyboardInterrupt):
            convert_folder(classes, tmp_path / "s")
    options = {}
    if change == "rewritten":  # a file already converted gets other pixels
        png(classes / "a" / "a1.png", 222)
        os.utime(classes / "a" / "a1.png", ns=(1, 1))  # even an mtime going back counts
        expected = "a1.png changed since the interrupted run; starting over"
    elif change == "removed":
        (classes / "a" / "a0.png").unlink()
        expected = "a0.png is no longer an input; starting over"
    else:
        options = {"intensity": "minmax"}
        expected = "the options or listed inputs differ from the interrupted run; starting over"
    progress = Messages()
    summary = convert_folder(classes, tmp_path / "s", progress=progress, **options)
    assert summary.resumed_units == 0
    assert any(expected in line for line in progress.lines), progress.lines
    same_store(Store(tmp_path / "s"), Store(convert_folder(classes, tmp_path / "ref", **options).store))


def test_an_edited_label_list_starts_over(tmp_path, monkeypatch):
    root = tmp_path / "raw"
    for i in range(4):
        png(root / f"x{i}.png", 40 + 20 * i)
    table = root / "labels.csv"
    table.write_text("name,label\n" + "".join(f"x{i}.png,{'ab'[i % 2]}\n" for i in range(4)))
    out = tmp_path / "s"
    with monkeypatch.context() as m:
        interrupt_after(m, label_list, "load_list_image", 2)
        with pytest.raises(KeyboardInterrupt):
            convert_label_list(table, out)
    # The labels are swapped; the images are untouched.
    table.write_text("name,label\n" + "".join(f"x{i}.png,{'ba'[i % 2]}\n" for i in range(4)))
    progress = Messages()
    summary = convert_label_list(table, out, progress=progress)
    assert summary.resumed_units == 0 and any("starting over" in line for line in progress.lines)
    store = Store(out)
    assert [row["label"] for row in store.samples] == ["b", "a", "b", "a"]
    assert store.labels[:].tolist() == [1, 0, 1, 0]


def test_brats_with_swapped_grades_starts_over(tmp_path, monkeypatch):
    raw = write_phantom_brats(tmp_path / "raw", subjects=4, shape=(12, 12, 6), seed=2)
    out = tmp_path / "s"
    with monkeypatch.context() as m:
        interrupt_after(m, brats, "load_subject", 2)
        with pytest.raises(KeyboardInterrupt):
            convert_brats(raw, out)
    mapping = raw / "name_mapping.csv"
    with open(mapping, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["Grade"] = {"HGG": "LGG", "LGG": "HGG"}[row["Grade"]]
    with open(mapping, "w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = convert_brats(raw, out)
    assert summary.resumed_units == 0
    grades = {row["BraTS_2020_subject_ID"]: row["Grade"] for row in rows}
    store = Store(out)
    for sample in store.samples:
        assert sample["label"] == grades[sample["patient_id"]]
