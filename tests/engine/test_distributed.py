"""Process layout from torchrun / SLURM variables, and the shared epoch order split across ranks."""

from __future__ import annotations

import pytest

from medtl.engine.distributed import DistInfo, EpochSampler, dist_info_from_env


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, DistInfo(0, 1, 0)),
        ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, DistInfo(3, 4, 1)),
        ({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}, DistInfo(5, 8, 1)),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, DistInfo(0, 1, 0)),
        # torchrun inside a SLURM allocation: torchrun's variables win
        ({"RANK": "1", "WORLD_SIZE": "2", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, DistInfo(1, 2, 0)),
    ],
)
def test_dist_info_from_env(env, expected):
    assert dist_info_from_env(env) == expected


def test_sampler_same_seed_same_order_and_ranks_partition_it():
    full = EpochSampler(10, shuffle=True)
    full.set_seed(7)
    order = list(full)
    assert sorted(order) == list(range(10))
    full.set_seed(7)
    assert list(full) == order
    full.set_seed(8)
    assert list(full) != order
    shares = []
    for rank in range(3):
        s = EpochSampler(10, shuffle=True, info=DistInfo(rank, 3, 0))
        s.set_seed(7)
        shares.append(list(s))
        assert len(s) == 4 and len(shares[-1]) == 4
    # rank r takes every 3rd sample of the shared order, padded by wrapping to 12
    padded = order + order[:2]
    assert shares == [padded[0::3], padded[1::3], padded[2::3]]


def test_sampler_without_shuffle_is_in_order():
    assert list(EpochSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]
