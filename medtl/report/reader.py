"""The one adapter from run folders on disk to the report's ``RunTable``.

A sweep folder holds one folder per run (``<sweep>/<run-id>/``) with ``config.toml``,
``status.json`` and, once finished, ``metrics.json``; ``evaluation_*.json`` (``medtl evaluate``)
and ``predictions_test.npz`` (per-sample test scores) may sit beside them. Anything unreadable
makes that run a failed row with the file and the problem as its error line.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from medtl.errors import InputError
from medtl.report.records import EpochPoint, Predictions, RunRecord, RunTable, SweepInfo

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_FILE = "config.toml"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions_test.npz"
SWEEP_FILE = "sweep.json"
# The sweep's words for a run's state, as the report counts them (an interrupted run resumes).
STATUS_ALIASES = {
    "done": "completed",
    "finished": "completed",
    "queued": "pending",
    "submitted": "pending",
    "interrupted": "pending",
    "cancelled": "failed",
}
# Sweep axes (RunConfig field paths) under the names the report uses for them.
AXIS_FACTORS = {"data": "store", "split": "fold"}
SPEC_FILES = ("sweep.toml", "spec.toml", "sweep.yaml", "sweep.json")
# Run settings that can differ between the runs of a sweep; each becomes a factor of the record.
CONFIG_FACTORS = (
    "store",
    "backbone",
    "init",
    "strategy",
    "fraction",
    "seed",
    "fold",
    "lr",
    "epochs_scale",
    "image_size",
    "batch_size",
)


class _Unreadable(Exception):
    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path.name}: {problem}")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise _Unreadable(path, f"cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise _Unreadable(path, f"not valid JSON ({exc})") from None


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / f).is_file() for f in (CONFIG_FILE, STATUS_FILE, METRICS_FILE))


def run_dirs(root: Path) -> list[Path]:
    """Run folders directly under ``root`` (a sweep) or ``root`` itself when it is one run."""
    if (
        is_run_dir(root)
        and (root / METRICS_FILE).is_file()
        and not any(is_run_dir(p) for p in root.iterdir())
    ):
        return [root]
    return sorted(p for p in root.iterdir() if not p.name.startswith(".") and is_run_dir(p))


def read_run_table(root: str | Path) -> RunTable:
    """Every run under a sweep folder as a RunTable; raises InputError when there is none."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "not a directory (give a sweep folder or a runs folder)")
    dirs = run_dirs(root)
    if not dirs:
        raise InputError(root, "holds no run folders (none has config.toml, status.json or metrics.json)")
    info, values = _sweep_info(root)
    records = [read_run(d) for d in dirs]
    for r in records:
        r.factors.update(values.get(r.run_id, values.get(r.path.name, {})))
    return RunTable(sweep=info, records=records)


def _axis_factor(path: str, value: Any) -> tuple[str, str]:
    name = AXIS_FACTORS.get(path, path)
    if name == "store":
        return name, Path(str(value)).name
    if name == "fold":
        return name, _fold(None if value is None else str(value))
    if name == "init":
        return name, _short_init(str(value))
    if name == "strategy":
        return name, Path(str(value)).name.removesuffix(".toml")
    return name, _text(value)


def _sweep_info(root: Path) -> tuple[SweepInfo, dict[str, dict[str, str]]]:
    """What sweep.json says: the spec, the planned runs and each run's axis values (as factors)."""
    info = SweepInfo(root=root, name=root.name)
    values: dict[str, dict[str, str]] = {}
    manifest = None
    if (root / SWEEP_FILE).is_file():
        try:
            manifest = _read_json(root / SWEEP_FILE)
        except _Unreadable:
            manifest = None
    if isinstance(manifest, dict):
        info.name = str(manifest.get("name") or root.name)
        runs = [r for r in manifest.get("runs") or [] if isinstance(r, dict) and "id" in r]
        info.planned = len(runs) or None
        for run in runs:
            values[str(run["id"])] = dict(_axis_factor(k, v) for k, v in (run.get("values") or {}).items())
        spec = manifest.get("spec") if isinstance(manifest.get("spec"), dict) else {}
        for group in [spec.get("grid") or {}, *(spec.get("zip") or [])]:
            for path, levels in group.items() if isinstance(group, dict) else []:
                if isinstance(levels, list):
                    name = AXIS_FACTORS.get(path, path)
                    info.factor_order[name] = list(dict.fromkeys(_axis_factor(path, v)[1] for v in levels))
        spec_file = manifest.get("spec_file")
        if spec_file and Path(spec_file).is_file():
            info.spec_text, info.spec_name = Path(spec_file).read_text(errors="replace"), str(spec_file)
        elif spec:
            info.spec_text, info.spec_name = json.dumps(spec, indent=2), f"{SWEEP_FILE} (spec)"
    if info.spec_text is None:
        for name in SPEC_FILES:
            path = root / name
            if path.is_file():
                info.spec_text, info.spec_name = path.read_text(errors="replace"), name
                break
    return info, values


