"""A transfer strategy is data: an ordered list of phases, each naming what trains and how.

Schema (the built-ins in ``builtin.toml`` and a user's own TOML file share it)::

    name = "my_strategy"            # optional in a file (defaults to the file name)
    description = "one line shown by `medtl strategies list`"
    truncate = 2                    # optional: stem + the first N stages, new head on pooled features
    module = "cdtm"                 # optional: module between backbone and head (Cross-Domain Transfer)

    [[phases]]                      # one table per phase, run in order
    name = "head"                   # unique within the strategy; "phase<i>" (1-based) also refers to it
    trainable = ["head"]            # selectors, see below
    epochs = 10                     # >= 1
    optimizer = "adam"              # adam | adamw | sgd | lars          (default adamw)
    lr = 1e-4                       # learning rate
    weight_decay = 0.0              # (default 0)
    momentum = 0.9                  # sgd / lars only (default 0.9)
    bn = "frozen"                   # frozen | train                      (default train)

    [[phases]]
    name = "blocks"
    trainable = ["last_blocks:1", "head"]
    epochs = 5
    lr_scale = 0.1                  # instead of lr: this phase's lr = lr_scale x the first phase's lr

Selectors are resolved against the model's named groups (``TransferModel.groups()``), so one strategy
works for every backbone:

* a group name: ``head``, ``module``, ``stem``, ``stage1`` ... ``stageN`` (whatever ``groups()`` names)
* ``backbone``: every group but ``head`` and ``module``;  ``all``: every parameter;
  ``all_non_bn``: every parameter outside BatchNorm-type layers
* ``last_blocks:N``: the last N fine-grained blocks (ResNet bottleneck, ViT block, ConvNeXt block)
* ``last_stages:N``: the last N ``stage<i>`` groups
* ``params:GLOB``: parameter names matching a shell pattern, e.g. ``params:*.bias``

BatchNorm policy ``bn``: ``frozen`` keeps the affine parameters and the running statistics of every
BatchNorm-type layer fixed (the layers stay in eval mode while the rest trains), as the domain-adaptive
study did in Keras; ``train`` lets the selected BatchNorm layers learn and update their statistics, while
BatchNorm layers whose parameters are all frozen in this phase stay in eval mode.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medtl.errors import ConfigError, InputError, did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Optimizer = Literal["adam", "adamw", "sgd", "lars"]
BNPolicy = Literal["frozen", "train"]

# Selectors with an argument, "<prefix>:<arg>"; the value says what the argument must be.
SELECTOR_PREFIXES = {"last_blocks": "int", "last_stages": "int", "params": "glob"}
SELECTOR_KEYWORDS = ("all", "all_non_bn", "backbone")
_GROUP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class StrategyPhase(BaseModel):
    """One phase: which parameters train, for how long, with which optimiser and BatchNorm policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="unique within the strategy")
    trainable: list[str] = Field(min_length=1, description="selectors of the parameters that train")
    epochs: int = Field(ge=1, description="epochs of this phase")
    optimizer: Optimizer = Field("adamw", description="adam | adamw | sgd | lars")
    lr: float = Field(gt=0, description="learning rate (filled from lr_scale when that is given)")
    weight_decay: float = Field(0.0, ge=0, description="weight decay (not applied to biases and norms)")
    momentum: float = Field(0.9, ge=0, lt=1, description="momentum for sgd / lars")
    bn: BNPolicy = Field("train", description="frozen: BatchNorm affine and statistics fixed; or train")
    lr_scale: float | None = Field(None, gt=0, description="lr relative to the first phase's lr")

    @field_validator("trainable")
    @classmethod
    def _check_selectors(cls, selectors: list[str]) -> list[str]:
        for selector in selectors:
            check_selector_syntax(selector)
        return selectors


