"""A tiny randomly initialised BERT and its tokenizer, saved like a downloaded model directory."""

from __future__ import annotations

from pathlib import Path

WORDS = [
    "no",
    "acute",
    "cardiopulmonary",
    "process",
    "normal",
    "heart",
    "size",
    "clear",
    "lungs",
    "effusion",
    "pneumothorax",
    "consolidation",
    "opacity",
    "left",
    "right",
    "lower",
    "lobe",
    "mild",
    "moderate",
    "small",
    "large",
    "pleural",
    "edema",
    "findings",
    "impression",
    "stable",
    "atelectasis",
]


def write_tiny_bert(directory: Path, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """config.json + model.safetensors + tokenizer files of a ``layers``-layer BERT of width ``hidden``
    (``hidden=768, layers=12`` is BERT-base's size, with a tiny vocabulary)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "."]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2 if hidden < 128 else hidden // 64,
        intermediate_size=2 * hidden if hidden < 128 else 4 * hidden,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
