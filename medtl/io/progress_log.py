"""The resume record of an unfinished store: ``progress.jsonl`` in its hidden partial directory.

The first line describes the conversion (its fingerprint); then one line per committed unit with
the row count and samples.csv length after it, the signature of the input files it read, and the
skip reason when it was skipped. A line is appended only after the unit's rows are on disk, so the
last complete line always describes data that exists; a line cut by a kill or a full disk is
dropped when the log is read, and the file is cut back to the last complete line before appending.
Appending keeps a commit O(1), where rewriting a JSON file of every unit done would grow with the
dataset.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROGRESS_FILE = "progress.jsonl"
LOG_VERSION = 2


@dataclass
class ProgressEntry:
    unit: str
    rows: int
    csv_offset: int
    signature: list[Any] | None = None
    skip: dict[str, str] | None = None


@dataclass
class ProgressRecord:
    """What an interrupted conversion had committed."""

    fingerprint: str
    entries: list[ProgressEntry] = field(default_factory=list)
    length: int = 0  # bytes of complete lines

    @property
    def rows(self) -> int:
        return self.entries[-1].rows if self.entries else 0

    @property
    def csv_offset(self) -> int:
        return self.entries[-1].csv_offset if self.entries else 0


def read_progress(path: Path) -> ProgressRecord | None:
    """The complete lines of a progress log; None when there is none or its header is unreadable."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    record: ProgressRecord | None = None
    offset = 0
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break  # cut short by a kill or a full disk
        try:
            line = json.loads(raw)
        except ValueError:
            break
        if record is None:
            if not isinstance(line, dict) or line.get("version") != LOG_VERSION:
                return None
            record = ProgressRecord(str(line.get("fingerprint")))
        else:
            try:
                record.entries.append(
                    ProgressEntry(
                        str(line["unit"]),
                        int(line["rows"]),
                        int(line["csv_offset"]),
                        line.get("sig"),
                        line.get("skip"),
                    )
                )
            except (KeyError, TypeError, ValueError):
                break
        offset += len(raw)
    if record is not None:
        record.length = offset
    return record


class ProgressLog:
    """Appends commit lines; opened fresh (with a header) or continuing a record read before."""

    def __init__(self, path: Path, fingerprint: str, resume: ProgressRecord | None = None) -> None:
        self.path = path
        if resume is None:
            self.fh = open(path, "wb")
            self._write({"version": LOG_VERSION, "fingerprint": fingerprint})
        else:
            self.fh = open(path, "r+b")
            self.fh.truncate(resume.length)
            self.fh.seek(resume.length)

    def _write(self, line: dict[str, Any]) -> None:
        self.fh.write((json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))
        self.fh.flush()

    def append(self, entry: ProgressEntry) -> None:
        self._write(
            {
                "unit": entry.unit,
                "rows": entry.rows,
                "csv_offset": entry.csv_offset,
                "sig": entry.signature,
                "skip": entry.skip,
            }
        )

    def close(self) -> None:
        if not self.fh.closed:
            self.fh.close()

    def remove(self) -> None:
        self.close()
        if self.path.exists():
            os.unlink(self.path)
