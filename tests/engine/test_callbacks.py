"""Progress reaches the medtl Progress sink: an epoch bar per phase, a batch bar per epoch."""

from __future__ import annotations

from medtl.engine import run
from medtl.engine.callbacks import ProgressCallback
from medtl.progress import Progress


class Recorder(Progress):
    def __init__(self) -> None:
        self.events: list[tuple] = []
        self._n = 0

    def start(self, description, total=None):
        self._n += 1
        self.events.append(("start", description, total))
        return self._n

    def advance(self, task, n=1, **info):
        self.events.append(("advance", task, n, tuple(sorted(info))))

    def end(self, task):
        self.events.append(("end", task))

    def message(self, text):
        self.events.append(("message", text))


def test_run_reports_phases_epochs_and_batches(make_config):
    recorder = Recorder()
    run(make_config(phase_epochs={"head": 2}), progress=recorder)
    starts = [e[1:] for e in recorder.events if e[0] == "start"]
    # A store new to the run is hashed first (task 1, in bytes); then the phase and its epochs.
    assert starts[0][0] == "verifying multiclass" and starts[0][1] > 0
    # 28 training samples in batches of 8 -> 4 steps per epoch
    assert starts[1:] == [("phase head", 2), ("head epoch 1", 4), ("head epoch 2", 4)]
    batch_advances = [e for e in recorder.events if e[0] == "advance" and e[1] == 3]
    assert len(batch_advances) == 4 and all(e[3] == ("loss",) for e in batch_advances)
    epoch_advances = [e for e in recorder.events if e[0] == "advance" and e[1] == 2]
    assert [e[3] for e in epoch_advances] == [("train_loss", "val_auroc", "val_loss")] * 2
    assert ("message", "random initialisation") in recorder.events


def test_resumed_phase_starts_with_done_epochs():
    recorder = Recorder()
    callback = ProgressCallback(recorder)
    callback.on_phase_start("blocks", epochs=5, done=3, steps=10)
    assert recorder.events == [("start", "phase blocks", 5), ("advance", 1, 3, ())]
    callback.on_phase_end({"name": "blocks", "stopped_early": True, "epochs_run": 4, "patience": 1})
    expected = "phase blocks: early stop after 4 epochs (no improvement for 1)"
    assert recorder.events[-1] == ("message", expected)
