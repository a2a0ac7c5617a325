"""The vector engine's joined draws: the sequence of values the draw-block rule's blocks
make (as the SimPy engine draws them), cut wherever the engine asks, one numpy call per
ask. A distribution that redraws (a truncated normal, a uniform from 0) is not joinable
and is drawn in whole blocks, one by one."""

from __future__ import annotations

import numpy as np
import pytest

from dlsys.simulator import (
    Exponential,
    LogNormal,
    Normal,
    Pareto,
    ShiftedExponential,
    Uniform,
)
from dlsys.simulator.distributions import FIRST_BLOCK, MAX_BLOCK

DISTS = [
    Exponential(1.5),
    ShiftedExponential(0.2, 3.0),
    LogNormal(0.1, 0.8),
    Pareto(2.5, 0.3),
    Uniform(0.5, 2.0),
    Uniform(0.0, 1.0),
    Normal(0.2, 1.0),
]


@pytest.mark.parametrize("dist", DISTS, ids=lambda d: f"{d.kind}-{d.joinable}")
@pytest.mark.parametrize("speed", [1, 3])
def test_joined_draws_are_the_block_sequence(dist, speed):
    blocks = dist.block_sampler(np.random.default_rng(7), speed)
    joined = dist.joined_sampler(np.random.default_rng(7), speed)
    # asks: inside the first block, across growing blocks, many MAX_BLOCK blocks at once
    asks = (1, 16, 17, 100, 3 * MAX_BLOCK + 1, 5, MAX_BLOCK, 1)
    got = []
    for m in asks:
        got.append(joined(m))
        assert len(got[-1]) >= m
        if dist.joinable:
            assert len(got[-1]) == m  # exactly what was asked: the cut does not matter
    got_all = np.concatenate(got)
    want, have = [], 0
    while have < len(got_all):
        want.append(blocks())
        have += len(want[-1])
    np.testing.assert_array_equal(got_all, np.concatenate(want)[: len(got_all)])


def test_unjoinable_draws_take_whole_blocks():
    joined = Normal(1.0, 0.5).joined_sampler(np.random.default_rng(0))
    # blocks 16, 32, 64, ... 4096: m = 17 takes the first two (16 + 32 = 48 values)
    assert FIRST_BLOCK == 16 and MAX_BLOCK == 4096
    assert len(joined(17)) == 48
    assert len(joined(1)) == 64  # the third block
    # 128 + 256 + 512 + 1024 + 2048 = 3968 < 5000, so one more block: + 4096 = 8064
    assert len(joined(5000)) == 8064


def test_redrawing_distributions_are_not_joinable():
    assert not Normal(1.0, 0.5).joinable  # draws <= 0 are redrawn
    assert not Uniform(0.0, 1.0).joinable  # a draw of exactly 0 is redrawn
    assert Uniform(0.1, 1.0).joinable and Exponential(2.0).joinable
