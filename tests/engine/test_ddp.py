"""Two CPU processes (gloo) train one run with DDP and end with identical weights."""

from __future__ import annotations

import json
import os
import socket

import torch
import torch.multiprocessing as mp

from medtl.engine.run_config import RunConfig


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, values: dict, port: int, out: str) -> None:
    os.environ.update(
        {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1"}
    )
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    from medtl.engine import run
    from medtl.engine.callbacks import Callback

    class KeepWeights(Callback):
        def on_train_end(self, model) -> None:
            torch.save({k: v.clone() for k, v in model.state_dict().items()}, f"{out}/rank{rank}.pt")

    run(RunConfig(**values), callbacks=[KeepWeights()])
    torch.distributed.destroy_process_group()


def test_two_processes_end_with_identical_weights(make_config, tmp_path):
    # The head phase (cached features) and a phase where the last block and BatchNorm train.
    strategy = tmp_path / "two.toml"
    strategy.write_text(
        '[[phases]]\nname = "head"\ntrainable = ["head"]\nepochs = 1\nlr = 1e-2\nbn = "frozen"\n'
        '[[phases]]\nname = "block"\ntrainable = ["last_blocks:1", "head"]\nepochs = 1\nlr = 1e-3\n'
    )
    config = make_config(strategy=str(strategy), phase_epochs={}, lr=None, batch_size=4)
    mp.spawn(_worker, args=(config.model_dump(), _free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # rank 0 wrote the run: its last checkpoint is what both processes hold
    from safetensors.torch import load_file

    last = load_file(config.run_dir / "checkpoints" / "last.safetensors")
    for key, value in last.items():
        assert torch.equal(value, a[key]), key
    metrics = json.loads((config.run_dir / "metrics.json").read_text())
    assert [h["phase"] for h in metrics["history"]] == ["head", "block"]
