"""Frozen text encoders from a local directory: pooling, freezing, and directories that cannot work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medtl.errors import ConfigError, InputError, UnknownChoiceError, WeightsMissingError
from medtl.models.text_encoders import TextEncoder, describe, resolve_text_encoder
from tests.tiny_text import write_tiny_bert


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny-bert")


def test_pooler_cls_and_mean_embeddings(bert_dir):
    texts = ["no acute cardiopulmonary process .", "large left pleural effusion", "stable"]
    pooled = TextEncoder(bert_dir, pooling="pooler")
    cls = TextEncoder(bert_dir, pooling="cls")
    mean = TextEncoder(bert_dir, pooling="mean")
    a, b, c = (e.encode(texts, batch_size=2) for e in (pooled, cls, mean))
    assert a.shape == b.shape == c.shape == (3, 32) and a.dtype == np.float32
    # pooler output is tanh(W h_cls + b): bounded, and different from the raw CLS state
    assert np.abs(a).max() <= 1 and not np.allclose(a, b)
    # CLS state computed directly with transformers
    tokens = cls.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        direct = cls.model(**tokens).last_hidden_state[:, 0].numpy()
    assert np.allclose(b, direct, atol=1e-5)
    # batching does not change a text's embedding (padding is masked)
    assert np.allclose(mean.encode(texts[:1]), c[:1], atol=1e-5)


def test_encoder_is_frozen_and_stays_in_eval_mode(bert_dir):
    encoder = TextEncoder(bert_dir)
    encoder.train()
    assert not encoder.model.training
    assert not any(p.requires_grad for p in encoder.parameters())
    info = describe(encoder)
    assert info["dim"] == 32 and info["pooling"] == "pooler" and info["model_type"] == "bert"


def test_directory_without_weights_or_tokenizer(bert_dir, tmp_path):
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    for name in ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        (no_weights / name).write_bytes((bert_dir / name).read_bytes())
    with pytest.raises(
        InputError, match=r"no-weights: no weights \(model.safetensors or pytorch_model.bin\)"
    ):
        TextEncoder(no_weights)
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        (no_tokenizer / name).write_bytes((bert_dir / name).read_bytes())
    with pytest.raises(InputError, match=r"no tokenizer \(tokenizer.json or vocab.txt\)"):
        TextEncoder(no_tokenizer)
    with pytest.raises(InputError, match=r"no config\.json"):
        TextEncoder(tmp_path)
    with pytest.raises(InputError, match="directory not found"):
        TextEncoder(tmp_path / "absent")


def test_checkpoint_without_pooler_refuses_pooler_pooling(tmp_path):
    from transformers import BertModel

    d = write_tiny_bert(tmp_path / "bert")
    BertModel.from_pretrained(d, add_pooling_layer=False).save_pretrained(d)
    with pytest.raises(ConfigError, match="no pooler weights"):
        TextEncoder(d, pooling="pooler")
    assert TextEncoder(d, pooling="cls").encode(["stable"]).shape == (1, 32)


def test_model_type_needing_remote_code_is_read_as_bert(tmp_path):
    d = write_tiny_bert(tmp_path / "cxr")
    config = json.loads((d / "config.json").read_text())
    config["model_type"] = "cxr-bert"
    (d / "config.json").write_text(json.dumps(config))
    reference = TextEncoder(write_tiny_bert(tmp_path / "plain"), pooling="cls").encode(["mild edema"])
    assert np.allclose(TextEncoder(d, pooling="cls").encode(["mild edema"]), reference, atol=1e-5)


def test_known_names_resolve_under_the_weights_dir(tmp_path, bert_dir):
    with pytest.raises(WeightsMissingError, match=r"download dmis-lab/biobert-v1.1 into .*text/biobert"):
        resolve_text_encoder("biobert", tmp_path)
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "biobert").symlink_to(bert_dir)
    assert resolve_text_encoder("biobert", tmp_path) == tmp_path / "text" / "biobert"
    assert resolve_text_encoder(str(bert_dir)) == bert_dir
    with pytest.raises(UnknownChoiceError, match="unknown text encoder 'biobrt', did you mean 'biobert'"):
        resolve_text_encoder("biobrt")
