"""A killed SimCLR run resumes to the metrics of one that never stopped (views come from the RNG the
trainer seeds per epoch, and so does the draw of a store mixture, so a resumed epoch augments and
mixes exactly as the lost one did)."""

from __future__ import annotations

import json

from medtl.engine import run
from medtl.pretrain.simclr import simclr_config
from tests.data.conftest import write_store
from tests.engine.faults import KILLED
from tests.engine.test_resume import run_killed, without_timing


def test_killed_simclr_run_resumes_to_identical_metrics(tmp_path):
    store = write_store(tmp_path / "ssl", patients=6, per_patient=3, size=32, classes=2)
    other = write_store(tmp_path / "other", patients=8, per_patient=2, size=32, classes=2)
    base = {"batch_size": 8, "num_workers": 0, "device": "cpu", "seed": 0, "checkpoint_interval": 0,
            "out": tmp_path / "runs", "deterministic": True}  # fmt: skip

    def config(name):
        # a mixture, drawn anew each epoch, and the k-NN monitor every epoch
        return simclr_config([str(store.path), f"{other.path}:0.5"], backbone="resnet10t", epochs=2,
                             lr=0.05, run_name=name, base=base,
                             objective={"projection_dim": 8, "view_size": 24, "monitor": "knn_accuracy",
                                        "knn_every": 1})  # fmt: skip

    reference = config("reference")
    run(reference)
    interrupted = config("interrupted")
    killed = run_killed(interrupted, 1)
    assert killed.returncode == KILLED, killed.stderr[-2000:]
    assert run(interrupted).resumed
    expected = json.loads((reference.run_dir / "metrics.json").read_text())
    got = json.loads((interrupted.run_dir / "metrics.json").read_text())
    assert len(got["history"]) == 2
    assert without_timing(got) == without_timing(expected)
