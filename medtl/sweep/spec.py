"""The sweep spec: a study in one data file (TOML, YAML accepted).

```toml
name = "brats-strategies"          # the folder OUT/<name>/ that holds the sweep
out = "runs"                        # optional; `--out` wins

[base]                              # a RunConfig: every field any run shares
data = "stores/brats"
backbone = "resnet18"

[grid]                              # cartesian product of these axes
strategy = ["linear", "full"]
seed = [0, 1, 2]

[[zip]]                             # axes of one group vary together (equal lengths)
split = ["folds/f0.json", "folds/f1.json"]
"phase_epochs.head" = [2, 4]

[[exclude]]                         # drop runs matching every key of one rule
strategy = "linear"
seed = [1, 2]                       # a list matches any of its values
```

Axes address any RunConfig field by dotted path (``lr``, ``phase_epochs.head``, fields of nested
sections), checked against the pydantic model itself, so a field added to RunConfig is an axis at
once. The spec is data: nothing in it is evaluated. Relative paths are relative to the spec's folder.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medtl.errors import ConfigError, InputError, did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SPEC_SUFFIXES = (".toml", ".yaml", ".yml")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
# Where runs are written is the sweep's to decide: OUT/<name>/<run id>/.
OWNED_BY_SWEEP = ("out", "run_name")


class SweepSpec(BaseModel):
    """A parsed spec (axes still as written; ``expand`` turns it into RunConfigs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="sweep name: the folder OUT/<name>")
    description: str = Field("", description="free text, kept in sweep.json")
    out: Path | None = Field(None, description="output folder (default: settings' runs folder)")
    base: dict[str, Any] = Field(default_factory=dict, description="RunConfig fields every run shares")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="cartesian axes: path -> values")
    zip: list[dict[str, list[Any]]] = Field(
        default_factory=list, description="groups of axes that vary together"
    )
    exclude: list[dict[str, Any]] = Field(default_factory=list, description="rules: path -> value(s)")
    slurm: dict[str, Any] = Field(default_factory=dict, description="SLURM profile values for this study")
    source: Path | None = Field(None, exclude=True, description="the spec file")

    def axes(self) -> dict[str, list[Any]]:
        """Every axis, grid first then zip groups, in the order written."""
        out = dict(self.grid)
        for group in self.zip:
            out.update(group)
        return out


# -- reading -------------------------------------------------------------------------------------
def read_spec_file(path: str | Path) -> dict[str, Any]:
    """The spec file's data (TOML, or YAML by suffix); one InputError line when it cannot be read."""
    path = Path(path)
    if path.suffix.lower() not in SPEC_SUFFIXES:
        raise InputError(path, f"a sweep spec is a {' or '.join(SPEC_SUFFIXES)} file")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(path, "sweep spec not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot be read ({exc})") from None
    if path.suffix.lower() == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InputError(path, f"not valid TOML ({exc})") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)  # safe_load: plain data, no tags that build objects
        except yaml.YAMLError as exc:
            raise InputError(path, f"not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise InputError(path, "a sweep spec is a table of keys (name, base, grid, zip, exclude)")
    return data


def load_spec(path: str | Path, run_config: type[BaseModel]) -> SweepSpec:
    """Read and check a spec file against ``run_config`` (the RunConfig model)."""
    path = Path(path).expanduser().resolve()
    return parse_spec(read_spec_file(path), run_config, source=path)


def parse_spec(data: dict[str, Any], run_config: type[BaseModel], *, source: Path | None = None) -> SweepSpec:
    where = str(source) if source else "sweep spec"
    unknown = sorted(set(data) - set(SweepSpec.model_fields) - {"source"})
    if unknown:
        valid = [k for k in SweepSpec.model_fields if k != "source"]
        raise ConfigError(
            f"{where}: unknown key '{unknown[0]}'{did_you_mean(unknown[0], valid)} "
            f"(valid keys: {', '.join(valid)})"
        )
    data = {**data, "grid": _flatten_axes(data.get("grid", {}), where, "grid")}
    if isinstance(data.get("zip"), list):
        data["zip"] = [_flatten_axes(g, where, f"zip[{i}]") for i, g in enumerate(data["zip"])]
    try:
        spec = SweepSpec.model_validate({**data, "source": source})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "spec"
        raise ConfigError(f"{where}: {loc}: {err['msg']}") from None
    _check_paths(spec, run_config, where)
    return spec


def _flatten_axes(table: Any, where: str, section: str, prefix: str = "") -> Any:
    """``[grid.objective] loss = [...]`` and ``"objective.loss" = [...]`` mean the same axis."""
    if not isinstance(table, dict):
        return table  # pydantic reports the wrong type
    out: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten_axes(value, where, section, f"{path}."))
        else:
            out[path] = value
    return out


