"""Probes: heads trained on cached features (``medtl extract`` output), with per-epoch curves.

Heads:

* ``logreg``: scikit-learn logistic regression on standardised features (L2, ``C``; one-vs-rest
  for multilabel); no epochs, so its curve has one row.
* ``linear``: one ``nn.Linear`` trained with Adam.
* ``mlp-64-32``, ``mlp-512-256-256-128`` (the study's heads) and any ``mlp-<w1>-<w2>-...``:
  Linear + ReLU per hidden width, then the output layer, trained with Adam (the study: lr 5e-5,
  up to 500 epochs).

Outputs are those of a run of the same task (see ``medtl.objectives.classification``): one logit + BCE for
binary, K logits + cross-entropy for multiclass, K logits + BCE for multilabel. Every epoch records
train loss, validation loss and AUROC, and test AUROC (the study's curves). With ``patience``,
training stops when validation AUROC has not improved for that many epochs and the best epoch's
weights are kept; otherwise the last epoch's are. The output directory holds ``curves.csv``,
``probe.json`` (settings, curves, full metrics of the final head on val and test) and, for torch
heads, ``head.safetensors``.
"""

from __future__ import annotations

import csv
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medtl.engine import resolve_device, write_json
from medtl.errors import ConfigError, InputError, UnknownChoiceError
from medtl.io.features import FeatureSet, FeatureSplit, labels_file, load_features
from medtl.io.paths import PROBE, guard_output, replace_dir
from medtl.metrics.classification import auroc, classification_metrics, metric_task
from medtl.objectives.classification import TaskKind, make_loss, num_outputs, scores_from_logits
from medtl.progress import NULL_PROGRESS, Progress

HEAD_WIDTHS: dict[str, tuple[int, ...]] = {
    "linear": (),
    "mlp-64-32": (64, 32),
    "mlp-512-256-256-128": (512, 256, 256, 128),
}
HEADS: tuple[str, ...] = ("logreg", *HEAD_WIDTHS)
DEFAULT_LR = {"linear": 1e-3, "mlp": 5e-5}  # mlp: the study's Adam learning rate
CURVE_COLUMNS = ("epoch", "train_loss", "val_loss", "val_auroc", "test_auroc")
EVAL_CHUNK = 8192


def head_widths(head: str) -> tuple[int, ...]:
    """Hidden widths of a torch head name ("linear", "mlp-64-32", "mlp-<w1>-<w2>-...")."""
    if head in HEAD_WIDTHS:
        return HEAD_WIDTHS[head]
    parts = head.split("-")
    if parts[0] == "mlp" and len(parts) > 1 and all(p.isdigit() and int(p) > 0 for p in parts[1:]):
        return tuple(int(p) for p in parts[1:])
    raise UnknownChoiceError("probe head", head, HEADS)


def build_head(head: str, in_features: int, outputs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_features
    for hidden in head_widths(head):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)


@dataclass
class ProbeSettings:
    """How a probe trains; ``lr`` None means 1e-3 for ``linear`` and 5e-5 (the study's) for MLPs."""

    head: str = "linear"
    epochs: int = 500
    lr: float | None = None
    batch_size: int = 64
    weight_decay: float = 0.0
    patience: int | None = None
    c: float = 1.0
    seed: int = 0
    device: str = "auto"

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return DEFAULT_LR["linear" if self.head == "linear" else "mlp"]


@dataclass
class ProbeResult:
    """``curves``: one dict per epoch (CURVE_COLUMNS); ``metrics``: full classification metrics
    of the final head per evaluated split; ``best_epoch``: epoch of the highest validation AUROC."""

    head: str
    task: str
    settings: dict[str, Any]
    curves: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    best_epoch: int | None = None
    stopped_early: bool = False
    out: Path | None = None

    def final(self, split: str, name: str = "auroc") -> float:
        return self.metrics.get(split, {}).get(name, math.nan)

    def to_dict(self) -> dict[str, Any]:
        return {
            "head": self.head,
            "task": self.task,
            "settings": self.settings,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "epochs_run": len(self.curves),
            "curves": self.curves,
            "metrics": self.metrics,
        }


