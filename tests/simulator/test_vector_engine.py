"""The vector engine against the SimPy engine: byte-identical trace CSV and summary (all but
summary["engine"]) on a table of every protocol x every compute distribution, and on random
small scenarios from hypothesis. SimPy is the reference: an independent event loop over the
same per-learner streams."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlsys.simulator import (
    Crash,
    Exponential,
    Fixed,
    Learner,
    LogNormal,
    Normal,
    Pareto,
    Protocol,
    PSPause,
    Scenario,
    ShiftedExponential,
    Slowdown,
    Times,
    TraceDurations,
    Uniform,
    simulate,
)
from dlsys.simulator.engine import choose_engine
from dlsys.simulator.testing import assert_engines_agree as same

PROTOCOLS = [
    Protocol("async"),
    Protocol("sync"),
    Protocol("k-sync", k=2),
    Protocol("k-batch-sync", k=2),
    Protocol("k-async", k=2),
    Protocol("k-batch-async", k=3),
    Protocol("softsync", c=2),
    Protocol("ssp", s=1),
    Protocol("backup", b=1),
]

DISTS = {
    "exponential": lambda i: Exponential(0.5 + i),
    "shifted-exponential": lambda i: ShiftedExponential(0.1 * i, 2.0),
    "uniform": lambda i: Uniform(0.0, 1.0 + i),
    "normal": lambda i: Normal(1.0, 0.5),
    "lognormal": lambda i: LogNormal(0.0, 0.3 + 0.2 * i),
    "pareto": lambda i: Pareto(2.5, 0.3 + 0.1 * i),
    "fixed": lambda i: Fixed([1, 0.5, 1.5, 0.1][i % 4]),
    "times": lambda i: Times(tuple(round(0.7 * (j + 1) * (1 + i / 3), 1) for j in range(30))),
    "trace": lambda i: TraceDurations((0.3, 0.2, 0.5, 0.1 * (i + 1)), repeat=True),
}


def table_scenario(proto: Protocol, dist: str, net: bool, stop: dict) -> Scenario:
    n = 4
    learners = tuple(
        Learner(
            f"L{i}",
            DISTS[dist](i),
            start_delay=0.25 * (i == 2),
            max_gradients=40 if i == 3 else None,
            speed=2 if i == 1 else 1,
            pull_latency=0.05 * net * (i % 2),
            push_latency=0.1 * net,
        )
        for i in range(n)
    )
    return Scenario(learners=learners, protocol=proto, **stop)


@pytest.mark.parametrize("proto", PROTOCOLS, ids=lambda p: p.kind)
@pytest.mark.parametrize("dist", list(DISTS))
def test_every_protocol_and_distribution_identical(proto, dist):
    for net, stop in ((False, {"until_updates": 150}), (True, {"until_time": 30.0})):
        sc = table_scenario(proto, dist, net, stop)
        simpy_name, auto_name = same(sc)
        assert simpy_name == "simpy"
        if choose_engine(sc)[0] == "vector":
            assert auto_name == "vector"


def test_learners_that_run_out_finish_the_run():
    # Times lists run out: the run ends when the last learner's last gradient arrives.
    sc = Scenario(
        learners=(Learner("a", Times((1, 2, 3, 4))), Learner("b", Times((2.5, 5)))),
        protocol=Protocol("k-batch-async", k=2),
    )
    assert same(sc) == ("simpy", "vector")
    assert simulate(sc, engine="vector").summary["stop_reason"] == "learners finished"


@pytest.mark.parametrize("proto", PROTOCOLS, ids=lambda p: p.kind)
def test_learners_that_finish_before_until_time(proto):
    # Every learner runs out before until_time = 40: SimPy still ends at 40 (its stop event
    # keeps the run alive), with stop reason until_time; a bug the vector loop once had.
    sc = Scenario(
        learners=(Learner("a", Times((1, 2, 3, 4))), Learner("b", Times((2.5, 5)))),
        protocol=Protocol(proto.kind, **({proto.PARAM: 1} if proto.PARAM else {})),
        until_time=40,
    )
    same(sc)
    assert simulate(sc).summary["stop_reason"] == "until_time"


@pytest.mark.parametrize("proto", PROTOCOLS, ids=lambda p: p.kind)
def test_exact_times_beyond_2_53_units_fall_back_to_simpy(proto):
    # until_time = 1e300 with half-second times is 2e300 units of 1/2 s: no int64 holds it
    # (the vector loops failed in numba's typing, exit 1; found by the options fuzz).
    # 2**52 s is 2**53 units: refused too; 2**52 - 1 s runs on the vector engine.
    learners = (Learner("a", Times((1, 2, 3, 4))), Learner("b", Times((2.5, 5))))
    param = {proto.PARAM: 1} if proto.PARAM else {}
    for until, engine in ((1e300, "simpy"), (2.0**52, "simpy"), (2.0**52 - 1, "vector")):
        sc = Scenario(learners=learners, protocol=Protocol(proto.kind, **param), until_time=until)
        assert same(sc) == ("simpy", engine)
        if engine == "simpy":
            with pytest.raises(ValueError, match=r"2\*\*53 units of 1/2 s .*engine='simpy'"):
                simulate(sc, engine="vector")
        assert simulate(sc).summary["sim_time"] == until


def test_ties_of_exact_times_follow_the_tie_rule():
    # Fixed 1 s and 0.5 s learners arrive together at every whole second: same order as SimPy.
    sc = Scenario(
        learners=(Learner("a", Fixed(1)), Learner("b", Fixed(0.5)), Learner("c", Fixed(1))),
        until_updates=50,
    )
    assert same(sc) == ("simpy", "vector")


@pytest.mark.parametrize(
    ("fault", "feature"),
    [
        (Crash("L0", at=1.0), "crash faults need engine='simpy'"),
        (Slowdown(1.0, 2.0, 2.0), "slowdown faults need engine='simpy'"),
        (PSPause(1.0, 2.0), "ps-pause faults need engine='simpy'"),
    ],
)
def test_forced_vector_engine_names_the_feature(fault, feature):
    sc = table_scenario(Protocol("async"), "exponential", False, {"until_updates": 10})
    sc = sc.replace(faults=(fault,))
    with pytest.raises(ValueError, match=f"^engine: {feature}$"):
        simulate(sc, engine="vector")
    res = simulate(sc)  # auto falls back to SimPy and says why
    assert res.summary["engine"] == {"name": "simpy", "reason": feature}


def test_other_unsupported_features_and_bad_engine_names():
    sc = table_scenario(Protocol("async"), "exponential", False, {"until_updates": 10})
    with pytest.raises(ValueError, match="engine: a PS service time needs engine='simpy'"):
        simulate(sc.replace(service_time=0.1), engine="vector")
    mixed = sc.replace(learners=(*sc.learners[:3], Learner("f", Fixed(1))))
    with pytest.raises(ValueError, match=r"mixing deterministic .* and random compute times"):
        simulate(mixed, engine="vector")
    with pytest.raises(ValueError, match="engine: unknown value 'vectr'; did you mean 'vector'"):
        simulate(sc, engine="vectr")


_DIST_NAMES = list(DISTS)


@st.composite
def small_scenarios(draw):
    n = draw(st.integers(1, 5))
    proto = draw(st.sampled_from(PROTOCOLS))
    if proto.param is not None and proto.PARAM in ("k", "c") and proto.param > n:
        proto = Protocol(proto.kind, **{proto.PARAM: n})
    if proto.kind == "backup":
        proto = Protocol("backup", b=min(proto.b, n - 1))
    exact = draw(st.booleans())
    pool = (
        ["fixed", "times", "trace"]
        if exact
        else [d for d in _DIST_NAMES if d not in ("fixed", "times", "trace")]
    )
    learners = []
    for i in range(n):
        dist = draw(st.sampled_from(pool))
        learners.append(
            Learner(
                f"L{i}",
                DISTS[dist](draw(st.integers(0, 3))),
                start_delay=draw(st.sampled_from([0, 0, 0.5, 0.3])),
                max_gradients=draw(st.sampled_from([None, None, 3, 20])),
                speed=draw(st.sampled_from([1, 1, 2, 0.5])),
                pull_latency=draw(st.sampled_from([0, 0, 0.1])),
                push_latency=draw(st.sampled_from([0, 0, 0.2])),
            )
        )
    stop = draw(
        st.sampled_from(
            [{"until_updates": 60}, {"until_time": 12.5}, {"until_updates": 30, "until_time": 9.0}]
        )
    )
    return Scenario(learners=tuple(learners), protocol=proto, **stop), draw(st.integers(0, 5))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_scenarios())
def test_random_small_scenarios_identical(case):
    sc, seed = case
    same(sc, seed)


@pytest.mark.parametrize("window", [7, 64])
@pytest.mark.parametrize("proto", [p for p in PROTOCOLS if p.vector_path == "merge"], ids=str)
@pytest.mark.parametrize("dist", ["exponential", "fixed", "times"])
def test_small_windows_give_the_same_run(monkeypatch, window, proto, dist):
    # The merge runs window by window (vector.WINDOW gradients each); tiny windows cut
    # batches, ties and start delays across windows: still byte-identical to SimPy.
    from dlsys.simulator import vector

    monkeypatch.setattr(vector, "WINDOW", window)
    for net, stop in ((False, {"until_updates": 150}), (True, {"until_time": 30.0})):
        sc = table_scenario(proto, dist, net, stop)
        assert same(sc) == ("simpy", "vector")
        full = simulate(sc)
        lean = simulate(sc, trace=False)
        assert json.dumps(lean.summary, sort_keys=True) == json.dumps(full.summary, sort_keys=True)
