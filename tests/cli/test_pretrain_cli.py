"""Pretraining commands: `medtl extract --reports`, `medtl runs lineage`; one red line for bad input."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from medtl.io.embeddings import load_embeddings
from medtl_cli.main import app
from tests.data.conftest import write_store
from tests.tiny_text import write_tiny_bert

runner = CliRunner()


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def paired(tmp_path):
    store = write_store(tmp_path / "cxr", patients=4, per_patient=2, size=32, classes=2)
    reports = tmp_path / "reports.jsonl"
    reports.write_text(
        "".join(json.dumps({"patient_id": f"P{p:03d}", "impression": "stable"}) + "\n" for p in range(3))
    )
    return store, reports


def test_extract_reports_writes_image_and_text_embeddings(tmp_path):
    store, reports = paired(tmp_path)
    bert = write_tiny_bert(tmp_path / "bert")
    args = [
        "extract",
        "resnet10t",
        "--data",
        str(store.path),
        "--out",
        str(tmp_path / "emb"),
        "--init",
        "random",
    ]
    args += ["--reports", str(reports), "--text-encoder", str(bert), "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 samples without a report skipped" in result.output
    emb = load_embeddings(tmp_path / "emb", store_checksum=store.checksum)
    assert sum(len(p) for p in emb.splits.values()) == 6 and emb.text_dim == 32
    strict = runner.invoke(app, [*args[:5], str(tmp_path / "emb2"), *args[6:], "--strict"])
    assert strict.exit_code == 2
    assert "2 of 8 samples" in error_line(strict)


def test_extract_reports_bad_text_encoder_dir(tmp_path):
    store, reports = paired(tmp_path)
    empty = tmp_path / "enc"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    args = [
        "extract",
        "resnet10t",
        "--data",
        str(store.path),
        "--out",
        str(tmp_path / "emb"),
        "--init",
        "random",
    ]
    result = runner.invoke(app, [*args, "--reports", str(reports), "--text-encoder", str(empty)])
    assert result.exit_code == 2
    assert "no weights (model.safetensors or pytorch_model.bin) and no tokenizer" in error_line(result)
    alone = runner.invoke(app, [*args, "--reports", str(reports)])
    assert alone.exit_code == 2 and "need both --reports FILE and --text-encoder DIR" in error_line(alone)
    assert not (tmp_path / "emb").exists()


def finished(result):
    assert result.exit_code == 0, result.output + result.stderr
    return result


def test_pretrain_simclr_then_finetune_from_the_run_directory(tmp_path):
    store = write_store(tmp_path / "ssl", patients=8, per_patient=2, size=32, classes=2)
    runs = tmp_path / "runs"
    common = ["--device", "cpu", "--workers", "0", "--out", str(runs)]
    args = ["pretrain", "simclr", "--data", str(store.path), "--backbone", "resnet10t", "--epochs", "1"]
    out = finished(
        runner.invoke(app, [*args, "--batch-size", "4", "--view-size", "24", *common, "--run-name", "ssl"])
    )
    assert "backbone for --init:" in out.output
    ssl_run = runs / "ssl"
    assert (ssl_run / "export" / "backbone.safetensors").is_file()
    # --init RUN_DIR: a pretraining run hands on its exported backbone, with zero missing keys
    fine = ["finetune", "--data", str(store.path), "--backbone", "resnet10t", "--init", str(ssl_run)]
    fine += ["--strategy", "linear", "--epochs", "head=1", "--batch-size", "4", "--run-name", "fine", *common]
    finished(runner.invoke(app, fine))
    metrics = json.loads((runs / "fine" / "metrics.json").read_text())
    assert "backbone.safetensors" in metrics["init_report"] and "missing 0;" in metrics["init_report"]
    lineage = finished(runner.invoke(app, ["runs", "lineage", str(runs / "fine"), "--json"]))
    chain = json.loads(lineage.output)
    assert [step["run"] for step in chain] == [str((runs / "fine").resolve()), str(ssl_run.resolve()), None]
    assert chain[1]["objective"] == "simclr" and chain[-1]["init"] == "random"
    table = finished(runner.invoke(app, ["runs", "lineage", str(runs / "fine")]))
    assert "simclr" in table.output and "energy of the chain" in table.output


def test_a_simclr_run_initialises_a_unet_on_a_mask_store(tmp_path):
    """`medtl finetune --data MASK_STORE --init SIMCLR_RUN`: the SimCLR backbone fills the U-Net's
    encoder with zero missing keys (the load report says so) and the U-Net trains."""
    from medtl.models import load_init
    from medtl.models.unet import build_unet
    from tests.seg_helpers import seg_store

    store = write_store(tmp_path / "ssl", patients=6, per_patient=2, size=32, classes=2)
    masks = seg_store(tmp_path / "seg", n=16)
    runs = tmp_path / "runs"
    common = ["--device", "cpu", "--workers", "0", "--out", str(runs)]
    simclr = ["pretrain", "simclr", "--data", str(store.path), "--backbone", "resnet10t", "--epochs", "1"]
    simclr += ["--batch-size", "4", "--view-size", "24", "--knn-every", "1", *common, "--run-name", "ssl"]
    finished(runner.invoke(app, simclr))
    assert "val_knn_accuracy" in json.loads((runs / "ssl" / "metrics.json").read_text())["history"][0]
    report = load_init(build_unet("resnet10t", 2, in_chans=masks.shape[0]), str(runs / "ssl"))
    assert report.missing == [] and report.mismatched == [] and "missing 0;" in report.summary()
    fine = ["finetune", "--data", str(masks.path), "--backbone", "resnet10t", "--init", str(runs / "ssl"),
            "--strategy", "linear", "--epochs", "head=1", "--batch-size", "8",
            "--bootstrap", "0"]  # fmt: skip
    finished(runner.invoke(app, [*fine, *common, "--run-name", "seg"]))
    metrics = json.loads((runs / "seg" / "metrics.json").read_text())
    assert metrics["objective"] == "segmentation" and "dice" in metrics["test"]
    assert "missing 0;" in metrics["init_report"] and "new: decoder, head" in metrics["init_report"]


def test_init_of_an_unfinished_run_is_refused(tmp_path):
    store = write_store(tmp_path / "s", patients=6, per_patient=2, size=32, classes=2)
    run_dir = tmp_path / "runs" / "half"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.toml").write_text('data = "x"\n')
    (run_dir / "status.json").write_text(json.dumps({"status": "running"}))
    args = ["finetune", "--data", str(store.path), "--backbone", "resnet10t", "--init", str(run_dir)]
    result = runner.invoke(app, [*args, "--device", "cpu", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "the run has not finished (status: running)" in error_line(result)
    assert not (tmp_path / "out").exists()


def test_pretrain_dapt_refuses_a_strategy_without_backbone_and_simclr_a_batch_of_one(tmp_path):
    store = write_store(tmp_path / "s", patients=6, per_patient=2, size=32, classes=2)
    dapt = ["pretrain", "dapt", "--data", str(store.path), "--backbone", "resnet10t", "--strategy", "linear"]
    result = runner.invoke(app, [*dapt, "--device", "cpu", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "trains no backbone parameter" in error_line(result)
    simclr = ["pretrain", "simclr", "--data", str(store.path), "--backbone", "resnet10t", "--batch-size", "1"]
    result = runner.invoke(app, [*simclr, "--device", "cpu", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "at least 2 images per batch" in error_line(result)
    assert not (tmp_path / "runs").exists()


def test_pretrain_dapt_exports_the_backbone(tmp_path):
    store = write_store(tmp_path / "s", patients=6, per_patient=2, size=32, classes=2)
    args = ["pretrain", "dapt", "--data", str(store.path), "--backbone", "resnet10t", "--init", "random"]
    args += ["--epochs", "head=1", "--epochs", "all_non_bn=1", "--batch-size", "4", "--device", "cpu"]
    out = finished(
        runner.invoke(app, [*args, "--workers", "0", "--out", str(tmp_path / "runs"), "--run-name", "d"])
    )
    assert (tmp_path / "runs" / "d" / "export" / "backbone.safetensors").is_file()
    assert "backbone for --init:" in out.output


def test_pretrain_adaptor_from_extracted_embeddings(tmp_path):
    store, reports = paired(tmp_path)
    bert = write_tiny_bert(tmp_path / "bert")
    args = [
        "extract",
        "resnet10t",
        "--data",
        str(store.path),
        "--out",
        str(tmp_path / "emb"),
        "--init",
        "random",
    ]
    finished(
        runner.invoke(app, [*args, "--reports", str(reports), "--text-encoder", str(bert), "--device", "cpu"])
    )
    train = [
        "pretrain",
        "adaptor",
        "--embeddings",
        str(tmp_path / "emb"),
        "--epochs",
        "2",
        "--batch-size",
        "2",
    ]
    out = finished(
        runner.invoke(app, [*train, "--device", "cpu", "--workers", "0", "--out", str(tmp_path / "runs")])
    )
    assert "adaptor:" in out.output
    (exported,) = (tmp_path / "runs").glob("*/export/adaptor.safetensors")
    adaptor_run = exported.parent.parent
    # downstream: the frozen encoder + the Adaptor's image path, and a head that trains
    fine = ["finetune", "--data", str(store.path), "--backbone", "resnet10t", "--strategy", "adaptor",
            "--epochs", "head=1", "--batch-size", "4", "--bootstrap", "0", "--device", "cpu",
            "--workers", "0", "--out", str(tmp_path / "fine")]  # fmt: skip
    done = finished(runner.invoke(app, [*fine, "--init", str(adaptor_run), "--fraction", "0.5"]))
    assert "head" in done.output and "yes" in done.output  # the head phase ran on cached features
    refused = runner.invoke(app, [*fine, "--init", "random"])
    assert refused.exit_code == 2
    assert "--init must name a finished `medtl pretrain adaptor` run" in error_line(refused)
