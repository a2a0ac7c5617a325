"""The homework case, the tie rule and exact arithmetic for deterministic times."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlsys.simulator import Fixed, Learner, Scenario, Times, load_scenario, simulate
from dlsys.simulator.theory import async_staleness_from_times

ROOT = Path(__file__).resolve().parents[2]
HOMEWORK = ROOT / "examples" / "scenarios" / "homework_two_learners.toml"


def by_learner(result) -> list[tuple[str, int, int]]:
    recs = result.trace.records(order="learner")
    return [(r["learner"], r["seq"], r["staleness"]) for r in recs]


def test_homework_prints_0_0_1_0_2_2():
    # L1 finishes at 1, 2, 3, 4 s; L2 at 2.5, 5 s; reads at the own update (zero comm).
    # Updates in time order: L1@1 (read v0, applied v0), L1@2 (v1, v1), L2@2.5 (v0, v2: 2),
    # L1@3 (v2, v3: 1), L1@4 (v4, v4: 0), L2@5 (v3, v5: 2).
    res = simulate(load_scenario(HOMEWORK))
    assert by_learner(res) == [
        ("L1", 1, 0),
        ("L1", 2, 0),
        ("L1", 3, 1),
        ("L1", 4, 0),
        ("L2", 1, 2),
        ("L2", 2, 2),
    ]
    # Application order is the trace order; versions count 0..5.
    assert res.trace["version"].tolist() == [0, 1, 2, 3, 4, 5]
    assert res.trace["t_apply"].tolist() == [1.0, 2.0, 2.5, 3.0, 4.0, 5.0]
    assert res.summary["stop_reason"] == "learners finished"


def test_homework_matches_the_hand_reference():
    # theory.async_staleness_from_times is an independent, SimPy-free hand computation.
    assert async_staleness_from_times([[1, 2, 3, 4], [2.5, 5]]) == [[0, 0, 1, 0], [2, 2]]


def test_tie_rule_orders_by_read_version_then_learner_not_by_insertion():
    # A (index 0) starts at 0.5 and takes 0.5 s; B (index 1) starts at 0 and takes 1 s. Both
    # read version 0 and finish at t = 1. SimPy alone would fire B's timeout first (scheduled
    # earlier); the rule (time, read version, learner index) applies A first.
    sc = Scenario(
        learners=(
            Learner("A", Fixed(0.5), max_gradients=1, start_delay=0.5),
            Learner("B", Fixed(1.0), max_gradients=1),
        )
    )
    res = simulate(sc)
    assert by_learner(res) == [("A", 1, 0), ("B", 1, 1)]


def test_tie_rule_lower_read_version_first():
    # L1 finishes at 1 and 2 (its 2nd gradient read v1); L2 finishes once at 2 (read v0).
    # At t = 2 the tie goes to L2 (read version 0 < 1): L2 applied at v1 (staleness 1),
    # then L1's 2nd at v2 (read v1: staleness 1).
    sc = Scenario(learners=(Learner("L1", Times((1, 2))), Learner("L2", Times((2,)))))
    res = simulate(sc)
    assert by_learner(res) == [("L1", 1, 0), ("L1", 2, 1), ("L2", 1, 1)]
    assert res.trace["learner_name"].tolist() == ["L1", "L2", "L1"]


def test_reads_at_an_instant_see_every_update_of_that_instant():
    # L1 and L2 both finish at t = 1 (fixed 1 s); both updates are applied before either
    # reads, so both second gradients read version 2.
    sc = Scenario(
        learners=(
            Learner("L1", Fixed(1), max_gradients=2),
            Learner("L2", Fixed(1), max_gradients=2),
        )
    )
    res = simulate(sc)
    rv = {(r["learner"], r["seq"]): r["read_version"] for r in res.trace.records()}
    assert rv[("L1", 2)] == 2 and rv[("L2", 2)] == 2


def test_exact_arithmetic_keeps_decimal_ties():
    # In binary floats 0.7 + 0.1 = 0.7999999999999999 < 0.8, which would apply L1's 2nd
    # gradient before L2's and give staleness L1: [0, 0], L2: [2]. Exactly, both end at 0.8:
    # L2 (read v0) goes first -> L2 staleness 1, L1's 2nd (read v1, applied v2) staleness 1.
    assert 0.7 + 0.1 != 0.8
    sc = Scenario(
        learners=(Learner("L1", Times((0.7, 0.8))), Learner("L2", Fixed(0.8), max_gradients=1))
    )
    res = simulate(sc)
    assert by_learner(res) == [("L1", 1, 0), ("L1", 2, 1), ("L2", 1, 1)]
    assert res.trace["t_apply"].tolist() == [0.7, 0.8, 0.8]


def test_fixed_durations_accumulate_without_drift():
    # Ten 0.1 s gradients end at exactly 1.0 (a float sum gives 0.9999999999999999).
    assert sum([0.1] * 10) != 1.0
    res = simulate(Scenario(learners=(Learner("L", Fixed(0.1), max_gradients=10),)))
    assert res.trace["t_apply"][-1] == 1.0
    assert np.all(res.trace["staleness"] == 0)
