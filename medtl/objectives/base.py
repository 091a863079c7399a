"""The objective interface: everything that differs between tasks, behind one small class.

The engine's trainer runs the loop, phases, optimisers, checkpoints, resume, DDP, AMP and callbacks
for any objective. An objective owns the rest:

* its config section (``medtl.objectives.configs``) with its monitors and their modes;
* ``check(store)``: the store fits (one-line error otherwise); afterwards the objective knows the
  store's facts it needs (task kind, classes);
* ``build_model`` / ``load_model``: a grouped model the strategies address (``groups()``,
  ``blocks()``, ``norm_layers()``, ``spec``), and checkpoint metadata that rebuilds it;
* ``setup``: what it learns from the training partition (e.g. class weights for the loss);
* ``dataset``: items of a partition, loaded as **batch dicts** (keys below);
* ``forward`` / ``loss`` (``step`` = both) on a batch dict; ``predict`` for evaluation with TTA;
* ``metric()``: a fresh accumulating metric (``update(outputs, batch)`` per batch, ``aggregate()``);
* ``cached_head`` / ``head_input``: whether a head-only phase can train on inputs computed once;
* ``reference``: items a validation's metric compares with (a k-NN monitor's labelled bank), whose
  ``head_input`` the engine computes and hands to the metric (``use_reference``);
* ``summarise``: the final section of a partition (metrics, loss, bootstrap CIs) for metrics.json.

Importing this module does not import torch; the objectives themselves do.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, field_validator, model_serializer, model_validator

from medtl.errors import UnknownChoiceError
from medtl.objectives.configs import MonitorMode, ObjectiveSettings

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    from medtl.io.store import Store

# -- batch dicts: the keys every loader and objective agree on ----------------------------------------
IMAGE = "image"  # (B, C, H, W) float32 input images
TARGET = "target"  # labels (B,) / (B, K), or masks (B, M, H, W)
INDEX = "index"  # (B,) int64 store rows; every batch has it (the loop counts samples by it)
FEATURES = "features"  # (B, D) what a cached head-only phase feeds the head instead of ``image``
VIEWS = "views"  # augmented views of the same images (contrastive objectives)
TEXT = "text"  # paired text or its embedding (vision-language objectives)

Batch = dict[str, Any]
Outputs = dict[str, Any]


class Metric(Protocol):
    """An accumulating metric (MONAI style): ``update`` per batch, ``aggregate`` at the end.

    A metric of an objective with a ``reference`` also has ``use_reference(inputs)``: the engine
    gives it the reference items' cached inputs (``{"features", "target", "index", ...}``) before
    the validation's first batch.
    """

    def reset(self) -> None: ...

    def update(self, outputs: Outputs, batch: Batch) -> None: ...

    def aggregate(self) -> dict[str, Any]:
        """Every value as JSON-ready data; single floats are the scalars (history, monitors)."""
        ...


def scalars(values: Mapping[str, Any]) -> dict[str, float]:
    """The single-float values of an aggregated metric (NaN included, counts excluded)."""
    return {k: v for k, v in values.items() if isinstance(v, float)}


def finite_values(value: Any) -> Any:
    """Non-finite floats become None, recursively (JSON has no NaN, and memory should match the file)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_values(v) for v in value]
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalars
        return finite_values(value.item())
    return value


