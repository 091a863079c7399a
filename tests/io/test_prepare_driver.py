"""The converter driver: job order, workers, skips, --strict, resuming after an interruption."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from medtl.errors import InputError, SkipSample
from medtl.io.prepare import Job, Unit, _results, convert
from medtl.io.store import SampleRecord, Store, StoreWriter
from medtl.progress import Progress
from tests.helpers import visible

SHAPE = (1, 3, 3)


def load_item(payload: dict) -> Unit | None:
    """Toy loader: ``n`` rows filled with the job number; 'bad' jobs are skipped."""
    if payload.get("started_dir"):
        open(os.path.join(payload["started_dir"], str(payload["i"])), "w").close()
    if payload.get("bad"):
        raise SkipSample(payload["path"], payload["bad"])
    if payload.get("crash_file") and not os.path.exists(payload["crash_file"]):
        open(payload["crash_file"], "w").close()  # crash once, as a killed run would
        raise RuntimeError("interrupted")
    n = payload["n"]
    if n == 0:
        return None
    value = payload["i"]
    images = np.full((n, *SHAPE), value, dtype=np.float32) + np.arange(n)[:, None, None, None] / 10
    samples = [SampleRecord(f"p{value}", payload["path"], k, "b") for k in range(n)]
    return Unit(f"j{value}", images, samples, labels=np.full(n, value % 2, dtype=np.int64))


def make_jobs(count: int = 6, special: dict[int, dict] | None = None) -> list[Job]:
    jobs = []
    for i in range(count):
        payload = {"i": i, "n": 1 + i % 3, "path": f"/raw/s{i}.nii.gz", **(special or {}).get(i, {})}
        jobs.append(Job(f"s{i}", payload, path=payload["path"]))
    return jobs


def writer(out, **kwargs) -> StoreWriter:
    return StoreWriter(
        out, task="classification", image_shape=SHAPE, class_names=["a", "b"], label_shape=(), **kwargs
    )


def run(out, jobs, **kwargs):
    with writer(out) as w:
        return convert(jobs, load_item, w, **kwargs)


class RecordingProgress(Progress):
    def __init__(self) -> None:
        self.advanced = 0
        self.messages: list[str] = []

    def advance(self, task: int, n: int = 1, **info) -> None:
        self.advanced += n

    def message(self, text: str) -> None:
        self.messages.append(text)


def test_units_are_written_in_job_order(tmp_path):
    summary = run(tmp_path / "s", make_jobs())
    store = Store(tmp_path / "s")
    assert summary.samples == len(store) == 1 + 2 + 3 + 1 + 2 + 3
    assert summary.units == 6 and summary.skipped == [] and summary.resumed_units == 0
    np.testing.assert_array_equal(store.images[:6, 0, 0, 0], np.float16([0, 1, 1.1, 2, 2.1, 2.2]))
    assert [s["patient_id"] for s in store.samples][:3] == ["p0", "p1", "p1"]


def test_two_workers_give_the_same_store(tmp_path):
    run(tmp_path / "one", make_jobs(8))
    run(tmp_path / "two", make_jobs(8), workers=2)
    one, two = Store(tmp_path / "one"), Store(tmp_path / "two")
    np.testing.assert_array_equal(one.images, two.images)
    np.testing.assert_array_equal(one.labels, two.labels)
    assert one.manifest == two.manifest


def test_skipped_and_empty_inputs_are_reported(tmp_path):
    progress = RecordingProgress()
    jobs = make_jobs(4, {1: {"bad": "truncated gzip stream"}, 2: {"n": 0}})
    summary = run(tmp_path / "s", jobs, workers=2, progress=progress)
    report = json.loads((tmp_path / "s" / "prepare_report.json").read_text())
    assert report["skipped"] == [
        {"file": "/raw/s1.nii.gz", "reason": "truncated gzip stream"},
        {"file": "/raw/s2.nii.gz", "reason": "no samples selected"},
    ]
    assert summary.samples == 1 + 1  # jobs 0 and 3
    assert progress.advanced == 4
    assert "skipped /raw/s1.nii.gz: truncated gzip stream" in progress.messages
    assert progress.messages[-1].endswith("2 samples from 4 inputs, 2 skipped (see prepare_report.json)")


@pytest.mark.parametrize("workers", [1, 2])
def test_strict_stops_at_the_first_bad_input_and_leaves_nothing(tmp_path, workers):
    jobs = make_jobs(6, {3: {"bad": "contains NaN/Inf voxels"}})
    with pytest.raises(InputError) as err:
        run(tmp_path / "s", jobs, workers=workers, strict=True)
    assert err.value.message == "/raw/s3.nii.gz: contains NaN/Inf voxels"
    assert visible(tmp_path) == []


def test_rerun_after_an_interruption_finishes_with_identical_arrays(tmp_path):
    run(tmp_path / "ref", make_jobs())
    crash = tmp_path / "crashed-once"
    jobs = make_jobs(special={4: {"crash_file": str(crash)}})
    with pytest.raises(RuntimeError, match="interrupted"):
        run(tmp_path / "s", jobs)
    assert not (tmp_path / "s").exists()
    summary = run(tmp_path / "s", jobs)
    assert summary.resumed_units == 4
    assert "4 already done by an earlier run" in summary.line()
    ref, store = Store(tmp_path / "ref"), Store(tmp_path / "s")
    np.testing.assert_array_equal(ref.images, store.images)
    np.testing.assert_array_equal(ref.labels, store.labels)
    assert ref.samples == store.samples and ref.checksum == store.checksum


def test_job_keys_must_be_unique(tmp_path):
    jobs = make_jobs(2)
    jobs[1].key = jobs[0].key
    with pytest.raises(ValueError, match="unique"):
        run(tmp_path / "s", jobs)


def test_jobs_in_flight_are_bounded_while_the_writer_lags(tmp_path):
    """Memory must not grow with the dataset: finished units may not pile up in the parent."""
    started = tmp_path / "started"
    started.mkdir()
    jobs = make_jobs(12, {i: {"started_dir": str(started)} for i in range(12)})
    results = _results(load_item, jobs, workers=2)
    assert next(results)[0] == "ok"
    time.sleep(0.5)  # a slow writer: the workers could finish everything meanwhile
    assert len(list(started.iterdir())) <= 2 * 2 + 1  # the window, refilled once
    assert [kind for kind, _ in results] == ["ok"] * 11
    results.close()
