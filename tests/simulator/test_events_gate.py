"""The compiled event loop's SSP gate (:mod:`dlsys.simulator.vector_events`) against the
SimPy engine: the loop keeps the smallest live clock with a count of the learners at it and
re-checks held learners only when it moves, so these scenarios move it every way it can
move -- the last learner at it pushes, the slowest learner finishes (``max_gradients``, a
``times`` list that runs out), late starters hold it at 0 -- and compare byte for byte."""

from __future__ import annotations

import json

import pytest

from dlsys.simulator import Exponential, Fixed, Learner, Protocol, Scenario, Times, simulate
from dlsys.simulator.testing import assert_engines_agree


def same(sc: Scenario, seed: int = 0) -> None:
    """The vector engine runs ``sc`` and gives the SimPy engine's trace CSV and summary."""
    assert_engines_agree(sc, seed, engine="vector")


@pytest.mark.parametrize("s", [0, 1, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_slowest_learners_finish_while_others_are_held(s, seed):
    # The two slowest learners stop after 5 and 12 gradients: the gate's minimum jumps to
    # the next slowest clock each time, and the fast learners held at it go on.
    learners = (
        Learner("slow", Exponential(0.3), max_gradients=5),
        Learner("slower", Exponential(0.2), max_gradients=12),
        *(Learner(f"w{i}", Exponential(1.0 + i)) for i in range(6)),
        Learner("late", Exponential(2.0), start_delay=4.0),  # clock 0 until it starts
    )
    sc = Scenario(learners=learners, protocol=Protocol("ssp", s=s), until_updates=400)
    same(sc, seed)


def test_gate_with_exact_ties_and_times_that_run_out():
    # Fixed 1 s and 3 s learners with s = 1: the fast one is held, and released at the
    # instant the slow one pushes (same instant: arrival, then the read); the slow one's
    # times run out after 4 gradients, and the fast one runs free.
    sc = Scenario(
        learners=(Learner("fast", Fixed(1)), Learner("slow", Times((3, 6, 9, 12)))),
        protocol=Protocol("ssp", s=1),
        until_updates=30,
    )
    same(sc)
    tr = simulate(sc, engine="vector").trace
    fast = tr["t_read"][tr["learner"] == 0].tolist()
    # reads at 0 and 1; pushed 2 at t = 2 while slow has 0: held until slow's push at 3;
    # pushes its 3rd at 4 (slow has 1): held until 6; then 9, 12; slow runs out at 12 and
    # fast, alone, reads at every second
    assert fast[:8] == [0, 1, 3, 6, 9, 12, 13, 14]


@pytest.mark.parametrize(
    "proto", [Protocol("ssp", s=0), Protocol("ssp", s=2), Protocol("k-async", k=2)], ids=str
)
@pytest.mark.parametrize("dist", ["exponential", "fixed", "times"])
@pytest.mark.parametrize("rows_block", [8, 4096])
def test_tiny_blocks_resume_where_the_loop_stopped(monkeypatch, proto, dist, rows_block):
    # Blocks of 16 durations per learner, and of 8 rows (the loop returns for rows at
    # almost every instant) or 4096 (it returns when a learner runs out of durations, in
    # the middle of an instant's reads): it goes on from its state, the run is the SimPy
    # engine's, and --summary-only (rows streamed to the summary block by block) gives the
    # full trace's summary.
    from dlsys.simulator import vector_common

    monkeypatch.setattr(vector_common, "DRAW_BLOCK", 8)  # durations: 16 per learner
    monkeypatch.setattr(vector_common, "BLOCK_ROWS", rows_block)
    make = {
        "exponential": lambda i: Exponential(0.5 + i),
        "fixed": lambda i: Fixed([1, 0.5, 1.5][i % 3]),
        "times": lambda i: Times(tuple(round(0.7 * (j + 1) * (1 + i / 3), 1) for j in range(30))),
    }[dist]
    learners = tuple(
        Learner(f"L{i}", make(i), start_delay=0.5 * (i == 2), max_gradients=25 if i == 3 else None,
                push_latency=0.1 * (i % 2))
        for i in range(5)
    )  # fmt: skip
    for stop in ({"until_updates": 120}, {"until_time": 20.0}):
        sc = Scenario(learners=learners, protocol=proto, **stop)
        same(sc)
        full, lean = simulate(sc), simulate(sc, trace=False)
        assert json.dumps(lean.summary, sort_keys=True) == json.dumps(full.summary, sort_keys=True)