class Strategy(BaseModel):
    """A named, ordered list of phases, plus how the model is built (truncation, extra module)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    phases: list[StrategyPhase] = Field(min_length=1)
    truncate: int | None = Field(None, ge=1, description="keep stem + the first N stages")
    module: str | None = Field(None, description="module between backbone and head, e.g. 'cdtm'")
    # Left out of dumps (the resume state compares them): where errors found later point to.
    source: str | None = Field(None, exclude=True, description="the strategy file it was read from")

    @model_validator(mode="before")
    @classmethod
    def _fill_scaled_lr(cls, data: Any) -> Any:
        """A phase given as ``lr_scale`` gets ``lr = lr_scale x first phase's lr``."""
        if not isinstance(data, dict) or not isinstance(data.get("phases"), list) or not data["phases"]:
            return data
        phases = [p.model_dump() if isinstance(p, StrategyPhase) else p for p in data["phases"]]
        if not all(isinstance(p, dict) for p in phases):
            return data
        base = phases[0].get("lr")
        if phases[0].get("lr_scale") is not None:
            raise ValueError(f"phase 1 ('{phases[0].get('name')}') needs lr; lr_scale is for later phases")
        filled = [phases[0]]
        for i, phase in enumerate(phases[1:], start=2):
            scale = phase.get("lr_scale")
            if scale is not None and isinstance(base, (int, float)) and isinstance(scale, (int, float)):
                lr = base * scale
                given = phase.get("lr")
                if given is not None and not math.isclose(given, lr, rel_tol=1e-9):
                    raise ValueError(
                        f"phase {i} ('{phase.get('name')}') gives lr = {given} and lr_scale = {scale} "
                        f"(= {lr:g}); give one of them"
                    )
                phase = {**phase, "lr": lr}
            filled.append(phase)
        return {**data, "phases": filled}

    @model_validator(mode="after")
    def _unique_phase_names(self) -> Strategy:
        names = [p.name for p in self.phases]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"phase names must be unique; repeated: {', '.join(duplicates)}")
        return self

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    def phase(self, key: str | int) -> StrategyPhase:
        """The phase named ``key``, or ``phase<i>`` / ``i`` (1-based) by position."""
        return self.phases[self._phase_index(key)]

    def _phase_index(self, key: str | int) -> int:
        names = [p.name for p in self.phases]
        if isinstance(key, str) and key in names:
            return names.index(key)
        text = str(key).strip().lower()
        match = re.fullmatch(r"(?:phase)?(\d+)", text)
        if match and 1 <= int(match.group(1)) <= len(names):
            return int(match.group(1)) - 1
        choices = names + [f"phase{i}" for i in range(1, len(names) + 1)]
        raise ConfigError(f"strategy '{self.name}' has no phase '{key}'{did_you_mean(str(key), choices)}")


def check_selector_syntax(selector: str) -> None:
    """Reject selectors that cannot be valid for any model (group names are checked against a model later)."""
    if ":" in selector:
        prefix, _, arg = selector.partition(":")
        kind = SELECTOR_PREFIXES.get(prefix)
        if kind is None:
            raise ValueError(f"unknown selector '{selector}'{did_you_mean(prefix, SELECTOR_PREFIXES)}")
        if kind == "int" and not (arg.isdigit() and int(arg) >= 1):
            raise ValueError(f"selector '{selector}' needs a whole number >= 1 after '{prefix}:'")
        if kind == "glob" and not arg:
            raise ValueError(f"selector '{selector}' needs a pattern after 'params:'")
    elif not _GROUP_NAME.match(selector):
        raise ValueError(f"selector '{selector}' is not a group name, keyword or '<prefix>:<arg>'")


# --- reading strategies ------------------------------------------------------------------------------

_STRATEGY_KEYS = sorted(Strategy.model_fields)
_PHASE_KEYS = sorted(StrategyPhase.model_fields)