def _np_loss(scores: np.ndarray, y: np.ndarray, task: TaskKind) -> float:
    """Mean cross-entropy of probabilities (the logreg curve's losses)."""
    p = np.clip(scores, 1e-7, 1 - 1e-7)
    if task == "multiclass":
        return float(-np.log(p[np.arange(len(y)), y]).mean())
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def _check_train_labels(features: FeatureSet, task: TaskKind) -> None:
    labels = features.splits["train"].labels
    path = labels_file(features.path, "train")
    if len(labels) == 0:
        raise InputError(path, "has no samples")
    if task != "multilabel" and len(np.unique(labels)) < 2:
        raise InputError(path, "holds one class only; a probe needs at least two")


def _prepare_output(out: Path, features: Path, overwrite: bool) -> Path:
    # Inside the features directory is the default place (<features>/probe-<head>).
    guard_output(out, PROBE, inputs=[features], overwrite=overwrite, allow_inside=True)
    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def train_probe(
    features: str | Path | FeatureSet,
    settings: ProbeSettings | None = None,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> ProbeResult:
    """Train one head on a features directory's train split; evaluate on val and test when present.

    Writes into ``out`` (default ``<features>/probe-<head>``) and returns the result.
    """
    settings = settings or ProbeSettings()
    if settings.head != "logreg":
        head_widths(settings.head)
    if settings.epochs < 1:
        raise ConfigError(f"probe epochs must be at least 1, got {settings.epochs}")
    fs = features if isinstance(features, FeatureSet) else load_features(features)
    if "train" not in fs.splits:
        listed = ", ".join(fs.splits) or "none"
        raise InputError(
            fs.path / "features.json",
            f"has no 'train' split (splits: {listed})",
            hint="split the store with `medtl data split STORE`, then extract the features again",
        )
    if settings.patience is not None and "val" not in _eval_splits(fs):
        raise ConfigError(
            "early stopping (--patience) needs a non-empty 'val' split in the features directory"
        )
    task: TaskKind = metric_task(fs.task, len(fs.class_names))
    _check_train_labels(fs, task)
    out_dir = Path(out) if out is not None else fs.path / f"probe-{settings.head}"
    tmp = _prepare_output(out_dir, fs.path, overwrite)
    try:
        if settings.head == "logreg":
            result = _train_logreg(fs, task, settings)
        else:
            result = _train_torch(fs, task, settings, tmp, progress)
        result.out = out_dir
        _write_curves(tmp / "curves.csv", result.curves)
        write_json(
            tmp / "probe.json",
            {"format": "medtl-probe", **result.to_dict(), "features": str(fs.path), "backbone": fs.backbone},
        )
        replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _write_curves(path: Path, curves: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CURVE_COLUMNS)
        writer.writeheader()
        for row in curves:
            writer.writerow(
                {
                    k: "" if v is None or (isinstance(v, float) and math.isnan(v)) else v
                    for k, v in row.items()
                }
            )


def _eval_splits(fs: FeatureSet) -> list[str]:
    """The evaluation splits present and not empty."""
    return [s for s in ("val", "test") if s in fs.splits and len(fs.splits[s])]


# -- logistic regression -------------------------------------------------------------------------


def _train_logreg(fs: FeatureSet, task: TaskKind, settings: ProbeSettings) -> ProbeResult:
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train = fs.splits["train"]
    base = LogisticRegression(C=settings.c, max_iter=2000, random_state=settings.seed)
    classifier = OneVsRestClassifier(base) if task == "multilabel" else base
    model = make_pipeline(StandardScaler(), classifier)
    model.fit(train.features, train.labels)
    k = len(fs.class_names)

    def scores_of(part: FeatureSplit) -> np.ndarray:
        proba = model.predict_proba(part.features)
        if task == "multilabel":
            return proba
        full = np.zeros((len(part), k))
        full[:, model.classes_] = proba  # classes missing from train keep probability 0
        return full[:, 1] if task == "binary" else full

    row: dict[str, Any] = {"epoch": 1, "train_loss": _np_loss(scores_of(train), train.labels, task)}
    metrics: dict[str, dict[str, Any]] = {}
    for split in _eval_splits(fs):
        part = fs.splits[split]
        scores = scores_of(part)
        metrics[split] = classification_metrics(part.labels, scores, task, fs.class_names)
        row[f"{split}_auroc"] = metrics[split]["auroc"]
        if split == "val":
            row["val_loss"] = _np_loss(scores, part.labels, task)
    row = {c: row.get(c, math.nan) for c in CURVE_COLUMNS}
    return ProbeResult(
        head="logreg",
        task=task,
        settings={"head": "logreg", "c": settings.c, "seed": settings.seed, "standardised": True},
        curves=[row],
        metrics=metrics,
        best_epoch=1 if "val" in metrics else None,
    )


# -- torch heads ---------------------------------------------------------------------------------


def _logits(head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([head(chunk) for chunk in x.split(EVAL_CHUNK)]) if len(x) else head(x)


def _train_torch(
    fs: FeatureSet, task: TaskKind, settings: ProbeSettings, tmp: Path, progress: Progress
) -> ProbeResult:
    from safetensors.torch import save_file

    device = resolve_device(settings.device)
    torch.manual_seed(settings.seed)
    outputs = num_outputs(task, len(fs.class_names))
    head = build_head(settings.head, fs.dim, outputs).to(device)
    lr = settings.resolved_lr()
    optimizer = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=settings.weight_decay)
    loss_fn = make_loss(task, None, 0.0).to(device)
    target_dtype = torch.float32 if task != "multiclass" else torch.int64

    def tensors(part: FeatureSplit) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.from_numpy(part.features).to(device),
            torch.from_numpy(np.asarray(part.labels)).to(device, target_dtype),
        )

    x_train, y_train = tensors(fs.splits["train"])
    evals = {s: tensors(fs.splits[s]) for s in _eval_splits(fs)}
    generator = torch.Generator().manual_seed(settings.seed)
    curves: list[dict[str, Any]] = []
    best_value, best_epoch, best_state, since_best = -math.inf, None, None, 0
    stopped_early = False
    task_id = progress.start(f"probe {settings.head}", total=settings.epochs)
    for epoch in range(1, settings.epochs + 1):
        head.train()
        order = torch.randperm(len(x_train), generator=generator).to(device)
        total = 0.0
        for batch in order.split(settings.batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(head(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        row: dict[str, Any] = {"epoch": epoch, "train_loss": total / len(x_train)}
        head.eval()
        with torch.no_grad():
            for split in ("val", "test"):
                if split not in evals:
                    row[f"{split}_auroc"] = math.nan
                    continue
                x, y = evals[split]
                logits = _logits(head, x)
                scores = scores_from_logits(logits, task).cpu().numpy()
                row[f"{split}_auroc"] = auroc(y.cpu().numpy(), scores, task)
                if split == "val":
                    row["val_loss"] = float(loss_fn(logits, y))
        row = {c: row.get(c, math.nan) for c in CURVE_COLUMNS}
        curves.append(row)
        progress.advance(task_id, loss=row["train_loss"], val_auroc=row["val_auroc"])
        value = row["val_auroc"]
        if not math.isnan(value) and value > best_value:
            best_value, best_epoch, since_best = value, epoch, 0
            if settings.patience is not None:
                best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
        else:
            since_best += 1
        if settings.patience is not None and since_best >= settings.patience:
            stopped_early = epoch < settings.epochs
            break
    progress.end(task_id)
    if best_state is not None:
        head.load_state_dict(best_state)
    head.eval()
    metrics: dict[str, dict[str, Any]] = {}
    with torch.no_grad():
        for split, (x, y) in evals.items():
            scores = scores_from_logits(_logits(head, x), task).cpu().numpy()
            metrics[split] = classification_metrics(y.cpu().numpy(), scores, task, fs.class_names)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()},
        str(tmp / "head.safetensors"),
        metadata={
            "head": settings.head,
            "in_features": str(fs.dim),
            "num_outputs": str(outputs),
            "task": task,
        },
    )
    recorded = asdict(settings) | {"lr": lr, "device": str(device)}
    return ProbeResult(
        head=settings.head,
        task=task,
        settings=recorded,
        curves=curves,
        metrics=metrics,
        best_epoch=best_epoch,
        stopped_early=stopped_early,
    )
