"""Adaptor pretraining from cached embeddings vs running both frozen encoders every step (issue 9 §5).

Both train the same Adaptor (768 wide, 2 layers) with AdamW on the same pairs, batch size and order.
"cached" reads the embeddings ``medtl extract --reports`` writes (the embedding pass is timed once,
separately); "encoders" reads images from the store, runs the frozen vision backbone and tokenises
and runs the frozen text encoder for every batch, then makes the same Adaptor step. The figure is
wall time per epoch and the ratio.

    .venv/bin/python benchmarks/bench_adaptor_cached.py                    # resnet10t 64 px + tiny BERT
    .venv/bin/python benchmarks/bench_adaptor_cached.py --backbone resnet50 --size 224 \
        --bert-hidden 768 --bert-layers 12 --samples 128 --batch-size 32      # the study's encoder sizes
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _machine import cpu_name

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medtl.data.dataset import StoreDataset, make_loader
from medtl.data.transforms import build_transforms
from medtl.io.embeddings import load_embeddings
from medtl.io.store import SampleRecord, StoreWriter
from medtl.models import build_model
from medtl.models.adaptor import Adaptor
from medtl.models.text_encoders import TextEncoder
from medtl.pretrain.embeddings import export_embeddings
from tests.tiny_text import WORDS, write_tiny_bert


def paired_store(root: Path, n: int, size: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    store, reports = root / "store", root / "reports.csv"
    with StoreWriter(store, task="classification", image_shape=(1, size, size), class_names=["a", "b"],
                     label_shape=()) as writer:  # fmt: skip
        for i in range(n):
            image = rng.random((1, 1, size, size), dtype=np.float32)
            writer.add(f"s{i}", image, [SampleRecord(f"P{i}", f"{i}.png", -1, "a")], labels=np.array([i % 2]))
        writer.finish()
    lines = ["patient_id,findings,impression"]
    for i in range(n):
        words = rng.choice(WORDS, size=rng.integers(8, 30))
        lines.append(f"P{i},{' '.join(words[:-4])},{' '.join(words[-4:])}")
    reports.write_text("\n".join(lines) + "\n")
    return store, reports


def adaptor_step(adaptor: Adaptor, optimiser, image: torch.Tensor, text: torch.Tensor) -> None:
    loss = adaptor.loss(image, text)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()


def make_adaptor(vision_dim: int, text_dim: int):
    torch.manual_seed(0)
    adaptor = Adaptor(vision_dim, text_dim)
    return adaptor, torch.optim.AdamW(adaptor.parameters(), lr=2e-5, weight_decay=0.01)


def epoch_cached(emb_dir: Path, args) -> float:
    part = load_embeddings(emb_dir).splits["all"]
    image, text = torch.from_numpy(part.image), torch.from_numpy(part.text)
    adaptor, optimiser = make_adaptor(image.shape[1], text.shape[1])
    order = torch.randperm(len(image), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for i in range(0, len(order) - args.batch_size + 1, args.batch_size):
        idx = order[i : i + args.batch_size]
        adaptor_step(adaptor, optimiser, image[idx], text[idx])
    return time.perf_counter() - start


def epoch_encoders(store: Path, texts: list[str], bert: Path, args) -> float:
    torch.manual_seed(0)
    vision = build_model(args.backbone, 1, in_chans=1, image_size=args.size).eval().requires_grad_(False)
    encoder = TextEncoder(bert)
    adaptor, optimiser = make_adaptor(vision.backbone.num_features, encoder.dim)
    dataset = StoreDataset(store, transform=build_transforms(False, normalise="imagenet", in_chans=1))
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).numpy()
    loader = make_loader(dataset, batch_size=args.batch_size, sampler=order.tolist(), drop_last=True)
    start = time.perf_counter()
    for step, (x, _) in enumerate(loader):
        rows = order[step * args.batch_size : (step + 1) * args.batch_size]
        with torch.no_grad():
            image = vision.backbone.forward_pooled(x)
        text = encoder([texts[r] for r in rows])
        adaptor_step(adaptor, optimiser, image, text)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--bert-hidden", type=int, default=32)
    parser.add_argument("--bert-layers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: OpenMP threads fight other processes on a shared machine)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store, reports = paired_store(root, args.samples, args.size)
        bert = write_tiny_bert(root / "bert", hidden=args.bert_hidden, layers=args.bert_layers)
        start = time.perf_counter()
        emb = export_embeddings(
            args.backbone, store, reports, bert, root / "emb", init="random", device="cpu", batch_size=64
        )
        extract_s = time.perf_counter() - start
        from medtl.io.reports import read_reports
        from medtl.io.store import Store

        texts = read_reports(reports, Store(store)).texts
        cached = min(epoch_cached(emb, args) for _ in range(args.epochs))
        encoders = min(epoch_encoders(store, texts, bert, args) for _ in range(args.epochs))
    result = {"machine": cpu_name(), **vars(args), "extract_s": extract_s,
              "epoch_cached_s": cached, "epoch_encoders_s": encoders, "ratio": encoders / cached}  # fmt: skip
    print(json.dumps(result, indent=2))
    ratio = encoders / cached
    print(f"epoch: cached {cached:.3f} s, encoders every step {encoders:.3f} s, ratio {ratio:.1f}x")
    print(
        f"one-off extraction {extract_s:.2f} s: break-even after {extract_s / (encoders - cached):.1f} epochs"
    )


if __name__ == "__main__":
    main()
