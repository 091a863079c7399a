"""Report texts paired with a store's images, for vision-language pretraining (the Adaptor).

A CSV or JSONL file holds one report per key. The key column names a column of the store's
``samples.csv`` (``source_file``, ``patient_id`` or ``index``), so one report can serve every image
of a study (MIMIC-CXR keys reports by study, several views share one). The text is a ``text`` or
``report`` column, else ``findings`` and ``impression`` joined (MIMIC-CXR style, as MGCA prepares
it); a report with neither is empty. Store samples without a non-empty report are skipped and
counted; ``strict`` turns any such sample into an error.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medtl.errors import InputError
from medtl.io.store import Store

KEY_COLUMNS = ("source_file", "patient_id", "index")  # tried in this order when the key is "auto"
TEXT_COLUMNS = ("text", "report")
SECTION_COLUMNS = ("findings", "impression")
FORMATS = (".csv", ".jsonl")


@dataclass
class ReportTexts:
    """The report of each store row (``None`` where none was found) and what was skipped."""

    path: Path
    key: str
    texts: list[str | None]
    unmatched: list[str] = field(default_factory=list)  # keys in the file that no sample has

    @property
    def rows(self) -> np.ndarray:
        """Store rows that have a report."""
        return np.array([i for i, t in enumerate(self.texts) if t is not None], dtype=np.int64)

    @property
    def missing(self) -> np.ndarray:
        """Store rows without a report (skipped)."""
        return np.array([i for i, t in enumerate(self.texts) if t is None], dtype=np.int64)

    def summary(self) -> str:
        return (
            f"{len(self.rows)} of {len(self.texts)} samples have a report in {self.path.name} "
            f"(key {self.key}); {len(self.missing)} skipped, {len(self.unmatched)} reports match no sample"
        )


def _records(path: Path) -> tuple[list[dict[str, object]], list[str]]:
    """(records, column names) of a CSV or JSONL file."""
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            records = list(reader)
            return records, list(reader.fieldnames or [])
    records = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise InputError(path, f"line {number} is not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise InputError(path, f"line {number} is not a JSON object")
            records.append(record)
    columns = sorted({k for r in records for k in r})
    return records, columns


def report_text(record: dict[str, object]) -> str:
    """The text of one report: ``text``/``report``, else findings and impression joined."""
    for column in TEXT_COLUMNS:
        value = record.get(column)
        if value is not None and str(value).strip():
            return " ".join(str(value).split())
    parts = [str(record.get(c) or "").strip() for c in SECTION_COLUMNS]
    return " ".join(" ".join(p for p in parts if p).split())


def _key_column(key: str, columns: Sequence[str], path: Path) -> str:
    if key != "auto":
        if key not in KEY_COLUMNS:
            raise InputError(path, f"key '{key}' is not a samples.csv column ({', '.join(KEY_COLUMNS)})")
        if key not in columns:
            raise InputError(path, f"has no '{key}' column (columns: {', '.join(columns) or 'none'})")
        return key
    found = next((c for c in KEY_COLUMNS if c in columns), None)
    if found is None:
        raise InputError(
            path,
            f"has none of the key columns {', '.join(KEY_COLUMNS)} (columns: {', '.join(columns) or 'none'})",
        )
    return found


def read_reports(path: str | Path, store: Store, *, key: str = "auto", strict: bool = False) -> ReportTexts:
    """Pair the reports of ``path`` with the rows of ``store``; see the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "report file not found")
    if path.suffix.lower() not in FORMATS:
        raise InputError(path, f"report file must be {' or '.join(FORMATS)}, not '{path.suffix}'")
    records, columns = _records(path)
    if not records:
        raise InputError(path, "holds no reports")
    if not any(c in columns for c in (*TEXT_COLUMNS, *SECTION_COLUMNS)):
        raise InputError(
            path,
            f"has no text column ({', '.join(TEXT_COLUMNS + SECTION_COLUMNS)}; "
            f"columns: {', '.join(columns)})",
        )
    column = _key_column(key, columns, path)
    by_key: dict[str, str] = {}
    for number, record in enumerate(records, start=2 if path.suffix.lower() == ".csv" else 1):
        k = str(record.get(column, "")).strip()
        if k in by_key:
            raise InputError(path, f"{column} '{k}' appears twice (again at record {number})")
        by_key[k] = report_text(record)
    sample_keys = [str(row[column]).strip() for row in store.samples]
    texts: list[str | None] = [by_key.get(k) or None for k in sample_keys]
    result = ReportTexts(path, column, texts, sorted(set(by_key) - set(sample_keys)))
    if strict and len(result.missing):
        first = store.samples[int(result.missing[0])]
        raise InputError(
            path,
            f"{len(result.missing)} of {len(texts)} samples of {store.path} have no report "
            f"(first: {column} '{first[column]}'); drop --strict to skip them",
        )
    if not len(result.rows):
        raise InputError(path, f"no report matches a sample of {store.path} by {column}")
    return result
