"""Checkpoints load what they say, whatever the hash seed (issue 6, section 6).

Seen on the landed main: MoCo v3 checkpoints were detected as "in-domain", reported 318 unexpected
keys and loaded the base or the momentum encoder depending on PYTHONHASHSEED; with --allow-partial
the CMC release (two half-width ResNet-50s) silently loaded the ~57 tensors whose shapes matched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from medtl.errors import CheckpointError
from medtl.models import build_model, detect_format, load_init
from tests.models.test_checkpoints import _source, backbone_keys, prefixed, source


def _projector(prefix: str, width: int = 512) -> dict[str, torch.Tensor]:
    """MoCo v3's MLP with BatchNorm (``fc`` of a ResNet base encoder, or the predictor)."""
    return {
        f"{prefix}0.weight": torch.randn(64, width),
        f"{prefix}1.weight": torch.ones(64),
        f"{prefix}1.bias": torch.zeros(64),
        f"{prefix}1.running_mean": torch.zeros(64),
        f"{prefix}1.running_var": torch.ones(64),
        f"{prefix}1.num_batches_tracked": torch.tensor(7),
        f"{prefix}3.weight": torch.randn(32, 64),
    }


def mocov3(momentum_shift: float = 1.0, module: str = "module.") -> dict:
    """The layout of MoCo v3's released ResNet checkpoints (``main_moco.py``): DDP's ``module.``,
    base and momentum encoders whose ``fc`` is the projector, a predictor, an optimizer state."""
    body = {k: v for k, v in source().items() if not k.startswith("fc.")}
    sd = prefixed(f"{module}base_encoder.", body)
    sd.update(_projector(f"{module}base_encoder.fc."))
    momentum = {k: v + momentum_shift if v.is_floating_point() else v for k, v in body.items()}
    sd.update(prefixed(f"{module}momentum_encoder.", momentum))
    sd.update(_projector(f"{module}momentum_encoder.fc."))
    sd.update(_projector(f"{module}predictor.", width=32))
    return {
        "epoch": 300,
        "arch": "resnet18",
        "state_dict": sd,
        "optimizer": {"state": {}, "param_groups": []},
    }


@pytest.mark.parametrize("module", ["module.", ""])
def test_mocov3_loads_the_base_encoder_as_its_linear_evaluation_does(tmp_path, module):
    path = tmp_path / "r-50-300ep.pth.tar"
    checkpoint = mocov3(module=module)
    torch.save(checkpoint, path)
    assert detect_format(checkpoint) == "mocov3"
    model = build_model("resnet18", 2)
    report = load_init(model, str(path))
    assert report.format == "mocov3"
    assert report.missing == [] and report.mismatched == [] and report.unexpected == []
    state = model.backbone.model.state_dict()
    for key in backbone_keys():
        assert torch.equal(state[key], _source()[key]), key  # the base encoder, not the momentum one
    dropped = set(report.dropped)
    assert f"{module}base_encoder.fc.0.weight" in dropped  # the projector, as main_lincls drops it
    assert f"{module}momentum_encoder.conv1.weight" in dropped and f"{module}predictor.3.weight" in dropped


# What load_init does up to choosing the tensors, without building a model (a fresh interpreter per
# hash seed has to import torch; building a backbone would triple the time): detect the format,
# convert, align the prefix against the backbone's key names, print what conv1 would get.
HASH_SEED_PROBE = textwrap.dedent(
    """
    import json, sys
    from types import SimpleNamespace
    from medtl.errors import CheckpointError
    from medtl.models.checkpoints import CONVERTERS, _align_prefix, detect_format, read_checkpoint, unwrap

    expected = dict.fromkeys(json.loads(open(sys.argv[1]).read()))
    backbone = SimpleNamespace(source="torchvision", name="resnet18")
    out = []
    for path in sys.argv[2:]:
        raw, metadata = read_checkpoint(path)
        fmt = detect_format(raw, metadata)
        try:
            native = _align_prefix(CONVERTERS[fmt](unwrap(raw)[0], backbone), expected, path)
            out.append({"format": fmt, "conv1": float(native["conv1.weight"].sum())})
        except CheckpointError as err:
            out.append({"error": err.message})
    print(json.dumps(out))
    """
)


