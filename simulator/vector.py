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
* ``rounds`` and ``chains`` (sync, k-sync, k-batch-sync: every learner reads at each
  update, :mod:`dlsys.simulator.vector_rounds`, :mod:`dlsys.simulator.vector_chains`) and
  ``events`` (k-async, ssp, backup: the state a learner needs is global, a gate or a drop
  rule, so :mod:`dlsys.simulator.vector_events` runs a compiled event loop over arrays).

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
from dlsys.simulator.limits import check_window
from dlsys.simulator.scenario import Crash, PSPause, Scenario, Slowdown
from dlsys.simulator.simpy_fast import uses_fast_path
from dlsys.simulator.vector_loops import (
    Columns,
    cut_timelines,
    extend_timelines,
    in_flight,
    merge_window,
)

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
    if True in kinds:
        den = _denominator(scenario)
        if den is None:
            return "deterministic times too fine for exact 53-bit arithmetic need engine='simpy'"
        if max(abs(Fraction(v)) for v in _exact_values(scenario)) * den >= _EXACT_LIMIT:
            return (
                f"deterministic times of 2**53 units of 1/{den} s or more (until_time included) "
                "need engine='simpy'"
            )
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
        self.draw: Callable[[], Any] = lambda: []
        self.joined: Callable[[int], np.ndarray] | None = None
        self.cache: dict[int, np.ndarray] = {}
        if units.exact:
            self.draw = spec.compute.sampler(rng, spec.speed)  # type: ignore[arg-type]
        else:
            self.joined = spec.compute.joined_sampler(rng, spec.speed)  # type: ignore[arg-type]

    def _block(self) -> np.ndarray:
        """The next block of a deterministic sampler, as exact integer units."""
        raw = self.draw()
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
        parts = [self.left] if len(self.left) else []
        have = len(self.left)
        if have < m and self.joined is not None:  # random: whole blocks, one call
            parts.append(self.joined(m - have))
            have += len(parts[-1])
        while have < m:
            b = self._block()
            if len(b) == 0:
                break
            parts.append(b)
            have += len(b)
        if len(parts) == 1:
            out = parts[0]
        else:
            out = np.concatenate(parts) if parts else self.left
        self.left = out[m:]
        out = out[:m]
        self.given += len(out)
        if len(out) < m or (self.budget is not None and self.given >= self.budget):
            self.done = True
        return out


