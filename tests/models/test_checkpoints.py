"""Initialisation: every checkpoint format, ImageNet from the local cache, medtl's own files, bad input."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from timm.models import adapt_input_conv

from medtl.errors import CheckpointError, UnknownChoiceError, WeightsMissingError
from medtl.models import (
    build_model,
    detect_format,
    load_init,
    load_model_weights,
    read_model_metadata,
    save_model,
)


@functools.cache
def _source() -> dict[str, torch.Tensor]:
    """A real torchvision ResNet-18 state dict (with fc), random but distinct from any new model."""
    import torchvision

    torch.manual_seed(123)
    model = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if "running" in name:
                buf.uniform_(0.5, 1.5)
    return {k: v.clone() for k, v in model.state_dict().items()}


def source() -> dict[str, torch.Tensor]:
    return dict(_source())


def backbone_keys() -> list[str]:
    return [k for k in _source() if not k.startswith("fc.")]


def extra(shape: tuple[int, ...] = (8, 4)) -> torch.Tensor:
    return torch.randn(shape)


def prefixed(prefix: str, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in sd.items()}


def moco() -> dict:
    sd = prefixed("module.encoder_q.", {k: v for k, v in source().items() if not k.startswith("fc.")})
    sd["module.encoder_q.fc.0.weight"] = extra((512, 512))  # the v2 projection MLP
    sd["module.encoder_q.fc.2.weight"] = extra((128, 512))
    sd.update(prefixed("module.encoder_k.", {k: v.clone() for k, v in source().items()}))
    sd["module.queue"], sd["module.queue_ptr"] = extra((128, 16)), torch.zeros(1, dtype=torch.long)
    optimizer = {"state": {}, "param_groups": []}
    return {"epoch": 200, "arch": "resnet18", "state_dict": sd, "optimizer": optimizer}


def swav() -> dict:
    sd = prefixed("module.", {k: v for k, v in source().items() if not k.startswith("fc.")})
    sd["module.projection_head.0.weight"], sd["module.prototypes.weight"] = extra(), extra((3000, 128))
    return sd


def infomin() -> dict:
    sd = prefixed("module.encoder.", {k: v for k, v in source().items() if not k.startswith("fc.")})
    sd["module.head.0.weight"], sd["module.head_jig.fc1.weight"] = extra(), extra()
    return {"model": sd, "opt": argparse.Namespace(arch="resnet18", lr=0.03), "epoch": 800}


def pirl() -> dict:
    sd = prefixed("module.encoder.", source())
    sd["module.jigsaw.weight"] = extra()
    return {"model": sd, "epoch": 800}


def cmc() -> dict:
    sd = prefixed("module.encoder1.", source())
    sd.update(prefixed("module.encoder2.", {k: extra(tuple(v.shape)) for k, v in source().items()}))
    return {"model": sd, "epoch": 240}


def barlow() -> dict:
    return {k: v for k, v in source().items() if not k.startswith("fc.")}


def simclr_converted() -> dict:
    return {"state_dict": source()}


def in_domain() -> dict:
    sd = prefixed("module.", source())
    sd["module.fc.weight"] = extra((14, 512))
    sd["module.fc.bias"] = extra((14,))
    return {"state_dict": sd, "epoch": 30, "best_auc": 0.84}


def resnet_wrapper() -> dict:
    return {"resnet": source(), "epoch": 100}


def model_wrapper_with_tensor_scalars() -> dict:
    return {"model": source(), "epoch": torch.tensor(90), "best_acc1": torch.tensor(0.7)}


FORMATS: list[tuple[str, Callable[[], dict], str, str]] = [
    ("torchvision", source, "torchvision", ".pth"),
    ("moco-v2", moco, "moco", ".pth.tar"),
    ("pcl", moco, "moco", ".pth.tar"),
    ("swav", swav, "swav", ".pth"),
    ("deepcluster-v2", swav, "swav", ".pth.tar"),
    ("infomin", infomin, "infomin", ".pth"),
    ("insdis", pirl, "infomin", ".pth"),
    ("pirl", pirl, "infomin", ".pth"),
    ("cmc", cmc, "cmc", ".pth"),
    ("barlow-twins", barlow, "plain", ".pth"),
    ("simclr-converted", simclr_converted, "torchvision", ".pth"),
    ("byol-converted", barlow, "plain", ".pt"),
    ("chestx-ray14", in_domain, "in-domain", ".pth.tar"),
    ("resnet-wrapper", resnet_wrapper, "torchvision", ".pth"),
    ("model-wrapper", model_wrapper_with_tensor_scalars, "torchvision", ".pth"),
]


@pytest.mark.parametrize(("label", "build", "fmt", "suffix"), FORMATS, ids=[f[0] for f in FORMATS])
def test_every_format_loads_the_backbone_exactly(tmp_path, label, build, fmt, suffix):
    path = tmp_path / f"{label}{suffix}"
    checkpoint = build()
    torch.save(checkpoint, path)
    assert detect_format(checkpoint) == fmt
    model = build_model("resnet18", 2)
    head_before = model.head.weight.clone()
    report = load_init(model, str(path))
    assert report.format == fmt and report.source == str(path)
    assert report.missing == [] and report.mismatched == [] and report.unexpected == []
    state = model.backbone.model.state_dict()
    for key in backbone_keys():
        assert torch.equal(state[key], _source()[key]), key
    assert len(report.loaded) == len(backbone_keys())
    assert torch.equal(model.head.weight, head_before)  # classifier/projection keys never reach the head
    assert report.new == ["head.weight", "head.bias"]
    assert report.summary().startswith(f"loaded {len(backbone_keys())} tensors from {path} ({fmt})")


def test_extra_keys_are_dropped_and_reported(tmp_path):
    path = tmp_path / "moco.pth.tar"
    torch.save(moco(), path)
    report = load_init(build_model("resnet18", 2), str(path))
    dropped = set(report.dropped)
    assert {"module.queue", "module.queue_ptr", "fc.0.weight", "fc.2.weight"} <= dropped
    assert "module.encoder_k.conv1.weight" in dropped


def test_safetensors_checkpoint_of_plain_keys(tmp_path):
    path = tmp_path / "barlow.safetensors"
    save_file(barlow(), str(path))
    model = build_model("resnet18", 2)
    assert load_init(model, str(path)).format == "plain"
    assert torch.equal(model.backbone.model.conv1.weight, _source()["conv1.weight"])


def test_old_style_densenet_in_domain_checkpoint(tmp_path):
    """CheXNet-style: ``state_dict`` wrapper, ``module.densenet121.`` prefix, ``norm.1`` key spelling."""
    import torchvision

    torch.manual_seed(5)
    reference = torchvision.models.densenet121(weights=None).state_dict()
    old = {}
    for k, v in reference.items():
        for n in ("norm", "relu", "conv"):
            for i in ("1", "2"):
                k = k.replace(f".{n}{i}.", f".{n}.{i}.")
        old["module.densenet121." + k.replace("classifier.", "classifier.0.")] = v
    path = tmp_path / "chexnet.pth.tar"
    torch.save({"state_dict": old, "epoch": 10}, path)
    model = build_model("densenet121", 14)
    report = load_init(model, str(path))
    assert report.format == "in-domain" and report.missing == []
    state = model.backbone.model.state_dict()
    assert all(torch.equal(state[k], reference[k]) for k in state)
    assert sorted(report.dropped) == ["classifier.0.bias", "classifier.0.weight"]


def test_timm_checkpoint(tmp_path):
    import timm

    torch.manual_seed(1)
    reference = timm.create_model("convnext_atto").state_dict()  # with its 1000-class head.fc
    path = tmp_path / "convnext_atto.pth"
    torch.save(reference, path)
    model = build_model("convnext_atto", 3)
    report = load_init(model, str(path))
    assert report.format == "timm" and report.missing == []
    assert sorted(report.dropped) == ["head.fc.bias", "head.fc.weight"]
    state = model.backbone.model.state_dict()
    assert all(torch.equal(state[k], reference[k]) for k in state)  # head.norm included


def test_one_channel_model_adapts_a_three_channel_checkpoint(tmp_path):
    path = tmp_path / "moco.pth.tar"
    torch.save(moco(), path)
    model = build_model("resnet18", 2, in_chans=1)
    report = load_init(model, str(path))
    assert report.missing == [] and report.mismatched == []
    expected = adapt_input_conv(1, _source()["conv1.weight"])
    torch.testing.assert_close(model.backbone.model.conv1.weight, expected)
    assert "module.encoder_q.conv1.weight" not in report.dropped


def test_truncated_model_takes_what_it_has(tmp_path):
    path = tmp_path / "tv.pth"
    torch.save(source(), path)
    model = build_model("resnet18", 2, truncate=1)
    report = load_init(model, str(path))
    assert report.missing == []
    assert any(k.startswith("layer4.") for k in report.unexpected)
    assert torch.equal(model.backbone.model.layer1[0].conv1.weight, _source()["layer1.0.conv1.weight"])


# ------------------------------------------------------------------------------------- imagenet


def test_missing_torchvision_imagenet_names_the_file_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(WeightsMissingError) as info:
        load_init(build_model("resnet18", 2), "imagenet")
    message = str(info.value)
    assert f"at {expected}" in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert "\n" not in message


def test_torchvision_imagenet_from_the_torch_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    target = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    target.parent.mkdir(parents=True)
    torch.save(source(), target)
    model = build_model("resnet18", 2, in_chans=1)
    report = load_init(model, "imagenet")
    assert report.source == str(target) and report.format == "torchvision" and report.missing == []
    expected = adapt_input_conv(1, _source()["conv1.weight"])
    torch.testing.assert_close(model.backbone.model.conv1.weight, expected)
    assert torch.equal(model.backbone.model.layer4[1].bn2.running_var, _source()["layer4.1.bn2.running_var"])


def test_missing_timm_imagenet_names_the_file_and_place(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(WeightsMissingError) as info:
        load_init(build_model("resnet10t", 2), "imagenet", weights_dir=tmp_path / "w")
    message = str(info.value)
    assert f"at {tmp_path / 'w' / 'resnet10t.c3_in1k.safetensors'}" in message
    assert "https://huggingface.co/timm/resnet10t.c3_in1k/resolve/main/model.safetensors" in message
    assert "timm/resnet10t.c3_in1k" in message


def test_timm_imagenet_from_the_weights_dir(tmp_path, monkeypatch):
    import huggingface_hub.constants
    import timm

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("MEDTL_WEIGHTS_DIR", str(tmp_path / "w"))
    reference = timm.create_model("resnet10t").state_dict()
    (tmp_path / "w").mkdir()
    save_file(reference, str(tmp_path / "w" / "resnet10t.c3_in1k.safetensors"))
    model = build_model("resnet10t", 2)
    report = load_init(model, "imagenet")
    assert report.format == "timm" and report.missing == []
    assert sorted(report.dropped) == ["fc.bias", "fc.weight"]
    state = model.backbone.model.state_dict()
    assert all(torch.equal(state[k], reference[k]) for k in state)


def test_timm_imagenet_from_the_hugging_face_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants
    import timm

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    repo = tmp_path / "hf" / "models--timm--vit_tiny_patch16_224.augreg_in21k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    reference = timm.create_model("vit_tiny_patch16_224.augreg_in21k").state_dict()
    save_file(reference, str(repo / "snapshots" / "abc123" / "model.safetensors"))
    # at 32 px timm's own converter resamples the position embedding from 14x14 to 2x2
    model = build_model("vit_tiny_patch16_224.augreg_in21k", 2, image_size=32)
    report = load_init(model, "imagenet")
    assert report.missing == [] and report.mismatched == []
    assert model.backbone.model.pos_embed.shape == (1, 5, 192)
    assert torch.equal(model.backbone.model.blocks[11].mlp.fc2.weight, reference["blocks.11.mlp.fc2.weight"])


# ----------------------------------------------------------------------------------- medtl files


def test_save_and_load_model_round_trip(tmp_path):
    torch.manual_seed(3)
    model = build_model("resnet10t", 3, in_chans=1, module="cdtm", image_size=32)
    path = tmp_path / "ckpt" / "best.safetensors"
    save_model(model, path, {"task": "multiclass", "class_names": ["a", "b", "c"], "epoch": 4})
    assert [p.name for p in path.parent.iterdir()] == ["best.safetensors"]
    meta = read_model_metadata(path)
    assert meta["task"] == "multiclass" and meta["class_names"] == ["a", "b", "c"] and meta["epoch"] == 4
    again = build_model(**meta["spec"])
    report = load_model_weights(again, path)
    assert report.format == "medtl" and report.missing == [] and report.new == []
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k


def test_medtl_checkpoint_as_init_keeps_head_and_module(tmp_path):
    model = build_model("resnet10t", 2)
    path = tmp_path / "run.safetensors"
    save_model(model, path, {})
    fresh = build_model("resnet10t", 2)
    report = load_init(fresh, str(path))
    assert report.format == "medtl" and torch.equal(fresh.head.weight, model.head.weight)


def test_classifier_shape_mismatch_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "chest14.safetensors"
    save_model(build_model("resnet10t", 14), path, {})
    with pytest.raises(CheckpointError) as info:
        load_init(build_model("resnet10t", 2), str(path))
    assert str(info.value) == (
        f"{path}: classifier shape mismatch: "
        "checkpoint head (14, 512), model head (2, 512) (outputs x features)"
    )
    with pytest.raises(CheckpointError, match="classifier shape mismatch"):
        load_model_weights(build_model("resnet10t", 2), path)
    # allowed: the backbone loads and the head starts fresh
    report = load_init(build_model("resnet10t", 2), str(path), allow_partial=True)
    assert sorted(report.mismatched) == ["head.bias", "head.weight"] and report.missing == []


def test_checkpoint_with_no_matching_keys(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.layers.0.weight": torch.ones(3), "decoder.out.bias": torch.ones(2)}, path)
    with pytest.raises(CheckpointError) as info:
        load_init(build_model("resnet18", 2), str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: no keys match backbone 'resnet18'") and "\n" not in message


def test_missing_backbone_weights_are_refused_unless_partial(tmp_path):
    path = tmp_path / "partial.pth"
    torch.save({k: v for k, v in source().items() if not k.startswith("layer4.")}, path)
    with pytest.raises(CheckpointError, match=r"partial.pth: 25 backbone tensors missing .*--allow-partial"):
        load_init(build_model("resnet18", 2), str(path))
    # layer4 holds three quarters of ResNet-18's weights: too little is left to count as initialised
    with pytest.raises(CheckpointError, match=r"only 75 of 100 tensors, 25% of its weights fit 'resnet18'"):
        load_init(build_model("resnet18", 2), str(path), allow_partial=True)
    report = load_init(build_model("resnet18", 2), str(path), allow_partial=True, min_loaded_fraction=0)
    assert len(report.missing) == 25 and report.missing[0] == "backbone.model.layer4.0.conv1.weight"
    assert report.loaded_fraction == pytest.approx(0.25, abs=0.01)


def test_wrong_architecture_shapes_are_refused(tmp_path):
    path = tmp_path / "tv.pth"
    torch.save(source(), path)
    with pytest.raises(CheckpointError, match="of another shape for 'resnet10t'"):
        load_init(build_model("resnet10t", 2), str(path))


def test_pickle_with_an_arbitrary_object_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": source(), "payload": Path("/etc/passwd")}, path)
    with pytest.raises(CheckpointError) as info:
        load_init(build_model("resnet18", 2), str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: refusing to unpickle a Python object (pathlib.")
    assert "\n" not in message


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes\.pth: not a readable PyTorch checkpoint"):
        load_init(build_model("resnet18", 2), str(path))
    with pytest.raises(CheckpointError, match=r"missing\.pth: checkpoint file not found"):
        load_init(build_model("resnet18", 2), str(tmp_path / "missing.pth"))


def test_unknown_init_choice():
    with pytest.raises(UnknownChoiceError, match="unknown init 'imagnet', did you mean 'imagenet'"):
        load_init(build_model("resnet18", 2), "imagnet")


def test_random_init_reports_everything_new():
    model = build_model("resnet18", 2)
    report = load_init(model, "random")
    assert report.summary() == "random initialisation"
    assert len(report.new) == len(list(model.parameters()))