def probe_under_hash_seeds(tmp_path, paths, seeds=(0, 1, 2)) -> list[list[dict]]:
    """Per seed, what loading each of ``paths`` chose, each seed in its own interpreter (in parallel)."""
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(backbone_keys()))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HASH_SEED_PROBE, str(keys), *map(str, paths)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed), "OMP_NUM_THREADS": "1"},
        )
        for seed in seeds
    ]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def two_encoders() -> dict:
    """Two networks that fit equally well, in a layout no converter knows."""
    body = {k: v for k, v in source().items() if not k.startswith("fc.")}
    sd = prefixed("student.", body)
    sd.update(prefixed("teacher.", {k: v + 1 if v.is_floating_point() else v for k, v in body.items()}))
    return sd


def test_the_choice_does_not_depend_on_the_hash_seed(tmp_path):
    moco, tie = tmp_path / "mocov3.pth.tar", tmp_path / "two.pth"
    torch.save(mocov3(), moco)
    torch.save(two_encoders(), tie)
    results = probe_under_hash_seeds(tmp_path, [moco, tie])
    expected = float(_source()["conv1.weight"].sum())
    for moco_result, tie_result in results:
        assert moco_result["format"] == "mocov3" and moco_result["conv1"] == pytest.approx(expected)
        assert tie_result["error"] == results[0][1]["error"]  # the same answer every time
    assert results[0][1]["error"].startswith(f"{tie}: holds 2 networks that fit the backbone equally well")
    assert "'student.', 'teacher.'" in results[0][1]["error"]


def test_a_tie_between_encoders_is_an_error_naming_both(tmp_path):
    path = tmp_path / "two.pth"
    torch.save(two_encoders(), path)
    with pytest.raises(CheckpointError) as err:
        load_init(build_model("resnet18", 2), str(path))
    assert "'student.', 'teacher.': 120 tensors each" in err.value.message
    assert "medtl will not guess" in err.value.message and "\n" not in err.value.message


def half_width(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every tensor with channels halved, as in CMC's two half-width encoders (L and ab)."""
    out = {}
    for k, v in sd.items():
        if v.ndim == 0:
            out[k] = v
        else:
            out[k] = v[
                tuple(slice(0, max(1, s // 2)) if i < 2 else slice(None) for i, s in enumerate(v.shape))
            ]
    return out


def cmc_release() -> dict:
    body = {k: v for k, v in source().items() if not k.startswith("fc.")}
    sd = prefixed("module.encoder1.", half_width(body))
    sd.update(prefixed("module.encoder2.", half_width(body)))
    return {"model": sd, "epoch": 240}


def test_a_partial_load_that_fits_little_is_refused_unless_forced(tmp_path, caplog):
    path = tmp_path / "cmc.pth"
    torch.save(cmc_release(), path)
    with pytest.raises(CheckpointError, match="--allow-partial"):
        load_init(build_model("resnet18", 2), str(path))
    with pytest.raises(CheckpointError) as err:
        load_init(build_model("resnet18", 2), str(path), allow_partial=True)
    message = err.value.message
    assert message.startswith(f"{path}: only ") and "of its weights fit 'resnet18'" in message
    assert "below the 0.5" in message and "--min-loaded-fraction 0" in err.value.hint
    model = build_model("resnet18", 2)
    with caplog.at_level("WARNING", logger="medtl"):
        report = load_init(model, str(path), allow_partial=True, min_loaded_fraction=0)
    assert report.loaded_fraction < 0.01 and len(report.mismatched) > 50
    assert "partial load into 'resnet18'" in caplog.text and "the rest stay random" in caplog.text
    assert f"{report.loaded_fraction:.0%} of the backbone's weights" in report.summary()


def test_a_partial_load_that_fits_most_warns_with_the_share(tmp_path, caplog):
    path = tmp_path / "almost.pth"
    sd = {k: v for k, v in source().items() if not k.startswith(("fc.", "layer4.1.bn2"))}
    torch.save(sd, path)
    with caplog.at_level("WARNING", logger="medtl"):
        report = load_init(build_model("resnet18", 2), str(path), allow_partial=True)
    assert len(report.missing) == 4 and 0.99 < report.loaded_fraction < 1
    assert "partial load into 'resnet18': 96 of 100 tensors, 99.9% of its weights" in caplog.text