class Timelines:
    """Every learner that never waits for anyone, as flat arrays: its reads, compute
    starts, compute ends and arrivals at the PS (in :class:`Units`), extended window by
    window and handed out up to a cut (:func:`extend_timelines`, :func:`split_timelines`).

    A learner's next gradient reads at the instant its last one arrived (at once after a
    push for k-batch-async and softsync; at the update that applies it, which is its
    arrival, for async), so every time is a running sum: SimPy's additions ``t_read +
    pull``, ``t_start + compute``, ``t_done + push``, in that order (pull and push of 0 are
    not added there, and adding 0.0 changes no float).
    """

    def __init__(self, scenario: Scenario, durations: list[Durations], units: Units):
        n = scenario.n
        dt = units.dtype
        self.dur = durations
        self.units = units
        self.start = np.zeros(n, dtype=dt)
        self.first_start = np.zeros(n, dtype=dt)
        self.pull = np.zeros(n, dtype=dt)
        self.push = np.zeros(n, dtype=dt)
        self.cycle = np.ones(n)  # rough seconds per gradient, as cycle_means gives them
        for i, spec in enumerate(scenario.learners):
            pull, push = spec.pull_time, spec.push_time
            m = spec.compute.mean / float(spec.speed) + float(pull) + float(push)
            if math.isfinite(m) and m > 0:
                self.cycle[i] = m
            self.start[i] = units.of(spec.start_delay)
            # The first compute starts at start_delay + pull, both exact: SimPy adds them
            # exactly.
            self.first_start[i] = (
                units.of(Fraction(spec.start_delay) + Fraction(pull)) if pull else self.start[i]
            )
            self.pull[i] = units.of(pull)
            self.push[i] = units.of(push)
        self.count = np.zeros(n, dtype=np.int64)  # gradients made so far
        self.emitted = np.zeros(n, dtype=np.int64)  # gradients handed out by take_until
        self.last_arrival = self.start.copy()  # arrival of the last gradient made (or start)
        self.last_emitted = np.zeros(n, dtype=dt)  # arrival of the last one handed out
        z = np.zeros(0, dtype=dt)
        self.pend: Columns = (z, z, z)  # pending gradients, learner by learner
        self.pend_off = np.zeros(n + 1, dtype=np.int64)

    def extend(self, wants: dict[int, int]) -> None:
        """Add the next up to ``wants[i]`` gradients of learner ``i``."""
        n = len(self.dur)
        lens = np.zeros(n + 1, dtype=np.int64)
        parts = []
        for i, m in wants.items():
            d = self.dur[i].take(m)
            lens[i + 1] = len(d)
            parts.append(d)
        dur = np.concatenate(parts) if parts else np.zeros(0, dtype=self.units.dtype)
        self.pend, self.pend_off = extend_timelines(
            self.pend,
            self.pend_off,
            dur,
            np.cumsum(lens),
            self.count,
            self.last_arrival,
            self.first_start,
            self.pull,
            self.push,
        )

    def take_until(self, cut: Any) -> tuple[Columns, np.ndarray, np.ndarray]:
        """Hand out the pending gradients that arrive at or before ``cut``: the store that
        holds them (t_start, t_done, t_arrive) and each learner's range ``lo[i]:hi[i]`` in
        it (the rest stay pending)."""
        cols, lo = self.pend, self.pend_off[:-1]
        counts, self.pend, self.pend_off = cut_timelines(self.pend, self.pend_off, cut)
        hi = lo + counts
        has = counts > 0
        self.emitted += counts
        self.last_emitted[has] = cols[2][hi[has] - 1]
        return cols, lo, hi


# ----------------------------------------------------------------------------- merge


def cycle_means(scenario: Scenario) -> np.ndarray:
    """Rough seconds per gradient of each learner (to size the first draws only)."""
    out = []
    for lrn in scenario.learners:
        m = lrn.compute.mean / float(lrn.speed) + float(lrn.pull_time) + float(lrn.push_time)
        out.append(m if math.isfinite(m) and m > 0 else 1.0)
    return np.array(out)


#: Gradients per window of the merge when rows stream into a summary (a window holds a few
#: hundred bytes per gradient); a run that keeps its trace uses windows TRACE_WINDOW times
#: larger (the trace itself is the bigger store there, and fewer windows cost less).
WINDOW = 1 << 19
TRACE_WINDOW = 8


