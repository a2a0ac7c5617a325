"""Closed forms the simulator is held to (see tests/simulator/test_theory.py).

Staleness (number of PS updates between a gradient's read and its application):

* async, learners with exponential compute times of rates l_i (L = sum l_i), no network:
  learner i's staleness is geometric, P(k) = p_i (1 - p_i)^k with p_i = l_i / L. Reason:
  during learner i's Exp(l_i) computation the other learners' updates form a Poisson
  process of rate L - l_i (memorylessness), and the number of its events before an
  Exp(l_i) event is geometric with success probability l_i / L. Learner i makes a share
  p_i of all updates, so over all updates P(k) = sum_i p_i^2 (1 - p_i)^k, with mean
  sum_i (1 - p_i) = n - 1.
* async, any compute-time distribution: every update happens while the other n - 1
  learners are each computing one gradient, and each of those gradients counts it once,
  so the staleness summed over all gradients is (n - 1) per update, less the updates seen
  by gradients still in flight at the end: the mean tends to n - 1.
* softsync / k-batch-async, an update every c gradients: mean staleness (n - 1) / c.

Runtime per PS update (Dutta et al. 2018, "Slow and stale gradients can win the race"),
n identical learners with exponential(mu) compute times, or shifted-exponential
(shift + exponential(mu)), no network: sync H_n / mu; k-sync (H_n - H_{n-K}) / mu;
k-batch-sync K / (n mu); async E[X] / n; k-batch-async K E[X] / n, where H_m is the m-th
harmonic number and E[X] the mean compute time. The shifted forms add the shift to the
sync and k-sync times; k-batch-sync has no closed form there.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from dlsys.simulator.distributions import Exponential, ShiftedExponential

if TYPE_CHECKING:
    from dlsys.simulator.scenario import Scenario


def harmonic(m: int) -> float:
    """H_m = 1 + 1/2 + ... + 1/m (H_0 = 0)."""
    if m < 0:
        raise ValueError(f"m: must be >= 0, got {m}")
    return float(sum(Fraction(1, j) for j in range(1, m + 1)))


def geometric_pmf(p: float, k: np.ndarray | int) -> np.ndarray:
    """P(K = k) = p (1 - p)^k for k = 0, 1, ... (number of failures before a success)."""
    if not 0 < p <= 1:
        raise ValueError(f"p: must be in (0, 1], got {p}")
    k = np.asarray(k)
    return p * (1.0 - p) ** k


def async_staleness_pmf(rates: list[float] | np.ndarray, k: np.ndarray | int) -> np.ndarray:
    """Staleness distribution over all updates for async exponential learners of ``rates``/s.

    P(k) = sum_i p_i^2 (1 - p_i)^k, p_i = rate_i / sum(rates).
    """
    r = np.asarray(rates, dtype=np.float64)
    if r.ndim != 1 or len(r) == 0 or not np.all(r > 0):
        raise ValueError(f"rates: must be a non-empty list of positive rates, got {rates!r}")
    p = r / r.sum()
    kk = np.asarray(k, dtype=np.float64)
    return np.sum(p[:, None] ** 2 * (1 - p[:, None]) ** kk.reshape(1, -1), axis=0).reshape(kk.shape)


def async_learner_mean_staleness(rates: list[float] | np.ndarray) -> np.ndarray:
    """Mean staleness of each async exponential learner: (1 - p_i) / p_i = (L - l_i) / l_i."""
    r = np.asarray(rates, dtype=np.float64)
    return (r.sum() - r) / r


def async_mean_staleness(n: int) -> float:
    """Mean staleness over all updates of async SGD with n learners: n - 1."""
    return float(n - 1)


def batched_mean_staleness(n: int, c: int) -> float:
    """Mean staleness when the PS updates every c gradients (softsync, k-batch-async): (n-1)/c."""
    return (n - 1) / c


def sync_time(n: int, rate: float, shift: float = 0.0) -> float:
    """Seconds per sync update, n learners of shift + Exp(rate): shift + H_n / rate."""
    return shift + harmonic(n) / rate


def k_sync_time(n: int, k: int, rate: float, shift: float = 0.0) -> float:
    """Seconds per k-sync update (the k-th fastest of n): shift + (H_n - H_{n-k}) / rate."""
    _check_k(n, k)
    return shift + (harmonic(n) - harmonic(n - k)) / rate


def k_batch_sync_time(n: int, k: int, rate: float) -> float:
    """Seconds per k-batch-sync update, n Exp(rate) learners: k / (n rate) (k arrivals of a
    Poisson process of rate n rate; no closed form with a shift)."""
    _check_k(n, k)
    return k / (n * rate)


def async_time(n: int, rate: float, shift: float = 0.0) -> float:
    """Seconds per async update, n learners of shift + Exp(rate): E[X] / n."""
    return (shift + 1.0 / rate) / n


def k_batch_async_time(n: int, k: int, rate: float, shift: float = 0.0) -> float:
    """Seconds per k-batch-async update, n learners of shift + Exp(rate): k E[X] / n."""
    _check_k(n, k)
    return k * (shift + 1.0 / rate) / n


def _check_k(n: int, k: int) -> None:
    if not 1 <= k <= n:
        raise ValueError(f"k: must be in 1..{n}, got {k!r}")


def async_staleness_from_times(completions: list[list[float]]) -> list[list[int]]:
    """Staleness by hand for async learners with zero communication, as in the homework.

    ``completions[i]`` lists learner i's completion times; all read version 0 at time 0 and
    each learner reads again at its own update. Same-time updates are applied in order of
    (read version, learner index). Returns the staleness of each learner's gradients.
    """
    events: list[tuple[Fraction, int, int]] = []
    for i, ts in enumerate(completions):
        for j, t in enumerate(ts):
            events.append((Fraction(str(t)), i, j))
    read = [0] * len(completions)
    out: list[list[int]] = [[0] * len(ts) for ts in completions]
    version = 0
    pending = sorted(events)
    while pending:
        instant = pending[0][0]
        now = [e for e in pending if e[0] == instant]
        pending = [e for e in pending if e[0] != instant]
        for _t, i, j in sorted(now, key=lambda e: (read[e[1]], e[1])):
            out[i][j] = version - read[i]
            version += 1
        for _t, i, _j in now:
            read[i] = version
    return out


def expectations(scenario: Scenario) -> dict[str, Any]:
    """The closed forms that apply to ``scenario`` (empty dict where none do).

    Keys: ``mean_staleness`` (updates), ``time_per_update`` (seconds), ``staleness_pmf``
    (the name of the distribution used for the histogram overlay).
    """
    out: dict[str, Any] = {}
    sc = scenario
    plain = (
        not sc.faults
        and sc.service_time == 0
        and all(
            lrn.pull_time == 0 and lrn.push_time == 0 and lrn.start_delay == 0
            for lrn in sc.learners
        )
    )
    if not plain:
        return out
    n = sc.n
    proto = sc.protocol
    dists = [lrn.compute for lrn in sc.learners]
    mean = proto.mean_staleness(n)
    if mean is not None:
        out["mean_staleness"] = mean
    if proto.geometric_staleness and all(isinstance(d, Exponential) for d in dists):
        out["staleness_pmf"] = "async-exponential"
    rates = {
        float(d.rate) if isinstance(d, Exponential | ShiftedExponential) else None for d in dists
    }
    shifts = {float(d.shift) if isinstance(d, ShiftedExponential) else 0.0 for d in dists}
    same = (
        len(rates) == 1
        and None not in rates
        and len(shifts) == 1
        and all(lrn.speed == 1 for lrn in sc.learners)
        and all(type(d) is type(dists[0]) for d in dists)
    )
    if same:
        (rate,) = rates
        (shift,) = shifts
        assert rate is not None
        tpu = proto.time_per_update(n, rate, shift)
        if tpu is not None:
            out["time_per_update"] = tpu
    return out


def scenario_rates(scenario: Scenario) -> list[float] | None:
    """Effective exponential rates (rate x speed) per second, or None if not all exponential."""
    out = []
    for lrn in scenario.learners:
        if not isinstance(lrn.compute, Exponential):
            return None
        out.append(lrn.compute.rate * float(lrn.speed))
    return out