# -- checking paths against the RunConfig model ----------------------------------------------------
def _members(annotation: Any) -> list[Any]:
    """The types an annotation admits, through Optional, Union and Annotated."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [annotation]


def _submodels(annotation: Any) -> list[type[BaseModel]]:
    return [m for m in _members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]


def _is_mapping(annotation: Any) -> bool:
    return any(get_origin(m) is dict or m is dict for m in _members(annotation))


def check_field_path(path: str, model: type[BaseModel], where: str) -> None:
    """ConfigError unless ``path`` names a field of ``model`` (through nested sections and dicts)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_-]+)*", path):
        raise ConfigError(f"{where}: '{path}' is not a field path (dotted names, e.g. phase_epochs.head)")
    models: list[type[BaseModel]] = [model]
    parts = path.split(".")
    for depth, part in enumerate(parts):
        fields = {name: info for m in models for name, info in m.model_fields.items()}
        if part not in fields:
            here = ".".join(parts[:depth])
            section = f"section '{here}'" if here else model.__name__
            valid = sorted(fields)
            raise ConfigError(
                f"{where}: '{path}' is not a field of {section}{did_you_mean(part, valid)} "
                f"(valid: {', '.join(valid)})"
            )
        annotation = fields[part].annotation
        if depth == len(parts) - 1:
            return
        if _is_mapping(annotation):
            return  # a dict field (phase_epochs): any key below it
        models = _submodels(annotation)
        if not models:
            raise ConfigError(f"{where}: '{'.'.join(parts[: depth + 1])}' is a value, not a section ({path})")


def field_is_path(path: str, model: type[BaseModel]) -> bool:
    """True when the field at ``path`` holds a filesystem path (resolved against the spec's folder)."""
    models: list[type[BaseModel]] = [model]
    for part in path.split("."):
        fields = {name: info for m in models for name, info in m.model_fields.items()}
        if part not in fields:
            return False
        annotation = fields[part].annotation
        models = _submodels(annotation)
    return any(m is Path for m in _members(annotation))


def _flat_base(base: dict[str, Any], model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted paths of the base's leaves; nested tables are sections only where the model has them."""
    paths = []
    for key, value in base.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and _section_at(path, model):
            paths.extend(_flat_base(value, model, f"{path}."))
        else:
            paths.append(path)
    return paths


def _section_at(path: str, model: type[BaseModel]) -> bool:
    models: list[type[BaseModel]] = [model]
    for part in path.split("."):
        fields = {name: info for m in models for name, info in m.model_fields.items()}
        if part not in fields:
            return False
        models = _submodels(fields[part].annotation)
    return bool(models)


def _check_paths(spec: SweepSpec, model: type[BaseModel], where: str) -> None:
    for path in _flat_base(spec.base, model):
        check_field_path(path, model, f"{where}: base")
    seen: dict[str, str] = {}
    sections = [("grid", spec.grid)] + [(f"zip[{i}]", g) for i, g in enumerate(spec.zip)]
    for section, axes in sections:
        for path, values in axes.items():
            check_field_path(path, model, f"{where}: {section}")
            if path in seen:
                raise ConfigError(f"{where}: axis '{path}' is in both {seen[path]} and {section}")
            seen[path] = section
            if not values:
                raise ConfigError(f"{where}: {section}.{path} has no values: the sweep would have no runs")
    for path in [*_flat_base(spec.base, model), *seen]:
        if path.split(".")[0] in OWNED_BY_SWEEP:
            raise ConfigError(
                f"{where}: '{path}' is set by the sweep (runs go to OUT/<name>/<run id>); "
                "set the spec's top-level `out` or pass --out"
            )
    for i, group in enumerate(spec.zip):
        lengths = {path: len(values) for path, values in group.items()}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{p} has {n}" for p, n in lengths.items())
            raise ConfigError(f"{where}: zip[{i}]: zipped axes need equal lengths ({shown})")
    for i, rule in enumerate(spec.exclude):
        if not rule:
            raise ConfigError(f"{where}: exclude[{i}] is empty (it would exclude every run)")
        for path, value in rule.items():
            if path not in seen:
                raise ConfigError(
                    f"{where}: exclude[{i}]: '{path}' is not an axis{did_you_mean(path, list(seen))}"
                )
            missing = [v for v in rule_values(value, spec.axes()[path]) if v not in spec.axes()[path]]
            if missing:
                raise ConfigError(
                    f"{where}: exclude[{i}]: {path} = {missing[0]!r} is not one of the axis' values"
                )


def rule_values(value: Any, axis_values: list[Any]) -> list[Any]:
    """An exclude rule's value as a list of axis values (a list means any of them, unless the axis
    itself has list values and the list is one of them)."""
    if isinstance(value, list) and value not in axis_values:
        return value
    return [value]