def _short_init(init: str) -> str:
    """Checkpoint paths as their file stem (``ckpts/moco_v2.pth`` -> ``moco_v2``)."""
    if "/" in init or init.endswith((".pth", ".pt", ".safetensors", ".tar")):
        name = Path(init).name
        for suffix in (".tar", ".pth", ".pt", ".safetensors"):
            name = name.removesuffix(suffix)
        return name
    return init


def _fold(split: str | None) -> str:
    return "default" if not split else Path(str(split)).name.removesuffix(".json").removesuffix(".split")


def _factors(config: dict[str, Any]) -> dict[str, str]:
    values = {
        "store": Path(str(config.get("data", ""))).name,
        "backbone": config.get("backbone"),
        "init": _short_init(str(config.get("init", ""))),
        "strategy": Path(str(config.get("strategy", ""))).name.removesuffix(".toml"),
        "fraction": config.get("fraction", 1.0),
        "seed": config.get("seed"),
        "fold": _fold(config.get("split")),
        "lr": config.get("lr"),
        "epochs_scale": config.get("epochs_scale"),
        "image_size": config.get("image_size"),
        "batch_size": config.get("batch_size"),
    }
    return {k: _text(v) for k, v in values.items() if v is not None}


def _text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _scalars(section: Any) -> dict[str, float]:
    if not isinstance(section, dict):
        return {}
    out = {}
    for k, v in section.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or k in ("num_samples",):
            continue
        out[k] = float(v)
    return out


def _intervals(section: Any) -> dict[str, tuple[float, float]]:
    ci = section.get("ci95") if isinstance(section, dict) else None
    if not isinstance(ci, dict):
        return {}
    out = {}
    for k, v in ci.items():
        if isinstance(v, (list, tuple)) and len(v) == 2:
            out[k] = (_float(v[0]), _float(v[1]))
    return out


def _float(v: Any) -> float:
    return math.nan if v is None else float(v)


def _history(entries: Any) -> list[EpochPoint]:
    points = []
    for e in entries or []:
        if not isinstance(e, dict):
            continue
        values = {
            k.removeprefix("val_"): float(v) for k, v in e.items() if k.startswith("val_") and v is not None
        }
        if "train_loss" in e and e["train_loss"] is not None:
            values["train_loss"] = float(e["train_loss"])
        points.append(EpochPoint(int(e.get("global_epoch", len(points))), str(e.get("phase", "")), values))
    return points


def _objective(metrics: dict[str, Any]) -> str:
    objective = metrics.get("objective")
    if isinstance(objective, dict):
        objective = objective.get("kind") or objective.get("name")
    if objective:
        return str(objective)
    task = str(metrics.get("task", ""))
    return "segmentation" if task.startswith("seg") else "classification"


