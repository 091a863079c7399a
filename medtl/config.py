"""User settings: precedence CLI flag > environment ``MEDTL_*`` > ``medtl.toml`` > defaults.

One model per concern; the environment prefix and the TOML tables derive from the field names,
so ``[prepare] workers = 4`` in medtl.toml and ``MEDTL_PREPARE__WORKERS=4`` set the same value.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from medtl.errors import ConfigError, InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ByContent:
    """Field metadata, ``Annotated[Path, BY_CONTENT]``: the field names a file or directory (a store,
    a split or strategy file, a checkpoint or run directory, cached embeddings) that a run id holds
    by its *content*, not by where it lies; ``medtl.engine.run_config`` resolves every such field,
    in a RunConfig and in its objective's section, the same way."""

    def __repr__(self) -> str:
        return "BY_CONTENT"


BY_CONTENT = ByContent()

ENV_PREFIX = "MEDTL_"
ENV_DELIMITER = "__"
DEFAULT_CONFIG_FILE = "medtl.toml"


class PrepareSettings(BaseModel):
    workers: int = Field(1, ge=1, description="parallel processes converting subjects/files")
    dtype: Literal["float16", "uint8"] = Field("float16", description="pixel dtype in the store")
    strict: bool = Field(False, description="stop at the first bad input instead of skipping it")


class DataSettings(BaseModel):
    folds: int = Field(5, ge=2, description="k of the patient-level k-fold split")
    seed: int = Field(0, description="seed of splits and few-shot subsets")


class TrainSettings(BaseModel):
    """Defaults of a run that a user sets once; ``medtl.engine.RunConfig`` takes these fields (default,
    bounds, description) from here, so the two cannot drift apart."""

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where training runs")
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes")
    batch_size: int = Field(32, ge=1, description="samples per forward pass on each process")
    runs_dir: Path = Field(Path("runs"), description="where run directories are created")
    seed: int = Field(0, description="seed of the run (splits' few-shot subset, init, order, augmentation)")


class PathSettings(BaseModel):
    weights_dir: Path = Field(
        Path("~/.cache/medtl/weights").expanduser(),
        description="local directory of pretrained weight files (nothing is downloaded)",
    )


class SweepSettings(BaseModel):
    profile: str | None = Field(
        None, description="SLURM profile of `medtl sweep --slurm`: a name in profiles_dir or a .toml file"
    )
    profiles_dir: Path = Field(Path("slurm/profiles"), description="folder of SLURM profiles (NAME.toml)")
    max_retries: int = Field(2, ge=0, description="times a failed run of a sweep is tried again")


class Settings(BaseSettings):
    """All user settings; see ``medtl config show``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER, extra="forbid", toml_file=None
    )

    prepare: PrepareSettings = Field(default_factory=PrepareSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    paths: PathSettings = Field(default_factory=PathSettings)
    sweep: SweepSettings = Field(default_factory=SweepSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Dotenv and secret files are not medtl conventions; the TOML file comes from model_config.
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)


def find_config_file(config_file: str | Path | None = None) -> Path | None:
    """The explicit ``--config FILE`` (must exist), else ``./medtl.toml`` when present."""
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise InputError(path, "config file not found")
        return path
    default = Path.cwd() / DEFAULT_CONFIG_FILE
    return default if default.is_file() else None


def _read_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(path, f"not valid TOML ({exc})") from None


def load_settings(
    config_file: str | Path | None = None, overrides: dict[str, dict[str, Any]] | None = None
) -> Settings:
    """Resolve settings; ``overrides`` are CLI flags as ``{"prepare": {"workers": 4}}``.

    Flags left at None are ignored, so they fall through to env, file and defaults.
    """
    path = find_config_file(config_file)
    _read_toml(path)  # report malformed TOML as one clear line before pydantic sees it
    cleaned = {
        section: {k: v for k, v in values.items() if v is not None}
        for section, values in (overrides or {}).items()
    }
    cleaned = {k: v for k, v in cleaned.items() if v}
    # A subclass bound to this file keeps the file choice out of global state.
    bound = type("Settings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": path}})
    try:
        base = bound()
        merged = {name: getattr(base, name).model_dump() for name in Settings.model_fields}
        for section, values in cleaned.items():
            merged[section].update(values)
        return Settings.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{path or 'settings'}: {where}: {err['msg']}") from None


def settings_sources(
    config_file: str | Path | None = None, overrides: dict[str, dict[str, Any]] | None = None
) -> list[tuple[str, Any, str]]:
    """Every setting as (dotted name, resolved value, where it came from)."""
    path = find_config_file(config_file)
    settings = load_settings(config_file, overrides)
    toml = _read_toml(path)
    rows = []
    for section in Settings.model_fields:
        values = getattr(settings, section)
        for name in type(values).model_fields:
            env_name = f"{ENV_PREFIX}{section}{ENV_DELIMITER}{name}".upper()
            if (overrides or {}).get(section, {}).get(name) is not None:
                source = "flag"
            elif env_name in {k.upper() for k in os.environ}:
                source = f"env {env_name}"
            elif name in toml.get(section, {}):
                source = f"file {path}"
            else:
                source = "default"
            rows.append((f"{section}.{name}", getattr(values, name), source))
    return rows
