"""The SimPy engine's fast path: async, continuously distributed compute times, no network,
no PS service time, no faults.

One plain SimPy process per learner records only (learner, apply time) per update; every
other column is derived afterwards with numpy. Ties have probability zero here, so the tie
rule of :mod:`dlsys.simulator.engine` holds as well.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np
import simpy
from simpy.core import EmptySchedule, StopSimulation
from simpy.events import URGENT

from dlsys.simulator.core import RawRun
from dlsys.simulator.distributions import Time
from dlsys.simulator.limits import check_trace_growth
from dlsys.simulator.protocols import Async
from dlsys.simulator.scenario import Scenario


def uses_fast_path(scenario: Scenario) -> bool:
    """True when ``scenario`` runs on the async fast path (see the module docstring)."""
    return (
        type(scenario.protocol) is Async
        and not scenario.faults
        and scenario.service_time == 0
        and all(
            not lrn.compute.exact and lrn.pull_time == 0 and lrn.push_time == 0
            for lrn in scenario.learners
        )
    )


def new_event(env: Any, priority: int, delay: Time = 0) -> simpy.Event:
    ev = simpy.Event(env)
    ev._ok = True
    ev._value = None
    env.schedule(ev, priority, delay)
    return ev


#: Events between two calls of step_loop's ``watch``.
WATCH_EVERY = 1 << 16


def step_loop(env: Any, watch: Callable[[], None] | None = None) -> bool:
    """Step until a StopSimulation (True) or until no events are left (False).

    ``watch``, if given, is called every :data:`WATCH_EVERY` events (the growing-trace
    check of an ``until_time`` run, :func:`dlsys.simulator.limits.check_trace_growth`).
    """
    # NOTE: inlined for performance (Environment.run without its per-call checks).
    step = env.step
    block = range(WATCH_EVERY)
    try:
        while watch is None:
            step()
        while True:
            for _ in block:
                step()
            watch()
    except StopSimulation:
        return True
    except EmptySchedule:
        return False


def _fast_learner(
    env: Any,
    i: int,
    delay: Time,
    draw: Callable[[], Sequence[Time]],
    budget: int | None,
    box: list[Any],
    first_read: np.ndarray,
    app_learner: Callable[[int], None],
    app_time: Callable[[float], None],
) -> Generator[simpy.Event, Any, None]:
    """An async learner with zero communication: compute, and apply on completion."""
    if delay:
        yield env.timeout(delay)
    first_read[i] = box[0]
    # NOTE: inlined for performance: local names, a buffered block of durations, a shared
    # version box instead of attribute access, and ``left`` counting down from -1 when there
    # is no budget (it never reaches 0 then).
    timeout = env.timeout
    buf = draw()
    k, m = 0, len(buf)
    left = -1 if budget is None else budget
    until = box[1]
    while left != 0:
        if k == m:
            buf = draw()
            k, m = 0, len(buf)
            if m == 0:
                return
        yield timeout(buf[k])
        k += 1
        app_learner(i)
        app_time(env._now)
        v = box[0] + 1
        box[0] = v
        if v == until:
            box[2].succeed()
        left -= 1


def run_fast(scenario: Scenario, rngs: list[np.random.Generator]) -> RawRun:
    env: Any = simpy.Environment()
    n = scenario.n
    stop = simpy.Event(env)
    stop.callbacks.append(StopSimulation.callback)
    until = scenario.until_updates if scenario.until_updates is not None else -1
    box: list[Any] = [0, until, stop]
    first_read = np.full(n, -1, dtype=np.int64)
    lrn_col = array("i")
    t_col = array("d")
    for i, spec in enumerate(scenario.learners):
        draw = spec.compute.sampler(rngs[i], spec.speed)  # type: ignore[arg-type]
        env.process(
            _fast_learner(
                env,
                i,
                float(spec.start_delay),  # all-float times keep heap comparisons cheap
                draw,
                spec.budget,
                box,
                first_read,
                lrn_col.append,
                t_col.append,
            )
        )
    if scenario.until_time is not None:
        tev = new_event(env, URGENT, float(scenario.until_time))
        tev.callbacks.append(StopSimulation.callback)
    watch = None
    if scenario.until_time is not None:
        watch = lambda: check_trace_growth(scenario, len(lrn_col), env.now)  # noqa: E731
    stopped = step_loop(env, watch)
    updates = len(lrn_col)
    if scenario.until_updates is not None and updates >= scenario.until_updates:
        reason = "until_updates"
    elif stopped:
        reason = "until_time"
    else:
        reason = "learners finished"
    t_end = float(env.now)

    learner = np.frombuffer(lrn_col, dtype=np.int32).copy()
    t_apply = np.frombuffer(t_col, dtype=np.float64).copy()
    version = np.arange(updates, dtype=np.int64)
    start = np.array([float(s.start_delay) for s in scenario.learners])
    order = np.argsort(learner, kind="stable")
    sl = learner[order]
    first = np.ones(updates, dtype=bool)
    first[1:] = sl[1:] != sl[:-1]
    prev = np.empty(updates, dtype=np.int64)
    prev[1:] = order[:-1]
    prev[:1] = 0
    read_version = np.empty(updates, dtype=np.int64)
    read_version[order] = np.where(first, first_read[sl], prev + 1)
    t_read = np.empty(updates)
    t_read[order] = np.where(first, start[sl], t_apply[prev])
    idx = np.arange(updates)
    group_start = np.maximum.accumulate(np.where(first, idx, 0))
    seq = np.empty(updates, dtype=np.int32)
    seq[order] = idx - group_start + 1
    # Per learner: start of the computation still running at the end (none if finished).
    counts = np.bincount(learner, minlength=n)
    last_t = np.full(n, np.nan)
    ends = np.ones(updates, dtype=bool)
    ends[:-1] = first[1:]
    last_t[sl[ends]] = t_apply[order[ends]]  # each learner's last apply time
    inflight = np.where(counts > 0, last_t, start)
    for i, spec in enumerate(scenario.learners):
        b = spec.budget
        if (b is not None and counts[i] >= b) or inflight[i] >= t_end:
            inflight[i] = np.nan  # finished, not started, or just applied at the very end
    cols: dict[str, np.ndarray] = {
        "learner": learner,
        "seq": seq,
        "read_version": read_version,
        "version": version,
        "t_read": t_read,
        "t_start": t_read,  # no pull time on the fast path: the same array
        "t_done": t_apply,  # no push or service time: the same array
        "t_apply": t_apply,
        "status": np.zeros(updates, dtype=np.int8),
    }
    return RawRun(cols, updates, t_end, reason, inflight, "simpy", "")
