"""Frozen text encoders (BERT family) through Hugging Face ``transformers``, from a local directory.

medtl never downloads: an encoder is a directory holding ``config.json``, the weights
(``model.safetensors`` or ``pytorch_model.bin``, possibly sharded) and the tokenizer (``tokenizer.json``
or ``vocab.txt``), as ``hf download REPO --local-dir DIR`` leaves it. The known names below resolve to
``<weights dir>/text/<name>``. Directories whose ``model_type`` needs code from the Hub (CXR-BERT's
``cxr-bert``) are read as the BERT they are built on, without running remote code.

Pooling: ``pooler`` (BERT's pooler output, tanh(W h_CLS)), ``cls`` (the last hidden state of the
[CLS] token) or ``mean`` (the mean of the last hidden states over real tokens).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medtl.errors import ConfigError, InputError, UnknownChoiceError, WeightsMissingError

log = logging.getLogger("medtl")

# The Adaptor study's text encoders and the Hub repositories to place under <weights dir>/text/<name>.
TEXT_ENCODERS: dict[str, str] = {
    "bert": "google-bert/bert-base-uncased",
    "biobert": "dmis-lab/biobert-v1.1",
    "pubmedbert": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext",
    "cxrbert": "microsoft/BiomedVLP-CXR-BERT-general",
    "clinicalbert": "emilyalsentzer/Bio_ClinicalBERT",
}
POOLINGS = ("pooler", "cls", "mean")
WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
MAX_LENGTH = 128


def resolve_text_encoder(name_or_dir: str | Path, weights_dir: Path | None = None) -> Path:
    """The directory of a text encoder given by path or by a known name."""
    path = Path(name_or_dir).expanduser()
    name = str(name_or_dir)
    if name not in TEXT_ENCODERS or path.exists():
        if not path.exists() and "/" not in name:
            raise UnknownChoiceError("text encoder", name, [*TEXT_ENCODERS, "<directory>"])
        return path
    from medtl.models.checkpoints import default_weights_dir

    local = (Path(weights_dir) if weights_dir else default_weights_dir()) / "text" / name
    if not local.is_dir():
        repo = TEXT_ENCODERS[name]
        raise WeightsMissingError(
            f"text encoder '{name}' is not on disk: download {repo} into {local} "
            f"(hf download {repo} --local-dir {local})",
            hint="medtl never downloads; fetch the files on a machine with internet access",
        )
    return local


def check_text_encoder_dir(directory: Path) -> None:
    """One clear line when ``directory`` is not a usable Hugging Face encoder directory."""
    if not directory.is_dir():
        raise InputError(directory, "text encoder directory not found")
    if not (directory / "config.json").is_file():
        raise InputError(directory, "no config.json: not a Hugging Face model directory")
    problems = []
    if not any((directory / f).is_file() for f in WEIGHT_FILES):
        problems.append("no weights (model.safetensors or pytorch_model.bin)")
    if not any((directory / f).is_file() for f in TOKENIZER_FILES):
        problems.append("no tokenizer (tokenizer.json or vocab.txt)")
    if problems:
        raise InputError(directory, " and ".join(problems) + " in this text encoder directory")


def _load_model(directory: Path) -> tuple[nn.Module, dict[str, Any]]:
    import transformers
    from transformers import AutoConfig, AutoModel, BertModel

    transformers.logging.set_verbosity_error()  # missing keys are checked below, not printed
    transformers.logging.disable_progress_bar()
    try:
        AutoConfig.from_pretrained(directory, local_files_only=True)
        auto = True
    except (ValueError, KeyError):
        auto = False  # a model_type that needs remote code (CXR-BERT): read it as its BERT
    cls = AutoModel if auto else BertModel
    try:
        model, info = cls.from_pretrained(directory, local_files_only=True, output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise InputError(directory, f"cannot load the text encoder ({str(exc).splitlines()[0]})") from None
    return model, info


class TextEncoder(nn.Module):
    """A frozen tokenizer + encoder; ``encode(texts)`` gives (N, hidden) float32 embeddings."""

    def __init__(
        self, directory: str | Path, *, pooling: str = "pooler", max_length: int = MAX_LENGTH
    ) -> None:
        super().__init__()
        from transformers import AutoTokenizer

        if pooling not in POOLINGS:
            raise UnknownChoiceError("text pooling", pooling, POOLINGS)
        self.directory = Path(directory)
        check_text_encoder_dir(self.directory)
        self.pooling, self.max_length = pooling, max_length
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.directory, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise InputError(
                self.directory, f"cannot load the tokenizer ({str(exc).splitlines()[0]})"
            ) from None
        self.model, info = _load_model(self.directory)
        missing = [k for k in info.get("missing_keys", []) if "position_ids" not in k]
        pooler_missing = [k for k in missing if "pooler" in k]
        if pooler_missing and pooling == "pooler":
            raise ConfigError(
                f"{self.directory}: the checkpoint has no pooler weights (a random pooler would be used); "
                "use --text-pooling cls or mean"
            )
        other = [k for k in missing if "pooler" not in k]
        if other:
            raise InputError(self.directory, f"{len(other)} encoder weights missing (first: {other[0]})")
        self.model.eval().requires_grad_(False)
        self.dim = int(self.model.config.hidden_size)

    def train(self, mode: bool = True) -> TextEncoder:
        # Frozen: dropout stays off whatever the caller's mode.
        return super().train(False)

    @torch.no_grad()
    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        tokens = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(device)
        out = self.model(**tokens)
        if self.pooling == "pooler":
            if getattr(out, "pooler_output", None) is None:
                raise ConfigError(
                    f"{self.directory}: this model has no pooler output; use --text-pooling cls"
                )
            return out.pooler_output
        hidden = out.last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Embeddings of ``texts`` in order, float32 (N, dim)."""
        out = [
            self(texts[i : i + batch_size]).float().cpu().numpy() for i in range(0, len(texts), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)


def describe(encoder: TextEncoder) -> dict[str, Any]:
    """What identifies the encoder in the embeddings' metadata."""
    cfg = encoder.model.config
    return {
        "directory": str(encoder.directory.resolve()),
        "model_type": getattr(cfg, "model_type", None),
        "name_or_path": getattr(cfg, "_name_or_path", None),
        "pooling": encoder.pooling,
        "max_length": encoder.max_length,
        "dim": encoder.dim,
    }
