"""Initialising a model: random, ImageNet from the local cache, or a checkpoint from elsewhere.

Checkpoints are read with ``torch.load(weights_only=True)`` (never arbitrary unpickling) or
safetensors, unwrapped (``state_dict`` / ``model`` / ``resnet``), their format detected from the keys,
converted to the backbone's native key names by a pure ``(state_dict, backbone) -> state_dict``
function, and loaded with a report of what matched. medtl writes its own checkpoints as safetensors.

Which tensors load never depends on chance: when two parts of a checkpoint fit the backbone equally
well (a MoCo base and momentum encoder) and no converter decides, loading fails naming both. A
partial load (``allow_partial``) warns with the share of the backbone's weights it loaded and is
refused below ``min_loaded_fraction`` (default 0.5; 0 loads whatever fits).

The model is typed by the small ``InitTarget`` protocol rather than TransferModel, so this module
does not import the model it fills (no import cycle through the registry).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import pickle
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from medtl.errors import CheckpointError, UnknownChoiceError
from medtl.models.backbone import MODEL_PREFIX, Backbone
from medtl.models.weights import default_weights_dir, find_imagenet_weights, imagenet_location

__all__ = [
    "LoadReport",
    "default_weights_dir",
    "detect_format",
    "find_imagenet_weights",
    "imagenet_location",
    "load_init",
    "load_model_weights",
    "read_model_metadata",
    "save_model",
]

log = logging.getLogger("medtl")

WRAPPER_KEYS = ("state_dict", "model", "resnet")
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".tar", ".bin", ".ckpt", ".safetensors")
# Parts of pretraining checkpoints that are not the backbone: classifiers, SSL projection and
# prototype heads, MoCo's key encoder and queue, PIRL/InfoMin jigsaw heads.
EXTRA_KEY_PARTS = frozenset(
    {
        "fc",
        "classifier",
        "head",
        "heads",
        "head_jig",
        "fc_jig",
        "jigsaw",
        "projection",
        "projection_head",
        "projector",
        "prototypes",
        "predictor",
        "queue",
        "queue_ptr",
        "encoder_k",
        "memory",
    }
)
BACKBONE_KEY = "backbone." + MODEL_PREFIX
HEAD_PREFIX, MODULE_PREFIX = "head.", "module."
MEDTL_FORMAT = "medtl"
# With allow_partial, the least share of the backbone's weights (by element count) that must load.
MIN_LOADED_FRACTION = 0.5


class InitTarget(Protocol):
    """What initialisation needs of a model (a TransferModel): its backbone and its parameters."""

    backbone: Backbone
    spec: dict[str, Any]

    def named_parameters(self) -> Iterator[tuple[str, torch.nn.Parameter]]: ...

    def state_dict(self) -> dict[str, Tensor]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = ...) -> Any: ...


# ----------------------------------------------------------------------------------------- reports


@dataclass
class LoadReport:
    """What an initialisation did. Model-side names are full TransferModel parameter names;
    ``unexpected`` and ``dropped`` are checkpoint keys (after format conversion)."""

    source: str
    format: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    loaded_fraction: float | None = None  # share of the backbone's weights (elements) that loaded
    # Parts the model was built with pretrained (an Adaptor's image path): part -> source.
    pretrained: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        if self.format == "random":
            return "random initialisation"
        share = (
            "" if self.loaded_fraction is None else f", {self.loaded_fraction:.0%} of the backbone's weights"
        )
        parts = [
            f"loaded {len(self.loaded)} tensors from {self.source} ({self.format}{share})",
            f"missing {len(self.missing)}",
            f"shape-mismatched {len(self.mismatched)}",
            f"unexpected {len(self.unexpected)}",
            f"dropped {len(self.dropped)} (classifier/projection/...)",
        ]
        new_parts = sorted({n.split(".")[0] for n in self.new})
        if new_parts:
            parts.append("new: " + ", ".join(new_parts))
        parts += [f"{part} from {source}" for part, source in self.pretrained.items()]
        lines = ["; ".join(parts)]
        for label, names in (
            ("missing", self.missing),
            ("mismatched", self.mismatched),
            ("unexpected", self.unexpected),
        ):
            if names:
                lines.append(f"  {label}: " + ", ".join(names[:5]) + (" ..." if len(names) > 5 else ""))
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------- reading


def read_checkpoint(path: Path) -> tuple[Mapping[str, Any], dict[str, str]]:
    """(raw checkpoint object, safetensors metadata) without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(str(path), "pt") as f:
                metadata = dict(f.metadata() or {})
            return load_file(str(path)), metadata
        except (SafetensorError, OSError) as e:
            raise CheckpointError(path, f"not a readable safetensors file ({e})") from e
    try:
        # argparse.Namespace holds the training options in several SSL checkpoints; it can only
        # rebuild plain attributes, so allowing it keeps weights_only's guarantee. torch warns about
        # pickle protocols it was not written with; the error below (if any) says what matters.
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found is None:  # not a pickle of anything: random or foreign bytes
            raise CheckpointError(path, f"not a readable PyTorch checkpoint ({_first_line(e)})") from e
        raise CheckpointError(
            path,
            f"refusing to unpickle a Python object ({found.group(1)}); only tensors and plain "
            "containers are read",
            hint="re-save just the state dict from a trusted environment: "
            "torch.save(torch.load(f, weights_only=False)['state_dict'], 'clean.pth')",
        ) from e
    except Exception as e:  # a damaged or foreign file fails in many ways (KeyError, EOFError, ...)
        raise CheckpointError(path, f"not a readable PyTorch checkpoint ({_first_line(e)})") from e
    if not isinstance(obj, Mapping):
        raise CheckpointError(path, f"expected a dict of tensors, found {type(obj).__name__}")
    return obj, {}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


