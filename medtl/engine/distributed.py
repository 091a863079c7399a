"""Data-parallel training across processes started by torchrun or SLURM (one process per GPU).

The process layout comes from the environment: torchrun sets RANK / WORLD_SIZE / LOCAL_RANK,
an ``srun`` task has SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID. MASTER_ADDR / MASTER_PORT name
the rendezvous (a single-node SLURM job defaults to this host). NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from medtl.errors import ConfigError

DEFAULT_PORT = "29500"


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info_from_env(env: Mapping[str, str] | None = None) -> DistInfo:
    """The process layout described by torchrun or SLURM variables (single process when neither)."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" in env and "RANK" in env:
        return DistInfo(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0")))
    if "SLURM_NTASKS" in env and "SLURM_PROCID" in env and int(env["SLURM_NTASKS"]) > 1:
        return DistInfo(
            int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", "0"))
        )
    return DistInfo()


def init_distributed(device: torch.device, env: Mapping[str, str] | None = None) -> DistInfo:
    """Join the process group when the environment describes several processes."""
    env = os.environ if env is None else env
    info = dist_info_from_env(env)
    if not info.enabled or (dist.is_available() and dist.is_initialized()):
        return info
    if "MASTER_ADDR" not in env:
        if int(env.get("SLURM_NNODES", "1")) > 1:
            raise ConfigError(
                "MASTER_ADDR is not set: a multi-node run needs the rendezvous host "
                "(export MASTER_ADDR=$(scontrol show hostnames $SLURM_NODELIST | head -n1))"
            )
        os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ.setdefault("MASTER_PORT", env.get("MASTER_PORT", DEFAULT_PORT))
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=info.rank, world_size=info.world_size)
    return info


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum(value: float, info: DistInfo) -> float:
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return float(t.item())


class EpochSampler(torch.utils.data.Sampler[int]):
    """The sample order of one epoch, the same in every process, split across ranks.

    The permutation depends only on ``seed`` (set per epoch by the trainer), so an interrupted
    run resumes with the same order and a cached-feature phase sees the same batches as one
    through the backbone. Ranks get equal shares (padded by wrapping, as DistributedSampler does)
    so every process makes the same number of steps.
    """

    def __init__(self, size: int, *, shuffle: bool, info: DistInfo = DistInfo()) -> None:
        self.size, self.shuffle, self.info = size, shuffle, info
        self.seed = 0
        self.per_rank = -(-size // info.world_size)

    def set_seed(self, seed: int) -> None:
        self.seed = seed

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        total = self.per_rank * self.info.world_size
        order = [order[i % self.size] for i in range(total)]
        return iter(order[self.info.rank : total : self.info.world_size])

    def __len__(self) -> int:
        return self.per_rank
