"""``evaluate_run``: test a finished run on its own store or an external one, optionally under
corruptions, and write ``evaluation_<name>.json`` into the run directory.

* The run's own store (same checksum as the store it trained on): the partition ``split`` of the
  split the run used (default ``test``).
* An external store: every sample (``split`` "all", the default), or a partition of the store's
  own split file. Its classes are matched to the run's by name, or through a class map
  ``{external class: run class}`` (JSON or TOML file, or a dict); external classes left out of the
  map are dropped with their samples. E.g. a run on CE-MRI {glioma, meningioma, pituitary} tested
  on the Kaggle set {glioma_tumor, meningioma_tumor, no_tumor, pituitary_tumor} maps the three
  tumour classes and drops ``no_tumor``. Run classes with no samples left have no AUROC (skipped,
  see medtl.metrics). For multilabel runs only the mapped run classes are evaluated.
* Images pass through the run's evaluation transform (resize, channel repeat, normalisation);
  an external store with another image size is resized to the training size.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from medtl import __version__
from medtl.data.dataset import StoreDataset, label_targets
from medtl.data.splits import PARTITIONS, default_split_path, load_split
from medtl.engine import (
    LoadedRun,
    RunMetrics,
    evaluate_loader,
    load_run,
    record_verified,
    resolve_device,
    resolve_split,
    verify_store,
    write_json,
)
from medtl.errors import ConfigError, InputError, StoreError, UnknownChoiceError, did_you_mean
from medtl.evaluate.corruptions import SEVERITIES, get_corruption
from medtl.evaluate.robustness import RobustnessResult, evaluate_robustness
from medtl.io.paths import single_component
from medtl.io.store import Store
from medtl.metrics import bootstrap_metrics, classification_metrics
from medtl.objectives.base import PartitionMetrics
from medtl.progress import NULL_PROGRESS, Progress

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger("medtl")

SPLITS = (*PARTITIONS, "all")


@dataclass
class EvaluationResult:
    """What ``evaluate_run`` measured; ``to_dict()`` is the content of ``path``. ``dropped``: per
    external class without a run class, the samples dropped (multilabel: the positive labels)."""

    run_dir: Path
    store: Path
    split: str
    external: bool
    checkpoint: str
    task: str
    class_names: list[str]
    num_samples: int
    metrics: PartitionMetrics
    tta: str | None = None
    class_map: dict[str, str] | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    robustness: RobustnessResult | None = None
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "checkpoint": self.checkpoint,
            "store": str(self.store),
            "external": self.external,
            "split": self.split,
            "tta": self.tta,
            "task": self.task,
            "class_names": self.class_names,
            "class_map": self.class_map,
            "dropped": self.dropped,
            "num_samples": self.num_samples,
            "metrics": self.metrics.model_dump(mode="json"),
            "robustness": None if self.robustness is None else self.robustness.to_dict(),
            "medtl_version": __version__,
        }


# -- class mapping -------------------------------------------------------------------------------


def read_class_map(path: str | Path) -> dict[str, str]:
    """A ``{external class: run class}`` table from a JSON or TOML file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(path, "class map not found") from None
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc})") from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise InputError(path, f"not valid {kind} ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise InputError(path, 'a class map must map external class names to run class names {"a": "b"}')
    return {str(k): v for k, v in data.items()}


@dataclass
class _ClassMatch:
    """How store labels become run labels."""

    mapping: dict[str, str]  # store class -> run class (only kept classes)
    dropped: list[str]  # store classes without a run class
    run_classes: list[str]  # classes evaluated (all run classes; multilabel: the mapped ones)


def match_classes(
    store_classes: Sequence[str],
    run_classes: Sequence[str],
    class_map: Mapping[str, str] | None,
    *,
    multilabel: bool,
    source: str | Path,
) -> _ClassMatch:
    """Match a store's classes to a run's; ``source`` (the class-map file or the store) names errors."""
    if class_map is None:
        unknown = [c for c in store_classes if c not in run_classes]
        if unknown:
            raise InputError(
                source,
                f"classes {', '.join(unknown)} are not among the run's classes ({', '.join(run_classes)})",
                hint="pass --class-map FILE mapping each external class to a run class (others are dropped)",
            )
        mapping = {c: c for c in store_classes}
    else:
        for external, internal in class_map.items():
            if external not in store_classes:
                raise InputError(
                    source, f"unknown store class '{external}'{did_you_mean(external, store_classes)}"
                )
            if internal not in run_classes:
                raise InputError(
                    source,
                    f"'{external}' maps to '{internal}', which is not a run class"
                    + did_you_mean(internal, run_classes),
                )
        mapping = dict(class_map)
    if not mapping:
        raise InputError(source, "no store class maps to a run class")
    dropped = [c for c in store_classes if c not in mapping]
    kept = [c for c in run_classes if c in mapping.values()] if multilabel else list(run_classes)
    return _ClassMatch(mapping, dropped, kept)


