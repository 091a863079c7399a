"""What a run checks before it trains or evaluates, and how it ends when it is stopped.

Each check is a function the engine calls at one place, so the loop stays free of them:

* ``verify_store``: the store matches its manifest: quickly (sizes, headers, labels and samples in
  full) at every start, every byte when asked (``--verify``) or when this run has not verified
  this store's content before (``record_verified`` remembers it in the run directory);
* ``check_split``: no patient in more than one partition (unless ``allow_leakage``, which the
  run records), every class of the store in the training part, at least two classes;
* ``record_identity`` / ``check_identity``: a run goes on (or is returned as finished) only with the
  files it started with: a store prepared again, a changed split or strategy file is refused;
* ``check_phases``: every phase of the strategy resolves on the model before the first one trains;
* ``terminated_as_interrupt``: SIGTERM (what SLURM sends at a time limit or ``scancel``) stops the
  run like Ctrl-C, so it ends with status ``interrupted`` and can be resumed;
* ``end_status`` / ``write_failure``: the status a stopped run records, and the one-line error of
  a checkpoint that could not be written (a full disk).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from medtl.data.splits import check_training_part, patient_leaks
from medtl.errors import InputError, OutputError, TrainingError
from medtl.io.paths import write_error
from medtl.io.store import Store
from medtl.progress import NULL_PROGRESS, Progress

VERIFIED_FILE = "verified_stores.json"
IDENTITY_FILE = "identity.json"
LEAKAGE_HINT = "fix the split (`medtl data check` lists the patients), or pass --allow-leakage"


# -- the store ---------------------------------------------------------------------------------------
def _verified(run_dir: Path) -> dict[str, str]:
    try:
        data = json.loads((run_dir / VERIFIED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def verify_store(
    store: Store, run_dir: Path | None, *, full: bool = False, progress: Progress = NULL_PROGRESS
) -> str:
    """Check ``store`` against its manifest before a run uses it; returns "full" or "quick".

    Every byte is hashed when ``full`` or when ``run_dir`` has no record of this store's content
    (a new run, or a store prepared again since); otherwise the quick check runs. A mismatch is a
    StoreError naming the file.
    """
    if full or run_dir is None or store.checksum not in _verified(run_dir):
        store.verify(progress=progress)
        return "full"
    store.verify(quick=True)
    return "quick"


def record_verified(store: Store, run_dir: Path) -> None:
    """Remember in ``run_dir`` that this store content was verified in full."""
    seen = _verified(run_dir)
    seen[store.checksum] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    tmp = run_dir / f".{VERIFIED_FILE}.tmp"
    tmp.write_text(json.dumps(seen, indent=1))
    os.replace(tmp, run_dir / VERIFIED_FILE)


def record_identity(run_dir: Path, identity: Mapping[str, Any]) -> None:
    """Keep the content identities of the files a run reads (``RunConfig.identity()``) beside it."""
    tmp = run_dir / f".{IDENTITY_FILE}.tmp"
    tmp.write_text(json.dumps(dict(identity), indent=1, sort_keys=True))
    os.replace(tmp, run_dir / IDENTITY_FILE)


def check_identity(run_dir: Path, identity: Mapping[str, Any], files: Mapping[str, str]) -> None:
    """Refuse to go on with (or return) a run whose files changed since it started: the same paths
    with other content (a store prepared again with other labels, an edited strategy file).

    ``identity`` is ``RunConfig.identity()`` now; ``files`` names each file field for the message
    (``{"data": "the store /data/brats"}``). Runs from before identities were recorded pass (their
    resume state is checked instead).
    """
    try:
        recorded = json.loads((run_dir / IDENTITY_FILE).read_text())
    except (OSError, ValueError):
        return
    for key, name in files.items():
        if recorded.get(key) != identity.get(key):
            raise changed_since_start(run_dir, name)


def changed_since_start(run_dir: Path, name: str) -> TrainingError:
    """The refusal of a run whose file ``name`` (``the store /data/brats``) has other content now."""
    return TrainingError(
        f"{run_dir}: {name} changed since this run started",
        hint="restore it, or start a new run (another --out or --run-name)",
    )


# -- the split ---------------------------------------------------------------------------------------
def check_split(
    store: Store,
    partitions: dict[str, np.ndarray],
    source: str | Path,
    *,
    allow_leakage: bool = False,
    labels: bool = True,
) -> dict[str, Any] | None:
    """Refuse a split a model should not be trained and tested on; returns the leakage a run was
    allowed to go on with (``allow_leakage``), for metrics.json, else None.

    * a store (or training part) with fewer than two classes: accuracy 1.0 would mean nothing;
    * a class of the store missing from the training part;
    * patients with samples in more than one partition: the test metrics would be inflated.

    The class checks apply when training learns the labels (``labels``; not self-supervised).
    """
    if labels:
        check_classes(store, partitions)
    check_training_part(store, partitions, labels=labels)
    leaks = patient_leaks(store.patient_ids, partitions)
    if not leaks:
        return None
    first = leaks[0]
    where = " and ".join(f"{name} ({n})" for name, n in first["partitions"].items())
    if not allow_leakage:
        raise InputError(
            source,
            f"{len(leaks)} patients have samples in more than one partition (first: {first['patient']} in "
            f"{where}); test metrics would be inflated",
            hint=LEAKAGE_HINT,
        )
    return {"allowed": True, "patients": len(leaks), "examples": [leak["patient"] for leak in leaks[:10]]}


def check_classes(store: Store, partitions: dict[str, np.ndarray]) -> None:
    """A classification store needs two classes, each with samples, two of them in training."""
    if store.task != "classification" or store.labels is None:
        return
    if store.num_classes < 2:
        raise InputError(store.path, f"has one class only ('{store.class_names[0]}'); a classifier needs two")
    counts = np.bincount(np.asarray(store.labels).reshape(-1), minlength=store.num_classes)
    present = np.flatnonzero(counts)
    if len(present) < 2:
        name = store.class_names[int(present[0])] if len(present) else "none"
        raise InputError(
            store.path, f"all {int(counts.sum())} samples are of one class ('{name}'); a classifier needs two"
        )


# -- the strategy ------------------------------------------------------------------------------------
def check_phases(model: Any, strategy: Any) -> None:
    """Resolve every phase on ``model`` now, so a bad selector in a late phase fails before training
    (the message names the strategy file)."""
    from medtl.strategies import resolve_phases

    resolve_phases(model, strategy)


# -- stopping --------------------------------------------------------------------------------------
class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (SLURM's time limit or scancel); raised wherever the run was."""