def _fill_metrics(record: RunRecord, metrics: dict[str, Any]) -> None:
    record.objective = _objective(metrics)
    record.task = metrics.get("task")
    record.test = _scalars(metrics.get("test"))
    record.test_ci = _intervals(metrics.get("test"))
    record.val = _scalars(metrics.get("val"))
    record.history = _history(metrics.get("history"))
    phases = [p for p in metrics.get("phases") or [] if isinstance(p, dict)]
    trained = [p["trainable_params"] for p in phases if p.get("trainable_params") is not None]
    totals = [p["total_params"] for p in phases if p.get("total_params") is not None]
    record.params_trained = max(trained) if trained else None
    record.params_total = max(totals) if totals else None
    wall = metrics.get("wall_time_s")
    record.wall_s = None if wall is None else float(wall)
    energy = metrics.get("energy") or {}
    kwh = energy.get("kwh") if isinstance(energy, dict) else None
    if kwh is None and phases:
        kwh = sum(p.get("kwh") or 0.0 for p in phases)
    record.kwh = None if kwh is None else float(kwh)
    record.energy_method = energy.get("method") if isinstance(energy, dict) else None


def _fill_evaluations(record: RunRecord, run_dir: Path) -> None:
    for path in sorted(run_dir.glob("evaluation_*.json")):
        name = path.stem.removeprefix("evaluation_")
        try:
            data = _read_json(path)
        except _Unreadable:
            continue  # an evaluation is extra: the run itself stays usable
        if not isinstance(data, dict):
            continue
        if data.get("external"):
            record.external[name] = _scalars(data.get("metrics"))
        robustness = data.get("robustness")
        if isinstance(robustness, dict) and isinstance(robustness.get("rows"), list):
            record.robustness[name] = [r for r in robustness["rows"] if isinstance(r, dict)]


def read_run(run_dir: Path) -> RunRecord:
    """One run folder as a RunRecord (failed, with the error line, when a file is unreadable)."""
    record = RunRecord(run_id=run_dir.name, path=run_dir, status="pending")
    try:
        if (run_dir / CONFIG_FILE).is_file():
            try:
                config = tomllib.loads((run_dir / CONFIG_FILE).read_text())
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise _Unreadable(run_dir / CONFIG_FILE, f"not valid TOML ({exc})") from None
            record.factors = _factors(config)
        status: dict[str, Any] = {}
        if (run_dir / STATUS_FILE).is_file():
            status = _read_json(run_dir / STATUS_FILE)
            if not isinstance(status, dict):
                raise _Unreadable(run_dir / STATUS_FILE, "is not a JSON object")
        state = status.get("status") or ("completed" if (run_dir / METRICS_FILE).is_file() else "pending")
        state = STATUS_ALIASES.get(state, state)
        record.run_id = str(status.get("run_id") or run_dir.name)
        if state == "failed":
            default = "cancelled" if status.get("status") == "cancelled" else "failed (no error recorded)"
            record.status, record.error = "failed", str(status.get("error") or default)
            return record
        if state != "completed":
            record.status = "running" if state == "running" else "pending"
            return record
        if not (run_dir / METRICS_FILE).is_file():
            raise _Unreadable(run_dir / METRICS_FILE, "missing although status.json says completed")
        metrics = _read_json(run_dir / METRICS_FILE)
        if not isinstance(metrics, dict) or not isinstance(metrics.get("test"), dict):
            raise _Unreadable(run_dir / METRICS_FILE, "has no test section")
        _fill_metrics(record, metrics)
        _fill_evaluations(record, run_dir)
        if (run_dir / PREDICTIONS_FILE).is_file():
            record.predictions_path = run_dir / PREDICTIONS_FILE
        record.status = "completed"
    except _Unreadable as exc:
        record.status, record.error = "failed", str(exc)
    return record


def read_predictions(path: Path) -> Predictions:
    """``predictions_test.npz``: one row per test sample: ``index`` (store sample index), ``patient``,
    ``score`` and, for classification, ``target``. Classification scores are probabilities ((N,) or
    (N, K)); segmentation ``score`` is the sample's Dice (NaN where it is undefined) and needs no
    target."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("index", "patient", "score") if k not in data]
            if missing:
                raise InputError(path, f"lacks {', '.join(missing)}")
            score = np.asarray(data["score"], dtype=np.float64)
            target = np.asarray(data["target"]) if "target" in data else np.zeros(len(score))
            return Predictions(
                index=np.asarray(data["index"], dtype=np.int64),
                patient=np.asarray(data["patient"]).astype(str),
                target=target,
                score=score,
            )
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot be read as .npz ({exc})") from None
