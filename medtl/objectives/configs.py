"""The ``[objective]`` section of a RunConfig: one pydantic model per objective, told apart by ``kind``.

These models are plain data (no torch), so the CLI can read their defaults and descriptions without
loading the engine. Each declares the store kinds it trains on, the monitors it offers with their
modes, and validates its own keys and monitor; ``ObjectiveConfig`` is their discriminated union.
Adding an objective: its config class here (a ``kind`` literal), a member of ``ObjectiveConfig``,
and its entry in ``medtl.objectives.OBJECTIVES``.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from medtl.errors import UnknownChoiceError

MonitorMode = Literal["min", "max"]


class ObjectiveSettings(BaseModel):
    """Fields and checks every objective's section shares."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    kind: str
    monitor: str

    # Store kinds (manifest "task") this objective trains on; the first objective that takes a
    # store's kind is chosen when a config names none.
    store_tasks: ClassVar[tuple[str, ...]] = ()
    # Validation values that can pick the best checkpoint and stop early, and which way is better.
    monitors: ClassVar[dict[str, MonitorMode]] = {"loss": "min"}

    @field_validator("monitor")
    @classmethod
    def _known_monitor(cls, value: str) -> str:
        if value not in cls.monitors:
            raise UnknownChoiceError("monitor metric", value, cls.monitors)
        return value

    @property
    def monitor_mode(self) -> MonitorMode:
        return self.monitors[self.monitor]

    @classmethod
    def keys(cls) -> list[str]:
        return list(cls.model_fields)


class ClassificationConfig(ObjectiveSettings):
    """One label (binary, multiclass) or several (multilabel) per image, from a linear head."""

    kind: Literal["classification"] = "classification"
    task: Literal["auto", "binary", "multiclass", "multilabel"] = Field(
        "auto",
        description="auto: multilabel stores -> multilabel, 2 classes -> binary, else multiclass",
    )
    class_weights: Literal["none", "balanced"] | list[float] = Field(
        "none", description="balanced: inverse class frequency of the training set; or one weight per class"
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="label smoothing of the targets")
    monitor: str = Field(
        "auroc", description="validation metric for the best checkpoint and early stopping, or 'loss'"
    )

    store_tasks: ClassVar[tuple[str, ...]] = ("classification", "multilabel")
    monitors: ClassVar[dict[str, MonitorMode]] = {
        "loss": "min",
        **dict.fromkeys(
            (
                "accuracy",
                "balanced_accuracy",
                "auroc",
                "precision",
                "recall",
                "f1",
                "sensitivity",
                "specificity",
                "label_accuracy",
            ),
            "max",
        ),
    }


# Every objective's section; pydantic picks the member by its ``kind``.
OBJECTIVE_CONFIGS: tuple[type[ObjectiveSettings], ...] = (ClassificationConfig,)
ObjectiveConfig = Annotated[Union[ClassificationConfig], Field(discriminator="kind")]
DEFAULT_KIND = "classification"


def config_class(kind: str) -> type[ObjectiveSettings]:
    """The config model of an objective kind."""
    for cls in OBJECTIVE_CONFIGS:
        if cls.model_fields["kind"].default == kind:
            return cls
    raise UnknownChoiceError("objective", kind, objective_kinds())


def objective_kinds() -> list[str]:
    return [cls.model_fields["kind"].default for cls in OBJECTIVE_CONFIGS]


def kind_for_store(store_task: str | None) -> str:
    """The objective a store of this kind trains with when the config names none.

    A store kind that no objective takes gets the default objective, whose ``check`` then refuses
    the store with one line saying what it holds.
    """
    for cls in OBJECTIVE_CONFIGS:
        if store_task in cls.store_tasks:
            return cls.model_fields["kind"].default
    return DEFAULT_KIND


def with_kind(section: Any, store_task: str | None) -> Any:
    """``section`` (a mapping without ``kind``, or None) with the kind chosen for the store."""
    if section is None:
        return {"kind": kind_for_store(store_task)}
    if isinstance(section, dict) and "kind" not in section:
        return {"kind": kind_for_store(store_task), **section}
    return section
