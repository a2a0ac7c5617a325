"""The SimPy model of a parameter server (PS) and its learners.

Each learner is a SimPy process named after what it models: it *reads* the PS weights
(recording the PS version), pulls them over the network, computes a gradient for a drawn
duration, pushes it back, and then waits as its protocol says. The PS is not a process of
its own: gradient arrivals are collected, and updates are formed by the protocol rule in
:meth:`Engine._take` and applied in :meth:`Engine._apply` (with a FIFO service delay when
``service_time > 0``).

Tie rule (events at the same instant ``t``), enforced with SimPy event priorities:

1. ordinary events at ``t`` (compute and network completions, crashes, service ends) run
   first, in SimPy's order (crashes are scheduled at the start, so a crash at the instant
   a computation ends comes first and that gradient is lost);
2. then the gradients that arrived at ``t`` join the PS queue in order of
   (read version, learner index) and updates are applied (priority ``FLUSH``);
3. then learners read the weights (priority ``READ``), so a read at ``t`` sees every
   update applied at ``t``.

So gradients are applied in order of (time, read version, learner index). Deterministic
times (``fixed``, ``times``, ``trace``, latencies, delays, fault times) are exact fractions,
so two completions that should coincide do coincide.

The common case -- ``async`` with continuously distributed compute times, no network, no PS
service time and no faults -- runs on a fast path (:mod:`dlsys.simulator.simpy_fast`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from functools import partial
from typing import Any

import numpy as np
import simpy
from simpy.core import StopSimulation
from simpy.events import URGENT

from dlsys.common import check_choice
from dlsys.simulator import vector, vector_chains, vector_events, vector_rounds
from dlsys.simulator.columns import hold, run_columns
from dlsys.simulator.core import (
    APPLIED,
    CANCELLED,
    COLUMNS,
    DROPPED,
    LOST,
    NP_TYPES,
    STATUS_NAMES,
    RawRun,
    append_row,
    learner_streams,
    new_columns,
    row_bytes,
)
from dlsys.simulator.distributions import Time
from dlsys.simulator.limits import check_trace_growth
from dlsys.simulator.protocols import (
    CANCEL_ALL,
    NO_WAKE,
    REUSE,
    WAIT,
    WAKE_ALL,
    Gradient,
)
from dlsys.simulator.scenario import Crash, Learner, PSPause, Scenario, Slowdown
from dlsys.simulator.simpy_fast import new_event, run_fast, step_loop, uses_fast_path

#: SimPy priorities beyond URGENT (0) and NORMAL (1): see the tie rule above.
FLUSH = 2
READ = 3

# Learner states.
_DELAY, _GATE, _READ, _PULL, _COMPUTE, _PUSH, _WAIT_PS, _DOWN, _DONE = range(9)
_IN_FLIGHT = (_PULL, _COMPUTE, _PUSH)


def finish_time(start: Time, work: Time, windows: Sequence[tuple[Time, Time, Time]]) -> Time:
    """When ``work`` seconds of compute started at ``start`` end, given slow-down windows.

    ``windows``: sorted, non-overlapping ``(begin, end, factor)``; inside one, compute runs
    ``factor`` times slower. Exact for exact inputs.
    """
    t: Any = start
    left: Any = work
    for a, b, f in windows:
        if b <= t:
            continue
        if a > t:
            if t + left <= a:
                return t + left
            left -= a - t
            t = a
        cap = (b - t) / f
        if left <= cap:
            return t + left * f
        left -= cap
        t = b
    return t + left


ENGINES = ("auto", "simpy", "vector")


def choose_engine(scenario: Scenario, engine: str = "auto") -> tuple[str, str]:
    """Which engine runs ``scenario`` and why: ``("vector" | "simpy", reason)``.

    ``engine="auto"`` takes the vector engine wherever it is exact and SimPy elsewhere;
    ``"vector"`` on a scenario it cannot run exactly raises ``ValueError`` naming the feature.
    """
    check_choice("engine", engine, ENGINES)
    why = vector.unsupported(scenario)
    if engine == "simpy":
        return "simpy", "engine='simpy' was asked for"
    if why is not None:
        if engine == "vector":
            raise ValueError(f"engine: {why}")
        return "simpy", why
    return "vector", f"engine={engine!r}: the vector engine is exact on this scenario"


def _run_vector(
    scenario: Scenario,
    rngs: list[np.random.Generator],
    reason: str,
    sink: Callable[[dict[str, np.ndarray]], None] | None,
    keep: bool,
) -> RawRun:
    """``scenario`` (which :func:`vector.unsupported` accepts) on its vector path; every
    path streams its rows to ``sink`` block by block. (The choice lives here, above the
    path modules, so that vector.py imports neither of the others.)"""
    path = scenario.protocol.vector_path
    if path != "merge":  # (the compiled loops stream their blocks and keep them too)
        module = {"rounds": vector_rounds, "chains": vector_chains}.get(path, vector_events)
        return module.run(scenario, rngs, reason, sink, keep)
    raw = vector.run_merge(scenario, rngs, reason, sink if not keep else None)
    if sink is not None and keep:
        sink(raw.columns)
    return raw


def run(
    scenario: Scenario,
    seed: int | np.random.SeedSequence,
    engine: str = "auto",
    sink: Callable[[dict[str, np.ndarray]], None] | None = None,
    keep: bool = False,
) -> RawRun:
    """Simulate ``scenario`` with ``seed`` on the engine :func:`choose_engine` picks.

    ``sink``: if given, the trace rows are handed to it in chunks, in trace order, and the
    returned run keeps no columns (the vector engine then never holds the whole trace)
    unless ``keep``. Without ``sink`` or with ``keep``, ``raw.columns`` holds the trace in
    the scenario's layout (:func:`dlsys.simulator.columns.hold`).
    """
    name, reason = choose_engine(scenario, engine)
    rngs = learner_streams(seed, scenario.n)
    keep = keep or sink is None
    if name == "vector":
        return _run_vector(scenario, rngs, reason, sink, keep)
    if uses_fast_path(scenario):
        raw = run_fast(scenario, rngs)
        raw.engine_reason = reason + " (async fast path)"
    else:
        raw = Engine(scenario, rngs).run()
        raw.engine_reason = reason
    # The SimPy engine keeps its rows until the end, then holds them as the vector engine
    # does (the same layout: the same bytes in the summary).
    raw.row_bytes = row_bytes(raw.columns)
    if sink is not None:
        sink(raw.columns)
    if run_columns(scenario):
        raw.columns, raw.trace_bytes = hold(scenario, raw.columns, keep)
    elif not keep:
        raw.columns = {}
    return raw


# ----------------------------------------------------------------------------- general model


class _LearnerState:
    """Run-time state of one learner."""

    __slots__ = (
        "alive",
        "budget",
        "buf",
        "clock",
        "draw",
        "finished",
        "idx",
        "k",
        "proc",
        "pull",
        "push",
        "pushed",
        "read_version",
        "restart",
        "reuse",
        "seq",
        "spec",
        "state",
        "t_done",
        "t_read",
        "t_start",
        "wake",
        "windows",
    )

    def __init__(self, idx: int, spec: Learner, rng: np.random.Generator) -> None:
        self.idx = idx
        self.spec = spec
        self.draw = spec.compute.sampler(rng, spec.speed)  # type: ignore[arg-type]
        self.buf: Sequence[Time] = ()
        self.k = 0
        self.budget = spec.budget
        self.pull = spec.pull_time
        self.push = spec.push_time
        self.pushed = 0
        self.seq = 0
        self.clock = 0
        self.state = _DELAY
        self.alive = True
        self.finished = False
        self.reuse = False
        self.wake: simpy.Event | None = None
        self.proc: simpy.Process | None = None
        self.restart: list[Time | None] = []
        self.windows: list[tuple[Time, Time, Time]] = []
        self.read_version = -1
        self.t_read: Time = 0
        self.t_start: Time = 0
        self.t_done: Time = 0

    def next_duration(self) -> Time | None:
        if self.k == len(self.buf):
            self.buf = self.draw()
            self.k = 0
            if not self.buf:
                return None
        d = self.buf[self.k]
        self.k += 1
        return d


class Engine:
    """The general model: every protocol, network, PS service time and faults."""

    def __init__(self, scenario: Scenario, rngs: list[np.random.Generator]) -> None:
        self.scenario = scenario
        self.env: Any = simpy.Environment()
        self.protocol = scenario.protocol
        self.service = scenario.service_time
        self.version = 0
        self.updates = 0
        self.pending: list[Gradient] = []
        self.inbox: list[Gradient] = []
        self.serving: list[Gradient] = []  # the batch in PS service, if any
        self.flush_scheduled = False
        self.busy = False
        self.paused = False
        self.stopped = False
        self.cols = new_columns()
        self.learners = [
            _LearnerState(i, spec, rngs[i]) for i, spec in enumerate(scenario.learners)
        ]
        self.live = set(range(scenario.n))  # learners up and not finished
        by_name = {lrn.spec.name: lrn for lrn in self.learners}
        for f in scenario.faults:
            if isinstance(f, Slowdown):
                targets = self.learners if f.learner is None else [by_name[f.learner]]
                for t in targets:
                    t.windows.append((f.start, f.end, f.factor))
        for lrn in self.learners:
            lrn.windows.sort(key=lambda w: w[0])
        self.crashes = [f for f in scenario.faults if isinstance(f, Crash)]
        self.pauses = [f for f in scenario.faults if isinstance(f, PSPause)]
        self.by_name = by_name
        self.stop = simpy.Event(self.env)
        self.stop.callbacks.append(StopSimulation.callback)
        self.post_push = self.protocol.after_push

    # -- recording

    def _row(
        self, lrn: _LearnerState, status: int, version: int, t_apply: float, t_done: Time
    ) -> None:
        """The row of ``lrn``'s gradient in flight (lost or cancelled before it arrived)."""
        t_start = lrn.t_start if lrn.state != _PULL else math.nan
        g = Gradient(lrn.idx, lrn.seq, lrn.read_version, lrn.t_read, t_start, t_done)
        self._grad_row(g, status, version, t_apply)

    def _grad_row(self, g: Gradient, status: int, version: int, t_apply: float) -> None:
        if not self.stopped:
            append_row(self.cols, g, status, version, t_apply)

    # -- learners

    def _learner(self, lrn: _LearnerState) -> Generator[simpy.Event, Any, None]:
        """One learner: start delay, then read-pull-compute-push cycles; survives crashes."""
        env = self.env
        phase = "start"
        while True:
            try:
                if phase == "start":
                    if lrn.spec.start_delay:
                        lrn.state = _DELAY
                        yield env.timeout(lrn.spec.start_delay)
                    phase = "cycle"
                elif phase == "restart":
                    delay = lrn.restart.pop(0)
                    lrn.state = _DOWN
                    if delay is None:
                        return
                    yield env.timeout(delay)
                    lrn.alive = True
                    self.live.add(lrn.idx)
                    lrn.reuse = False
                    phase = "cycle"
                    self._membership_changed()
                    if self.post_push == WAIT and any(
                        g.learner == lrn.idx for g in (*self.pending, *self.inbox, *self.serving)
                    ):
                        # Its gradient pushed before the crash is still queued: wait for
                        # that update as if it had never crashed (a new read now would
                        # compute a second gradient for the same round).
                        lrn.state = _WAIT_PS
                        lrn.wake = env.event()
                        yield lrn.wake
                        lrn.wake = None
                else:
                    yield from self._cycles(lrn)
                    return
            except simpy.Interrupt as intr:
                lrn.wake = None
                if intr.cause == "crash":
                    phase = "restart"
                # "cancel": start a new cycle (read fresh weights)

    def _cycles(self, lrn: _LearnerState) -> Generator[simpy.Event, Any, None]:
        env = self.env
        while True:
            if lrn.budget is not None and lrn.pushed >= lrn.budget:
                self._finish(lrn)
                return
            while not self._may_start(lrn):
                lrn.state = _GATE
                lrn.wake = env.event()
                yield lrn.wake
                lrn.wake = None
            # Draw the duration first: a learner whose times ran out stops without reading,
            # and a gradient lost while pulling already has its number.
            d = lrn.next_duration()
            if d is None:
                self._finish(lrn)
                return
            lrn.seq += 1
            if not lrn.reuse:
                lrn.state = _READ
                yield new_event(env, READ)
                lrn.read_version = self.version
                lrn.t_read = env.now
                if lrn.pull:
                    lrn.state = _PULL
                    yield env.timeout(lrn.pull)
            lrn.t_start = env.now
            lrn.state = _COMPUTE
            if lrn.windows:
                d = finish_time(env.now, d, lrn.windows) - env.now
            yield env.timeout(d)
            lrn.t_done = env.now
            if lrn.push:
                lrn.state = _PUSH
                yield env.timeout(lrn.push)
            lrn.pushed += 1
            lrn.clock += 1
            lrn.state = _WAIT_PS
            self._arrive(lrn)
            if lrn.budget is not None and lrn.pushed >= lrn.budget:
                self._finish(lrn)
                return
            if self.post_push == WAIT:
                lrn.wake = env.event()
                yield lrn.wake
                lrn.wake = None
            elif self.post_push == REUSE:
                lrn.reuse = True

    def _finish(self, lrn: _LearnerState) -> None:
        lrn.finished = True
        self.live.discard(lrn.idx)
        lrn.state = _DONE
        self._membership_changed()

    def _may_start(self, lrn: _LearnerState) -> bool:
        if not self.protocol.gated:
            return True
        active = [x.clock for x in self.learners if x.alive and not x.finished]
        return self.protocol.may_start(lrn.clock, min(active) if active else None)

    def _wake(self, lrn: _LearnerState) -> None:
        w = lrn.wake
        if w is not None and not w.triggered:
            w.succeed()

    def _membership_changed(self) -> None:
        if self.protocol.gated:
            for x in self.learners:
                if x.state == _GATE:
                    self._wake(x)
        self._schedule_flush()

    # -- faults

    def _crasher(self, f: Crash) -> Generator[simpy.Event, Any, None]:
        lrn = self.by_name[f.learner]
        yield self.env.timeout(f.at)
        if lrn.finished or not lrn.alive:
            return
        if lrn.state in _IN_FLIGHT:
            self._row(lrn, LOST, -1, math.nan, self.env.now)
        elif lrn.state == _READ:
            # Crashed at the instant it was about to read: nothing was computed, so give the
            # gradient number and the drawn duration back (the next gradient uses them).
            lrn.seq -= 1
            lrn.k -= 1
        lrn.alive = False
        self.live.discard(lrn.idx)
        lrn.state = _DOWN
        lrn.wake = None
        lrn.restart.append(f.restart_after)
        assert lrn.proc is not None
        lrn.proc.interrupt("crash")
        self._membership_changed()

    def _pauser(self, p: PSPause) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(p.start)
        self.paused = True
        yield self.env.timeout(p.end - p.start)
        self.paused = False
        self._schedule_flush()

    # -- parameter server

    def _arrive(self, lrn: _LearnerState) -> None:
        self.pending.append(
            Gradient(lrn.idx, lrn.seq, lrn.read_version, lrn.t_read, lrn.t_start, lrn.t_done)
        )
        if self.protocol.gated:
            for x in self.learners:
                if x.state == _GATE:
                    self._wake(x)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            ev = new_event(self.env, FLUSH)
            ev.callbacks.append(self._flush)

    def _flush(self, _ev: simpy.Event) -> None:
        self.flush_scheduled = False
        if self.pending:
            self.pending.sort(key=lambda g: (g.read_version, g.learner))
            self.inbox.extend(self.pending)
            self.pending.clear()
        self._try_update()

    def _try_update(self) -> None:
        while not (self.busy or self.paused or self.stopped):
            take = self.protocol.take(self.inbox, self.version, self.live, self.scenario.n)
            if take is None:
                return
            if take.dropped:
                self._drop(take.dropped)
            batch = take.update
            if batch is None:
                return
            if self.service:
                self.busy = True
                self.serving = batch
                done = self.env.timeout(self.service)
                done.callbacks.append(partial(self._service_done_cb, batch))
                return
            self._apply(batch)

    def _service_done_cb(self, batch: list[Gradient], _ev: Any) -> None:
        self.busy = False
        self.serving = []
        self._apply(batch)
        self._schedule_flush()

    def _drop(self, grads: list[Gradient]) -> None:
        for g in grads:
            self._grad_row(g, DROPPED, -1, math.nan)
            self._wake(self.learners[g.learner])

    def _apply(self, batch: list[Gradient]) -> None:
        now = self.env.now
        t = float(now)
        v = self.version
        for g in batch:
            self._grad_row(g, APPLIED, v, t)
        self.version = v + 1
        self.updates += 1
        if self.updates == self.scenario.until_updates:
            self.stopped = True
            self.stop.succeed("until_updates")
            return
        on_update = self.protocol.on_update
        if on_update == CANCEL_ALL:
            for x in self.learners:
                x.reuse = False
                if not x.alive or x.finished:
                    continue
                if x.state in _IN_FLIGHT:
                    done = x.t_done if x.state == _PUSH else now
                    self._row(x, CANCELLED, -1, math.nan, done)
                    x.state = _READ
                    assert x.proc is not None
                    x.proc.interrupt("cancel")
                else:
                    self._wake(x)
        elif on_update == WAKE_ALL:
            for x in self.learners:
                self._wake(x)
        elif on_update != NO_WAKE:
            for g in batch:
                self._wake(self.learners[g.learner])

    def run(self) -> RawRun:
        env = self.env
        for lrn in self.learners:
            lrn.proc = env.process(self._learner(lrn))
        for c in self.crashes:
            env.process(self._crasher(c))
        for p in self.pauses:
            env.process(self._pauser(p))
        if self.scenario.until_time is not None:
            tev = new_event(env, URGENT, self.scenario.until_time)
            tev.callbacks.append(lambda _e: self._time_up())
        watch = None
        if self.scenario.until_time is not None:
            rows, sc = self.cols["learner"], self.scenario
            watch = lambda: check_trace_growth(sc, len(rows), env.now)  # noqa: E731
        stopped = step_loop(env, watch)
        if stopped:
            reason = (
                "until_updates" if self.updates == self.scenario.until_updates else "until_time"
            )
        elif all(x.finished for x in self.learners):
            reason = "learners finished"
        else:
            reason = "stalled"
        inflight = np.full(self.scenario.n, np.nan)
        for x in self.learners:
            if x.alive and x.state == _COMPUTE:
                inflight[x.idx] = float(x.t_start)
        cols = {
            k: np.frombuffer(a, dtype=NP_TYPES[a.typecode]).copy() for k, a in self.cols.items()
        }
        return RawRun(cols, self.updates, float(env.now), reason, inflight, "simpy", "")

    def _time_up(self) -> None:
        self.stopped = True
        raise StopSimulation("until_time")


__all__ = [
    "APPLIED",
    "CANCELLED",
    "COLUMNS",
    "DROPPED",
    "LOST",
    "STATUS_NAMES",
    "Engine",
    "RawRun",
    "finish_time",
    "learner_streams",
    "run",
    "uses_fast_path",
]
