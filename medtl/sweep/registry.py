"""The run registry on disk: ``OUT/<sweep>/sweep.json`` and each run's ``status.json``.

``sweep.json`` holds the spec, the expanded run ids with their axis values, medtl/torch versions,
the git commits, and every submission (executor, SLURM array id, which runs). Each run directory
holds the engine's files plus the sweep's fields in ``status.json``: pending / running / completed /
failed / interrupted / cancelled, attempts, failures, host, SLURM job id and wall time. Every file
is written to a temporary name and renamed into place; the sweep folder and each run folder have an
exclusive lock (``locks.py``), so two sweeps or two jobs never write one file at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from medtl.errors import InputError
from medtl.sweep.expand import PlannedRun
from medtl.sweep.locks import exclusive, is_locked
from medtl.sweep.spec import SweepSpec

SWEEP_FILE = "sweep.json"
STATUS_FILE = "status.json"
CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.json"
SLURM_DIR = ".slurm"  # submitit's pickles and the jobs' logs
LOCAL_LOG = "sweep.log"  # a local run's output

DONE = "completed"  # the engine's word; `medtl sweep status` shows it as "done"
ACTIVE = ("pending", "running")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_run_status(run_dir: Path) -> dict[str, Any]:
    return read_json(run_dir / STATUS_FILE) or {}


def update_run_status(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into status.json (a value of None removes the key)."""
    data = read_run_status(run_dir)
    data.update(fields)
    data = {k: v for k, v in data.items() if v is not None}
    data["updated"] = now()
    write_json_atomic(run_dir / STATUS_FILE, data)
    return data


# -- versions ------------------------------------------------------------------------------------
def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_commit(folder: Path) -> dict[str, Any] | None:
    """HEAD of the git checkout holding ``folder`` and whether it has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def environment() -> dict[str, Any]:
    import medtl

    return {
        "python": sys.version.split()[0],
        "medtl": medtl.__version__,
        "torch": _version("torch"),
        "submitit": _version("submitit"),
        "git": {
            "medtl": git_commit(Path(medtl.__file__).parent),
        },
    }


# -- the registry --------------------------------------------------------------------------------
@dataclass
class RunState:
    """What the registry knows of one run now."""

    run_id: str
    run_dir: Path
    status: str  # pending | running | completed | failed | interrupted | cancelled
    record: dict[str, Any]
    locked: bool

    @property
    def failures(self) -> int:
        return int(self.record.get("failures", 0))


class SweepRegistry:
    """The folder OUT/<sweep>: its manifest and its runs' states."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / SWEEP_FILE

    @property
    def slurm_dir(self) -> Path:
        return self.root / SLURM_DIR

    @classmethod
    def open(cls, root: str | Path) -> SweepRegistry:
        """An existing sweep folder (InputError when it holds no sweep.json)."""
        registry = cls(Path(root).expanduser().resolve())
        if not registry.manifest_path.is_file():
            raise InputError(
                registry.root, "not a sweep folder (no sweep.json)", hint="run `medtl sweep run SPEC`"
            )
        return registry

    def manifest(self) -> dict[str, Any]:
        data = read_json(self.manifest_path)
        if data is None:
            raise InputError(self.manifest_path, "unreadable sweep manifest")
        return data

    @contextmanager
    def lock(self, wait: float = 0) -> Iterator[None]:
        """The sweep-level lock: held while a command writes sweep.json or submits."""
        with exclusive(self.root, "sweep", wait=wait):
            yield

    def record(self, spec: SweepSpec, runs: list[PlannedRun]) -> None:
        """Write sweep.json for ``spec`` and a pending run folder (config.toml, status.json) per new run.

        Run folders that exist are left as they are: their state (done, failed, half-trained) is
        what a re-run continues from.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        previous = read_json(self.manifest_path) or {}
        manifest = {
            "name": spec.name,
            "spec_file": str(spec.source) if spec.source else None,
            "spec": spec.model_dump(mode="json", exclude={"source"}),
            "created": previous.get("created", now()),
            "updated": now(),
            "runs": [{"id": r.run_id, "values": r.values} for r in runs],
            "environment": environment(),
            "spec_git": git_commit(spec.source.parent) if spec.source else None,
            "submissions": previous.get("submissions", []),
        }
        for run in runs:
            self._prepare_run(run)
        write_json_atomic(self.manifest_path, manifest)

    def _prepare_run(self, run: PlannedRun) -> None:
        run_dir = run.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        saved = run_dir / CONFIG_FILE
        # The id covers what a run computes; settings outside it (workers, checkpoint interval) may
        # change between invocations and are taken up by runs that are not running now.
        if not saved.exists() or (saved.read_text() != run.config.to_toml() and not is_locked(run_dir)):
            run.config.save(saved)
        if not (run_dir / STATUS_FILE).exists():
            update_run_status(
                run_dir, status="pending", run_id=run.run_id, sweep=self.root.name, attempts=0, failures=0
            )

    def add_submission(self, entry: dict[str, Any]) -> None:
        manifest = self.manifest()
        manifest.setdefault("submissions", []).append({"submitted": now(), **entry})
        manifest["updated"] = now()
        write_json_atomic(self.manifest_path, manifest)

    def update_submissions(self, job_ids: Iterable[str], **fields: Any) -> None:
        wanted = set(job_ids)
        manifest = self.manifest()
        for entry in manifest.get("submissions", []):
            if entry.get("job_id") in wanted:
                entry.update(fields)
        write_json_atomic(self.manifest_path, manifest)

    def run_ids(self) -> list[str]:
        return [r["id"] for r in self.manifest().get("runs", [])]

    def run_values(self) -> dict[str, dict[str, Any]]:
        return {r["id"]: r.get("values", {}) for r in self.manifest().get("runs", [])}

    def state(self, run_id: str) -> RunState:
        run_dir = self.root / run_id
        record = read_run_status(run_dir)
        status = record.get("status", "pending")
        locked = is_locked(run_dir)
        if status == DONE and not (run_dir / METRICS_FILE).is_file():
            status = "interrupted"  # completed without metrics cannot be vouched for: run it again
        elif status == "running" and not locked:
            status = "interrupted"  # its process died without saying so (kill -9, node failure)
        elif status == "failed" and locked:
            status = "running"  # a retry is under way
        return RunState(run_id, run_dir, status, record, locked)

    def states(self) -> list[RunState]:
        return [self.state(run_id) for run_id in self.run_ids()]


def select_runs(
    states: Iterable[RunState], *, max_retries: int, queued_jobs: set[str] = frozenset()
) -> tuple[list[RunState], dict[str, list[str]]]:
    """The runs to start now, and why each other run is left alone.

    Done runs are skipped; a run held by a live process (or queued in SLURM) is not started twice;
    failed runs are retried while their failures are at most ``max_retries``.
    """
    todo: list[RunState] = []
    skipped: dict[str, list[str]] = {"done": [], "running": [], "queued": [], "gave up": []}
    for state in states:
        job = str(state.record.get("slurm_job_id", ""))
        if state.status == DONE:
            skipped["done"].append(state.run_id)
        elif state.locked:
            skipped["running"].append(state.run_id)
        elif job and state.status in (*ACTIVE, "interrupted") and job in queued_jobs:
            skipped["queued"].append(state.run_id)
        elif state.status == "failed" and state.failures > max_retries:
            skipped["gave up"].append(state.run_id)
        else:
            todo.append(state)
    return todo, skipped
