"""Backup workers (Chen et al. 2016) on the vector engine's event loop against the SimPy
engine: the PS drops gradients read at an older version as it sees them and, once n - b
current ones are queued, applies the first n - b and drops the rest; stragglers compute on
into the next round. Byte-identical trace CSV and summary on every compute distribution,
with network and late starters, with tiny blocks, and on a schedule worked out by hand."""

from __future__ import annotations

import json

import pytest

from dlsys.simulator import (
    Exponential,
    Fixed,
    Learner,
    LogNormal,
    Pareto,
    Protocol,
    Scenario,
    Times,
    Uniform,
    simulate,
)
from dlsys.simulator.testing import assert_engines_agree

DISTS = {
    "exponential": lambda i: Exponential(0.5 + i),
    "uniform": lambda i: Uniform(0.0, 1.0 + i),
    "lognormal": lambda i: LogNormal(0.0, 0.3 + 0.2 * i),
    "pareto": lambda i: Pareto(2.5, 0.3 + 0.1 * i),
    "fixed": lambda i: Fixed([1, 0.5, 1.5, 2][i % 4]),
    "times": lambda i: Times(tuple(round(0.7 * (j + 1) * (1 + i / 3), 1) for j in range(30))),
}


def same(sc: Scenario, seed: int = 0) -> None:
    """The vector engine runs ``sc`` and gives the SimPy engine's trace CSV and summary."""
    assert_engines_agree(sc, seed, engine="vector")


def scenario(dist: str, b: int, net: bool, stop: dict) -> Scenario:
    learners = tuple(
        Learner(
            f"L{i}",
            DISTS[dist](i),
            start_delay=(4 if net else 0.25) * (i == 2),
            max_gradients=30 if i == 3 else None,
            pull_latency=0.05 * net * (i % 2),
            push_latency=0.1 * net,
        )
        for i in range(5)
    )
    return Scenario(learners=learners, protocol=Protocol("backup", b=b), **stop)


@pytest.mark.parametrize("dist", list(DISTS))
@pytest.mark.parametrize("b", [0, 1, 3])
def test_backup_identical_to_simpy(dist, b):
    for net, stop in ((False, {"until_updates": 100}), (True, {"until_time": 25.0})):
        same(scenario(dist, b, net, stop))


@pytest.mark.parametrize("rows_block", [8, 4096])
def test_backup_with_tiny_blocks(monkeypatch, rows_block):
    from dlsys.simulator import vector_common

    monkeypatch.setattr(vector_common, "DRAW_BLOCK", 8)  # durations: 16 per learner
    monkeypatch.setattr(vector_common, "BLOCK_ROWS", rows_block)
    for dist in ("exponential", "fixed"):
        sc = scenario(dist, 1, True, {"until_updates": 80})
        same(sc)
        full, lean = simulate(sc), simulate(sc, trace=False)
        assert json.dumps(lean.summary, sort_keys=True) == json.dumps(full.summary, sort_keys=True)


def test_backup_by_hand():
    # n = 3, b = 1: updates of 2. a, b, c take 1, 2, 3 s. t=2: a (arrived 1) and b form
    # update 0; both read v1 at 2. t=3: c arrives with v0 (dropped; reads v1 at 3) and a
    # with v1 (queued; the same instant's arrivals join by read version, so c's drop comes
    # first). t=4: b's v1 gradient makes update 1 with a's. t=6: c's v1 gradient arrives
    # stale again (dropped), with b's v2 that makes update 2 with a's (arrived 5).
    sc = Scenario(
        learners=(Learner("a", Fixed(1)), Learner("b", Fixed(2)), Learner("c", Fixed(3))),
        protocol=Protocol("backup", b=1),
        until_updates=3,
    )
    same(sc)
    tr = simulate(sc, engine="vector").trace
    assert tr["learner"].tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert tr["status_name"].tolist() == ["applied", "applied", "dropped"] * 2 + ["applied"] * 2
    assert tr["read_version"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert tr["t_done"].tolist() == [1, 2, 3, 3, 4, 6, 5, 6]
