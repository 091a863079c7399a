"""The Adaptor downstream, end to end on phantom BraTS with a tiny encoder and a tiny random BERT:
extract -> pretrain adaptor -> `finetune --strategy adaptor --init RUN` (classification at two
fractions, and a U-Net conditioned on the Adaptor's features), and the inputs that do not fit."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from medtl.engine import RunConfig, load_run, run
from medtl.errors import CheckpointError, ConfigError
from medtl.io.converters.brats import BratsOptions, convert_brats
from medtl.io.converters.phantom import write_phantom_brats
from medtl.io.store import Store
from medtl.pretrain.adaptor import adaptor_config, pretrain_adaptor
from medtl.pretrain.embeddings import ENCODER_FILE, export_embeddings

FAST = {"batch_size": 8, "num_workers": 0, "device": "cpu", "seed": 0, "checkpoint_interval": 0}
GRADE_TEXT = {0: "low grade glioma, no enhancement", 1: "high grade glioma with ring enhancement"}


@pytest.fixture(scope="module")
def adaptor_chain(tmp_path_factory, bert_dir):
    """(root, Adaptor run directory): a phantom BraTS grade store with one report per patient, its
    embeddings from a frozen resnet10t, and an Adaptor pretrained on them for two epochs."""
    root = tmp_path_factory.mktemp("adaptor_downstream")
    write_phantom_brats(root / "raw", subjects=8, seed=0, shape=(24, 24, 12))
    convert_brats(root / "raw", root / "grades", BratsOptions(size=32, labels="grade"))
    convert_brats(root / "raw", root / "masks", BratsOptions(size=32, labels="mask"))
    store = Store(root / "grades")
    rows = ["patient_id,findings,impression"]
    for patient in sorted(set(store.patient_ids.tolist())):
        label = int(np.asarray(store.labels)[np.flatnonzero(store.patient_ids == patient)[0]])
        rows.append(f"{patient},{GRADE_TEXT[label]},stable")
    (root / "reports.csv").write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    emb = export_embeddings(
        "resnet10t", store.path, root / "reports.csv", bert_dir, root / "emb", init="random", device="cpu"
    )
    config = adaptor_config(
        emb, epochs=2, lr=1e-3, run_name="adaptor", base={**FAST, "out": root / "runs", "batch_size": 4}
    )
    result, _ = pretrain_adaptor(config)
    return root, result.run_dir


def downstream(root, adaptor_dir, store="grades", **fields) -> RunConfig:
    values = {
        **FAST,
        "data": root / store,
        "backbone": "resnet10t",
        "init": str(adaptor_dir),
        "strategy": "adaptor",
        "phase_epochs": {"head": 2},
        "lr": 1e-3,
        "bootstrap": 0,
        "out": root / "finetune",
        **fields,
    }
    return RunConfig.parse(values)


def test_the_adaptor_run_hands_on_its_frozen_vision_encoder(adaptor_chain):
    root, adaptor_dir = adaptor_chain
    encoder = adaptor_dir / "export" / "backbone.safetensors"
    assert encoder.read_bytes() == (root / "emb" / ENCODER_FILE).read_bytes()
    meta = json.loads((root / "emb" / "embeddings.json").read_text())
    assert meta["vision"]["encoder"] == ENCODER_FILE and meta["checksums"][ENCODER_FILE].startswith("sha256:")


def test_finetune_with_the_adaptor_strategy_at_two_fractions(adaptor_chain):
    root, adaptor_dir = adaptor_chain
    adaptor = load_file(adaptor_dir / "export" / "adaptor.safetensors")
    encoder = load_file(adaptor_dir / "export" / "backbone.safetensors")
    counts = {}
    for fraction in (0.25, 1.0):
        result = run(downstream(root, adaptor_dir, fraction=fraction))
        metrics = json.loads((result.run_dir / "metrics.json").read_text())
        counts[fraction] = metrics["data"]["counts"]["train"]
        assert metrics["strategy"] == "adaptor" and "auroc" in metrics["test"]
        assert (result.run_dir / "predictions_test.npz").is_file()
        (phase,) = metrics["phases"]
        # only the Adaptor study's head trains, on Adaptor features cached once
        assert phase["trained_groups"] == ["head"] and phase["cached_features"]
        assert phase["trainable_params"] == 768 * 512 + 2 * 512 + 512 + 1
        assert "new: head" in metrics["init_report"] and "module from" in metrics["init_report"]
        assert "missing 0" in metrics["init_report"]
        # the frozen parts are the Adaptor's image path and the encoder its embeddings came from
        model = load_run(result.run_dir, "best").model
        for key, value in model.module.state_dict().items():
            assert torch.equal(value, adaptor[key]), key
        for key, value in model.backbone.native_state_dict().items():
            assert torch.equal(value, encoder[key]), key
    assert counts[0.25] < counts[1.0]


def test_segmentation_on_the_frozen_encoder_and_adaptor_features(adaptor_chain):
    root, adaptor_dir = adaptor_chain
    result = run(downstream(root, adaptor_dir, store="masks", lr=3e-3, normalise="imagenet"))
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["objective"] == "segmentation" and "dice" in metrics["test"]
    (phase,) = metrics["phases"]
    assert phase["trained_groups"] == ["decoder", "head"] and not phase["cached_features"]
    model = load_run(result.run_dir, "best").model
    adaptor = load_file(adaptor_dir / "export" / "adaptor.safetensors")
    encoder = load_file(adaptor_dir / "export" / "backbone.safetensors")
    assert all(torch.equal(v, adaptor[k]) for k, v in model.module.state_dict().items())
    assert all(torch.equal(v, encoder[k]) for k, v in model.backbone.native_state_dict().items())
    assert model.spec["adaptor"]["vision_dim"] == 512
    with np.load(result.run_dir / "predictions_test.npz") as data:
        assert len(data["score"]) == metrics["data"]["counts"]["test"]


def test_the_adaptor_strategy_needs_an_adaptor_run(adaptor_chain, tmp_path):
    root, adaptor_dir = adaptor_chain
    out = {"out": tmp_path / "out"}
    with pytest.raises(ConfigError, match="--init must name a finished `medtl pretrain adaptor` run"):
        run(downstream(root, adaptor_dir, init="random", **out))
    other = tmp_path / "not_adaptor"
    shutil.copytree(adaptor_dir, other)
    (other / "export" / "adaptor.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"not an Adaptor run \(export/adaptor.safetensors missing\)"):
        run(downstream(root, other, **out))
    unfinished = tmp_path / "unfinished"
    shutil.copytree(adaptor_dir, unfinished)
    (unfinished / "status.json").write_text('{"status": "running"}')
    with pytest.raises(CheckpointError, match="the run has not finished"):
        run(downstream(root, unfinished, **out))
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_an_adaptor_whose_vision_encoder_differs_from_the_backbone(adaptor_chain, tmp_path):
    root, adaptor_dir = adaptor_chain
    out = {"out": tmp_path / "out"}
    with pytest.raises(
        ConfigError, match=r"image embeddings of 'resnet10t'; this run's backbone is 'resnet18'"
    ):
        run(downstream(root, adaptor_dir, backbone="resnet18", **out))
    with pytest.raises(ConfigError, match=r"images normalised 'imagenet'; this run normalises 'half'"):
        run(downstream(root, adaptor_dir, normalise="half", **out))
    assert not (tmp_path / "out").exists()


def test_a_unet_on_an_adaptor_without_a_vision_encoder(adaptor_chain, tmp_path):
    root, adaptor_dir = adaptor_chain
    bare = tmp_path / "bare"
    shutil.copytree(adaptor_dir, bare)
    (bare / "export" / "backbone.safetensors").unlink()
    out = {"out": tmp_path / "out"}
    with pytest.raises(
        CheckpointError, match=r"the Adaptor has no vision encoder .*a U-Net on Adaptor features"
    ):
        run(downstream(root, bare, store="masks", **out))
    with pytest.raises(CheckpointError, match=r"the Adaptor has no vision encoder .*a classifier"):
        run(downstream(root, bare, **out))
