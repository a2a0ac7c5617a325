"""The simulator held to the closed forms of dlsys.simulator.theory.

Tolerances are k standard errors of the estimate at the sample size used (k = 4 or 5; the
runs are seeded, so each assertion is deterministic; the margin says how far a correct
simulator could land from the theory by chance, at most ~6e-5 / 6e-7 two-sided).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlsys.simulator import (
    Exponential,
    Learner,
    LogNormal,
    Pareto,
    Protocol,
    Scenario,
    ShiftedExponential,
    Uniform,
    simulate,
)
from dlsys.simulator.theory import (
    async_learner_mean_staleness,
    async_staleness_pmf,
    batched_mean_staleness,
    expectations,
    geometric_pmf,
    harmonic,
)


def expo(n: int, rate: float = 1.0, **kw) -> Scenario:
    return Scenario(learners=tuple(Learner(f"w{i}", Exponential(rate)) for i in range(n)), **kw)


def batch_se(x: np.ndarray, batches: int = 20) -> float:
    """Standard error of the mean of a correlated series, from the spread of batch means."""
    m = len(x) // batches
    means = x[: m * batches].reshape(batches, m).mean(axis=1)
    return float(means.std(ddof=1) / math.sqrt(batches))


def test_closed_forms_by_hand():
    assert harmonic(4) == pytest.approx(1 + 1 / 2 + 1 / 3 + 1 / 4)  # 25/12
    assert Protocol("sync").time_per_update(4, 2.0) == pytest.approx(25 / 12 / 2)
    assert Protocol("k-sync", k=2).time_per_update(4, 1.0) == pytest.approx(1 / 4 + 1 / 3)  # H4-H2
    assert Protocol("k-batch-sync", k=3).time_per_update(4, 1.0) == pytest.approx(3 / 4)
    assert Protocol("async").time_per_update(4, 1.0, shift=0.5) == pytest.approx(1.5 / 4)
    assert Protocol("k-batch-async", k=2).time_per_update(4, 1.0) == pytest.approx(2 / 4)
    assert Protocol("sync").time_per_update(4, 2.0, shift=0.5) == pytest.approx(0.5 + 25 / 24)
    # No closed form: k-batch-sync with a shift, and the protocols Dutta et al. do not cover.
    assert Protocol("k-batch-sync", k=2).time_per_update(4, 1.0, shift=0.5) is None
    assert Protocol("ssp", s=1).time_per_update(4, 1.0) is None
    assert Protocol("backup", b=1).mean_staleness(4) is None
    assert Protocol("softsync", c=2).mean_staleness(4) == pytest.approx(3 / 2)  # (n - 1) / c
    # Mixture pmf: rates (1, 3): p = (1/4, 3/4); P(0) = 1/16 + 9/16 = 10/16.
    assert async_staleness_pmf([1, 3], 0) == pytest.approx(10 / 16)
    assert async_staleness_pmf([1, 3], np.arange(400)).sum() == pytest.approx(1.0)
    assert geometric_pmf(0.25, 2) == pytest.approx(0.25 * 0.75**2)
    assert async_learner_mean_staleness([1, 3]).tolist() == [3.0, 1 / 3]  # (L - l) / l
    assert batched_mean_staleness(8, 4) == 7 / 4


def test_async_exponential_per_learner_staleness_is_geometric():
    rates = [1.0, 2.0, 3.0, 4.0]
    sc = Scenario(
        learners=tuple(Learner(f"L{i}", Exponential(r)) for i, r in enumerate(rates)),
        until_updates=40_000,
    )
    tr = simulate(sc, seed=11).trace
    st, lrn = tr["staleness"], tr["learner"]
    p = np.array(rates) / sum(rates)
    for i in range(4):
        x = st[lrn == i]
        # Learner i's staleness values are i.i.d. geometric(p_i) (memorylessness), so the
        # standard error of their mean is sqrt((1 - p) / p^2 / count).
        mean, var = (1 - p[i]) / p[i], (1 - p[i]) / p[i] ** 2
        se = math.sqrt(var / len(x))
        assert abs(x.mean() - mean) < 4 * se, (i, x.mean(), mean, se)
        # P(staleness = 0) = p_i, a binomial proportion with SE sqrt(p (1 - p) / count).
        p0 = np.mean(x == 0)
        assert abs(p0 - p[i]) < 4 * math.sqrt(p[i] * (1 - p[i]) / len(x))
    # Over all updates the mixture sum_i p_i^2 (1 - p_i)^k, checked for k = 0..5.
    k = np.arange(6)
    obs = np.bincount(st, minlength=6)[:6] / len(st)
    th = async_staleness_pmf(rates, k)
    se = np.sqrt(th * (1 - th) / len(st))
    assert np.all(np.abs(obs - th) < 5 * se), (obs, th)


@pytest.mark.parametrize(
    "dist",
    [Uniform(0.5, 1.5), LogNormal(0.0, 1.0), Pareto(2.5, 1.0), ShiftedExponential(0.2, 3.0)],
    ids=lambda d: d.kind,
)
def test_async_mean_staleness_is_n_minus_1_for_any_distribution(dist):
    # Every update happens while the other n - 1 learners each compute one gradient, and each
    # of those gradients counts it once: sum(staleness of applied gradients) + sum over the
    # gradients still in flight at the end of (U - their read version) = (n - 1) U, exactly.
    n, updates = 6, 3000
    sc = Scenario(
        learners=tuple(Learner(f"w{i}", dist, speed=1 + i / 4) for i in range(n)),
        until_updates=updates,
    )
    tr = simulate(sc, seed=3).trace
    st = tr["staleness"]
    last_read = np.zeros(n, dtype=np.int64)
    for i in range(n):
        v = tr["version"][tr["learner"] == i]
        last_read[i] = v.max() + 1 if len(v) else 0
    deficit = int(np.sum(updates - last_read))
    assert int(st.sum()) + deficit == (n - 1) * updates
    # hence the mean is n - 1 less the boundary term deficit / U (18 / 3000 here)
    assert st.mean() == pytest.approx((n - 1) - deficit / updates, abs=1e-12)
    assert deficit / updates < 0.05


def estimate(sc: Scenario, seed: int = 0) -> tuple[float, np.ndarray]:
    res = simulate(sc, seed=seed)
    tr = res.trace
    t = np.unique(tr["t_apply"][tr["status"] == 0])  # one time per update
    return res.summary["time_per_update"], np.diff(np.concatenate([[0.0], t]))


@pytest.mark.parametrize(
    ("proto", "sd"),
    [
        # sd of one round time: max of 4 Exp(1) has variance 1 + 1/4 + 1/9 + 1/16
        (Protocol("sync"), math.sqrt(1 + 1 / 4 + 1 / 9 + 1 / 16)),
        # 2nd smallest of 4 Exp(1): sum of Exp(4) and Exp(3), variance 1/16 + 1/9
        (Protocol("k-sync", k=2), math.sqrt(1 / 16 + 1 / 9)),
        # 3 arrivals of a rate-4 Poisson process: Gamma(3, 4), variance 3 / 16
        (Protocol("k-batch-sync", k=3), math.sqrt(3 / 16)),
    ],
    ids=["sync", "k-sync", "k-batch-sync"],
)
def test_round_based_runtime_matches_dutta(proto, sd):
    updates = 2000
    sc = expo(4, protocol=proto, until_updates=updates)
    tpu, _ = estimate(sc)
    th = expectations(sc)["time_per_update"]
    # Rounds are i.i.d. (everything restarts at each update), so t_last / U is a mean of
    # U i.i.d. round times: SE = sd / sqrt(U).
    assert abs(tpu - th) < 4 * sd / math.sqrt(updates), (tpu, th)


@pytest.mark.parametrize(
    ("proto", "k"), [(Protocol("async"), 1), (Protocol("k-batch-async", k=2), 2)]
)
def test_async_runtime_matches_dutta(proto, k):
    # n Exp(1) learners that never wait: arrivals form a Poisson process of rate n, so the
    # time of the U-th update (k U arrivals) is Gamma(k U, n): mean k U / n, sd sqrt(k U) / n.
    n, updates = 4, 4000
    tpu, _ = estimate(expo(n, protocol=proto, until_updates=updates))
    assert tpu == pytest.approx(k / n, abs=4 * math.sqrt(k * updates) / n / updates)


def test_shifted_exponential_sync_and_k_sync():
    shift, rate, n, updates = 0.5, 2.0, 4, 2000
    ls = tuple(Learner(f"w{i}", ShiftedExponential(shift, rate)) for i in range(n))
    sync = Scenario(learners=ls, protocol=Protocol("sync"), until_updates=updates)
    tpu, _ = estimate(sync)
    # round = shift + max of 4 Exp(2): sd = sqrt(1 + 1/4 + 1/9 + 1/16) / 2
    assert abs(tpu - (shift + harmonic(4) / rate)) < 4 * 1.193 / 2 / math.sqrt(updates)
    ksync = sync.replace(protocol=Protocol("k-sync", k=3))
    tpu, _ = estimate(ksync)
    # round = shift + Exp(8) + Exp(6) + Exp(4): variance 1/64 + 1/36 + 1/16
    sd = math.sqrt(1 / 64 + 1 / 36 + 1 / 16)
    assert abs(tpu - (shift + (harmonic(4) - harmonic(1)) / rate)) < 4 * sd / math.sqrt(updates)


def test_async_shifted_exponential_runtime_is_mean_over_n():
    # Renewal reward: n learners each finishing every E[X] = 0.2 + 1/2 = 0.7 s on average
    # give E[X] / n per update; t_last / U has relative SE ~ CV / sqrt(U), CV = 0.5 / 0.7.
    n, updates = 5, 5000
    sc = Scenario(
        learners=tuple(Learner(f"w{i}", ShiftedExponential(0.2, 2.0)) for i in range(n)),
        until_updates=updates,
    )
    tpu, _ = estimate(sc)
    th = Protocol("async").time_per_update(n, 2.0, shift=0.2)
    assert tpu == pytest.approx(th, rel=4 * (0.5 / 0.7) / math.sqrt(updates))


@pytest.mark.parametrize("kind", ["softsync", "k-batch-async"])
def test_batched_mean_staleness_is_n_minus_1_over_c(kind):
    n, c, updates = 8, 4, 5000
    proto = Protocol(kind, c=c) if kind == "softsync" else Protocol(kind, k=c)
    sc = Scenario(
        learners=tuple(Learner(f"w{i}", LogNormal(0.0, 0.5)) for i in range(n)),
        protocol=proto,
        until_updates=updates,
    )
    st = simulate(sc, seed=5).trace["staleness"]
    # Successive staleness values are correlated; the SE comes from 20 batch means.
    se = batch_se(st.astype(float))
    # (n - 1) / c counts every update once per gradient in flight across it; the run's edge
    # is not random: the n gradients still in flight at the end are not in the trace, and
    # each would have counted at most max-staleness updates, so the finite-run mean is off
    # by at most n * max / gradients (8 * ~6 / 20,000 ~ 0.0024 here) besides the noise.
    edge = n * int(st.max()) / len(st)
    assert abs(st.mean() - (n - 1) / c) < 5 * se + edge, (st.mean(), se, edge)


def test_async_matches_a_hand_written_simpy_script():
    # An independent reference: the minimal SimPy script of benchmarks/simulator.py (one
    # process per learner, a version counter inline, scalar draws from the same per-learner
    # streams). dlsys must give exactly the same staleness sequence.
    import simpy

    rates = [0.5 + i / 10 for i in range(10)]
    updates = 3000
    env = simpy.Environment()
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(4).spawn(len(rates))]
    state = {"version": 0}
    log: list[tuple[int, int]] = []
    done = env.event()

    def learner(i, rng, scale):
        read = 0
        while True:
            yield env.timeout(rng.exponential(scale))
            log.append((i, state["version"] - read))
            state["version"] += 1
            if state["version"] == updates:
                done.succeed()
            read = state["version"]

    for i, r in enumerate(rates):
        env.process(learner(i, rngs[i], 1.0 / r))
    env.run(until=done)
    sc = Scenario(
        learners=tuple(Learner(f"w{i}", Exponential(r)) for i, r in enumerate(rates)),
        until_updates=updates,
    )
    tr = simulate(sc, seed=4).trace
    assert list(zip(tr["learner"].tolist(), tr["staleness"].tolist(), strict=True)) == log
