"""The vector engine: the SimPy engine's results without an event loop, where that is exact.

It gives byte-identical traces to :mod:`dlsys.simulator.engine` on the scenarios it accepts:
each learner draws from the same stream in the same blocks
(:meth:`Distribution.block_sampler`), every time is the same chain of floating-point
additions SimPy makes (``now + delay``, one delay at a time: ``numpy.cumsum`` adds in
order), deterministic times are exact (integers over a common denominator), and ties follow
the tie rule of the SimPy engine.

* ``merge`` (async, k-batch-async, softsync: learners never wait for anyone else). A
  learner's times are the running sums of its own pull, compute and push times, so each
  learner is one ``cumsum``. Sorting all arrivals gives the update times (update ``u`` comes
  with arrival ``k (u + 1)``); a gradient's read version is the number of updates at or
  before its read (reads see every update of their instant); sorting arrivals by (time,
  read version, learner) gives the queue, so version = queue position // k.
* ``rounds`` and ``loop`` (sync, k-sync, backup, k-batch-sync, k-async, ssp): the state a
  learner needs is global (a barrier, a gate), so :mod:`dlsys.simulator.vector_loops` runs
  a compiled event loop over arrays.

:func:`unsupported` names what a scenario has that this engine cannot do exactly (faults,
PS service time, mixed exact and random compute times, ...); ``engine="auto"`` then runs
SimPy and says why in ``summary["engine"]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from dlsys.simulator.core import RawRun, row_bytes
from dlsys.simulator.distributions import Time
from dlsys.simulator.scenario import Crash, PSPause, Scenario, Slowdown
from dlsys.simulator.simpy_fast import uses_fast_path
from dlsys.simulator.vector_loops import merge_order

#: Largest integer time (in units of 1 / denominator) the exact mode accepts: beyond 2**53
#: an int64 time would no longer convert to the float SimPy records exactly.
_EXACT_LIMIT = 2**53


def unsupported(scenario: Scenario) -> str | None:
    """Why the vector engine cannot run ``scenario`` exactly, or None if it can."""
    for f, what in ((Crash, "crash"), (Slowdown, "slowdown"), (PSPause, "ps-pause")):
        if any(isinstance(x, f) for x in scenario.faults):
            return f"{what} faults need engine='simpy'"
    if scenario.service_time:
        return "a PS service time needs engine='simpy'"
    kinds = {lrn.compute.exact for lrn in scenario.learners}
    if len(kinds) > 1:
        return (
            "mixing deterministic (fixed, times, trace) and random compute times needs "
            "engine='simpy'"
        )
    if scenario.protocol.vector_path == "cancel":
        return (
            f"protocol {scenario.protocol.kind!r} (cancelled and dropped gradients) needs "
            "engine='simpy'"
        )
    if True in kinds and _denominator(scenario) is None:
        return "deterministic times too fine for exact 53-bit arithmetic need engine='simpy'"
    return None


# ----------------------------------------------------------------------------- time units


def _exact_values(scenario: Scenario) -> list[Time]:
    out: list[Time] = []
    for lrn in scenario.learners:
        out += [lrn.start_delay, lrn.pull_time, lrn.push_time]
        vals = getattr(lrn.compute, "values", None)
        if vals is not None:
            out += [Fraction(v) / lrn.speed for v in vals]
        value = getattr(lrn.compute, "value", None)
        if value is not None:
            out.append(Fraction(value) / lrn.speed)
    if scenario.until_time is not None:
        out.append(scenario.until_time)
    return out


def _denominator(scenario: Scenario) -> int | None:
    """Common denominator of every deterministic time (None if too fine for 53 bits)."""
    d = 1
    for v in _exact_values(scenario):
        d = math.lcm(d, Fraction(v).denominator)
        if d > _EXACT_LIMIT:
            return None
    return d


class Units:
    """How times are held: floats (random compute times) or exact integers in units of
    ``1 / denominator`` seconds (deterministic compute times)."""

    def __init__(self, scenario: Scenario) -> None:
        self.exact = scenario.learners[0].compute.exact
        self.den = (_denominator(scenario) or 1) if self.exact else 1
        self.dtype = np.int64 if self.exact else np.float64

    def of(self, value: Time) -> Any:
        """A scenario time in these units (a float, or an exact integer)."""
        if self.exact:
            f = Fraction(value) * self.den
            assert f.denominator == 1
            return int(f)
        return float(value)

    def seconds(self, a: np.ndarray) -> np.ndarray:
        """Times in these units as float seconds, rounded as ``float(Fraction)`` rounds."""
        if not self.exact:
            return a
        if len(a) and int(np.max(np.abs(a))) >= _EXACT_LIMIT:
            raise OverflowError("exact times beyond 2**53 units")
        return a / np.float64(self.den) if self.den != 1 else a.astype(np.float64)

    def scalar(self, v: Any) -> float:
        """One time in these units as float seconds."""
        return float(Fraction(int(v), self.den)) if self.exact else float(v)


class Durations:
    """One learner's compute durations in :class:`Units`, drawn as the SimPy engine draws
    them (same stream, same blocks), handed out in chunks of any size."""

    def __init__(self, scenario: Scenario, i: int, rng: np.random.Generator, units: Units):
        spec = scenario.learners[i]
        self.units = units
        self.budget = spec.budget
        self.given = 0
        self.done = False
        self.left = np.zeros(0, dtype=units.dtype)
        self.draw: Callable[[], Any]
        self.cache: dict[int, np.ndarray] = {}
        if units.exact:
            self.draw = spec.compute.sampler(rng, spec.speed)  # type: ignore[arg-type]
        else:
            self.draw = spec.compute.block_sampler(rng, spec.speed)  # type: ignore[arg-type]

    def _block(self) -> np.ndarray:
        raw = self.draw()
        if not self.units.exact:
            return raw  # type: ignore[no-any-return]
        # Deterministic samplers hand out the same list object again (fixed, repeat):
        # convert each distinct block once.
        key = id(raw)
        hit = self.cache.get(key)
        if hit is None or len(hit) != len(raw):
            hit = np.array([self.units.of(v) for v in raw], dtype=np.int64)
            self.cache[key] = hit
        return hit

    def take(self, m: int) -> np.ndarray:
        """The next up to ``m`` durations (fewer once the budget or the values run out)."""
        if self.budget is not None:
            m = min(m, self.budget - self.given)
        parts = [self.left]
        have = len(self.left)
        while have < m:
            b = self._block()
            if len(b) == 0:
                break
            parts.append(b)
            have += len(b)
        out = np.concatenate(parts) if len(parts) > 1 else parts[0]
        self.left = out[m:]
        out = out[:m]
        self.given += len(out)
        if len(out) < m or (self.budget is not None and self.given >= self.budget):
            self.done = True
        return out


class Timeline:
    """One learner that never waits for anyone: its reads, compute starts, compute ends and
    arrivals at the PS (in :class:`Units`), extended chunk by chunk.

    Its next gradient reads at the instant its last one arrived (at once after a push for
    k-batch-async and softsync; at the update that applies it, which is its arrival, for
    async), so every time is a running sum: SimPy's additions ``t_read + pull``,
    ``t_start + compute``, ``t_done + push``, in that order (pull and push of 0 are not added
    there, and adding 0.0 changes no float).
    """

    def __init__(self, scenario: Scenario, i: int, durations: Durations, units: Units):
        spec = scenario.learners[i]
        self.dur = durations
        self.units = units
        self.start = units.of(spec.start_delay)
        # The first compute starts at start_delay + pull, both exact: SimPy adds them exactly.
        self.first_start = units.of(Fraction(spec.start_delay) + Fraction(spec.pull_time))
        self.pull = units.of(spec.pull_time)
        self.push = units.of(spec.push_time)
        self.network = bool(spec.pull_time or spec.push_time)
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.count = 0

    @property
    def last_arrival(self) -> Any:
        """Arrival of the last gradient so far (its start delay before the first)."""
        return self.parts[-1][3][-1] if self.count else self.start

    def extend(self, m: int) -> None:
        """Add the next up to ``m`` gradients."""
        d = self.dur.take(m)
        k = len(d)
        if k == 0:
            return
        dt = self.units.dtype
        first = self.count == 0
        prev = self.last_arrival
        if not self.network:
            c = np.empty(k + 1, dtype=dt)
            c[0] = self.first_start if first else prev
            c[1:] = d
            done = np.cumsum(c)[1:]
            arrive = done
            read = np.empty(k, dtype=dt)
            read[0] = prev
            read[1:] = done[:-1]
            start = read
        else:
            c = np.empty(3 * k + 1, dtype=dt)
            c[0] = prev
            c[1::3] = self.pull
            c[2::3] = d
            c[3::3] = self.push
            if first:  # start_delay + pull exactly, then compute
                c[0] = self.first_start
                c[1] = 0
            s = np.cumsum(c)
            start, done, arrive = s[1::3], s[2::3], s[3::3]
            read = np.empty(k, dtype=dt)
            read[0] = prev
            read[1:] = arrive[:-1]
        self.parts.append((read, start, done, arrive))
        self.count += k

    def columns(self) -> tuple[np.ndarray, ...]:
        """(t_read, t_start, t_done, t_arrive) of every gradient so far."""
        if not self.parts:
            e = np.zeros(0, dtype=self.units.dtype)
            return e, e, e, e
        if len(self.parts) > 1:
            self.parts = [tuple(np.concatenate(x) for x in zip(*self.parts, strict=True))]  # type: ignore[list-item]
        return self.parts[0]


# ----------------------------------------------------------------------------- merge


def cycle_means(scenario: Scenario) -> np.ndarray:
    """Rough seconds per gradient of each learner (to size the first draws only)."""
    out = []
    for lrn in scenario.learners:
        m = lrn.compute.mean / float(lrn.speed) + float(lrn.pull_time) + float(lrn.push_time)
        out.append(m if math.isfinite(m) and m > 0 else 1.0)
    return np.array(out)


def _grow(scenario: Scenario, tls: list[Timeline], units: Units, k: int) -> Any:
    """Extend the timelines until the first ``until_updates`` updates (or all before
    ``until_time``) and the computation in flight at the stop are known. Returns the
    horizon: every arrival up to it is known (inf once all learners are done)."""
    want = None if scenario.until_updates is None else k * scenario.until_updates
    t_stop = None if scenario.until_time is None else units.of(scenario.until_time)
    cyc = cycle_means(scenario) * (units.den if units.exact else 1.0)
    starts = np.array([float(t.start) for t in tls])
    goal = math.inf if t_stop is None else float(t_stop)
    if want is not None:
        goal = min(goal, (want * 1.02 + float(np.sum(starts / cyc))) / float(np.sum(1 / cyc)))
    while True:
        for i, t in enumerate(tls):
            if t.dur.done:
                continue
            last = float(t.last_arrival)
            if last < goal:
                if t.count:
                    cyc[i] = max((last - starts[i]) / t.count, 1e-300)
                t.extend(int(min((goal - last) / cyc[i] * 1.05, 2**40)) + 16)
        active = [t.last_arrival for t in tls if not t.dur.done]
        horizon = min(active) if active else math.inf
        if not active or (t_stop is not None and horizon >= t_stop):
            return horizon
        if want is not None:
            arr = np.concatenate([t.columns()[3] for t in tls])
            have = int(np.count_nonzero(arr <= horizon))
            if have >= want:
                return horizon
            goal = max(goal, float(horizon)) * (1.0 + max(0.05, (want - have) / max(have, 1)))
        else:
            goal = max(goal, float(horizon)) * 1.5


def run_merge(scenario: Scenario, rngs: list[np.random.Generator], reason: str) -> RawRun:
    """Run a merge-path protocol (async, k-batch-async, softsync); see the module docstring."""
    units = Units(scenario)
    n = scenario.n
    k = scenario.protocol.batch_size(n)
    assert k is not None
    tls = [Timeline(scenario, i, Durations(scenario, i, rngs[i], units), units) for i in range(n)]
    horizon = _grow(scenario, tls, units, k)
    cols = [t.columns() for t in tls]
    counts = np.array([t.count for t in tls], dtype=np.int64)
    learner = np.repeat(np.arange(n, dtype=np.int32), counts)
    seq = (np.arange(len(learner)) - np.repeat(np.cumsum(counts) - counts, counts) + 1).astype(
        np.int32
    )
    read, start, done, arrive = (np.concatenate([c[j] for c in cols]) for j in range(4))
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    first_read = np.array([t.start for t in tls], dtype=units.dtype)
    order, read_version = merge_order(arrive, offsets, first_read, k)
    upd = arrive[order[k - 1 :: k]]  # update u comes with arrival k (u + 1)
    known = int(np.searchsorted(upd, horizon, side="right")) if horizon != math.inf else len(upd)
    u_stop, t_stop = scenario.until_updates, scenario.until_time
    ts = None if t_stop is None else units.of(t_stop)
    if u_stop is not None and u_stop <= known and (ts is None or upd[u_stop - 1] < ts):
        stop, updates, t_end = "until_updates", u_stop, upd[u_stop - 1]
    elif ts is not None:
        stop, updates, t_end = "until_time", int(np.searchsorted(upd, ts, side="left")), ts
    else:
        stop, updates = "learners finished", len(upd)
        t_end = np.max(arrive) if len(arrive) else max(t.start for t in tls)
    rows = order[: k * updates]
    version = np.arange(len(rows), dtype=np.int64) // k
    t_apply = units.seconds(upd[version]) if len(rows) else np.zeros(0)
    out = {
        "learner": learner[rows],
        "seq": seq[rows],
        "read_version": read_version[rows],
        "version": version,
        "t_read": units.seconds(read[rows]),
    }
    fast = uses_fast_path(scenario)
    out["t_start"] = out["t_read"] if fast else units.seconds(start[rows])
    out["t_done"] = t_apply if fast else units.seconds(done[rows])
    out["t_apply"] = t_apply
    out["status"] = np.zeros(len(rows), dtype=np.int8)
    inflight = np.full(n, np.nan)
    if stop != "learners finished":
        pulls = np.repeat([t.pull != 0 for t in tls], counts)
        if stop == "until_updates":
            running = ((start < t_end) | ((start == t_end) & pulls)) & (done > t_end)
        else:
            running = (start < t_end) & (done >= t_end)
        idx = np.flatnonzero(running)
        inflight[learner[idx]] = units.seconds(start[idx])
    return RawRun(out, updates, units.scalar(t_end), stop, inflight, "vector", reason)


def run(
    scenario: Scenario,
    rngs: list[np.random.Generator],
    reason: str,
    sink: Callable[[dict[str, np.ndarray]], None] | None = None,
) -> RawRun:
    """Run ``scenario`` (which :func:`unsupported` accepts) on its vector path; ``sink`` as
    in :func:`dlsys.simulator.engine.run`."""
    if scenario.protocol.vector_path == "merge":
        raw = run_merge(scenario, rngs, reason)
        if sink is not None:
            raw.row_bytes = row_bytes(raw.columns)
            sink(raw.columns)
            raw.columns = {}
        return raw
    from dlsys.simulator import vector_events

    raw = vector_events.run(scenario, rngs, reason)
    if sink is not None:
        raw.row_bytes = row_bytes(raw.columns)
        sink(raw.columns)
        raw.columns = {}
    return raw
