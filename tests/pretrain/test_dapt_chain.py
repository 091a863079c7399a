"""The resource-efficient study's chain on phantom data, end to end:
imagenet-like init -> DAPT on BraTS grades -> features / fine-tuning on a second store ->
evaluation on an external store with a class map; kWh recorded at every step; lineage traced."""

from __future__ import annotations

import json

import pytest
import torch

from medtl.engine import RunConfig
from medtl.errors import ConfigError
from medtl.io.converters.brats import BratsOptions, convert_brats
from medtl.io.converters.phantom import write_phantom_brats
from medtl.pretrain.dapt import check_trains_backbone, pretrain_dapt
from medtl.pretrain.export import read_export_metadata
from medtl.pretrain.lineage import lineage
from tests.evaluate.evaluate_helpers import write_store

FAST = {"backbone": "resnet10t", "batch_size": 8, "num_workers": 0, "bootstrap": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def chain_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    write_phantom_brats(root / "raw", subjects=8, seed=0, shape=(24, 24, 12))
    convert_brats(root / "raw", root / "brats", BratsOptions(size=32, labels="grade"))
    import timm

    torch.manual_seed(0)
    imagenet_like = timm.create_model("resnet10t", num_classes=1000)  # an ImageNet-format checkpoint
    torch.save(imagenet_like.state_dict(), root / "imagenet_like.pth")
    return root


def test_dapt_chain_end_to_end(chain_root, tmp_path):
    from medtl.engine import export_features, run
    from medtl.evaluate.evaluate import evaluate_run

    runs = tmp_path / "runs"
    dapt_config = RunConfig(
        data=chain_root / "brats",
        init=str(chain_root / "imagenet_like.pth"),
        strategy="DA_L1SB",
        phase_epochs={"head": 2, "last_blocks": 1},
        lr=1e-3,
        out=runs,
        **FAST,
    )
    dapt, exported = pretrain_dapt(dapt_config)
    meta = read_export_metadata(exported)
    assert meta["origin"]["run"] == str(dapt.run_dir.resolve()) and meta["spec"]["truncate"] is None
    assert json.loads((dapt.run_dir / "metrics.json").read_text())["energy"]["kwh"] >= 0
    assert_fills_a_unet_encoder(exported)  # segmentation takes the export, or the run directory
    assert_fills_a_unet_encoder(dapt.run_dir)

    # a second store: CE-MRI-like tumour types, fine-tuned from the DAPT run (--init RUN_DIR)
    cemri = write_store(tmp_path / "cemri", ["glioma", "meningioma", "pituitary"], n=24)
    fine = run(RunConfig(data=cemri, init=str(dapt.run_dir), strategy="linear", epochs_scale=0.05, lr=1e-2,
                         out=runs, **FAST))  # fmt: skip
    fine_metrics = json.loads((fine.run_dir / "metrics.json").read_text())
    assert fine_metrics["energy"]["kwh"] >= 0 and "missing 0;" in fine_metrics["init_report"]
    assert str(exported) in fine_metrics["init_report"]  # --init RUN_DIR took the run's exported backbone
    assert_fills_a_unet_encoder(fine.run_dir)  # a run without exports: its best weights' encoder

    # or features of the DAPT backbone for a probe
    feats = export_features("resnet10t", cemri, tmp_path / "feats", init=str(exported), device="cpu")
    assert (feats / "features_all.npy").is_file() or (feats / "features_train.npy").is_file()

    # an external store whose classes are named otherwise
    names = ["glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"]
    kaggle = write_store(tmp_path / "kaggle", names, signal_of=[0, 1, 3, 2], n=16, seed=3)
    class_map = {"glioma_tumor": "glioma", "meningioma_tumor": "meningioma", "pituitary_tumor": "pituitary"}
    external = evaluate_run(fine.run_dir, kaggle, class_map=class_map, bootstrap=0, device="cpu")
    assert external.metrics["auroc"] == external.metrics["auroc"]  # a number, not NaN

    chain = lineage(fine.run_dir)
    assert [s.run_dir for s in chain[:2]] == [fine.run_dir.resolve(), dapt.run_dir.resolve()]
    assert chain[1].strategy == "DA_L1SB" and chain[-1].init == str(chain_root / "imagenet_like.pth")
    assert all(s.kwh is not None for s in chain[:2])


def assert_fills_a_unet_encoder(init) -> None:
    """``init`` loads into a U-Net's encoder with zero missing keys; the decoder and head are new."""
    from medtl.models import load_init
    from medtl.models.unet import build_unet

    report = load_init(build_unet("resnet10t", 2, in_chans=1), str(init))
    assert report.loaded and report.missing == [] and report.mismatched == [], report.summary()
    assert sorted({n.split(".")[0] for n in report.new}) == ["decoder", "head"]
    assert "missing 0;" in report.summary()


def test_truncated_strategy_exports_a_truncated_backbone(chain_root, tmp_path):
    config = RunConfig(data=chain_root / "brats", init="random", strategy="DA_TF_F1B",
                       phase_epochs={"head": 1, "all_non_bn": 1}, out=tmp_path / "runs", **FAST)  # fmt: skip
    _, exported = pretrain_dapt(config)
    assert read_export_metadata(exported)["spec"]["truncate"] == 1
    from safetensors.torch import load_file

    assert not any(k.startswith(("layer2", "layer3", "layer4")) for k in load_file(exported))


def test_a_strategy_that_trains_no_backbone_is_refused_before_training(chain_root, tmp_path):
    config = RunConfig(
        data=chain_root / "brats", init="random", strategy="linear", out=tmp_path / "runs", **FAST
    )
    with pytest.raises(ConfigError, match="strategy 'linear' trains no backbone parameter"):
        pretrain_dapt(config)
    assert not (tmp_path / "runs").exists()
    check_trains_backbone("DA", "resnet10t")  # DA trains all non-BN parameters: accepted