def unwrap(obj: Mapping[str, Any]) -> tuple[dict[str, Tensor], list[str]]:
    """(state dict, wrapper keys that were removed, outermost first). A state dict's values are
    tensors, never dicts, so a wrapper key holding a dict is always a level to descend."""
    wrappers: list[str] = []
    while (key := next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)) is not None:
        wrappers.append(key)
        obj = obj[key]
    return {k: v for k, v in obj.items() if isinstance(v, Tensor)}, wrappers


def _has_prefix(keys: list[str], pattern: str) -> bool:
    rx = re.compile(pattern)
    return any(rx.match(k) for k in keys)


def detect_format(state_dict: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> str:
    """Name the checkpoint's format from its keys (wrapped or not): "medtl", "mocov3", "moco", "cmc",
    "infomin", "in-domain", "swav", "torchvision", "plain" or "timm"."""
    if metadata and metadata.get("format") == MEDTL_FORMAT:
        return MEDTL_FORMAT
    sd, wrappers = unwrap(state_dict)
    keys = list(sd)
    if any(k.startswith(BACKBONE_KEY) for k in keys):
        return MEDTL_FORMAT
    if _has_prefix(keys, r"(module\.)?base_encoder\.") and _has_prefix(
        keys, r"(module\.)?momentum_encoder\."
    ):
        return "mocov3"  # base + momentum encoder (+ predictor)
    if _has_prefix(keys, r"(module\.)?encoder_q\."):  # MoCo v1/v2, PCL
        return "moco"
    if _has_prefix(keys, r"module\.encoder1\."):  # CMC
        return "cmc"
    if _has_prefix(keys, r"module\.encoder\."):  # InfoMin, InsDis, PIRL
        return "infomin"
    if _has_prefix(keys, r"module\."):  # DataParallel: SwAV, DeepCluster-v2, SeLa-v2, in-domain
        return "in-domain" if "state_dict" in wrappers else "swav"
    torchvision_like = ("conv1.weight" in sd and _has_prefix(keys, r"layer1\.")) or _has_prefix(
        keys, r"features\.(conv0|denseblock1)"
    )
    if torchvision_like:
        return "torchvision" if "fc.weight" in sd or "classifier.weight" in sd else "plain"
    return "timm"


# -------------------------------------------------------------------------------------- converters

Converter = Callable[[Mapping[str, Tensor], Backbone], dict[str, Tensor]]

_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def fix_densenet_keys(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Old DenseNet checkpoints (CheXNet and its kin) spell ``norm.1``; torchvision now ``norm1``."""
    out = {}
    for k, v in state_dict.items():
        m = _OLD_DENSENET_KEY.match(k)
        out[m.group(1) + m.group(2) if m else k] = v
    return out


def _strip(prefix: str) -> Converter:
    """Keep the keys under ``prefix`` (with or without DataParallel's ``module.``), without it."""
    rx = re.compile(rf"^(?:module\.)?{re.escape(prefix)}" if prefix else r"^(?:module\.)?")

    def convert(state_dict: Mapping[str, Tensor], backbone: Backbone) -> dict[str, Tensor]:
        out = {rx.sub("", k): v for k, v in state_dict.items() if rx.match(k)}
        return fix_densenet_keys(out)

    return convert


_MOCOV3_BASE = re.compile(r"^(?:module\.)?base_encoder\.")


def convert_mocov3(state_dict: Mapping[str, Tensor], backbone: Backbone) -> dict[str, Tensor]:
    """MoCo v3: the base encoder, as MoCo v3's own linear evaluation (``main_lincls.py``) loads it.

    The momentum encoder and the predictor are dropped, and so is the base encoder's ``fc`` (ResNet)
    or ``head`` (ViT): in MoCo v3 that is the projection MLP, not a classifier.
    """
    out = {}
    for key, value in state_dict.items():
        if _MOCOV3_BASE.match(key):
            name = _MOCOV3_BASE.sub("", key)
            if name.split(".", 1)[0] not in ("fc", "head"):
                out[name] = value
    return fix_densenet_keys(out)


def convert_torchvision(state_dict: Mapping[str, Tensor], backbone: Backbone) -> dict[str, Tensor]:
    return fix_densenet_keys(state_dict)


def convert_timm(state_dict: Mapping[str, Tensor], backbone: Backbone) -> dict[str, Tensor]:
    """timm's own converter beside the architecture (``checkpoint_filter_fn``): remaps original
    releases (FB, OpenCLIP, DINOv2) and resizes position embeddings to the model's image size."""
    state_dict = dict(state_dict)
    if backbone.source != "timm":
        return state_dict
    filter_fn = getattr(sys.modules[type(backbone.model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is None:
        return state_dict
    try:
        return dict(filter_fn(state_dict, backbone.model))
    except (KeyError, AttributeError, RuntimeError) as e:
        # Filters assume a full model; a truncated one can trip them, and the keys usually fit anyway.
        log.warning("timm checkpoint filter for %s failed (%s); using the keys as they are", backbone.name, e)
        return state_dict


CONVERTERS: dict[str, Converter] = {
    "torchvision": convert_torchvision,
    "plain": convert_torchvision,
    "mocov3": convert_mocov3,
    "moco": _strip("encoder_q."),
    "cmc": _strip("encoder1."),
    "infomin": _strip("encoder."),
    "swav": _strip(""),
    "in-domain": _strip(""),
    "timm": convert_timm,
}


def _align_prefix(
    state_dict: dict[str, Tensor], expected: Mapping[str, Any], source: str
) -> dict[str, Tensor]:
    """Strip leading key components (``densenet121.``, ``model.``, ``backbone.``) while that makes
    more keys match the model: in-domain checkpoints nest the network under their own attribute.

    Candidates are tried in sorted order, and two that fit equally well are an error naming both:
    picking one would load a different network depending on the interpreter's hash seed.
    """
    for _ in range(3):
        matched = sum(k in expected for k in state_dict)
        firsts = sorted({k.split(".", 1)[0] for k in state_dict if "." in k})
        fits = {
            first: sum(k.split(".", 1)[1] in expected for k in state_dict if k.startswith(first + "."))
            for first in firsts
        }
        best_matched = max([matched, *fits.values()])
        best = [first for first, n in fits.items() if n == best_matched and n > matched]
        if not best:
            return state_dict
        if len(best) > 1:
            raise CheckpointError(
                source,
                f"holds {len(best)} networks that fit the backbone equally well "
                f"({', '.join(repr(b + '.') for b in best)}: {best_matched} tensors each); "
                "medtl will not guess which one to load",
                hint="save the one you want as its own state dict, e.g. "
                f"{{k[len('{best[0]}.'):]: v for k, v in sd.items() if k.startswith('{best[0]}.')}}",
            )
        prefix = best[0] + "."
        state_dict = {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state_dict.items()}
    return state_dict


def _adapt_input_channels(
    state_dict: dict[str, Tensor], backbone: Backbone, expected: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """Sum or repeat the first conv's input channels for ``in_chans`` (as timm does for pretrained)."""
    from timm.models import adapt_input_conv

    key = backbone.first_conv + ".weight"
    w, target = state_dict.get(key), expected.get(key)
    if (
        w is not None
        and target is not None
        and w.ndim == 4
        and w.shape[1] != target.shape[1]
        and (w.shape[0], w.shape[2:]) == (target.shape[0], target.shape[2:])
    ):
        state_dict[key] = adapt_input_conv(target.shape[1], w)
    return state_dict


def _is_extra(key: str, backbone: Backbone) -> bool:
    classifier = backbone.pretrained_cfg.get("classifier") or ()
    classifiers = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    if any(key.startswith(c + ".") for c in classifiers):
        return True
    return any(part in EXTRA_KEY_PARTS for part in key.split(".")[:-1])


# ----------------------------------------------------------------------------------------- loading


def _load_backbone(
    model: InitTarget,
    native: dict[str, Tensor],
    original: Mapping[str, Tensor],
    *,
    source: str,
    fmt: str,
    allow_partial: bool,
    min_loaded_fraction: float = MIN_LOADED_FRACTION,
) -> LoadReport:
    backbone: Backbone = model.backbone
    expected = backbone.native_state_dict()
    native = _align_prefix(native, expected, source)
    kept_ids = {id(v) for v in native.values()}
    native = _adapt_input_channels(native, backbone, expected)
    report = LoadReport(source=source, format=fmt)
    report.dropped = [k for k, v in original.items() if id(v) not in kept_ids and k not in native]
    to_load = {}
    for k, v in native.items():
        if k in expected:
            if expected[k].shape == v.shape:
                to_load[k] = v
            else:
                report.mismatched.append(BACKBONE_KEY + k)
        elif _is_extra(k, backbone):
            report.dropped.append(k)
        else:
            report.unexpected.append(k)
    if not to_load:
        sample = ", ".join(list(native or original)[:2]) or "none"
        raise CheckpointError(
            source,
            f"no keys match backbone '{backbone.name}' (checkpoint: {sample}; "
            f"model: {', '.join(list(expected)[:2])})",
        )
    report.missing = [
        BACKBONE_KEY + k for k in expected if k not in to_load and not k.endswith("num_batches_tracked")
    ]
    report.missing = [m for m in report.missing if m not in report.mismatched]
    if report.missing or report.mismatched:
        _check_partial(report, to_load, expected, backbone, allow_partial, min_loaded_fraction)
    backbone.model.load_state_dict(to_load, strict=False)
    report.loaded = [BACKBONE_KEY + k for k in to_load]
    pretrained: dict[str, str] = dict(getattr(model, "pretrained_parts", {}))
    report.pretrained = pretrained
    report.new = [
        n
        for n, _ in model.named_parameters()
        if not n.startswith("backbone.") and n.split(".")[0] not in pretrained
    ]
    return report


def _check_partial(
    report: LoadReport,
    to_load: Mapping[str, Tensor],
    expected: Mapping[str, Tensor],
    backbone: Backbone,
    allow_partial: bool,
    min_loaded_fraction: float,
) -> None:
    """Refuse a partial load unless allowed; an allowed one warns, and is refused when it fills less
    than ``min_loaded_fraction`` of the backbone's weights (shapes that match by accident, as when two
    half-width networks are loaded into one)."""
    source = report.source
    first = (report.missing + report.mismatched)[0]
    counts = (
        f"{len(report.missing)} backbone tensors missing and {len(report.mismatched)} of another shape "
        f"for '{backbone.name}' (first: {first})"
    )
    if not allow_partial:
        raise CheckpointError(source, f"{counts}; pass --allow-partial to load anyway")
    weights = {k: v for k, v in expected.items() if v.is_floating_point()}
    total = sum(v.numel() for v in weights.values())
    fitting = [k for k in to_load if k in weights]
    report.loaded_fraction = sum(weights[k].numel() for k in fitting) / total if total else 0.0
    share = f"{len(fitting)} of {len(weights)} tensors, {_percent(report.loaded_fraction)} of its weights"
    if report.loaded_fraction < min_loaded_fraction:
        raise CheckpointError(
            source,
            f"only {share} fit '{backbone.name}' ({counts}); below the {min_loaded_fraction:g} the "
            "backbone needs to count as initialised from it",
            hint="pass --min-loaded-fraction 0 to load the tensors that fit anyway",
        )
    log.warning("%s: partial load into '%s': %s; the rest stay random", source, backbone.name, share)


def _percent(fraction: float) -> str:
    """``25%``; one decimal where rounding would show a part as none or all (``99.6%``)."""
    text = f"{fraction:.0%}"
    if text not in ("0%", "100%") or not 0 < fraction < 1:
        return text
    tenths = math.ceil(fraction * 1000) if fraction < 0.5 else math.floor(fraction * 1000)
    return f"{tenths / 10:.1f}%"


def _load_full(
    model: InitTarget, state_dict: Mapping[str, Tensor], *, source: str, allow_partial: bool, strict: bool
) -> LoadReport:
    """Load medtl's own checkpoint (TransferModel keys)."""
    expected = model.state_dict()
    report = LoadReport(source=source, format=MEDTL_FORMAT)
    to_load = {}
    for k, v in state_dict.items():
        if k not in expected:
            report.unexpected.append(k)
        elif expected[k].shape != v.shape:
            report.mismatched.append(k)
        else:
            to_load[k] = v
    if not hasattr(model, "backbone"):  # a module trained on cached embeddings (the Adaptor)
        if not to_load:
            first = next(iter(state_dict), "")
            raise CheckpointError(source, f"no keys match the {type(model).__name__} (checkpoint: {first})")
    elif not any(k.startswith("backbone.") for k in to_load):
        raise CheckpointError(
            source,
            f"no keys match backbone '{model.backbone.name}' (checkpoint: {next(iter(state_dict), '')})",
        )
    head_mismatch = [k for k in report.mismatched if k.startswith(HEAD_PREFIX)]
    if head_mismatch and not allow_partial:
        # head.weight, or the conv of a U-Net's head (head.0.weight)
        key = max(head_mismatch, key=lambda k: expected[k].ndim)
        raise CheckpointError(
            source,
            f"classifier shape mismatch: checkpoint head {tuple(state_dict[key].shape)}, "
            f"model head {tuple(expected[key].shape)} (outputs x features)",
            hint=None if strict else "pass --allow-partial to start a new head",
        )
    missing = [k for k in expected if k not in to_load and not k.endswith("num_batches_tracked")]
    report.missing = [k for k in missing if k.startswith("backbone.") and k not in report.mismatched]
    report.new = [k for k in missing if not k.startswith("backbone.")]
    problems = report.missing + [k for k in report.mismatched if k.startswith("backbone.")]
    if strict:
        problems += report.new + report.unexpected + report.mismatched
    if problems and not allow_partial:
        raise CheckpointError(
            source,
            f"checkpoint does not fit this model: {len(report.missing)} backbone tensors missing, "
            f"{len(report.mismatched)} of another shape, {len(report.unexpected)} unexpected "
            f"(first: {problems[0]})",
        )
    model.load_state_dict(to_load, strict=False)
    report.loaded = list(to_load)
    return report


# What a finished run hands on: a pretraining run's exported backbone, else its best weights.
RUN_CONFIG, RUN_STATUS = "config.toml", "status.json"
RUN_WEIGHTS = ("export/backbone.safetensors", "checkpoints/best.safetensors")


def run_weights(run_dir: Path) -> Path:
    """The checkpoint ``--init RUN_DIR`` loads; a run that has not finished is refused."""
    try:
        status = json.loads((run_dir / RUN_STATUS).read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        status = None
    if status != "completed":
        raise CheckpointError(
            run_dir,
            f"the run has not finished (status: {status or 'unknown'}), so its weights are not final",
            hint="rerun its command to finish it, or name one of its checkpoint files",
        )
    for name in RUN_WEIGHTS:
        if (run_dir / name).is_file():
            return run_dir / name
    raise CheckpointError(run_dir, "a finished run without checkpoints/best.safetensors")


def load_init(
    model: InitTarget,
    init: str,
    *,
    allow_partial: bool = False,
    weights_dir: Path | None = None,
    min_loaded_fraction: float = MIN_LOADED_FRACTION,
) -> LoadReport:
    """Initialise ``model`` (a TransferModel): "random", "imagenet", a checkpoint path, or a finished
    run's directory (``run_weights``).

    Only the backbone comes from ImageNet or a foreign checkpoint; the head (and module) start fresh.
    A medtl checkpoint also restores its module and head when their shapes fit. With
    ``allow_partial``, a backbone of which less than ``min_loaded_fraction`` of the weights load is
    refused (see ``_check_partial``).
    """
    init = str(init)
    if init == "random":
        return LoadReport(source="random", format="random", new=[n for n, _ in model.named_parameters()])
    if init == "imagenet":
        path = find_imagenet_weights(model.backbone, weights_dir)
        raw, _ = read_checkpoint(path)
        state_dict, _ = unwrap(raw)
        fmt = "torchvision" if model.backbone.source == "torchvision" else "timm"
        native = CONVERTERS[fmt](state_dict, model.backbone)
        return _load_backbone(
            model,
            native,
            state_dict,
            source=str(path),
            fmt=fmt,
            allow_partial=allow_partial,
            min_loaded_fraction=min_loaded_fraction,
        )
    path = Path(init)
    if path.is_dir() and (path / RUN_CONFIG).is_file():
        path = run_weights(path)
    if not path.exists() and path.suffix not in CHECKPOINT_SUFFIXES and "/" not in init:
        raise UnknownChoiceError("init", init, ["random", "imagenet", "<path to a checkpoint>"])
    raw, metadata = read_checkpoint(path)
    fmt = detect_format(raw, metadata)
    state_dict, _ = unwrap(raw)
    if not state_dict:
        raise CheckpointError(path, f"no tensors found (top-level keys: {', '.join(list(raw)[:5])})")
    if fmt == MEDTL_FORMAT:
        return _load_full(model, state_dict, source=str(path), allow_partial=allow_partial, strict=False)
    native = CONVERTERS[fmt](state_dict, model.backbone)
    return _load_backbone(
        model,
        native,
        state_dict,
        source=str(path),
        fmt=fmt,
        allow_partial=allow_partial,
        min_loaded_fraction=min_loaded_fraction,
    )


# ------------------------------------------------------------------------------- medtl checkpoints


def save_model(model: InitTarget, path: Path, metadata: Mapping[str, Any]) -> None:
    """Write the model's state as safetensors, atomically; ``metadata`` values are stored as JSON."""
    from safetensors.torch import save_file

    from medtl import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    meta.update({"format": MEDTL_FORMAT, "medtl_version": __version__, "spec": json.dumps(model.spec)})
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)


def read_model_metadata(path: Path) -> dict[str, Any]:
    """Metadata of a medtl checkpoint, JSON values decoded (``spec`` rebuilds the model)."""
    _, metadata = read_checkpoint(Path(path))
    if metadata.get("format") != MEDTL_FORMAT:
        raise CheckpointError(path, "not a medtl checkpoint (no medtl metadata)")
    out: dict[str, Any] = {}
    for k, v in metadata.items():
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def load_model_weights(model: InitTarget, path: Path) -> LoadReport:
    """Load a medtl checkpoint into the same architecture; every tensor must fit."""
    raw, _ = read_checkpoint(Path(path))
    state_dict, _ = unwrap(raw)
    return _load_full(model, state_dict, source=str(path), allow_partial=False, strict=True)
