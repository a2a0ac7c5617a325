"""Random scenarios (every protocol, network, service time, faults) checked for invariants
that hold whatever the draws: no negative staleness, monotone versions and apply times,
one row per (learner, gradient number), the protocol's batch size, zero staleness for the
round-based protocols, and a byte-identical rerun."""

from __future__ import annotations

import random

import numpy as np
import pytest

from dlsys.simulator import (
    Crash,
    Exponential,
    Fixed,
    Learner,
    LRRule,
    Protocol,
    PSPause,
    Scenario,
    ShiftedExponential,
    Slowdown,
    Times,
    Uniform,
    simulate,
)
from dlsys.simulator.engine import APPLIED

PARAM = {
    "k-sync": "k",
    "k-batch-sync": "k",
    "k-async": "k",
    "k-batch-async": "k",
    "softsync": "c",
    "ssp": "s",
    "backup": "b",
}
KINDS = ["async", "sync", *PARAM]


def random_scenario(r: random.Random) -> Scenario | None:
    n = r.randint(1, 6)
    kind = r.choice(KINDS)
    if kind == "backup" and n < 2:
        kind = "async"
    kw = {}
    p = PARAM.get(kind)
    if p in ("k", "c"):
        kw[p] = r.randint(1, n)
    elif p == "s":
        kw[p] = r.randint(0, 3)
    elif p == "b":
        kw[p] = r.randint(0, n - 1)
    dists = [
        lambda: Exponential(r.uniform(0.5, 3)),
        lambda: Fixed(r.choice([0.5, 1, 1.5, 0.1])),
        lambda: Times(tuple(sorted({round(r.uniform(0.1, 20), 1) for _ in range(15)}))),
        lambda: Uniform(0.2, 1.0),
        lambda: ShiftedExponential(0.1, 2.0),
    ]
    learners = []
    for i in range(n):
        net = {}
        if r.random() < 0.3:
            net = {
                "pull_latency": r.choice([0, 0.05]),
                "push_latency": r.choice([0, 0.1]),
                "bandwidth": 1e6,
                "message_bytes": r.choice([0, 10_000]),
            }
        learners.append(
            Learner(
                f"L{i}",
                r.choice(dists)(),
                start_delay=r.choice([0, 0, 0.5]),
                max_gradients=r.choice([None, None, 5, 50]),
                speed=r.choice([1, 1, 2, 0.5]),
                **net,
            )
        )
    faults: list = []
    if r.random() < 0.5:
        faults.append(
            Crash(
                f"L{r.randrange(n)}",
                at=round(r.uniform(0, 5), 2),
                restart_after=r.choice([None, 1.0]),
            )
        )
    if r.random() < 0.3:
        faults.append(Slowdown(start=1.0, end=3.0, factor=3.0, learner=r.choice([None, "L0"])))
    if r.random() < 0.3:
        faults.append(PSPause(2.0, 4.0))
    return Scenario(
        learners=tuple(learners),
        protocol=Protocol(kind, **kw),
        faults=tuple(faults),
        service_time=r.choice([0, 0, 0.05]),
        until_updates=r.choice([None, 200]),
        until_time=40.0,
        lr=LRRule("inverse-power", 0.1, 0.5),
    )


@pytest.mark.parametrize("trial", range(60))
def test_random_scenario_invariants(trial):
    sc = random_scenario(random.Random(trial))
    assert sc is not None
    res = simulate(sc, seed=trial)
    tr = res.trace
    ok = tr["status"] == APPLIED
    st, v, ta = tr["staleness"][ok], tr["version"][ok], tr["t_apply"][ok]
    assert np.all(st >= 0)
    assert np.all(np.diff(v) >= 0) and np.all(np.diff(ta) >= 0)
    assert np.all(tr["t_done"] >= tr["t_read"])
    assert res.summary["updates"] == len(np.unique(v))
    assert len(set(zip(tr["learner"].tolist(), tr["seq"].tolist(), strict=True))) == len(tr)
    kind, param = sc.protocol.kind, sc.protocol.param
    sizes = np.bincount(v) if len(v) else np.zeros(0, dtype=np.int64)
    if kind in ("k-sync", "k-batch-sync", "k-async", "k-batch-async", "softsync"):
        assert np.all(sizes == param)
    if kind == "backup":
        assert np.all(sizes == sc.n - param)
    if kind in ("sync", "k-sync", "k-batch-sync", "backup"):
        assert np.all(st == 0)
    assert simulate(sc, seed=trial).trace.csv_text() == tr.csv_text()
