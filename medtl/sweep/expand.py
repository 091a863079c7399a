"""Expanding a spec into its runs: grid x zipped groups, minus excluded ones, each a validated RunConfig."""

from __future__ import annotations

import copy
import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from medtl.errors import ConfigError
from medtl.sweep.spec import SweepSpec, rule_values


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its id, its full config and the axis values that make it differ."""

    run_id: str
    config: Any  # a RunConfig
    values: dict[str, Any]

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir


def describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "(the base config)"


def combinations(spec: SweepSpec) -> Iterator[dict[str, Any]]:
    """The axis values of every run, in a stable order (grid axes as written, then zip groups)."""
    grid_axes = list(spec.grid.items())
    groups = [list(zip(*group.values())) for group in spec.zip]
    group_keys = [list(group) for group in spec.zip]
    for grid_values in itertools.product(*(values for _, values in grid_axes)):
        point = {path: value for (path, _), value in zip(grid_axes, grid_values)}
        for zipped in itertools.product(*groups):
            row = dict(point)
            for keys, values in zip(group_keys, zipped):
                row.update(zip(keys, values))
            yield row


def excluded(values: dict[str, Any], spec: SweepSpec) -> bool:
    axes = spec.axes()
    return any(
        all(values[path] in rule_values(wanted, axes[path]) for path, wanted in rule.items())
        for rule in spec.exclude
    )


def _set_path(config: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.b.c`` in a shallow copy of the base: the tables on the path are copied, not shared."""
    *sections, leaf = path.split(".")
    node = config
    for part in sections:
        child = node.get(part)
        node[part] = dict(child) if isinstance(child, dict) else {}
        node = node[part]
    node[leaf] = copy.deepcopy(value) if isinstance(value, (dict, list)) else value


@contextmanager
def _working_directory(path: Path | None) -> Iterator[None]:
    """Relative paths in a spec mean the same wherever medtl is started: resolve them from its folder."""
    if path is None:
        yield
        return
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def expand(spec: SweepSpec, run_config: type[BaseModel], out: Path) -> list[PlannedRun]:
    """Every run of ``spec`` as a validated config writing to ``out/<spec.name>/<run id>``.

    ConfigError (one line) for a run the model rejects, a sweep with no runs, or two runs that
    would share one id (and so one run directory).
    """
    where = str(spec.source) if spec.source else "sweep spec"
    sweep_dir = Path(out).expanduser().resolve() / spec.name
    runs: list[PlannedRun] = []
    by_id: dict[str, dict[str, Any]] = {}
    with _working_directory(spec.source.parent if spec.source else None):
        for values in combinations(spec):
            if excluded(values, spec):
                continue
            fields = dict(spec.base)  # validation reads, never changes, the values
            for path, value in values.items():
                _set_path(fields, path, value)
            fields["out"] = str(sweep_dir)
            try:
                config = run_config.model_validate(fields)
            except ValidationError as exc:
                err = exc.errors()[0]
                loc = ".".join(str(p) for p in err["loc"]) or "config"
                raise ConfigError(f"{where}: run {describe(values)}: {loc}: {err['msg']}") from None
            run_id = config.run_id()
            if run_id in by_id:
                raise ConfigError(
                    f"{where}: runs {describe(by_id[run_id])} and {describe(values)} are the same run "
                    f"(id {run_id}): their values do not change what is computed"
                )
            by_id[run_id] = values
            runs.append(PlannedRun(run_id, config, values))
    if not runs:
        raise ConfigError(f"{where}: the sweep has no runs (every combination is excluded)")
    return runs