class _Merge:
    """The merge path run window by window: each window makes every learner's gradients up
    to a common horizon (all arrivals up to it known), merges them into the PS queue and
    hands the rows of complete updates to ``emit``; memory does not grow with the run."""

    def __init__(self, scenario: Scenario, rngs: list[np.random.Generator], window: int) -> None:
        self.sc = scenario
        self.window = window
        self.units = units = Units(scenario)
        n = scenario.n
        self.k = scenario.protocol.batch_size(n) or 1
        self.tl = Timelines(
            scenario, [Durations(scenario, i, rngs[i], units) for i in range(n)], units
        )
        self.cyc = self.tl.cycle * (units.den if units.exact else 1.0)
        self.fast = uses_fast_path(scenario)
        self.base = 0  # arrivals merged so far (the queue positions handed out)
        self.start_le = np.zeros(n, dtype=np.int64)  # arrivals so far at or before each start
        self.carry_le = np.zeros(n, dtype=np.int64)  # ... at or before each last arrival
        self.held: dict[str, np.ndarray] | None = None  # a batch not complete yet
        self.updates = 0
        self.max_arrival: Any = None
        self.row_bytes = 0
        self.u_stop = scenario.until_updates
        self.t_stop = None if scenario.until_time is None else units.of(scenario.until_time)

    def _extend_to(self, goal: float) -> Any:
        """Make gradients until every active learner's last arrival reaches ``goal``;
        return the horizon (min last arrival of the active learners; inf if none)."""
        tl = self.tl
        wants: dict[int, int] = {}
        last_arrival, start, count = tl.last_arrival.tolist(), tl.start.tolist(), tl.count.tolist()
        for i, dur in enumerate(tl.dur):
            if dur.done:
                continue
            last = float(last_arrival[i])
            if last < goal:
                if count[i]:
                    self.cyc[i] = max((last - float(start[i])) / count[i], 1e-300)
                wants[i] = int(min((goal - last) / self.cyc[i] * 1.05, 2**40)) + 16
        drawn = 0  # what the learners will draw: a learner's budget caps it
        for i, m in wants.items():
            dur = tl.dur[i]
            drawn += m if dur.budget is None else min(m, dur.budget - dur.given)
        check_window(self.sc, drawn, float(goal))
        tl.extend(wants)
        active = [
            a for a, dur in zip(tl.last_arrival.tolist(), tl.dur, strict=True) if not dur.done
        ]
        return min(active) if active else math.inf

    def _goal(self, horizon: Any) -> float:
        rate = float(np.sum(1.0 / self.cyc))
        left = self.window
        if self.u_stop is not None:
            left = min(left, self.k * (self.u_stop - self.updates) - (self.base % self.k) + 1)
        h = 0.0 if horizon is None else float(horizon)
        goal = h + max(left, 1) * 1.02 / rate
        return goal if self.t_stop is None else min(goal, float(self.t_stop))

    def run(self, emit: Callable[[dict[str, np.ndarray]], None], reason: str) -> RawRun:
        horizon = None
        while True:
            goal = self._goal(horizon)
            new = self._extend_to(goal)
            while new != math.inf and new < goal:  # learners that fell short: again
                new = self._extend_to(goal)
            horizon = new
            done, t_end, stop = self._window(horizon, emit)
            if done:
                break
        inflight = self._inflight(stop, t_end)
        return RawRun({}, self.updates, self.units.scalar(t_end), stop, inflight, "vector", reason)

    def _window(self, cut: Any, emit: Callable[[dict[str, np.ndarray]], None]) -> tuple:
        """Merge the arrivals up to ``cut``; emit complete updates. Returns (done, t_end,
        stop reason)."""
        k = self.k
        tl = self.tl
        seq0 = tl.emitted.copy()
        started = seq0 > 0
        first_read = np.where(started, tl.last_emitted, tl.start)
        cols, lo, hi = tl.take_until(cut)
        counts = hi - lo
        first_base = np.where(started, self.carry_le, self.start_le)
        # (a started learner's first read here is an arrival of an earlier window: all of
        # the window's arrivals come after it, so it counts none of them)
        network = bool(np.any(tl.pull) or np.any(tl.push))
        rows, reads_le, last_le = merge_window(
            cols,
            lo,
            hi,
            first_read,
            first_base,
            seq0,
            self.base,
            k,
            network,
        )
        self.start_le[~started] += reads_le[~started]
        has = counts > 0
        self.carry_le[has] = last_le[has]
        if np.any(has):  # (each learner's arrivals ascend: its last is its largest)
            m = np.max(cols[2][hi[has] - 1])
            self.max_arrival = m if self.max_arrival is None else max(self.max_arrival, m)
        if self.held is not None:
            rows = {c: np.concatenate([self.held[c], rows[c]]) for c in rows}
        first_pos = self.base - (0 if self.held is None else len(self.held["learner"]))
        self.base += int(np.sum(counts))
        complete = (self.base // k) * k - first_pos  # rows of this window's complete updates
        upd = rows["arrive"][k - 1 : complete : k]
        v0 = first_pos // k
        take = len(upd)
        stop, t_end, finished = "", None, False
        if self.u_stop is not None and v0 + take >= self.u_stop:
            take = self.u_stop - v0
            t_end = upd[take - 1]
            stop = "until_updates"
        if self.t_stop is not None and (t_end is None or t_end >= self.t_stop):
            below = int(np.searchsorted(upd[:take], self.t_stop, side="left"))
            if below < take or cut >= self.t_stop:
                take, t_end, stop = below, self.t_stop, "until_time"
        if not stop and cut == math.inf:
            stop, t_end = "learners finished", self.max_arrival
            if t_end is None:
                t_end = max(self.tl.start.tolist())
        finished = bool(stop)
        self.updates = v0 + take
        self._emit(rows, take, v0, upd, emit)
        rest = slice(take * k if finished else complete, None)
        self.held = {c: a[rest] for c, a in rows.items()} if not finished else None
        self.last_window = (cols, lo, hi)
        return finished, t_end, stop

    def _emit(self, rows: dict, take: int, v0: int, upd: np.ndarray, emit: Callable) -> None:
        units, k = self.units, self.k
        m = take * k
        if m == 0:
            return
        version = v0 + np.arange(m, dtype=np.int64) // k
        t_apply = units.seconds(upd[:take] if k == 1 else np.repeat(upd[:take], k))
        out = {
            "learner": rows["learner"][:m],
            "seq": rows["seq"][:m],
            "read_version": rows["read_version"][:m],
            "version": version,
            "t_read": units.seconds(rows["t_read"][:m]),
        }
        if self.fast:  # arrays shared as the SimPy fast path shares them
            out["t_start"] = out["t_read"]
            out["t_done"] = t_apply
        else:
            out["t_start"] = units.seconds(rows["t_start"][:m])
            out["t_done"] = units.seconds(rows["t_done"][:m])
        out["t_apply"] = t_apply
        out["status"] = np.zeros(m, dtype=np.int8)
        self.row_bytes = row_bytes(out)
        emit(out)

    def _inflight(self, stop: str, t_end: Any) -> np.ndarray:
        """Compute start of each learner's computation in flight at the stop (or NaN)."""
        n = self.sc.n
        inflight = np.full(n, np.nan)
        if stop == "learners finished":
            return inflight
        tl = self.tl
        cols, lo, hi = self.last_window  # the last window's gradients, in their store
        found, start = in_flight(
            cols, lo, hi, tl.pend, tl.pend_off, t_end, tl.pull != 0, stop == "until_updates"
        )
        inflight[found] = self.units.seconds(start[found])
        return inflight


def run_merge(
    scenario: Scenario,
    rngs: list[np.random.Generator],
    reason: str,
    sink: Callable[[dict[str, np.ndarray]], None] | None = None,
) -> RawRun:
    """Run a merge-path protocol (async, k-batch-async, softsync); see the module docstring.
    With ``sink``, rows go there window by window; else they are kept in the result."""
    chunks: list[dict[str, np.ndarray]] = []
    merge = _Merge(scenario, rngs, WINDOW if sink is not None else WINDOW * TRACE_WINDOW)
    raw = merge.run(sink if sink is not None else chunks.append, reason)
    raw.row_bytes = merge.row_bytes
    if sink is not None:
        return raw
    if len(chunks) == 1:
        raw.columns = chunks[0]
    elif chunks:
        raw.columns = _concat(chunks)
    else:
        raw.columns = _concat([])
    return raw


def _concat(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    from dlsys.simulator.core import COLUMNS, NP_TYPES

    if not chunks:
        return {c: np.zeros(0, dtype=NP_TYPES[code]) for c, code in COLUMNS.items()}
    out = {c: np.concatenate([ch[c] for ch in chunks]) for c in chunks[0]}
    if chunks[0]["t_start"] is chunks[0]["t_read"]:
        out["t_start"] = out["t_read"]
        out["t_done"] = out["t_apply"]
    return out


def streams(scenario: Scenario) -> bool:
    """True if, with a ``sink``, the vector engine keeps no rows (the merge path: window by
    window; the round, chain and event paths: block by block)."""
    return scenario.protocol.vector_path in ("merge", "rounds", "chains", "events")
