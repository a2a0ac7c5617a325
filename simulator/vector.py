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
from dlsys.simulator.limits import check_window
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
            return raw
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
        self.count = 0  # gradients made so far
        self.emitted = 0  # gradients handed out by take_until
        self.last_arrival: Any = self.start  # arrival of the last gradient made (or start)
        self.last_emitted: Any = None  # arrival of the last gradient handed out

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
        self.last_arrival = arrive[-1]

    def pending(self) -> tuple[np.ndarray, ...]:
        """(t_read, t_start, t_done, t_arrive) of the gradients made, not handed out."""
        if not self.parts:
            e = np.zeros(0, dtype=self.units.dtype)
            return e, e, e, e
        if len(self.parts) > 1:
            self.parts = [tuple(np.concatenate(x) for x in zip(*self.parts, strict=True))]  # type: ignore[list-item]
        return self.parts[0]

    def take_until(self, cut: Any) -> tuple[np.ndarray, ...]:
        """Hand out the pending gradients that arrive at or before ``cut``."""
        cols = self.pending()
        m = int(np.searchsorted(cols[3], cut, side="right"))
        out = tuple(c[:m] for c in cols)
        rest = tuple(c[m:] for c in cols)
        self.parts = [rest] if len(rest[0]) else []  # type: ignore[list-item]
        if m:
            self.emitted += m
            self.last_emitted = out[3][-1]
        return out


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
        self.tls = [
            Timeline(scenario, i, Durations(scenario, i, rngs[i], units), units) for i in range(n)
        ]
        self.cyc = cycle_means(scenario) * (units.den if units.exact else 1.0)
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
        wants: dict[int, int] = {}
        for i, t in enumerate(self.tls):
            if t.dur.done:
                continue
            last = float(t.last_arrival)
            if last < goal:
                if t.count:
                    self.cyc[i] = max((last - float(t.start)) / t.count, 1e-300)
                wants[i] = int(min((goal - last) / self.cyc[i] * 1.05, 2**40)) + 16
        drawn = 0  # what the learners will draw: a learner's budget caps it
        for i, m in wants.items():
            dur = self.tls[i].dur
            drawn += m if dur.budget is None else min(m, dur.budget - dur.given)
        check_window(self.sc, drawn, float(goal))
        for i, m in wants.items():
            self.tls[i].extend(m)
        active = [t.last_arrival for t in self.tls if not t.dur.done]
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
        units, k, n = self.units, self.k, self.sc.n
        before = [t.emitted for t in self.tls]
        first_read = np.array(
            [t.start if b == 0 else t.last_emitted for t, b in zip(self.tls, before, strict=True)],
            dtype=units.dtype,
        )
        started = np.array(before) > 0
        parts = [t.take_until(cut) for t in self.tls]
        counts = np.array([len(p[0]) for p in parts], dtype=np.int64)
        read, start, done, arrive = (np.concatenate([p[j] for p in parts]) for j in range(4))
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        first_base = np.where(started, self.carry_le, self.start_le)
        # (a started learner's first read here is an arrival of an earlier window: all of
        # the window's arrivals come after it, so searchsorted adds 0 to its carry)
        order, rv, sorted_t, gle = merge_order(
            arrive, offsets, first_read, first_base, self.base, k
        )
        learner = np.repeat(np.arange(n, dtype=np.int32), counts)
        emitted_before = np.array(before, dtype=np.int64)
        seq = (
            np.arange(len(learner))
            - np.repeat(offsets[:-1], counts)
            + 1
            + np.repeat(emitted_before, counts)
        ).astype(np.int32)
        for i in np.flatnonzero(~started):
            self.start_le[i] += int(np.searchsorted(sorted_t, self.tls[i].start, side="right"))
        ends = offsets[1:][counts > 0] - 1
        self.carry_le[counts > 0] = gle[ends]
        if len(arrive):
            m = np.max(arrive)
            self.max_arrival = m if self.max_arrival is None else max(self.max_arrival, m)
        rows = {
            "learner": learner[order],
            "seq": seq[order],
            "read_version": rv[order],
            "t_read": read[order],
            "t_start": start[order],
            "t_done": done[order],
            "arrive": sorted_t,
        }
        if self.held is not None:
            rows = {c: np.concatenate([self.held[c], rows[c]]) for c in rows}
        first_pos = self.base - (0 if self.held is None else len(self.held["learner"]))
        self.base += len(arrive)
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
                t_end = max(t.start for t in self.tls)
        finished = bool(stop)
        self.updates = v0 + take
        self._emit(rows, take, v0, upd, emit)
        rest = slice(take * k if finished else complete, None)
        self.held = {c: a[rest] for c, a in rows.items()} if not finished else None
        self.window_rows = (start, done, learner)
        return finished, t_end, stop

    def _emit(self, rows: dict, take: int, v0: int, upd: np.ndarray, emit: Callable) -> None:
        units, k = self.units, self.k
        m = take * k
        if m == 0:
            return
        version = v0 + np.arange(m, dtype=np.int64) // k
        t_apply = units.seconds(np.repeat(upd[:take], k))
        out = {
            "learner": rows["learner"][:m],
            "seq": rows["seq"][:m],
            "read_version": rows["read_version"][:m],
            "version": version,
            "t_read": units.seconds(rows["t_read"][:m]),
        }
        if uses_fast_path(self.sc):  # arrays shared as the SimPy fast path shares them
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
        start, done, learner = self.window_rows
        pend = [t.pending() for t in self.tls]
        pl = np.repeat(np.arange(n, dtype=np.int32), [len(p[0]) for p in pend])
        start = np.concatenate([start, *[p[1] for p in pend]])
        done = np.concatenate([done, *[p[2] for p in pend]])
        learner = np.concatenate([learner, pl])
        pulls = np.array([t.pull != 0 for t in self.tls])[learner]
        if stop == "until_updates":
            running = ((start < t_end) | ((start == t_end) & pulls)) & (done > t_end)
        else:
            running = (start < t_end) & (done >= t_end)
        idx = np.flatnonzero(running)
        inflight[learner[idx]] = self.units.seconds(start[idx])
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
    window; the round path: block by block); the event loop hands its rows over at the end."""
    return scenario.protocol.vector_path in ("merge", "rounds")
