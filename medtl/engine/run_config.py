"""RunConfig: everything that decides what a run computes, in one pydantic model.

``medtl finetune`` builds one from flags, a sweep builds many, a SLURM job receives one. The run id
is a short hash of the fields that change results (not of worker counts or output folders), so
running the same command again finds the same run directory and resumes it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import tomli_w
import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from medtl.errors import ConfigError, InputError
from medtl.io.paths import single_component

CONFIG_FILE = "config.toml"

# Fields that change where or how fast a run goes, not what it computes.
NON_RESULT_FIELDS = frozenset({"num_workers", "out", "run_name", "weights_dir", "checkpoint_interval"})


def _names_a_file(value: str) -> bool:
    """A checkpoint or strategy file (rather than a built-in name such as 'imagenet' or 'DA_L1SB')."""
    return "/" in value or Path(value).suffix.lower() in FILE_SUFFIXES or Path(value).exists()


FILE_SUFFIXES = {".toml", ".pth", ".pt", ".tar", ".ckpt", ".bin", ".safetensors"}


class RunConfig(BaseModel):
    """A complete description of one fine-tuning run."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)

    # -- data ------------------------------------------------------------------------------
    data: Path = Field(description="prepared store directory")
    task: Literal["auto", "binary", "multiclass", "multilabel"] = Field(
        "auto",
        description="auto: multilabel stores -> multilabel, 2 classes -> binary, else multiclass",
    )
    split: Path | None = Field(
        None, description="split file (default: the store's default split file, else a seeded 70/10/20 split)"
    )
    fraction: float = Field(
        1.0, gt=0, le=1, description="few-shot: fraction of each class's training samples"
    )
    # -- model -----------------------------------------------------------------------------
    backbone: str = Field("resnet50", description="backbone name (see `medtl models list`)")
    init: str = Field("imagenet", description="random | imagenet | path to a checkpoint")
    allow_partial: bool = Field(
        False, description="go on when backbone weights are missing from the checkpoint"
    )
    in_chans: int | None = Field(None, ge=1, description="model input channels (default: the store's)")
    strategy: str = Field("linear", description="built-in strategy name or a strategy TOML file")
    lr: float | None = Field(
        None, gt=0, description="first phase's learning rate; later phases keep their ratio to it"
    )
    epochs_scale: float = Field(1.0, gt=0, description="multiply every phase's epochs (rounded, at least 1)")
    phase_epochs: dict[str, int] = Field(
        default_factory=dict, description="epochs of named phases, after epochs_scale"
    )
    # -- input pipeline --------------------------------------------------------------------
    batch_size: int = Field(32, ge=1, description="samples per forward pass on each process")
    grad_accum: int = Field(1, ge=1, description="forward passes per optimiser step")
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes")
    image_size: int | None = Field(None, ge=8, description="resize to this size (default: the store's)")
    augment: list[str] | str = Field("none", description="training augmentations (see medtl.data)")
    normalise: Literal["imagenet", "clip", "half", "minmax", "none"] = Field(
        "imagenet", description="intensity normalisation preset"
    )
    # -- loss ------------------------------------------------------------------------------
    class_weights: Literal["none", "balanced"] | list[float] = Field(
        "none", description="balanced: inverse class frequency of the training set; or one weight per class"
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="label smoothing of the targets")
    # -- optimisation ----------------------------------------------------------------------
    scheduler: Literal["cosine", "plateau", "exponential", "none"] = Field(
        "cosine", description="learning-rate schedule within each phase"
    )
    warmup_epochs: float = Field(0.0, ge=0, description="linear warmup at the start of each phase")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine floor as a fraction of the phase lr")
    plateau_factor: float = Field(0.1, gt=0, lt=1, description="plateau: lr factor on a plateau")
    plateau_patience: int = Field(5, ge=0, description="plateau: epochs without improvement")
    gamma: float = Field(0.95, gt=0, le=1, description="exponential: lr factor per epoch")
    monitor: str = Field(
        "auroc", description="validation metric for the best checkpoint and early stopping, or 'loss'"
    )
    patience: int | None = Field(None, ge=1, description="early stopping patience in epochs (None: off)")
    amp: Literal["none", "bf16", "fp16"] = Field("none", description="mixed precision (CUDA only)")
    channels_last: bool = Field(False, description="channels-last memory format (CUDA only)")
    compile: bool = Field(False, description="torch.compile the model")
    cache_features: bool = Field(
        True, description="train a head-only phase without augmentation on cached backbone features"
    )
    bootstrap: int = Field(1000, ge=0, description="bootstrap resamples of the test metrics' 95% CI")
    # -- reproducibility and output --------------------------------------------------------
    seed: int = Field(0, description="seed of the run (splits' few-shot subset, init, order, augmentation)")
    deterministic: bool = Field(False, description="deterministic algorithms (slower; exact resume)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where training runs")
    out: Path = Field(Path("runs"), description="runs directory; the run is written to <out>/<run name>")
    run_name: str | None = Field(None, description="run directory name (default: the run id)")
    weights_dir: Path | None = Field(None, description="local directory of pretrained weight files")
    checkpoint_interval: float = Field(
        30.0,
        ge=0,
        description="seconds between resume-state writes (also at every phase end; 0: every epoch). "
        "A resumed run replays the epochs after the last write and ends the same",
    )

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

    def run_id(self) -> str:
        """Stable short hash of the result-deciding fields."""
        canonical = json.dumps(self.result_fields(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def run_dir(self) -> Path:
        return self.out / (self.run_name or self.run_id())

    def differing_keys(self, other: RunConfig) -> list[str]:
        """Names of result-deciding fields whose values differ."""
        mine, theirs = self.result_fields(), other.result_fields()
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
        return cls.parse(values, source=path)

    @classmethod
    def parse(cls, values: dict[str, Any], *, source: str | Path = "run config") -> RunConfig:
        """Validate a mapping; the first problem becomes one ConfigError line."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "config"
            raise ConfigError(f"{source}: {where}: {err['msg']}") from None
