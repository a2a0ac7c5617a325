"""Engine internals: the fast path agrees with the general model; determinism; faults;
network; learning-rate rules."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from dlsys.simulator import (
    Crash,
    Exponential,
    Fixed,
    Learner,
    LogNormal,
    LRRule,
    Protocol,
    PSPause,
    Scenario,
    Slowdown,
    Times,
    simulate,
)
from dlsys.simulator.core import LOST, learner_streams
from dlsys.simulator.engine import Engine, finish_time
from dlsys.simulator.simpy_fast import run_fast, uses_fast_path

STORED = (
    "learner",
    "seq",
    "read_version",
    "version",
    "t_read",
    "t_start",
    "t_done",
    "t_apply",
    "status",
)


def hetero(n: int = 5, **kw) -> Scenario:
    return Scenario(
        learners=tuple(
            Learner(
                f"w{i}",
                Exponential(0.5 + i) if i % 2 else LogNormal(0.0, 0.7),
                start_delay=0.3 * (i == 3),
                max_gradients=40 if i == 4 else None,
            )
            for i in range(n)
        ),
        **kw,
    )


@pytest.mark.parametrize("stop", [{"until_updates": 500}, {"until_time": 40.0}])
def test_fast_path_equals_general_model(stop):
    # Same per-learner streams through both implementations: every stored column equal.
    sc = hetero(**stop)
    assert uses_fast_path(sc)
    fast = run_fast(sc, learner_streams(7, sc.n))
    slow = Engine(sc, learner_streams(7, sc.n)).run()
    assert fast.columns["t_start"] is fast.columns["t_read"]  # the fast path shares arrays
    for k in STORED:
        np.testing.assert_array_equal(fast.columns[k], slow.columns[k], err_msg=k)
    assert fast.updates == slow.updates and fast.t_end == slow.t_end
    assert fast.stop_reason == slow.stop_reason
    np.testing.assert_array_equal(fast.inflight_start, slow.inflight_start)


def test_same_seed_byte_identical_trace_and_summary():
    sc = hetero(until_updates=300)
    a, b = simulate(sc, seed=4), simulate(sc, seed=4)
    assert a.trace.csv_text().encode() == b.trace.csv_text().encode()
    assert json.dumps(a.summary) == json.dumps(b.summary)
    c = simulate(sc, seed=5)
    assert c.trace.csv_text() != a.trace.csv_text()


def test_adding_a_learner_keeps_the_others_draws():
    # Streams come from SeedSequence.spawn: learner 0's durations do not depend on n.
    def durations(n: int) -> np.ndarray:
        sc = Scenario(
            learners=tuple(Learner(f"w{i}", Exponential(1.0)) for i in range(n)), until_time=30.0
        )
        tr = simulate(sc, seed=9).trace
        mine = tr["learner"] == 0
        return (tr["t_done"] - tr["t_start"])[mine]

    two, three = durations(2), durations(3)
    m = min(len(two), len(three))
    assert m > 10
    np.testing.assert_array_equal(two[:m], three[:m])


def test_trace_storage_per_update_is_small():
    res = simulate(hetero(until_updates=2000))
    # fast path: learner, seq (int32), read_version, version (int64), t_read, t_apply
    # (float64), status (int8) = 4 + 4 + 8 + 8 + 8 + 8 + 1 = 41 bytes per update
    assert res.trace.nbytes / 2000 == 41
    general = simulate(
        hetero(until_updates=2000, service_time=0.0, protocol=Protocol("k-batch-async", k=1))
    )
    # general model: t_start and t_done are separate columns too: 41 + 16 = 57
    assert general.trace.nbytes / len(general.trace) == 57


def test_finish_time_through_slowdown_windows():
    # 3 s of work from t = 0, window [1, 2) at factor 2: 1 s done by t = 1, 0.5 s in the
    # window, 1.5 s after it: ends at 3.5.
    assert finish_time(0, 3, [(1, 2, 2)]) == Fraction(7, 2)
    # ends inside the window: 1 s before, then 0.25 s of work takes 0.5 s: 1.5
    assert finish_time(0, Fraction(5, 4), [(1, 2, 2)]) == Fraction(3, 2)
    # window entirely in the past
    assert finish_time(5, 1, [(1, 2, 2)]) == 6


def test_slowdown_in_a_run():
    sc = Scenario(
        learners=(Learner("A", Fixed(3), max_gradients=2),),
        faults=(Slowdown(start=1, end=2, factor=2, learner="A"),),
    )
    assert simulate(sc).trace["t_done"].tolist() == [3.5, 6.5]


def test_crash_loses_in_flight_gradient_and_restarts():
    # Fixed 1 s gradients; crash at 2.5 s (the 3rd gradient, started at 2, is lost);
    # back at 3.5 s: gradients end at 4.5 and 5.5 (the run stops at 6).
    sc = Scenario(
        learners=(Learner("A", Fixed(1)),),
        faults=(Crash("A", at=2.5, restart_after=1.0),),
        until_time=6.0,
    )
    res = simulate(sc)
    tr = res.trace
    assert tr["status"].tolist() == [0, 0, LOST, 0, 0]
    assert tr["seq"].tolist() == [1, 2, 3, 4, 5]
    assert tr["t_done"].tolist() == [1.0, 2.0, 2.5, 4.5, 5.5]
    assert tr["t_read"].tolist() == [0.0, 1.0, 2.0, 3.5, 4.5]
    assert res.summary["gradients_lost"] == 1
    # busy: 1 + 1 + 0.5 (lost) + 1 + 1 + 0.5 (in flight at 6) = 5 of 6 s
    assert res.summary["per_learner"][0]["busy_share"] == pytest.approx(5 / 6)


def test_crash_without_restart_shrinks_the_sync_barrier():
    # A 1 s, B 1.5 s; round 1 ends at 1.5. B crashes at 2 for good (its gradient is lost);
    # the barrier then waits only for A: A's gradients read at 1.5, 2.5 apply at 2.5, 3.5.
    sc = Scenario(
        learners=(Learner("A", Fixed(1)), Learner("B", Fixed(1.5))),
        protocol=Protocol("sync"),
        faults=(Crash("B", at=2),),
        until_updates=3,
    )
    tr = simulate(sc).trace
    ok = tr["status"] == 0
    assert sorted(set(tr["t_apply"][ok].tolist())) == [1.5, 2.5, 3.5]
    assert tr["learner_name"][tr["status"] == LOST].tolist() == ["B"]


def test_ps_pause_queues_arrivals():
    # Both finish at 1 during the pause [0.5, 2.25): both applied at 2.25, A (index 0) first.
    sc = Scenario(
        learners=(Learner("A", Fixed(1), max_gradients=1), Learner("B", Fixed(1), max_gradients=1)),
        faults=(PSPause(0.5, 2.25),),
    )
    tr = simulate(sc).trace
    assert tr["t_apply"].tolist() == [2.25, 2.25]
    assert tr["learner_name"].tolist() == ["A", "B"]
    assert tr["staleness"].tolist() == [0, 1]


def test_network_time_is_latency_plus_bytes_over_bandwidth():
    # pull 0.1 + 1000 / 10000 = 0.2 s; push 0.05 + 0.1 = 0.15 s; compute 1 s.
    sc = Scenario(
        learners=(
            Learner(
                "A",
                Fixed(1),
                max_gradients=2,
                pull_latency=0.1,
                push_latency=0.05,
                bandwidth=10_000,
                message_bytes=1000,
            ),
        ),
    )
    tr = simulate(sc).trace
    assert tr["t_start"].tolist() == [0.2, 1.55]
    assert tr["t_done"].tolist() == [1.2, 2.55]
    assert tr["t_apply"].tolist() == [1.35, 2.7]
    assert tr["t_read"].tolist() == [0.0, 1.35]


@pytest.mark.parametrize(
    ("rule", "expect"),
    [
        (LRRule("constant", 0.1), [0.1, 0.1, 0.1]),
        (LRRule("inverse-staleness", 0.1), [0.1, 0.1, 0.05]),  # staleness 0 -> alpha / 1
        (LRRule("inverse-power", 0.1, a=0.5), [0.1, 0.1 / 2**0.5, 0.1 / 3**0.5]),
    ],
)
def test_learning_rate_rules(rule, expect):
    # Homework-like: staleness 0, 1, 2 by construction (A at 1; B at 2 read v0 -> 1;
    # C at 3 read v0 -> 2).
    sc = Scenario(
        learners=tuple(
            Learner(x, Fixed(t), max_gradients=1) for x, t in (("A", 1), ("B", 2), ("C", 3))
        ),
        lr=rule,
    )
    tr = simulate(sc).trace
    assert tr["staleness"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(tr["lr"], expect, rtol=1e-15)


def test_summary_percentiles_match_numpy():
    res = simulate(hetero(until_updates=3000), seed=2)
    tr = res.trace
    for i, p in enumerate(res.summary["per_learner"]):
        x = tr["staleness"][tr["learner"] == i]
        q = np.percentile(x, [50, 95, 99], method="inverted_cdf")
        assert [p["staleness"]["p50"], p["staleness"]["p95"], p["staleness"]["p99"]] == q.tolist()
        assert p["staleness"]["mean"] == pytest.approx(x.mean())


def test_crash_while_pulling_records_a_lost_gradient_with_its_own_number():
    # pull 0.5 s, compute 1 s: gradient 1 read at 0, done 1.5, applied 1.5; gradient 2 read
    # at 1.5, crash at 1.75 while pulling: lost, no compute start; restart at 2: gradient 3.
    sc = Scenario(
        learners=(Learner("A", Fixed(1), pull_latency=0.5),),
        faults=(Crash("A", at=1.75, restart_after=0.25),),
        until_updates=2,
    )
    tr = simulate(sc).trace
    assert tr["seq"].tolist() == [1, 2, 3]
    assert tr["status"].tolist() == [0, LOST, 0]
    assert np.isnan(tr["t_start"][1]) and tr["t_done"][1] == 1.75
    assert tr["t_read"].tolist() == [0.0, 1.5, 2.0]
    assert tr["t_apply"][2] == 3.5  # 2 + 0.5 pull + 1 compute


def test_restart_waits_for_its_queued_gradient_in_sync():
    # Regression: A (1 s) pushes g1 at 1 and waits for the barrier; it crashes at 1.5 and is
    # back at 2 while g1 is still queued. It must wait for that round (B finishes at 3), not
    # read version 0 again and compute a second gradient for the same round.
    sc = Scenario(
        learners=(Learner("A", Fixed(1)), Learner("B", Fixed(3))),
        protocol=Protocol("sync"),
        faults=(Crash("A", at=1.5, restart_after=0.5),),
        until_updates=2,
    )
    tr = simulate(sc).trace
    first = tr["version"] == 0
    assert sorted(tr["learner_name"][first].tolist()) == ["A", "B"]
    a2 = (tr["learner_name"] == "A") & (tr["seq"] == 2)
    assert tr["t_read"][a2].tolist() == [3.0] and tr["read_version"][a2].tolist() == [1]
    assert tr["status"].tolist() == [0, 0, 0, 0]  # nothing lost: A was idle when it crashed


def test_run_without_any_gradient_row():
    # Regression: the only learner crashes for good before its first gradient is done; an
    # empty trace must still give a summary (bincount of an empty array is int64).
    sc = Scenario(
        learners=(Learner("A", Exponential(1.0)),), faults=(Crash("A", at=0.0),), until_time=2.0
    )
    res = simulate(sc)
    assert res.summary["updates"] == 0 and res.summary["staleness"]["mean"] is None
    assert res.summary["per_learner"][0]["busy_share"] == 0.0


def test_restart_waits_for_its_gradient_in_ps_service():
    # Regression: both push at 1; the PS serves the sync update over [1, 2). A crashes at 1.5
    # and is back at 1.75 while its gradient is in service: it must read version 1 at 2.
    sc = Scenario(
        learners=(Learner("A", Fixed(1)), Learner("B", Fixed(1))),
        protocol=Protocol("sync"),
        service_time=1,
        faults=(Crash("A", at=1.5, restart_after=0.25),),
        until_updates=2,
    )
    tr = simulate(sc).trace
    a2 = (tr["learner_name"] == "A") & (tr["seq"] == 2)
    assert tr["t_read"][a2].tolist() == [2.0] and tr["read_version"][a2].tolist() == [1]
    assert np.all(tr["staleness"] == 0)


def test_crash_at_the_instant_of_a_read_keeps_gradient_numbers_dense():
    # Regression: A starts at 2 and crashes at 2, before reading. Nothing was computed, so
    # its first gradient (after the restart at 3) is still number 1, with the first duration.
    sc = Scenario(
        learners=(Learner("A", Times((1, 3)), start_delay=2),),
        faults=(Crash("A", at=2, restart_after=1),),
    )
    tr = simulate(sc).trace
    assert tr["seq"].tolist() == [1, 2]
    assert tr["t_done"].tolist() == [4.0, 6.0]  # durations 1 and 2 (times 1, 3)