class _MappedTargets(Dataset):
    """Items of a StoreDataset with their targets translated to the run's classes, as dicts
    ``{"image", "target", "index"}`` (a DataLoader collates them into batch dicts)."""

    def __init__(self, dataset: StoreDataset, lookup: np.ndarray, multilabel: bool) -> None:
        # single-label: lookup[store class] = run class (-1: dropped, those samples are excluded);
        # multilabel: lookup is (store classes, kept run classes) 0/1, a target is the OR of its rows.
        self.dataset, self.lookup, self.multilabel = dataset, lookup, multilabel

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        image, target = self.dataset[i]
        index = torch.tensor(int(self.dataset.indices[i]), dtype=torch.int64)
        if self.multilabel:
            mapped = (target.numpy()[:, None] * self.lookup).max(axis=0)
            return {"image": image, "target": torch.from_numpy(mapped.astype(np.float32)), "index": index}
        mapped_label = torch.tensor(int(self.lookup[int(target)]), dtype=torch.int64)
        return {"image": image, "target": mapped_label, "index": index}


def _map_targets(
    loaded: LoadedRun, store: Store, indices: np.ndarray, match: _ClassMatch
) -> tuple[np.ndarray, np.ndarray, list[int] | None, dict[str, int]]:
    """(kept indices, lookup for _MappedTargets, score columns to keep or None, dropped counts)."""
    names = store.class_names
    if loaded.task == "multilabel":
        lookup = np.zeros((len(names), len(match.run_classes)), dtype=np.float32)
        for external, internal in match.mapping.items():
            lookup[names.index(external), match.run_classes.index(internal)] = 1
        columns = [loaded.class_names.index(c) for c in match.run_classes]
        # Multilabel samples stay; a dropped class loses only its positive labels (counted).
        positives = label_targets(store, indices) > 0.5
        return indices, lookup, columns, {c: int(positives[:, names.index(c)].sum()) for c in match.dropped}
    lookup = np.full(len(names), -1, dtype=np.int64)
    for external, internal in match.mapping.items():
        lookup[names.index(external)] = loaded.class_names.index(internal)
    labels = label_targets(store, indices)
    dropped = {c: int((labels == names.index(c)).sum()) for c in match.dropped}
    return indices[lookup[labels] >= 0], lookup, None, dropped


# -- which samples -------------------------------------------------------------------------------


def _recorded(loaded: LoadedRun) -> RunMetrics | None:
    """The run's metrics.json record (None for a run that has not finished)."""
    try:
        return RunMetrics.load(loaded.run_dir)
    except InputError:
        return None


def _training_checksum(loaded: LoadedRun) -> str | None:
    record = _recorded(loaded)
    if record is not None:
        return record.data.checksum
    try:
        return Store(loaded.config.data).checksum
    except StoreError:
        return None


def _run_partitions(loaded: LoadedRun, store: Store) -> dict[str, np.ndarray]:
    """The partitions the run used on its own store, as ``medtl.engine.resolve_split`` resolves them.

    metrics.json records which split that was; a split file made after the run does not count.
    """
    record = _recorded(loaded)
    return resolve_split(loaded.config, store, recorded=None if record is None else record.data.split)[0]


def _indices(loaded: LoadedRun, store: Store, split: str, external: bool) -> np.ndarray:
    if split == "all":
        return np.arange(len(store), dtype=np.int64)
    if not external:
        return _run_partitions(loaded, store)[split]
    path = default_split_path(store.path)
    if not path.is_file():
        raise InputError(
            store.path,
            f"is an external store without a split file, so it has no '{split}' partition",
            hint="pass --split all to evaluate every sample, or make a split with `medtl data split`",
        )
    return np.asarray(load_split(path, store)[split], dtype=np.int64)


def _eval_transform(loaded: LoadedRun, store: Store):
    """The run's evaluation transform, resizing an external store's images to the training size."""
    from torchvision.transforms import v2

    transform = loaded.transform()
    if loaded.config.image_size is not None:
        return transform
    try:
        train_hw = tuple(Store(loaded.config.data).shape[1:])
    except StoreError:
        train_hw = None
    if train_hw is None:
        log.warning("training store %s not found: images are fed at their own size", loaded.config.data)
        return transform
    if tuple(store.shape[1:]) == train_hw:
        return transform
    return v2.Compose([v2.Resize(list(train_hw), antialias=True), transform])


# -- the entry point -----------------------------------------------------------------------------


