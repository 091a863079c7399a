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


def write_tiny_bert(directory: Path, *, hidden: int = 32, seed: int = 0) -> Path:
    """config.json + model.safetensors + tokenizer files of a 2-layer BERT of width ``hidden``."""
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
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
