"""Patient-level splits of a store: k-fold or train/val/test fractions, and few-shot subsets.

Every split keeps all samples of a patient in one partition (slices of one BraTS volume, views of
one ChestX-ray14 patient), so no patient is seen in training and evaluation. Splits are written to a
JSON file next to the store, tied to it by the store's content checksum (images, labels, masks and
patients); ``load_split`` refuses a split made for another store or for an earlier version of this one.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from medtl.errors import ConfigError, InputError, OutputError, OutputExistsError, StoreError
from medtl.io.paths import enclosing_store, read_json_format, write_errors
from medtl.io.store import Store

SPLIT_FORMAT = "medtl-split"
SPLIT_FORMAT_VERSION = 1
PARTITIONS = ("train", "val", "test")
log = logging.getLogger("medtl")
_MASK_CHUNK_BYTES = 64 << 20


@dataclass
class Split:
    """Index arrays per partition ("train", "val", "test"; any may be empty) and how they were made."""

    partitions: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.partitions[name]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SPLIT_FORMAT,
            "format_version": SPLIT_FORMAT_VERSION,
            **self.meta,
            "counts": {name: len(idx) for name, idx in self.partitions.items()},
            "partitions": {name: [int(i) for i in idx] for name, idx in self.partitions.items()},
        }

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the split file atomically.

        Rewriting an identical split is allowed (rerunning the same command); replacing a different
        one needs ``overwrite`` because finished runs may refer to it, and ``overwrite`` replaces only
        a split file. A split file is never written inside a store (or over one of its files).
        """
        path = Path(path)
        store = enclosing_store(path)
        if store is not None:
            raise OutputError(
                path,
                f"is or lies inside the store {store}; split files go beside a store, never inside it",
                hint=f"leave --out out to write {default_split_path(store)}",
            )
        text = json.dumps(self.to_json(), indent=1) + "\n"
        if path.is_dir():
            raise OutputError(path, "is a directory; --out names the split file to write")
        if path.exists():
            try:
                current = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                current = None
            if current != text:
                if not overwrite:
                    raise OutputExistsError(path)
                if read_json_format(path) != SPLIT_FORMAT:
                    raise OutputError(
                        path, "is not a medtl split file; --overwrite replaces only a split file"
                    )
        with write_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        return path


def default_split_path(store_path: str | Path) -> Path:
    """``<store>.split.json`` beside the store directory (prepare alone writes inside the store)."""
    store_path = Path(store_path)
    return store_path.parent / f"{store_path.name}.split.json"


# -- grouping and stratification -------------------------------------------------------------------
def patient_groups(store: Store) -> np.ndarray:
    """Integer group per sample; a sample without a patient id is its own patient."""
    ids = [pid if pid else f"\0sample{i}" for i, pid in enumerate(store.patient_ids)]
    _, groups = np.unique(np.asarray(ids, dtype=object).astype(str), return_inverse=True)
    return groups.astype(np.int64)