class PartitionMetrics(BaseModel):
    """The final evaluation of one partition: the objective's metric values, the mean loss, the
    number of samples and, when bootstrapped, 95% intervals of the scalars.

    Stored flat, as metrics.json has always held it (``{"num_samples", <metrics>..., "loss",
    "ci95"}``); ``metrics["auroc"]`` reads one value. Undefined values (NaN) are None.
    """

    model_config = ConfigDict(frozen=True)

    num_samples: int
    values: dict[str, Any]
    loss: float | None = None
    ci95: dict[str, tuple[float | None, float | None]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_flat(cls, data: Any) -> Any:
        if isinstance(data, dict) and "values" not in data:
            rest = {k: v for k, v in data.items() if k not in ("num_samples", "loss", "ci95")}
            return {
                "num_samples": data.get("num_samples", 0),
                "loss": data.get("loss"),
                "ci95": data.get("ci95"),
                "values": rest,
            }
        return data

    @field_validator("values", "ci95", "loss", mode="before")
    @classmethod
    def _no_nan(cls, value: Any) -> Any:
        return finite_values(value)

    @model_serializer(mode="plain")
    def _to_flat(self) -> dict[str, Any]:
        out: dict[str, Any] = {"num_samples": self.num_samples, **self.values}
        if self.loss is not None:
            out["loss"] = self.loss
        if self.ci95 is not None:
            out["ci95"] = {k: list(v) for k, v in self.ci95.items()}
        return out

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def scalars(self) -> dict[str, float | None]:
        """The single-number metrics (None where undefined)."""
        return {k: v for k, v in self.values.items() if isinstance(v, float) or v is None}


class Objective(ABC):
    """One task the engine can train; see the module docstring for what each method owns."""

    kind: ClassVar[str]
    config_class: ClassVar[type[ObjectiveSettings]]
    # Test-time augmentations ``predict`` knows.
    tta_modes: ClassVar[tuple[str, ...]] = ()
    # Whether training learns the store's class labels: the engine then refuses one-class stores and
    # splits that leave a class out of training. Self-supervised objectives ignore the labels.
    learns_labels: ClassVar[bool] = True

    def __init__(self, config: ObjectiveSettings) -> None:
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}")
        self.config = config

    # -- the store ---------------------------------------------------------------------------------
    @abstractmethod
    def check(self, store: Store) -> None:
        """Raise a MedtlError naming the store when it does not fit; remember what the objective needs."""

    def describe(self) -> dict[str, Any]:
        """What metrics.json records about the objective besides its kind (e.g. task, class names)."""
        return {}

    # -- monitors ----------------------------------------------------------------------------------
    @property
    def monitor(self) -> str:
        return self.config.monitor

    @property
    def monitor_mode(self) -> MonitorMode:
        return self.config.monitor_mode

    # -- the model ---------------------------------------------------------------------------------
    @abstractmethod
    def build_model(
        self,
        *,
        backbone: str,
        in_chans: int,
        module: str | None,
        truncate: int | None,
        image_size: int | None,
        init: str = "random",
    ) -> nn.Module:
        """A randomly initialised grouped model for the checked store (``load_init`` then fills it
        from ``init``). An architecture with pretrained parts besides the backbone (``module =
        "adaptor"``: an Adaptor run's image path) reads and loads them from ``init`` here."""

    @abstractmethod
    def model_metadata(self) -> dict[str, str]:
        """Checkpoint metadata (strings) that ``load_model`` needs besides the model's ``spec``."""

    @abstractmethod
    def load_model(self, metadata: Mapping[str, Any]) -> nn.Module:
        """Rebuild the architecture of a checkpoint from its decoded metadata (``spec`` included) and
        restore what ``check`` would have learnt from the store (task, classes)."""

    # -- training ----------------------------------------------------------------------------------
    def setup(self, store: Store, train_indices: np.ndarray, device: torch.device) -> None:  # noqa: B027
        """Learn what the loss needs from the training partition (default: nothing)."""

    @abstractmethod
    def dataset(self, store: Store, indices: np.ndarray, transform: Any) -> Dataset:
        """Items of ``indices``; a StoreDataset is loaded as batch dicts by the engine."""

    @abstractmethod
    def forward(self, module: nn.Module, batch: Batch) -> Outputs:
        """Run ``module`` on a batch (``features`` instead of ``image`` in a cached phase)."""

    @abstractmethod
    def loss(self, outputs: Outputs, batch: Batch) -> torch.Tensor:
        """The scalar loss of a batch."""

    def step(self, module: nn.Module, batch: Batch) -> tuple[torch.Tensor, Outputs]:
        """One training or evaluation step: the loss and the outputs the metric needs."""
        outputs = self.forward(module, batch)
        return self.loss(outputs, batch), outputs

    def predict(self, module: nn.Module, batch: Batch, tta: str | None = None) -> Outputs:
        """Evaluation outputs, averaged over test-time augmented views when ``tta`` is given."""
        if tta is not None:
            raise UnknownChoiceError("test-time augmentation", tta, self.tta_modes)
        return self.forward(module, batch)

    def device_augment(self, batch: Batch, augment: Sequence[str]) -> Batch:
        """Batch augmentation on the device (CUDA); the default moves only the images."""
        from medtl.data.transforms import batch_augment

        return {**batch, IMAGE: batch_augment(batch[IMAGE], augment)}

    # -- evaluation --------------------------------------------------------------------------------
    @abstractmethod
    def metric(self, *, final: bool = False) -> Metric:
        """A fresh accumulating metric of this objective; ``final`` for a run's (or ``evaluate``'s)
        last evaluation of a partition, which may measure more than each epoch's validation."""

    @abstractmethod
    def summarise(
        self, metric: Metric, *, loss: float | None, groups: np.ndarray | None, bootstrap: int, seed: int
    ) -> PartitionMetrics:
        """The final section of a partition; ``groups`` (patient ids in the metric's sample order)
        make the bootstrap resample whole patients."""

    def write_outputs(self, metric: Metric, directory: Path, name: str) -> list[Path]:
        """Files the final evaluation of partition ``name`` leaves under ``directory`` (the run
        directory; e.g. overlays); default none."""
        return []

    # -- head-only phases on cached inputs ---------------------------------------------------------
    def cached_head(self, model: nn.Module) -> nn.Module | None:
        """The module a head-only phase trains when its input can be computed once (None: never)."""
        return None

    def head_input(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """What ``cached_head`` sees for a batch (computed once, in eval mode, for a cached phase),
        and the features of ``reference`` items."""
        raise NotImplementedError(f"{type(self).__name__} has no cached head")

    # -- validation against a reference set --------------------------------------------------------
    def reference(self, store: Store, transform: Any, *, epoch: int | None) -> Dataset | None:
        """Items whose ``head_input`` this evaluation's metric compares with, e.g. a k-NN monitor's
        bank of labelled training images; None (the default): none this time. ``epoch`` is the
        global index of the epoch a validation ends, None for a final evaluation."""
        return None
