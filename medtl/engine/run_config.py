"""RunConfig: everything that decides what a run computes, in one pydantic model.

``medtl finetune`` builds one from flags, a sweep builds many, a SLURM job receives one. The run id
is a short hash of the fields that change results (not of worker counts or output folders), and of
the *content* of the files and directories it names, not of where they lie: every field marked
``BY_CONTENT`` (``medtl.config``) — here ``data``, ``split``, ``init``, ``strategy``; in objective
sections e.g. SimCLR's extra ``stores`` and the Adaptor's ``embeddings`` — is replaced by
``content_identity`` of what it names (a store's checksums, an embeddings directory's checksums, a
run directory's weights, a file's bytes). The same config has the same id on a laptop and on a
cluster, and running the same command again finds the same run directory and resumes it.
``config.toml`` records the absolute paths.

The ``[objective]`` section is the objective's own config (``medtl.objectives.configs``), chosen by
its ``kind``; without a kind, the store's kind picks it.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from medtl.config import BY_CONTENT, ByContent, TrainSettings
from medtl.errors import ConfigError, InputError, StoreError, did_you_mean
from medtl.io.embeddings import META_FILE as EMBEDDINGS_META
from medtl.io.embeddings import embeddings_identity
from medtl.io.paths import single_component
from medtl.io.store import store_identity
from medtl.objectives import ObjectiveConfig, config_class, objective_kinds
from medtl.objectives.configs import with_kind

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_FILE = "config.toml"

# Fields that change where or how fast a run goes, not what it computes.
NON_RESULT_FIELDS = frozenset(
    {"num_workers", "out", "run_name", "weights_dir", "checkpoint_interval"}
    # Safety switches: they decide whether a run may go on, not what it computes (issue 6).
    | {"min_loaded_fraction", "allow_leakage", "verify", "wait"}
)


def _names_a_file(value: str) -> bool:
    """A checkpoint or strategy file (rather than a built-in name such as 'imagenet' or 'DA_L1SB')."""
    return "/" in value or Path(value).suffix.lower() in FILE_SUFFIXES or Path(value).exists()


FILE_SUFFIXES = {".toml", ".pth", ".pt", ".tar", ".ckpt", ".bin", ".safetensors"}


def _train_field(name: str) -> Any:
    """The user setting's field (default and description defined once, in ``medtl.config``)."""
    return copy.copy(TrainSettings.model_fields[name])


@functools.lru_cache(maxsize=256)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def file_identity(path: str | Path) -> str:
    """sha256 of a file's bytes (computed once per process and file version); the path itself when
    the file cannot be read (the run then fails with that file's own error)."""
    try:
        st = Path(path).stat()
        return "sha256:" + _file_digest(str(path), st.st_mtime_ns, st.st_size)
    except OSError:
        return f"path:{path}"


def data_identity(path: str | Path) -> str:
    """The store's content identity; its path when it is not a readable store."""
    try:
        return "store:" + store_identity(path)
    except StoreError:
        return f"path:{path}"


# What ``--init RUN_DIR`` loads from a finished run: its exports, else its best weights.
RUN_EXPORTS, RUN_BEST = "export", "checkpoints/best.safetensors"