def mask_present(store: Store) -> np.ndarray:
    """True for samples whose mask has any foreground; reads the memory map in chunks."""
    masks = store.masks
    if masks is None:
        raise StoreError(store.path / "masks.npy", "missing (segmentation store without masks)")
    row_bytes = max(1, int(np.prod(masks.shape[1:])) * masks.dtype.itemsize)
    chunk = max(1, _MASK_CHUNK_BYTES // row_bytes)
    out = np.empty(len(masks), dtype=bool)
    for start in range(0, len(masks), chunk):
        block = np.asarray(masks[start : start + chunk])
        out[start : start + len(block)] = block.reshape(len(block), -1).any(axis=1)
    return out


def strata(store: Store) -> np.ndarray | None:
    """The label each sample is stratified on, or None when there is nothing to stratify on.

    Classification: the class. Multi-label: the sample's positive label that is most frequent in
    the store (or "no finding"), so common labels stay balanced across partitions. Segmentation:
    whether the mask has foreground.
    """
    if store.task == "segmentation":
        return mask_present(store).astype(np.int64) if store.masks is not None else None
    labels = store.labels
    if labels is None:
        return None
    labels = np.asarray(labels)
    if store.task == "classification":
        return labels.reshape(len(labels)).astype(np.int64)
    positive = labels > 0.5
    order = np.argsort(-positive.sum(axis=0), kind="stable")  # label indices, most frequent first
    ranked = positive[:, order]
    return np.where(ranked.any(axis=1), order[ranked.argmax(axis=1)], -1)


def _store_meta(store: Store) -> dict[str, Any]:
    return {"store": {"path": str(store.path.resolve()), "checksum": store.checksum}}


def patient_leaks(patient_ids: np.ndarray, partitions: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Patients with samples in more than one partition: ``{"patient", "partitions": {name: n}}``,
    sorted by patient id. Samples without a patient id are their own patient and never leak."""
    where: dict[str, dict[str, int]] = {}
    for name, idx in partitions.items():
        ids, counts = np.unique(np.asarray(patient_ids, dtype=object)[idx].astype(str), return_counts=True)
        for pid, n in zip(ids.tolist(), counts.tolist()):
            if pid:
                where.setdefault(pid, {})[name] = int(n)
    return [{"patient": p, "partitions": parts} for p, parts in sorted(where.items()) if len(parts) > 1]


def _check_unique_patients(partitions: dict[str, np.ndarray], groups: np.ndarray) -> None:
    seen: dict[int, str] = {}
    for name, idx in partitions.items():
        for g in np.unique(groups[idx]):
            if seen.setdefault(int(g), name) != name:  # a bug, not a user error
                raise RuntimeError(f"patient group {g} in both {seen[int(g)]} and {name}")


def _class_presence(store: Store, idx: np.ndarray) -> np.ndarray | None:
    """Samples (classification) or positives (multi-label) per class in ``idx``; None otherwise."""
    labels = store.labels
    if labels is None or store.task == "segmentation":
        return None
    values = np.asarray(labels)[idx]
    if store.task == "classification":
        return np.bincount(values.reshape(-1).astype(np.int64), minlength=store.num_classes)
    return (values > 0.5).sum(axis=0)


def check_training_part(store: Store, partitions: dict[str, np.ndarray], *, labels: bool = True) -> None:
    """Refuse a split whose training part is empty or (``labels``: training learns the class labels)
    lacks a class the store has.

    A model cannot learn a class it never sees in training; its val/test samples would be scored as
    if it could. The message gives the class's samples per partition.
    """
    if len(partitions["train"]) == 0:
        raise InputError(store.path, "the split leaves no samples for training")
    if not labels:
        return
    counts = {name: _class_presence(store, idx) for name, idx in partitions.items()}
    if counts["train"] is None:
        return
    missing = [
        k
        for k in range(store.num_classes)
        if counts["train"][k] == 0 and any(c[k] for c in counts.values() if c is not None)
    ]
    if missing:
        k = missing[0]
        where = ", ".join(f"{name} {int(c[k])}" for name, c in counts.items() if c is not None)
        others = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(
            store.path,
            f"the split leaves class '{store.class_names[k]}' out of training ({where} samples){others}",
            hint="use smaller --val/--test fractions or fewer folds; the store has too few patients of it",
        )


# -- k-fold -----------------------------------------------------------------------------------------
def make_kfold_split(
    store: Store,
    *,
    folds: int = 5,
    val_fold: int | None = 0,
    test_fold: int | None = 1,
    seed: int = 0,
) -> Split:
    """Stratified k-fold by patient: fold ``test_fold`` is the test set, ``val_fold`` the validation
    set, the other folds train. ``None`` (or a negative fold) leaves that partition empty."""
    val_fold = None if val_fold is None or val_fold < 0 else val_fold
    test_fold = None if test_fold is None or test_fold < 0 else test_fold
    if folds < 2:
        raise ConfigError(f"folds must be at least 2, got {folds}")
    for name, fold in (("val fold", val_fold), ("test fold", test_fold)):
        if fold is not None and fold >= folds:
            raise ConfigError(f"{name} {fold} does not exist with {folds} folds (0..{folds - 1})")
    if val_fold is not None and val_fold == test_fold:
        raise ConfigError(f"val fold and test fold must differ (both {val_fold})")
    held_out = (val_fold is not None) + (test_fold is not None)
    if folds - held_out < 1:
        raise ConfigError(
            f"{folds} folds with a validation and a test fold leave no fold for training; "
            f"use --folds {held_out + 1} or more, or --test-fold -1"
        )

    groups = patient_groups(store)
    num_patients = int(groups.max()) + 1 if len(groups) else 0
    if num_patients < folds:
        raise InputError(store.path, f"cannot make {folds} folds: the store has only {num_patients} patients")
    y = strata(store)
    stratified = y is not None and len(np.unique(y)) > 1
    dummy = np.zeros(len(groups))
    fold_parts: list[np.ndarray] = []
    if stratified:
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            # "least populated class has fewer members than n_splits" is expected for rare classes.
            warnings.simplefilter("ignore", UserWarning)
            fold_parts = [test for _, test in splitter.split(dummy, y, groups)]
        if any(len(idx) == 0 for idx in fold_parts):
            # With about as many patients as folds, stratifying can leave a fold empty.
            log.info("stratified folds would leave one empty; splitting by patient without stratifying")
            stratified = False
    if not stratified:
        # GroupKFold is deterministic; shuffle the patients first so the seed matters.
        perm = np.random.default_rng(seed).permutation(num_patients)
        fold_parts = [test for _, test in GroupKFold(n_splits=folds).split(dummy, groups=perm[groups])]
    fold_of = np.empty(len(groups), dtype=np.int64)
    for f, idx in enumerate(fold_parts):
        fold_of[idx] = f
    val = np.flatnonzero(fold_of == val_fold) if val_fold is not None else np.empty(0, np.int64)
    test = np.flatnonzero(fold_of == test_fold) if test_fold is not None else np.empty(0, np.int64)
    train = np.flatnonzero((fold_of != val_fold) & (fold_of != test_fold))
    partitions = {"train": train, "val": val, "test": test}
    _check_unique_patients(partitions, groups)
    check_training_part(store, partitions)
    return Split(
        partitions,
        {
            **_store_meta(store),
            "method": "kfold",
            "params": {
                "folds": folds,
                "val_fold": val_fold,
                "test_fold": test_fold,
                "stratified_on": _stratified_on(store) if stratified else None,
            },
            "seed": seed,
            "few_shot": None,
        },
    )


def _stratified_on(store: Store) -> str:
    return {
        "classification": "class",
        "multilabel": "most frequent positive label",
        "segmentation": "mask present",
    }[store.task]


# -- fractions --------------------------------------------------------------------------------------
def make_fraction_split(
    store: Store, *, val: float = 0.1, test: float = 0.2, seed: int = 0, labels: bool = True
) -> Split:
    """Train/val/test by fractions of the samples, whole patients at a time, stratified.

    Patients are grouped by their most common stratum; within each, shuffled patients go to the
    partition furthest below its target sample count, so fractions hold per stratum and overall.
    ``labels``: the split is for training on the class labels, so every class must reach training
    (False for self-supervised use: only a training part is needed).
    """
    for name, frac in (("val", val), ("test", test)):
        if not 0 <= frac < 1:
            raise ConfigError(f"{name} fraction must be in [0, 1), got {frac}")
    if val + test >= 1:
        raise ConfigError(f"val + test fractions must leave a training part, got {val} + {test}")
    groups = patient_groups(store)
    num_patients = int(groups.max()) + 1
    wanted = 1 + (val > 0) + (test > 0)
    if num_patients < wanted:
        raise InputError(
            store.path, f"cannot make {wanted} partitions by patient: the store has only {num_patients}"
        )
    y = strata(store)
    sizes = np.bincount(groups, minlength=num_patients)
    if y is None:
        patient_stratum = np.zeros(num_patients, dtype=np.int64)
    else:
        # Most common stratum of each patient (ties -> smallest value).
        values, y_code = np.unique(y, return_inverse=True)
        table = np.zeros((num_patients, len(values)), dtype=np.int64)
        np.add.at(table, (groups, y_code), 1)
        patient_stratum = table.argmax(axis=1)
    fractions = np.array([1.0 - val - test, val, test])
    rng = np.random.default_rng(seed)
    assign = np.empty(num_patients, dtype=np.int64)
    target, have = np.zeros(3), np.zeros(3)
    # Ties go to the smaller partition, which rounding would otherwise starve.
    tie_break = np.where(fractions > 0, 1e-9 * (1 - fractions), -np.inf)
    for s in np.unique(patient_stratum):
        members = rng.permutation(np.flatnonzero(patient_stratum == s))
        # Targets accumulate over strata, so rounding left by one stratum is made up in the next.
        target += fractions * sizes[members].sum()
        for p in members:
            part = int(np.argmax(target - have + tie_break))
            assign[p] = part
            have[part] += sizes[p]
    # Tiny stores: make sure every requested partition got a patient, taking the smallest from train,
    # preferably one whose stratum keeps another patient in train.
    for part in (1, 2):
        if fractions[part] > 0 and not (assign == part).any():
            donors = np.flatnonzero(assign == 0)
            in_train = np.bincount(patient_stratum[donors], minlength=patient_stratum.max() + 1)
            spare = donors[in_train[patient_stratum[donors]] > 1]
            pool = spare if spare.size else donors
            assign[pool[np.argmin(sizes[pool])]] = part
    sample_part = assign[groups]
    partitions = {name: np.flatnonzero(sample_part == i) for i, name in enumerate(PARTITIONS)}
    _check_unique_patients(partitions, groups)
    check_training_part(store, partitions, labels=labels)
    return Split(
        partitions,
        {
            **_store_meta(store),
            "method": "fraction",
            "params": {
                "val": val,
                "test": test,
                "stratified_on": _stratified_on(store) if y is not None else None,
            },
            "seed": seed,
            "few_shot": None,
        },
    )


# -- few-shot ---------------------------------------------------------------------------------------
def few_shot(split: Split, store: Store, fraction: float, seed: int = 0) -> Split:
    """Keep ``fraction`` of each class of the training part (at least one sample per class).

    With the same seed, a smaller fraction is a subset of a larger one (nested learning curves).
    Validation and test partitions are unchanged.
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction}")
    train = np.asarray(split.partitions["train"], dtype=np.int64)
    y = strata(store)
    y_train = np.zeros(len(train), dtype=np.int64) if y is None else y[train]
    rng = np.random.default_rng(seed)
    keep = []
    for value in np.unique(y_train):
        members = train[y_train == value]
        take = max(1, int(np.floor(fraction * len(members) + 0.5)))  # round half up
        keep.append(rng.permutation(members)[:take])
    kept = np.sort(np.concatenate(keep)) if keep else train
    meta = dict(split.meta)
    meta["few_shot"] = {"fraction": fraction, "seed": seed, "train_before": len(train)}
    return Split({**split.partitions, "train": kept}, meta)


# -- loading ----------------------------------------------------------------------------------------
def _check_split_store(path: Path, recorded: Any, store: Store) -> None:
    """Refuse a split made for other content: another store, or this one prepared again with other
    images, labels or patients (the checksum covers all of them)."""
    recorded = recorded if isinstance(recorded, dict) else {}
    if recorded.get("checksum") == store.checksum:
        return
    hint = f"run `medtl data split {store.path}` to make one for this store"
    if recorded.get("checksum") == store.checksums.get("images.npy"):
        raise StoreError(
            path,
            "split file predates splits tied to the store's labels and patients (it names the images' "
            "checksum only), so it cannot be vouched for",
            hint=hint + " (the same options and seed give the same partitions)",
        )
    where = recorded.get("path", "unknown")
    if where == str(store.path.resolve()):
        problem = "split file was made for an earlier version of this store (its images, labels or "
        problem += "patients changed since)"
    else:
        problem = f"split file was made for another store ({where}), not {store.path}"
    raise StoreError(path, problem, hint=hint)


def load_split(path: str | Path, store: Store) -> Split:
    """Read a split file and check that it belongs to ``store`` and fits it."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(path, "split file not found", hint=f"run `medtl data split {store.path}` first")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(path, f"not a JSON split file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != SPLIT_FORMAT:
        raise StoreError(path, f"not a medtl split file (format is not '{SPLIT_FORMAT}')")
    if data.get("format_version", 0) > SPLIT_FORMAT_VERSION:
        raise StoreError(
            path, f"split format {data['format_version']} is newer than this medtl understands; upgrade medtl"
        )
    _check_split_store(path, data.get("store"), store)
    try:
        partitions = {
            name: np.asarray(data["partitions"].get(name, []), dtype=np.int64) for name in PARTITIONS
        }
    except (AttributeError, KeyError, TypeError, ValueError):
        raise StoreError(path, "malformed partitions (expected lists of sample indices)") from None
    seen = np.zeros(len(store), dtype=bool)
    for name, idx in partitions.items():
        if idx.size and (idx.min() < 0 or idx.max() >= len(store)):
            raise StoreError(path, f"partition '{name}' has indices outside the store's {len(store)} samples")
        if seen[idx].any() or len(np.unique(idx)) != len(idx):
            raise StoreError(path, f"partition '{name}' repeats samples of another partition or itself")
        seen[idx] = True
    meta = {k: v for k, v in data.items() if k not in ("format", "format_version", "counts", "partitions")}
    return Split(partitions, meta)


# -- the `medtl data split` entry point -------------------------------------------------------------
def split_store(
    store_path: str | Path,
    *,
    folds: int = 5,
    val_fold: int | None = 0,
    test_fold: int | None = 1,
    val: float | None = None,
    test: float | None = None,
    fraction: float | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> tuple[Split, Path]:
    """Make a k-fold split (or a fraction split when ``val`` or ``test`` is given), optionally a
    few-shot subset of its training part, and write it (default: ``<store>.split.json``).

    The labels and patients it splits by are verified against the manifest first."""
    store = Store(store_path)
    store.verify(quick=True)
    if fraction is not None and not 0 < fraction <= 1:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction}")
    if val is not None or test is not None:
        split = make_fraction_split(store, val=val or 0.0, test=test or 0.0, seed=seed)
    else:
        split = make_kfold_split(store, folds=folds, val_fold=val_fold, test_fold=test_fold, seed=seed)
    if fraction is not None:
        split = few_shot(split, store, fraction, seed=seed)
    path = split.save(out if out is not None else default_split_path(store.path), overwrite=overwrite)
    return split, path
