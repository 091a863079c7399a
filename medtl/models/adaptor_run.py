"""A finished Adaptor run as downstream models use it: the module, its spec and the vision encoder its
embeddings came from (``--strategy adaptor --init ADAPTOR_RUN``).

Kept apart from ``medtl.models.adaptor`` (the modules) because it reads checkpoints: the models
build the Adaptor's image path without importing the checkpoint loader (no cycle through it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from medtl.errors import CheckpointError, ConfigError
from medtl.models.adaptor import AdaptorImagePath
from medtl.models.checkpoints import read_checkpoint, run_weights

# What an Adaptor run exports (medtl.pretrain.adaptor): the module, and the frozen vision encoder
# its image embeddings came from.
ADAPTOR_FILE, ENCODER_FILE = "export/adaptor.safetensors", "export/backbone.safetensors"


@dataclass(frozen=True)
class AdaptorRun:
    """A finished Adaptor run as downstream models use it: the module's ``spec`` (with ``vision``,
    the encoder that made its image embeddings, and ``text``), its weights, the vision encoder's
    exported backbone (None when its embeddings kept none)."""

    run_dir: Path
    spec: dict[str, Any]
    state_dict: dict[str, Tensor]
    encoder: Path | None

    @property
    def vision(self) -> dict[str, Any]:
        vision = self.spec.get("vision")
        return vision if isinstance(vision, dict) else {}

    def image_path(self) -> AdaptorImagePath:
        """The image path with the run's weights."""
        path = AdaptorImagePath.from_spec(self.spec)
        path.load_adaptor(self.state_dict, self.run_dir / ADAPTOR_FILE)
        return path

    def check_encoder(self, backbone: Any, *, needs: str) -> Path:
        """The exported vision encoder, refusing a run without one and a ``backbone`` other than the
        one its embeddings came from; ``needs`` says what for (a message part)."""
        vision = self.vision
        if self.encoder is None:
            made = vision.get("run") or vision.get("backbone") or "an unknown model"
            raise CheckpointError(
                self.run_dir,
                f"the Adaptor has no vision encoder ({ENCODER_FILE} missing: its embeddings, from "
                f"{made}, kept none); {needs}",
                hint="extract the embeddings again with `medtl extract` from a backbone, then pretrain",
            )
        encoder_spec = _metadata(self.encoder).get("spec") or {}
        name, chans = encoder_spec.get("backbone"), encoder_spec.get("in_chans")
        if name != backbone.name:
            raise ConfigError(
                f"{self.run_dir}: the Adaptor was trained on image embeddings of '{name}'; this run's "
                f"backbone is '{backbone.name}' (use --backbone {name})"
            )
        if chans is not None and int(chans) != backbone.in_chans:
            raise ConfigError(
                f"{self.run_dir}: the Adaptor's vision encoder takes {chans}-channel images; this run's "
                f"backbone takes {backbone.in_chans} (--in-chans {chans})"
            )
        if int(self.spec.get("vision_dim", -1)) != backbone.num_features:
            raise ConfigError(
                f"{self.run_dir}: the Adaptor reads {self.spec.get('vision_dim')}-wide image embeddings; "
                f"'{backbone.name}' pools {backbone.num_features} features"
            )
        return self.encoder

    def install(self, model: nn.Module, *, needs: str) -> None:
        """Fill ``model.module`` (an ``AdaptorImagePath`` built from ``spec``) with the Adaptor's
        weights, after checking ``model.backbone`` against its vision encoder. The model records
        ``pretrained_parts`` (the load report names them) and ``input_normalise``, the
        normalisation its encoder's embeddings were made with (a run must use the same)."""
        self.check_encoder(model.backbone, needs=needs)
        model.module.load_adaptor(self.state_dict, self.run_dir / ADAPTOR_FILE)
        model.pretrained_parts = {"module": str(self.run_dir / ADAPTOR_FILE)}
        model.input_normalise = self.vision.get("normalise")


def _metadata(path: Path) -> dict[str, Any]:
    _, raw = read_checkpoint(path)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def adaptor_run(init: str | Path) -> AdaptorRun:
    """The finished Adaptor run ``init`` names (its directory), for the ``adaptor`` strategy."""
    run_dir = Path(str(init))
    if not (run_dir / "config.toml").is_file():
        raise ConfigError(
            f"the adaptor strategy puts a pretrained Adaptor between the frozen encoder and the head: "
            f"--init must name a finished `medtl pretrain adaptor` run's directory, got '{init}'"
        )
    run_weights(run_dir)  # a run that has not finished is refused
    module = run_dir / ADAPTOR_FILE
    if not module.is_file():
        raise CheckpointError(
            run_dir, f"not an Adaptor run ({ADAPTOR_FILE} missing); the adaptor strategy needs one",
            hint="pretrain one with `medtl pretrain adaptor --embeddings DIR`",
        )  # fmt: skip
    state_dict, _ = read_checkpoint(module)
    meta = _metadata(module)
    spec = meta.get("spec")
    if meta.get("format") != "medtl-adaptor" or not isinstance(spec, dict):
        raise CheckpointError(module, "not an exported Adaptor (format medtl-adaptor with its spec)")
    encoder = run_dir / ENCODER_FILE
    return AdaptorRun(run_dir.resolve(), spec, dict(state_dict), encoder if encoder.is_file() else None)