def evaluation_path(run_dir: Path, name: str) -> Path:
    """``<run>/evaluation_<name>.json``; a name that is not one plain file name is a ConfigError."""
    try:
        single_component(name, "evaluation name (--name)")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return Path(run_dir) / f"evaluation_{name}.json"


def _check_options(
    split: str | None,
    bootstrap: int,
    robustness: bool,
    corruptions: Sequence[str] | None,
    severities: Sequence[int],
) -> None:
    """Refuse bad options before the (long) evaluation, not after it."""
    if split is not None and split not in SPLITS:
        raise UnknownChoiceError("split", split, SPLITS)
    if bootstrap < 0:
        raise ConfigError(f"bootstrap resamples must be 0 or more, got {bootstrap}")
    if robustness:
        for corruption in corruptions or ():
            get_corruption(corruption)
        bad = [s for s in severities if s not in SEVERITIES]
        if bad:
            raise ConfigError(f"corruption severities must be 1-5, got {bad}")


def _check_store(loaded: LoadedRun, store: Store) -> None:
    """The store holds what the run's model reads: its kind of labels and channels."""
    multilabel = loaded.task == "multilabel"
    if store.task == "segmentation" or store.labels is None:
        raise InputError(store.path, "is a segmentation store (no class labels); the run is a classifier")
    if multilabel != (store.task == "multilabel"):
        kinds = ("one class per sample", "multilabel")
        raise InputError(
            store.path, f"has {kinds[store.task == 'multilabel']} labels but the run is {kinds[multilabel]}"
        )
    if store.shape[0] not in (1, loaded.in_chans):
        raise InputError(
            store.path, f"has {store.shape[0]}-channel images; the run's model takes {loaded.in_chans}"
        )


def _scorer(
    loaded: LoadedRun,
    columns: list[int] | None,
    *,
    device: str,
    tta: str | None,
    batch_size: int | None,
    num_workers: int | None,
) -> Callable[[Dataset], tuple[np.ndarray, np.ndarray]]:
    """Scores (the run's columns ``columns``) and targets of a dataset of batch-dict items, through
    the engine's evaluation loop."""
    dev = resolve_device(device)
    batch = batch_size or loaded.config.batch_size
    workers = loaded.config.num_workers if num_workers is None else num_workers

    def score(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
        loader = DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=workers)
        result = evaluate_loader(loaded.objective, loaded.model, loader, device=dev, tta=tta, with_loss=False)
        targets, scores = result.metric.data()  # type: ignore[attr-defined]
        return (scores[:, columns] if columns is not None else scores), targets

    return score


def evaluation_name(store: Path, split: str, tta: str | None, checkpoint: str) -> str:
    parts = [store.name, split] + ([tta] if tta else []) + ([checkpoint] if checkpoint != "best" else [])
    return "-".join(parts)


