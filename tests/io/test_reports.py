"""Report texts keyed by sample: CSV and JSONL, findings + impression, missing texts, bad files."""

from __future__ import annotations

import json

import pytest

from medtl.errors import InputError
from medtl.io.reports import read_reports, report_text
from tests.data.conftest import write_store


@pytest.fixture
def store(tmp_path):
    return write_store(tmp_path / "store", patients=3, per_patient=2)  # 6 samples, P000..P002


def test_csv_keyed_by_patient_serves_every_image_of_the_study(store, tmp_path):
    path = tmp_path / "reports.csv"
    path.write_text(
        "patient_id,findings,impression\n"
        "P000,Heart size normal.,No acute process.\n"
        "P002,,Small left effusion.\n"
        "P999,unused,unused\n"
    )
    reports = read_reports(path, store)
    assert reports.key == "patient_id"
    assert reports.texts[0] == reports.texts[1] == "Heart size normal. No acute process."
    assert reports.texts[2] is None and reports.texts[3] is None  # P001 has no report: skipped
    assert reports.texts[4] == "Small left effusion."
    assert reports.rows.tolist() == [0, 1, 4, 5] and reports.missing.tolist() == [2, 3]
    assert reports.unmatched == ["P999"]
    assert "4 of 6 samples have a report" in reports.summary()


def test_jsonl_keyed_by_source_file_with_a_text_column(store, tmp_path):
    path = tmp_path / "reports.jsonl"
    lines = [
        {"source_file": s["source_file"], "text": f"  report  {i} "} for i, s in enumerate(store.samples)
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    reports = read_reports(path, store)
    assert reports.key == "source_file" and reports.texts[3] == "report 3" and not len(reports.missing)


def test_strict_fails_on_a_missing_report(store, tmp_path):
    path = tmp_path / "reports.csv"
    path.write_text("patient_id,impression\nP000,ok\nP001,ok\n")
    with pytest.raises(
        InputError, match=r"reports.csv: 2 of 6 samples .* have no report \(first: patient_id 'P002'\)"
    ):
        read_reports(path, store, strict=True)
    assert len(read_reports(path, store).missing) == 2


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("r.csv", "patient_id,findings\nP000,a\nP000,b\n", "patient_id 'P000' appears twice"),
        ("r.csv", "study,findings\nS1,a\n", "has none of the key columns"),
        ("r.csv", "patient_id,label\nP000,a\n", "has no text column"),
        ("r.csv", "patient_id,findings\n", "holds no reports"),
        ("r.csv", "patient_id,findings\nX,a\n", "no report matches a sample"),
        ("r.jsonl", '{"patient_id": "P000", "text": "a"}\n{oops\n', "line 2 is not valid JSON"),
        ("r.jsonl", '["P000", "a"]\n', "line 1 is not a JSON object"),
        ("r.txt", "anything", "must be .csv or .jsonl"),
    ],
)
def test_bad_report_files(store, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_reports(path, store)


def test_named_key_must_exist(store, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("patient_id,findings\nP000,a\n")
    with pytest.raises(InputError, match="has no 'source_file' column"):
        read_reports(path, store, key="source_file")
    with pytest.raises(InputError, match="report file not found"):
        read_reports(tmp_path / "absent.csv", store)


def test_report_text_prefers_a_text_column():
    assert report_text({"text": "a  b", "findings": "x"}) == "a b"
    assert report_text({"findings": " x ", "impression": "y"}) == "x y"
    assert report_text({"findings": None}) == ""