@contextmanager
def terminated_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises ``Terminated`` in the main thread (a KeyboardInterrupt), so the
    run's cleanup runs and it records status "interrupted". Elsewhere than the main thread, or
    when another handler than the default is installed, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def end_status(exc: BaseException) -> str:
    """The status a run stopped by ``exc`` records: "interrupted" (resumable) or "failed"."""
    return "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"


_TORCH_WRITE_FAILURES = ("failed writing file", "inline_container.cc")


def write_failure(exc: BaseException, run_dir: Path) -> OutputError | None:
    """The one-line error for a checkpoint or state file that could not be written (full disk,
    read-only), or None. safetensors wraps the OS error in SafetensorError; torch.save raises a
    RuntimeError from its zip writer ("[enforce fail at inline_container.cc] unexpected pos")."""
    if isinstance(exc, OSError) or type(exc).__name__ == "SafetensorError":
        return write_error(exc, run_dir)
    if isinstance(exc, RuntimeError) and any(m in str(exc) for m in _TORCH_WRITE_FAILURES):
        try:
            free = f"{shutil.disk_usage(run_dir).free // 1024} KiB free on the device"
        except OSError:
            free = "the device could not be asked for its free space"
        return OutputError(
            run_dir,
            f"a checkpoint could not be written ({free}; is the disk full?)",
            hint="free some space, then run the same command again: it resumes from the last checkpoint",
        )
    return None
