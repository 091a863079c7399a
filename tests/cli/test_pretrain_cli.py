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
