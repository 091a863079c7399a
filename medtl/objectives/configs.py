"""The ``[objective]`` section of a RunConfig: one pydantic model per objective, told apart by ``kind``.

These models are plain data (no torch), so the CLI can read their defaults and descriptions without
loading the engine. Each declares the store kinds it trains on, the monitors it offers with their
modes, and validates its own keys and monitor; ``ObjectiveConfig`` is their discriminated union.
Adding an objective: its config class here (a ``kind`` literal), a member of ``ObjectiveConfig``,
and its entry in ``medtl.objectives.OBJECTIVES``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from medtl.config import BY_CONTENT
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


class SegmentationConfig(ObjectiveSettings):
    """A mask per image from a U-Net over the backbone (label maps, BraTS labels or region channels)."""

    kind: Literal["segmentation"] = "segmentation"
    mode: Literal["auto", "binary", "multiclass", "multilabel"] = Field(
        "auto",
        description="auto: channel masks -> multilabel (sigmoid each), 2 classes -> binary (one sigmoid), "
        "else multiclass (softmax)",
    )
    num_classes: int | None = Field(
        None, ge=1, description="classes the store must have, background included (default: the store's)"
    )
    loss: Literal["dice", "soft_dice", "log_dice", "ce", "bce", "focal", "dice_ce", "dice_focal"] = Field(
        "dice_ce",
        description="segmentation loss (docs/metrics.md); ce is multi-class only, bce multi-label only",
    )
    class_weights: Literal["none", "balanced"] | list[float] = Field(
        "none",
        description="weights of the CE/BCE/focal term: balanced (inverse pixel frequency in the training "
        "set) or one per output channel",
    )
    decoder_channels: list[int] = Field(
        [256, 128, 64, 32, 16], min_length=1, description="U-Net decoder widths, deepest first"
    )
    empty: Literal["skip", "one"] = Field(
        "skip", description="Dice/IoU of an image whose truth and prediction are both empty: skip it, or 1"
    )
    hd95: bool = Field(True, description="95th-percentile Hausdorff distance in the final evaluation")
    overlays: int = Field(4, ge=0, description="PNG overlays of this many validation and test samples")
    monitor: str = Field(
        "dice", description="validation metric for the best checkpoint: mean Dice by default"
    )

    store_tasks: ClassVar[tuple[str, ...]] = ("segmentation",)
    monitors: ClassVar[dict[str, MonitorMode]] = {
        "loss": "min",
        **dict.fromkeys(("dice", "dice_global", "iou", "iou_global", "dice_ET", "dice_TC", "dice_WT"), "max"),
    }


class SimCLRConfig(ObjectiveSettings):
    """Contrastive self-supervised pretraining (SimCLR): two augmented views per image, NT-Xent."""

    kind: Literal["simclr"] = "simclr"
    temperature: float = Field(0.5, gt=0, description="NT-Xent temperature")
    gather: bool = Field(
        True, description="negatives from every DDP rank (False: this rank's only, as the study)"
    )
    sync_bn: bool = Field(
        False, description="SyncBatchNorm across DDP ranks (CUDA); no effect in one process"
    )
    projector: Literal["mlp", "study"] = Field(
        "mlp", description="mlp: Linear-ReLU-Linear; study: 3 bias-free layers with ReLU and Sigmoid"
    )
    projector_hidden: int | None = Field(None, ge=1, description="projector width (default: the backbone's)")
    projection_dim: int = Field(128, ge=1, description="output size of the projector (the study: 256)")
    augment_on: Literal["device", "workers"] = Field(
        "device", description="views of whole batches on the device (kornia), or per sample in the workers"
    )
    view_size: int | None = Field(None, ge=8, description="side of each view (default: the store's)")
    crop_min_scale: float = Field(
        0.08, gt=0, le=1, description="smallest crop area of the random resized crop"
    )
    jitter_strength: float = Field(1.0, ge=0, description="colour jitter strength s (0.8s, 0.8s, 0.8s, 0.2s)")
    blur: bool = Field(False, description="Gaussian blur with p = 0.5 (the study left it out)")
    view_normalise: Literal["imagenet", "clip", "half", "none"] = Field(
        "imagenet", description="normalisation after augmentation"
    )
    stores: Annotated[dict[str, float], BY_CONTENT] = Field(
        default_factory=dict, description="further stores mixed into training: {path: weight}"
    )
    weight: float = Field(1.0, gt=0, description="the run's own store's weight in the mixture")
    mixture_seed: int = Field(0, description="seed of the mixture's draw")
    knn_k: int = Field(20, ge=1, description="neighbours of the k-NN monitor")
    knn_temperature: float = Field(0.07, gt=0, description="temperature of the k-NN votes")
    knn_every: int = Field(
        5, ge=1, description="k-NN monitor every this many epochs (and in the final evaluation)"
    )
    knn_bank: int | None = Field(
        10_000, ge=1, description="labelled training images in the k-NN bank (a seeded subset; None: all)"
    )
    monitor: str = Field(
        "loss", description="loss, or a k-NN metric of a labelled store (knn_accuracy, knn_auroc)"
    )

    store_tasks: ClassVar[tuple[str, ...]] = ()  # never chosen by a store's kind: asked for by name
    monitors: ClassVar[dict[str, MonitorMode]] = {
        "loss": "min",
        **dict.fromkeys(
            ("knn_accuracy", "knn_balanced_accuracy", "knn_auroc", "knn_f1", "knn_label_accuracy"), "max"
        ),
    }

    @field_validator("stores")
    @classmethod
    def _positive_weights(cls, value: dict[str, float]) -> dict[str, float]:
        from pathlib import Path

        for path, weight in value.items():
            if not weight > 0:
                raise ValueError(f"mixture weight of {path} must be positive, got {weight}")
        return {str(Path(p).expanduser().resolve()): float(w) for p, w in value.items()}


class AdaptorConfig(ObjectiveSettings):
    """Vision-language pretraining of the Adaptor on cached embeddings of frozen encoders."""

    kind: Literal["adaptor"] = "adaptor"
    embeddings: Annotated[Path | None, BY_CONTENT] = Field(
        None, description="embeddings directory written by `medtl extract --reports`"
    )
    vision_dim: int | None = Field(None, ge=1, description="expected image embedding size (checked)")
    dim: int = Field(768, ge=1, description="width of the Adaptor")
    layers: int = Field(2, ge=1, description="fusion layers")
    heads: int = Field(12, ge=1, description="attention heads")
    feedforward: int = Field(2048, ge=1, description="feed-forward width")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout of attention and feed-forward")
    image_loss_weight: float = Field(0.75, ge=0, le=1, description="weight of the image->text term")
    monitor: str = Field("loss", description="loss (early stopping), or recall_i2t / recall_t2i")

    store_tasks: ClassVar[tuple[str, ...]] = ()
    monitors: ClassVar[dict[str, MonitorMode]] = {"loss": "min", "recall_i2t": "max", "recall_t2i": "max"}

    @field_validator("embeddings")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else Path(value).expanduser().resolve()


# Every objective's section; pydantic picks the member by its ``kind``.
OBJECTIVE_CONFIGS: tuple[type[ObjectiveSettings], ...] = (
    ClassificationConfig,
    SegmentationConfig,
    SimCLRConfig,
    AdaptorConfig,
)
ObjectiveConfig = Annotated[
    Union[ClassificationConfig, SegmentationConfig, SimCLRConfig, AdaptorConfig], Field(discriminator="kind")
]
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