def run_identity(run_dir: Path) -> str:
    """A run directory by the weights it hands on: the sha256 of its exported files (backbone,
    Adaptor, projector), or of its best checkpoint when it exported nothing."""
    exports = run_dir / RUN_EXPORTS
    files = sorted(exports.glob("*.safetensors")) if exports.is_dir() else []
    files = files or [run_dir / RUN_BEST]
    contents = {str(f.relative_to(run_dir)): file_identity(f) for f in files}
    canonical = json.dumps(contents, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def content_identity(value: str | Path) -> str:
    """What a path-valued field names, by content, whatever directory it lies in: a store (its
    manifest's checksums), cached embeddings (their checksums), a run directory (``run_identity``),
    a file (its bytes); a built-in name ('imagenet', 'DA_L1SB') is itself, and a path that cannot
    be read its path (the run then fails with that path's own error)."""
    text = str(value)
    if not _names_a_file(text):
        return text
    path = Path(text)
    if (path / "manifest.json").is_file():
        return data_identity(path)
    try:
        if (path / EMBEDDINGS_META).is_file():
            return "embeddings:" + embeddings_identity(path)
    except InputError:
        return f"path:{path}"
    if (path / CONFIG_FILE).is_file():
        return "run:" + run_identity(path)
    return file_identity(path)


def by_content(info: FieldInfo) -> bool:
    return any(isinstance(m, ByContent) for m in info.metadata)


def _identified(value: Any) -> Any:
    """``content_identity`` of a field's path(s): one path, a list of them, or a {path: weight} mixture."""
    if isinstance(value, dict):
        return {content_identity(k): v for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [content_identity(v) for v in value]
    return None if value is None else content_identity(value)


def content_fields(model: BaseModel, dumped: dict[str, Any]) -> dict[str, Any]:
    """``dumped`` (the model's JSON dump) with every ``BY_CONTENT`` field by content."""
    out = dict(dumped)
    for name, info in type(model).model_fields.items():
        if name in out and by_content(info):
            out[name] = _identified(out[name])
    return out


def _store_task(data: Any) -> str | None:
    """The manifest's task of the store at ``data`` (None when there is none to read)."""
    try:
        manifest = json.loads((Path(str(data)).expanduser() / "manifest.json").read_text())
        return manifest.get("task") if isinstance(manifest, dict) else None
    except (OSError, ValueError, TypeError):
        return None


class RunConfig(BaseModel):
    """A complete description of one fine-tuning run."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)

    # -- data ------------------------------------------------------------------------------
    data: Annotated[Path, BY_CONTENT] = Field(description="prepared store directory")
    objective: ObjectiveConfig = Field(
        description="what the run learns: [objective] kind and its settings (default: by the store's kind)"
    )
    split: Annotated[Path | None, BY_CONTENT] = Field(
        None, description="split file (default: the store's default split file, else a seeded 70/10/20 split)"
    )
    fraction: float = Field(
        1.0, gt=0, le=1, description="few-shot: fraction of each class's training samples"
    )
    # -- model -----------------------------------------------------------------------------
    backbone: str = Field("resnet50", description="backbone name (see `medtl models list`)")
    init: Annotated[str, BY_CONTENT] = Field(
        "imagenet", description="random | imagenet | path to a checkpoint or a finished run's directory"
    )
    allow_partial: bool = Field(
        False, description="go on when backbone weights are missing from the checkpoint"
    )
    min_loaded_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="with allow_partial, the least share of the backbone's weights that must load (0: any)",
    )
    in_chans: int | None = Field(None, ge=1, description="model input channels (default: the store's)")
    strategy: Annotated[str, BY_CONTENT] = Field(
        "linear", description="built-in strategy name or a strategy TOML file"
    )
    lr: float | None = Field(
        None, gt=0, description="first phase's learning rate; later phases keep their ratio to it"
    )
    epochs_scale: float = Field(1.0, gt=0, description="multiply every phase's epochs (rounded, at least 1)")
    phase_epochs: dict[str, int] = Field(
        default_factory=dict, description="epochs of named phases, after epochs_scale"
    )
    # -- input pipeline --------------------------------------------------------------------
    batch_size: int = _train_field("batch_size")
    grad_accum: int = Field(1, ge=1, description="forward passes per optimiser step")
    num_workers: int = _train_field("num_workers")
    image_size: int | None = Field(None, ge=8, description="resize to this size (default: the store's)")
    augment: list[str] | str = Field("none", description="training augmentations (see medtl.data)")
    normalise: Literal["imagenet", "clip", "half", "minmax", "none"] = Field(
        "imagenet", description="intensity normalisation preset"
    )
    # -- optimisation ----------------------------------------------------------------------
    scheduler: Literal["cosine", "linear", "plateau", "exponential", "none"] = Field(
        "cosine", description="learning-rate schedule within each phase"
    )
    warmup_epochs: float = Field(0.0, ge=0, description="linear warmup at the start of each phase")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine floor as a fraction of the phase lr")
    plateau_factor: float = Field(0.1, gt=0, lt=1, description="plateau: lr factor on a plateau")
    plateau_patience: int = Field(5, ge=0, description="plateau: epochs without improvement")
    gamma: float = Field(0.95, gt=0, le=1, description="exponential: lr factor per epoch")
    patience: int | None = Field(None, ge=1, description="early stopping patience in epochs (None: off)")
    amp: Literal["none", "bf16", "fp16"] = Field("none", description="mixed precision (CUDA only)")
    channels_last: bool = Field(False, description="channels-last memory format (CUDA only)")
    compile: bool = Field(False, description="torch.compile the model")
    cache_features: bool = Field(
        True, description="train a head-only phase without augmentation on cached backbone features"
    )
    bootstrap: int = Field(1000, ge=0, description="bootstrap resamples of the test metrics' 95% CI")
    # -- reproducibility and output --------------------------------------------------------
    seed: int = _train_field("seed")
    deterministic: bool = Field(False, description="deterministic algorithms (slower; exact resume)")
    device: Literal["auto", "cpu", "cuda"] = _train_field("device")
    out: Path = Field(
        TrainSettings.model_fields["runs_dir"].default,
        description="runs directory; the run is written to <out>/<run name>",
    )
    run_name: str | None = Field(None, description="run directory name (default: the run id)")
    allow_leakage: bool = Field(
        False, description="train although patients are in more than one partition (recorded in metrics.json)"
    )
    verify: bool = Field(
        False, description="hash every byte of the store at start (otherwise only when it is new to the run)"
    )
    wait: bool = Field(
        False, description="wait for another command using the run directory instead of failing"
    )
    weights_dir: Path | None = Field(None, description="local directory of pretrained weight files")
    checkpoint_interval: float = Field(
        30.0,
        ge=0,
        description="seconds between resume-state writes (also at every phase end; 0: every epoch). "
        "A resumed run replays the epochs after the last write and ends the same",
    )

    @model_validator(mode="before")
    @classmethod
    def _objective_kind(cls, values: Any) -> Any:
        # An objective section without a kind (or none at all) takes the store's objective.
        if isinstance(values, dict):
            section = values.get("objective")
            if section is None or (isinstance(section, dict) and "kind" not in section):
                values = {**values, "objective": with_kind(section, _store_task(values.get("data")))}
        return values

    # Paths are stored absolute, so a run (its id, its resume, `medtl evaluate RUN`) does not depend on
    # the directory a command was started from, e.g. a SLURM job's working directory.
    @field_validator("data", "split", "out", "weights_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else Path(value).expanduser().resolve()

    @field_validator("run_name")
    @classmethod
    def _one_folder(cls, value: str | None) -> str | None:
        return None if value is None else single_component(value, "run name")

    @field_validator("init", "strategy")
    @classmethod
    def _absolute_file(cls, value: str) -> str:
        return str(Path(value).expanduser().resolve()) if _names_a_file(value) else value

    @field_validator("augment")
    @classmethod
    def _augment_list(cls, value: list[str] | str) -> list[str] | str:
        return value if isinstance(value, str) else [str(v) for v in value]

    # -- identity --------------------------------------------------------------------------
    def result_fields(self) -> dict[str, Any]:
        """The fields that decide what the run computes, as JSON-compatible values."""
        return self.model_dump(mode="json", exclude=set(NON_RESULT_FIELDS))

    def identity(self) -> dict[str, Any]:
        """``result_fields`` with every ``BY_CONTENT`` field (the objective section's too) named by
        the content of what it names instead of its location."""
        fields = content_fields(self, self.result_fields())
        fields["objective"] = content_fields(self.objective, fields["objective"])
        return fields

    def run_id(self) -> str:
        """Stable short hash of the result-deciding fields and the content of the files they name."""
        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def run_dir(self) -> Path:
        return self.out / (self.run_name or self.run_id())

    def differing_keys(self, other: RunConfig) -> list[str]:
        """Names of result-deciding fields whose values (files: contents) differ; a section's keys
        are named ``section.key``."""
        mine, theirs = _flat(self.identity()), _flat(other.identity())
        return sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))

    # -- files -----------------------------------------------------------------------------
    def to_toml(self) -> str:
        # TOML has no null: unset optional fields are left out and come back as their default.
        return tomli_w.dumps(self.model_dump(mode="json", exclude_none=True))

    def save(self, path: str | Path) -> None:
        """Write as TOML (atomically)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_toml())
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """Read a config.toml (or a run directory holding one)."""
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_FILE
        try:
            values = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(path, "run config not found") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InputError(path, f"not valid TOML ({exc})") from None
        return cls.parse(_upgraded(values), source=path)

    @classmethod
    def parse(cls, values: dict[str, Any], *, source: str | Path = "run config") -> RunConfig:
        """Validate a mapping; the first problem becomes one ConfigError line (an unknown key lists
        the valid ones)."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(f"{source}: {_describe_error(exc.errors()[0])}") from None


# Classification settings that config.toml held at the top level before the [objective] section.
LEGACY_OBJECTIVE_KEYS = ("task", "class_weights", "label_smoothing", "monitor")


def _upgraded(values: dict[str, Any]) -> dict[str, Any]:
    """A saved config.toml of an earlier medtl, its classification settings moved into [objective]
    (so `medtl evaluate` reads runs made before the section existed)."""
    legacy = {k: values[k] for k in LEGACY_OBJECTIVE_KEYS if k in values}
    if not legacy or "objective" in values:
        return values
    rest = {k: v for k, v in values.items() if k not in legacy}
    return {**rest, "objective": {"kind": "classification", **legacy}}


def _flat(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, dict) and key == "objective":
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def _describe_error(err: Any) -> str:
    """``where: problem`` of one pydantic error, the objective's kind left out of the location."""
    loc = list(err["loc"])
    if loc[:1] == ["objective"] and len(loc) > 1 and loc[1] in objective_kinds():
        kind = loc.pop(1)
        model: type[BaseModel] = config_class(kind)
    else:
        model = RunConfig
    where = ".".join(str(p) for p in loc) or "config"
    if err["type"] == "union_tag_invalid":
        tag = str(err.get("ctx", {}).get("tag", ""))
        return f"{where}.kind: unknown objective '{tag}'{did_you_mean(tag, objective_kinds())}"
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message += f"; valid keys: {', '.join(model.model_fields)}"
    return f"{where}: {message}"