def parse_strategy(data: Mapping[str, Any], *, source: str, name: str | None = None) -> Strategy:
    """Validate a strategy given as a mapping (one TOML table); errors name ``source`` and the bad key."""
    data = dict(data)
    if name is not None:
        data.setdefault("name", name)
    _check_keys(data, _STRATEGY_KEYS, source, "strategy")
    phases = data.get("phases")
    if isinstance(phases, list):
        for i, phase in enumerate(phases, start=1):
            if isinstance(phase, Mapping):
                _check_keys(phase, _PHASE_KEYS, source, f"phase {i} ('{phase.get('name', '?')}')")
    try:
        return Strategy.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(f"{source}: {_describe_validation_error(exc, data)}") from None


def load_strategy_file(path: str | Path) -> Strategy:
    """Read a user's strategy from a TOML file (schema in this module's docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "strategy file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read strategy file ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(path, f"not valid TOML ({exc})") from None
    return parse_strategy(data, source=str(path), name=path.stem).model_copy(update={"source": str(path)})


def strategy_to_toml(strategy: Strategy) -> str:
    """The strategy as TOML in the file schema (a starting point for a user's own strategy)."""
    import tomli_w

    data = strategy.model_dump(exclude_none=True)
    for phase in data["phases"]:
        # lr is derived from lr_scale; writing both would pin the lr when the first phase's lr is edited
        if "lr_scale" in phase:
            del phase["lr"]
        if phase["optimizer"] not in ("sgd", "lars"):
            del phase["momentum"]
    return tomli_w.dumps(data)


def _check_keys(data: Mapping[str, Any], valid: list[str], source: str, where: str) -> None:
    for key in data:
        if key not in valid:
            close = did_you_mean(str(key), valid)
            hint = close if close.startswith(",") else ""
            raise ConfigError(
                f"{source}: unknown key '{key}' in {where}{hint}; valid keys: {', '.join(valid)}"
            )


def _describe_validation_error(exc: pydantic.ValidationError, data: Mapping[str, Any]) -> str:
    """One line from pydantic's first error, with the phase named the way the user wrote it."""
    errors = exc.errors(include_url=False)
    err = errors[0]
    loc = list(err["loc"])
    where = ""
    if len(loc) >= 2 and loc[0] == "phases" and isinstance(loc[1], int):
        index = loc[1]
        phases = data.get("phases") or []
        phase = phases[index] if index < len(phases) else None
        name = phase.get("name", "?") if isinstance(phase, dict) else "?"
        where = f"phase {index + 1} ('{name}')"
        loc = loc[2:]
    field = ".".join(str(part) for part in loc)
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        message = "missing"
    parts = [p for p in (where, field) if p]
    text = f"{' '.join(parts)}: {message}" if parts else message
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return text


# --- deriving strategies -----------------------------------------------------------------------------


def scale_epochs(strategy: Strategy, factor: float) -> Strategy:
    """Every phase's epochs multiplied by ``factor`` and rounded, never below 1 (quick runs, smoke tests)."""
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
        raise ConfigError(f"epochs scale must be a positive number, got {factor!r}")
    phases = [p.model_copy(update={"epochs": max(1, round(p.epochs * factor))}) for p in strategy.phases]
    return strategy.model_copy(update={"phases": phases})


def override_epochs(strategy: Strategy, overrides: Mapping[str | int, int]) -> Strategy:
    """Set the epochs of single phases: ``{"phase2": 3}``, ``{"blocks": 3}`` or ``{2: 3}`` (1-based)."""
    phases = list(strategy.phases)
    for key, epochs in overrides.items():
        index = strategy._phase_index(key)
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"epochs for phase '{key}' must be a whole number >= 1, got {epochs!r}")
        phases[index] = phases[index].model_copy(update={"epochs": epochs})
    return strategy.model_copy(update={"phases": phases})


def with_base_lr(strategy: Strategy, lr: float) -> Strategy:
    """The first phase at learning rate ``lr``, later phases rescaled so every ratio between phases stays."""
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"learning rate must be a positive number, got {lr!r}")
    factor = lr / strategy.phases[0].lr
    phases = [p.model_copy(update={"lr": p.lr * factor}) for p in strategy.phases]
    phases[0] = phases[0].model_copy(update={"lr": float(lr)})
    return strategy.model_copy(update={"phases": phases})