def evaluate_run(
    run_dir: str | Path,
    store_path: str | Path,
    *,
    split: str | None = None,
    tta: str | None = None,
    class_map: str | Path | Mapping[str, str] | None = None,
    robustness: bool = False,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    bootstrap: int = 1000,
    checkpoint: str = "best",
    device: str = "auto",
    batch_size: int | None = None,
    num_workers: int | None = None,
    seed: int = 0,
    name: str | None = None,
    verify: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> EvaluationResult:
    """Evaluate a run on a store (see the module docstring); writes ``evaluation_<name>.json``.

    ``split``: "train", "val", "test" or "all"; default "test" on the run's own store, "all" on an
    external one. ``tta``: None, "hflip" or "tencrop" (mean score over the views). ``bootstrap``:
    resamples (by patient) of the 95% confidence intervals, 0 for none. The store is verified first:
    in full when ``verify`` or when the run has not verified this store before, else quickly.
    """
    if name is not None:
        evaluation_path(Path(run_dir), name)  # refuse a name that escapes the run before any work
    _check_options(split, bootstrap, robustness, corruptions, severities)
    loaded = load_run(run_dir, checkpoint)
    if tta is not None and tta not in loaded.objective.tta_modes:
        raise UnknownChoiceError("test-time augmentation", tta, loaded.objective.tta_modes)
    store = Store(store_path)
    if verify_store(store, loaded.run_dir, full=verify, progress=progress) == "full":
        record_verified(store, loaded.run_dir)
    if loaded.objective.kind == "segmentation":
        return _evaluate_segmentation_run(
            loaded,
            store,
            split=split,
            tta=tta,
            class_map=class_map,
            robustness=robustness,
            corruptions=corruptions,
            severities=severities,
            bootstrap=bootstrap,
            device=device,
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            name=name,
            progress=progress,
        )
    _check_store(loaded, store)
    multilabel = loaded.task == "multilabel"
    external = store.checksum != _training_checksum(loaded)
    split = split or ("all" if external else "test")
    source: str | Path = class_map if isinstance(class_map, (str, Path)) else store.path
    table = read_class_map(class_map) if isinstance(class_map, (str, Path)) else class_map
    match = match_classes(store.class_names, loaded.class_names, table, multilabel=multilabel, source=source)

    indices, lookup, columns, dropped = _map_targets(
        loaded, store, _indices(loaded, store, split, external), match
    )
    if len(indices) == 0:
        raise InputError(
            store.path, f"no samples left to evaluate in split '{split}' after the class mapping"
        )

    transform = _eval_transform(loaded, store)
    score = _scorer(loaded, columns, device=device, tta=tta, batch_size=batch_size, num_workers=num_workers)
    progress.message(
        f"evaluating {loaded.run_dir.name} ({checkpoint}) on {store.path} [{split}]: {len(indices)} samples"
        + (f", dropped {', '.join(f'{c} ({n})' for c, n in dropped.items())}" if dropped else "")
    )
    scores, targets = score(_MappedTargets(StoreDataset(store, indices, transform), lookup, multilabel))
    values = classification_metrics(targets, scores, loaded.task, match.run_classes)
    ci = None
    if bootstrap:
        groups = store.patient_ids[indices]
        ci = bootstrap_metrics(targets, scores, loaded.task, n=bootstrap, seed=seed, groups=groups)
    metrics = PartitionMetrics(num_samples=values.pop("num_samples"), values=values, ci95=ci)
    robust = None
    if robustness:
        robust = evaluate_robustness(
            None,
            _MappedTargets(StoreDataset(store, indices, None), lookup, multilabel),
            task=loaded.task,
            class_names=match.run_classes,
            transform=transform,
            score_fn=score,
            corruptions=corruptions,
            severities=severities,
            seed=seed,
            progress=progress,
        )

    result = EvaluationResult(
        run_dir=loaded.run_dir,
        store=store.path,
        split=split,
        external=external,
        checkpoint=checkpoint,
        task=loaded.task,
        class_names=match.run_classes,
        num_samples=len(indices),
        metrics=metrics,
        tta=tta,
        class_map=None if table is None else dict(table),
        dropped=dropped,
        robustness=robust,
    )
    result.path = evaluation_path(loaded.run_dir, name or evaluation_name(store.path, split, tta, checkpoint))
    write_json(result.path, result.to_dict())
    return result


def _evaluate_segmentation_run(
    loaded: LoadedRun,
    store: Store,
    *,
    split: str | None,
    tta: str | None,
    class_map: object,
    robustness: bool,
    corruptions: Sequence[str] | None,
    severities: Sequence[int],
    bootstrap: int,
    device: str,
    batch_size: int | None,
    num_workers: int | None,
    seed: int,
    name: str | None,
    progress: Progress,
) -> EvaluationResult:
    """``evaluate_run`` for a segmentation run: the store must hold the run's classes as masks."""
    from medtl.evaluate.segmentation import evaluate_segmentation

    if class_map is not None:
        raise ConfigError(
            "class maps are for classification runs; a segmentation store must hold the run's classes"
        )
    loaded.objective.check_external(store)  # type: ignore[attr-defined]
    if store.shape[0] not in (1, loaded.in_chans):
        raise InputError(
            store.path, f"has {store.shape[0]}-channel images; the run's model takes {loaded.in_chans}"
        )
    external = store.checksum != _training_checksum(loaded)
    split = split or ("all" if external else "test")
    indices = _indices(loaded, store, split, external)
    if len(indices) == 0:
        raise InputError(store.path, f"no samples to evaluate in split '{split}'")
    checkpoint = loaded.which
    label = name or evaluation_name(store.path, split, tta, checkpoint)
    progress.message(
        f"evaluating {loaded.run_dir.name} ({checkpoint}) on {store.path} [{split}]: {len(indices)} samples"
    )
    config = loaded.config
    metrics, robust = evaluate_segmentation(
        loaded,
        store,
        indices,
        name=label,
        tta=tta,
        bootstrap=bootstrap,
        seed=seed,
        device=resolve_device(device),
        batch_size=batch_size or config.batch_size,
        num_workers=config.num_workers if num_workers is None else num_workers,
        robustness=robustness,
        corruptions=corruptions,
        severities=severities,
        progress=progress,
    )
    result = EvaluationResult(
        run_dir=loaded.run_dir,
        store=store.path,
        split=split,
        external=external,
        checkpoint=checkpoint,
        task=str(loaded.task),
        class_names=loaded.class_names,
        num_samples=len(indices),
        metrics=metrics,
        tta=tta,
        robustness=robust,
    )
    result.path = loaded.run_dir / f"evaluation_{label}.json"
    write_json(result.path, result.to_dict())
    return result
