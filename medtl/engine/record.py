"""``metrics.json`` as a typed record: what a run wrote, read back by the CLI, evaluate, sweeps, reports.

The layout is the JSON medtl has always written (flat history rows with ``val_<metric>`` keys,
flat partition sections); readers use the fields instead of string keys. Undefined values (NaN)
are None, in memory as in the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator

from medtl import __version__
from medtl.errors import InputError
from medtl.objectives.base import PartitionMetrics, finite_values

METRICS_FILE = "metrics.json"


class _Record(BaseModel):
    # Records written by a newer medtl may hold more fields; an older reader ignores them.
    model_config = ConfigDict(extra="ignore", frozen=True)


class DataRecord(_Record):
    """The store and split a run trained on."""

    store: str = Field(description="absolute path of the store when the run was made")
    checksum: str = Field(
        description="checksum of the store's content: images, labels, patients (tells the run's own store)"
    )
    identity: str | None = Field(None, description="the store's content identity (part of the run id)")
    split: str = Field(description="split file, or how the run generated its split")
    counts: dict[str, int] = Field(description="samples per partition")
    leakage: dict[str, Any] | None = Field(
        None, description="patients in more than one partition, when the run was allowed to go on"
    )


class BestRecord(_Record):
    """Where the best validation value of the monitor (the best checkpoint) was reached."""

    value: float | None
    phase: str
    phase_index: int
    epoch: int
    global_epoch: int


class PhaseRecord(_Record):
    """One phase of the strategy as it ran."""

    name: str
    index: int
    trainable: list[str]
    optimizer: str
    lr: float
    bn: str
    epochs: int
    epochs_run: int
    stopped_early: bool
    patience: int | None
    cached_features: bool
    trainable_params: int
    total_params: int
    trained_groups: list[str]
    best_monitor: float | None = Field(None, description="the phase's best validation monitor (None: no val)")
    wall_time_s: float
    energy_j: float
    kwh: float


class HistoryRow(_Record):
    """One epoch; ``val`` holds the validation loss and scalar metrics, written as ``val_<name>``."""

    phase: str
    phase_index: int
    epoch: int
    global_epoch: int
    cached_features: bool
    lr: float
    train_loss: float | None
    val: dict[str, float | None] = Field(default_factory=dict)
    time_s: float

    @model_validator(mode="before")
    @classmethod
    def _from_flat(cls, data: Any) -> Any:
        if isinstance(data, dict) and "val" not in data:
            val = {k[4:]: v for k, v in data.items() if k.startswith("val_")}
            rest = {k: v for k, v in data.items() if not k.startswith("val_")}
            return {**rest, "val": finite_values(val)}
        return data

    @model_serializer(mode="wrap")
    def _to_flat(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        val = out.pop("val")
        time_s = out.pop("time_s")
        return {**out, **{f"val_{k}": v for k, v in val.items()}, "time_s": time_s}


class EnergyRecord(_Record):
    method: str = Field(description="nvml | rapl | cpu-time-estimate")
    estimated: bool
    assumption: str | None = None
    energy_j: float
    kwh: float


class RunMetrics(_Record):
    """The content of a run's ``metrics.json``."""

    run_id: str
    objective: str = Field("classification", description="the objective's kind")
    task: str | None = Field(None, description="the objective's task kind (classification: binary, ...)")
    class_names: list[str] = Field(default_factory=list)
    backbone: str
    init: str
    init_report: str
    strategy: str
    data: DataRecord
    monitor: str
    best: BestRecord | None
    phases: list[PhaseRecord]
    history: list[HistoryRow]
    val: PartitionMetrics | None
    test: PartitionMetrics | None
    energy: EnergyRecord
    wall_time_s: float = Field(description="training time over every session, in seconds")
    last_session_wall_time_s: float = Field(description="time of the session that finished the run")
    medtl_version: str = __version__

    def save(self, path: Path) -> None:
        """Write atomically (a temporary file renamed into place)."""
        from medtl.engine.state import write_json

        write_json(Path(path), self.model_dump(mode="json"))

    @classmethod
    def load(cls, path: str | Path) -> RunMetrics:
        """Read a metrics.json (or the one in a run directory)."""
        path = Path(path)
        if path.is_dir():
            path = path / METRICS_FILE
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except FileNotFoundError:
            raise InputError(path, "not found (the run has not finished)") from None
        except (OSError, ValueError) as exc:
            problem = exc.errors()[0] if isinstance(exc, ValidationError) else exc
            raise InputError(path, f"not a medtl metrics record ({problem})") from None
