"""`prepare list`: ChestX-ray14 lists and Data_Entry CSV, CheXpert with uncertainty policies, simple CSV."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from medtl.errors import InputError, OutputError, OutputExistsError, UnknownChoiceError
from medtl.io.converters.label_list import (
    CHEXPERT_CLASSES,
    NIH_CLASSES,
    convert_label_list,
    detect_format,
)
from medtl.io.store import Store


def save_png(path, value=100, shape=(16, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full(shape, value, np.uint8)
    image[0, 0] = 0
    Image.fromarray(image).save(path)


def nih_vector(*findings):
    return [int(c in findings) for c in NIH_CLASSES]


@pytest.fixture
def nih(tmp_path):
    """ChestX-ray14 layout: images spread over images_001/images and images_002/images."""
    root = tmp_path / "nih"
    names = ["00000001_000.png", "00000001_001.png", "00000002_000.png", "00000003_000.png"]
    for i, name in enumerate(names):
        save_png(root / f"images_00{1 + i // 2}" / "images" / name, value=60 + 40 * i)
    return root, names


def test_nih_official_list(tmp_path, nih):
    root, names = nih
    rows = [
        (names[0], nih_vector("Cardiomegaly", "Effusion")),
        (names[1], nih_vector()),
        (names[2], nih_vector("Hernia")),
    ]
    lst = tmp_path / "train_list.txt"
    lst.write_text("".join(f"{n} {' '.join(map(str, v))}\n" for n, v in rows) + "\n")
    assert detect_format(lst) == "nih-list"
    summary = convert_label_list(lst, tmp_path / "s", images=root)
    store = Store(tmp_path / "s")
    assert summary.samples == 3 and store.task == "multilabel" and store.class_names == list(NIH_CLASSES)
    assert store.labels.dtype == np.float32 and store.labels.shape == (3, 14)
    np.testing.assert_array_equal(store.labels[:], np.array([v for _, v in rows], np.float32))
    assert list(store.patient_ids) == ["00000001", "00000001", "00000002"]  # from the file name
    assert [s["label"] for s in store.samples] == ["Cardiomegaly|Effusion", "", "Hernia"]
    assert store.manifest["counts"]["Cardiomegaly"] == 1


def test_nih_list_bad_rows_and_subset(tmp_path, nih):
    root, names = nih
    lst = tmp_path / "list.txt"
    lst.write_text(
        f"{names[0]} {' '.join(['0'] * 14)}\n"
        f"{names[1]} {' '.join(['0'] * 13)}\n"  # a label missing
        f"{names[2]} 2 {' '.join(['0'] * 13)}\n"  # not 0/1
        f"00000099_000.png {' '.join(['0'] * 14)}\n"  # image not there
        f"{names[3]} {' '.join(['1'] * 14)}\n"
    )
    summary = convert_label_list(lst, tmp_path / "s", images=root)
    reasons = {r["file"]: r["reason"] for r in summary.skipped}
    assert reasons == {
        f"{lst}:2": "expected a file name and 14 labels, found 13 labels",
        f"{lst}:3": "label value '2' is not 0 or 1",
        f"{lst}:4": f"image '00000099_000.png' not found under {root}",
    }
    assert summary.samples == 2
    (tmp_path / "test_list.txt").write_text(f"{names[3]}\n")
    convert_label_list(lst, tmp_path / "sub", images=root, subset=tmp_path / "test_list.txt")
    assert [s["source_file"].rsplit("/", 1)[-1] for s in Store(tmp_path / "sub").samples] == [names[3]]


def test_nih_data_entry_csv(tmp_path, nih):
    root, names = nih
    csv = tmp_path / "Data_Entry_2017.csv"
    csv.write_text(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age\n"
        f"{names[0]},Effusion|Pneumonia,0,1,58\n"
        f"{names[1]},No Finding,1,1,58\n"
        f"{names[2]},Pnemonia,0,2,81\n"
        f"{names[3]},Pleural_Thickening|Mass,0,3,81\n"
    )
    assert detect_format(csv) == "nih-csv"
    summary = convert_label_list(csv, tmp_path / "s", images=root)
    store = Store(tmp_path / "s")
    np.testing.assert_array_equal(
        store.labels[:],
        np.array(
            [nih_vector("Effusion", "Pneumonia"), nih_vector(), nih_vector("Mass", "Pleural_Thickening")],
            np.float32,
        ),
    )
    assert list(store.patient_ids) == ["1", "1", "3"]  # the Patient ID column
    assert summary.skipped == [
        {
            "file": f"{csv}:4",
            "reason": "unknown finding 'Pnemonia', did you mean 'Pneumonia', 'Pneumothorax', 'Hernia'?",
        }
    ]
    convert_label_list(csv, tmp_path / "two", images=root, classes=["Pneumonia", "Mass"])
    assert Store(tmp_path / "two").labels[:].tolist() == [[1, 0], [0, 0], [0, 1]]
    with pytest.raises(UnknownChoiceError, match="unknown finding 'Effusions', did you mean 'Effusion'"):
        convert_label_list(csv, tmp_path / "x", images=root, classes=["Effusions"])


def chexpert_csv(tmp_path, rows):
    """A CheXpert-layout CSV under dataset/, images under dataset/CheXpert-v1.0-small/train/..."""
    base = tmp_path / "dataset"
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_CLASSES]
    lines = [",".join(header)]
    for path, values in rows:
        save_png(base / path)
        cells = [values.get(c, "") for c in CHEXPERT_CLASSES]
        lines.append(",".join([path, "Female", "68", "Frontal", "AP", *cells]))
    csv = base / "CheXpert-v1.0-small" / "train.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv, base / "CheXpert-v1.0-small"


CHEXPERT_ROWS = [
    (
        "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg",
        {"Edema": "1.0", "Cardiomegaly": "-1.0"},
    ),
    ("CheXpert-v1.0-small/train/patient00001/study2/view1_frontal.jpg", {"No Finding": "1.0"}),
    (
        "CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg",
        {"Edema": "-1.0", "Pleural Effusion": "-1.0", "Fracture": "0.0"},
    ),
]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("ones", 1.0), ("zeros", 0.0), ("ignore", -1.0)],
)
def test_chexpert_fixed_uncertainty_policies(tmp_path, policy, expected):
    csv, images = chexpert_csv(tmp_path, CHEXPERT_ROWS)
    assert detect_format(csv) == "chexpert"
    convert_label_list(csv, tmp_path / "s", images=images, uncertainty=policy)
    store = Store(tmp_path / "s")
    labels = store.labels[:]
    col = {c: i for i, c in enumerate(CHEXPERT_CLASSES)}
    assert store.class_names == list(CHEXPERT_CLASSES) and labels.shape == (3, 14)
    assert labels[0, col["Edema"]] == 1.0 and labels[0, col["Cardiomegaly"]] == expected
    assert labels[1, col["No Finding"]] == 1.0 and labels[1].sum() == 1.0  # empty cells are 0
    assert labels[2, col["Edema"]] == expected and labels[2, col["Pleural Effusion"]] == expected
    assert labels[2, col["Fracture"]] == 0.0
    assert list(store.patient_ids) == ["patient00001", "patient00001", "patient00002"]


@pytest.mark.parametrize(("policy", "low", "high"), [("lsr-ones", 0.55, 0.85), ("lsr-zeros", 0.0, 0.3)])
def test_chexpert_label_smoothing_is_seeded(tmp_path, policy, low, high):
    csv, images = chexpert_csv(tmp_path, CHEXPERT_ROWS)
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        convert_label_list(csv, tmp_path / name, images=images, uncertainty=policy, seed=seed)
    a, b, c = (Store(tmp_path / n).labels[:] for n in "abc")
    uncertain = np.zeros_like(a, dtype=bool)
    col = {c: i for i, c in enumerate(CHEXPERT_CLASSES)}
    uncertain[0, col["Cardiomegaly"]] = uncertain[2, col["Edema"]] = uncertain[2, col["Pleural Effusion"]] = (
        True
    )
    assert ((a[uncertain] >= low) & (a[uncertain] <= high)).all()
    assert len(set(a[uncertain].tolist())) == 3  # one draw per label
    np.testing.assert_array_equal(a, b)  # same seed, same labels
    assert not np.array_equal(a[uncertain], c[uncertain])
    np.testing.assert_array_equal(a[~uncertain], c[~uncertain])  # certain labels untouched
    assert Store(tmp_path / "a").manifest["source"]["seed"] == 1


def test_chexpert_bad_value_and_missing_column(tmp_path):
    rows = [
        *CHEXPERT_ROWS[:2],
        ("CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg", {"Edema": "maybe"}),
    ]
    csv, images = chexpert_csv(tmp_path, rows)
    summary = convert_label_list(csv, tmp_path / "s", images=images)
    assert summary.skipped == [
        {"file": f"{csv}:4", "reason": "value 'maybe' in column 'Edema' is not 1, 0, -1 or empty"}
    ]
    text = csv.read_text().replace("Pleural Effusion", "Pleural Efusion")
    csv.write_text(text)
    with pytest.raises(InputError, match="no 'Pleural Effusion' column"):
        convert_label_list(csv, tmp_path / "t", images=images, list_format="chexpert")


@pytest.fixture
def shenzhen(tmp_path):
    root = tmp_path / "CXR_png"
    for i in range(4):
        save_png(root / f"CHNCXR_000{i}_{i % 2}.png", value=50 + 30 * i)
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "name,label,patient_id\n"
        "CHNCXR_0000_0.png,normal,p0\n"
        "CHNCXR_0001_1.png,tb,p1\n"
        "CHNCXR_0002_0.png,normal,p2\n"
        "CHNCXR_0003_1.png,tbc,p2\n"
    )
    return csv, root


def test_simple_csv(tmp_path, shenzhen):
    csv, root = shenzhen
    assert detect_format(csv) == "csv"
    convert_label_list(csv, tmp_path / "s", images=root)
    store = Store(tmp_path / "s")
    assert store.task == "classification" and store.class_names == ["normal", "tb", "tbc"]
    assert store.labels.tolist() == [0, 1, 0, 2] and list(store.patient_ids) == ["p0", "p1", "p2", "p2"]


def test_unknown_label_in_csv_is_skipped_or_stops_strict(tmp_path, shenzhen):
    csv, root = shenzhen
    summary = convert_label_list(csv, tmp_path / "s", images=root, classes=["normal", "tb"])
    assert summary.skipped == [{"file": f"{csv}:5", "reason": "unknown label 'tbc', did you mean 'tb'?"}]
    report = json.loads((tmp_path / "s" / "prepare_report.json").read_text())
    assert report["skipped"] == summary.skipped
    with pytest.raises(InputError) as err:
        convert_label_list(csv, tmp_path / "strict", images=root, classes=["normal", "tb"], strict=True)
    assert str(err.value) == f"{csv}:5: unknown label 'tbc', did you mean 'tb'?"
    assert not (tmp_path / "strict").exists() and not (tmp_path / ".strict.partial").exists()


def test_numeric_labels_index_given_classes(tmp_path):
    root = tmp_path / "img"
    for i in range(3):
        save_png(root / f"{i}.png")
    csv = tmp_path / "l.csv"
    csv.write_text("image,label\n0.png,1\n1.png,0\n2.png,10\n")
    convert_label_list(csv, tmp_path / "s", images=root)
    assert Store(tmp_path / "s").class_names == ["0", "1", "10"]  # numeric order, not "0", "1", "10" by text
    summary = convert_label_list(csv, tmp_path / "t", images=root, classes=["normal", "tb"])
    assert Store(tmp_path / "t").labels.tolist() == [1, 0]
    assert "unknown label '10'" in summary.skipped[0]["reason"]


def test_missing_and_duplicate_images_and_unreadable(tmp_path, shenzhen):
    csv, root = shenzhen
    (root / "broken.png").write_bytes(b"garbage")
    csv.write_text(
        "name,label\nCHNCXR_0000_0.png,normal\nmissing.png,tb\nCHNCXR_0000_0.png,tb\n"
        "broken.png,tb\nCHNCXR_0001_1.png,tb\n"
    )
    summary = convert_label_list(csv, tmp_path / "s", images=root)
    assert summary.samples == 2
    assert summary.skipped == [
        {"file": f"{csv}:3", "reason": f"image 'missing.png' not found under {root}"},
        {"file": f"{csv}:4", "reason": f"'CHNCXR_0000_0.png' is listed again (first at {csv}:2)"},
        {"file": str(root / "broken.png"), "reason": "not a readable image (unknown or damaged format)"},
    ]
    with pytest.raises(InputError, match=r"l\.csv:3: image 'missing.png' not found"):
        csv2 = tmp_path / "l.csv"
        csv2.write_text("name,label\nCHNCXR_0000_0.png,normal\nmissing.png,tb\n")
        convert_label_list(csv2, tmp_path / "t", images=root, strict=True)


def test_output_exists_and_bad_options(tmp_path, shenzhen):
    csv, root = shenzhen
    with pytest.raises(OutputError, match="is also an input"):
        convert_label_list(csv, root, images=root)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        convert_label_list(csv, tmp_path / "s", images=root)
    with pytest.raises(UnknownChoiceError, match="did you mean 'lsr-ones'"):
        convert_label_list(csv, tmp_path / "s", images=root, uncertainty="lsr-one")
    with pytest.raises(UnknownChoiceError, match="unknown list format"):
        convert_label_list(csv, tmp_path / "s", images=root, list_format="xml")
