"""The vector engine's compiled event loop: protocols whose learners wait for the PS.

async, ssp, k-async and backup learners push a gradient and wait for the update that uses
it (or, backup, for its drop; ssp also waits at its gate), so no learner's times can be
summed on their own (sync and k-sync, whose learners all read at each update, go round by
round: :mod:`.vector_rounds`). This loop (numba, over arrays) steps from instant to instant
as the SimPy engine does, with the SimPy engine's tie rule:

1. every gradient arriving at instant ``t`` raises its learner's clock (a learner that has
   pushed its last gradient finishes here);
2. they join the PS queue in order of (read version, learner index), and the PS takes
   updates from the queue by the protocol's rule: ``k`` first gradients (for k-async they
   are ``k`` distinct learners, as a waiting learner has one gradient queued at most); for
   a ``current_only`` protocol (backup) gradients read at an older version are dropped
   first and an update takes the whole queue, its first ``k`` applied, the rest dropped;
3. then the learners of those updates and drops (and learners that start at ``t``, and
   gated ones once the smallest live clock has moved) read at ``t`` if the gate lets them
   (ssp: clock - smallest live clock <= s; the order of reads within an instant changes
   nothing), seeing every update of ``t``, and start pull, compute and push: ``t + pull``,
   ``+ compute``, ``+ push``, the same additions SimPy makes.

The compute durations are drawn in blocks (same streams and blocks as SimPy), and the rows
go out in blocks: the loop keeps its whole state in arrays, returns when a learner runs out
of durations or a block of rows is full, and goes on where it stopped once the caller has
drawn more or handed the rows on (to a summary, with ``--summary-only``: then no more than
one block of rows is ever held).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from dlsys.simulator.core import APPLIED, DROPPED, RawRun
from dlsys.simulator.scenario import Scenario
from dlsys.simulator.vector import Units
from dlsys.simulator.vector_common import (
    BY_TIME,
    BY_UPDATES,
    DONE,
    FINISHED,
    NEED_DRAWS,
    NEED_ROOM,
    STALLED,
    BlockLoop,
    Draws,
    drive,
    heap_pop,
    heap_push,
    learner_net,
    no_time,
)

#: Slots of the loop's integer state (``sc``) and time state (``tm``) kept between calls.
_NREADY, _NGATED, _QLEN, _HSIZE, _NSTART, _LIVE, _SLOWEST, _NSLOW, _GATE_AT = range(9)
_VERSION, _NROWS, _STOP, _PHASE = 9, 10, 11, 12
_T, _T_LAST, _T_END = 0, 1, 2
#: Where the loop goes on: at the next instant, or at the reads of instant ``tm[_T]``.
_AT_INSTANT, _AT_READS = 0, 1


def new_state(n: int, dt: Any) -> tuple[tuple, Any, Any]:
    """The loop's state at the start of a run of ``n`` learners (times of dtype ``dt``):
    per-learner arrays (see :func:`event_loop`), integer and time slots."""
    lrn = (
        np.zeros(n, np.int64),  # seq
        np.zeros(n, np.int64),  # clock (pushes)
        np.zeros(n, np.bool_),  # finished
        np.zeros(n, np.bool_),  # started
        np.zeros(n, np.int64),  # read version of the gradient in flight / queued
        np.zeros(n, dt),  # its t_read
        np.zeros(n, dt),  # its t_start
        np.zeros(n, dt),  # its t_done
        np.zeros(n, np.bool_),  # in flight
        np.zeros(n, np.bool_),  # in the PS queue
        np.zeros(n, np.int64),  # ready to read (gate permitting): ready[:nready]
        np.zeros(n, np.int64),  # held by the ssp gate: gated[:ngated]
        np.zeros(n, np.int64),  # PS queue: queue[:qlen]
        np.zeros(n, dt),  # heap of arrivals: times
        np.zeros(n, np.int64),  # heap of arrivals: learners
        np.zeros(n, np.int64),  # arrivals of one instant
    )
    sc = np.zeros(13, np.int64)
    sc[_LIVE] = sc[_NSLOW] = n
    return lrn, sc, np.zeros(3, dt)


@numba.njit(cache=True)
def event_loop(
    draws: tuple, net: tuple, rule: tuple, lrn: tuple, sc: Any, tm: Any, out: tuple
) -> int:
    """Run the loop until the run stops (``DONE``), a learner needs more durations
    (``NEED_DRAWS``; ``sc[_PHASE]`` says where to go on) or one more instant's rows may not
    fit in ``out`` (``NEED_ROOM``); the caller refills and calls again with the same state.
    ``draws``: (durations ``dur[i, ptr[i]:have[i]]``, ptr, have); ``net``: (start, first
    start, pull, push, budget -- most pushes, -1: none --, learners by start); ``rule``: (k
    per update, the ssp bound s or -1, until_updates or -1, whether there is an until_time,
    until_time, running, mask -- the computation in flight per learner at the stop);
    ``lrn``, ``sc``, ``tm``: :func:`new_state`; ``out``: the :class:`.Rows` columns."""
    dur, dptr, have = draws
    start, first_start, pull, push, budget, order = net
    k, fresh, s, until_updates, has_time, until_time, running, mask, nan = rule
    seq, clock, finished, started, g_rv, g_read, g_start, g_done = lrn[:8]
    in_flight, in_queue, ready, gated, queue, ht, hl, arr = lrn[8:]
    n = len(start)
    nready, ngated, qlen, hsize, nstart = (
        sc[_NREADY],
        sc[_NGATED],
        sc[_QLEN],
        sc[_HSIZE],
        sc[_NSTART],
    )
    live, slowest, nslow, gate_at = sc[_LIVE], sc[_SLOWEST], sc[_NSLOW], sc[_GATE_AT]
    version, nrows, stop = sc[_VERSION], sc[_NROWS], -1
    t, t_last = tm[_T], tm[_T_LAST]
    at_reads = sc[_PHASE] == _AT_READS
    code = DONE
    while True:
        if not at_reads:
            if nrows + n > len(out[0]):
                code = NEED_ROOM
                break
            # The next instant: an arrival or a learner's start.
            has_next, t = _next_instant(ht, hsize, start, order, nstart, t)
            if not has_next:  # (an until_time run ends at until_time all the same)
                stop = BY_TIME if has_time else (FINISHED if live == 0 else STALLED)
                break
            if has_time and t >= until_time:
                stop = BY_TIME
                break
            t_last = t
            # 1. arrivals at t
            counts = (live, slowest, nslow)
            hsize, na, live, slowest, nslow = _arrivals(
                t, ht, hl, hsize, in_flight, clock, budget, finished, s, arr, counts
            )
            # 2. they join the queue by (read version, learner), and updates are taken
            qlen = _join_queue(arr, na, g_rv, queue, qlen, in_queue)
            if fresh:  # (a call of its own: inlined, it slowed the other protocols' loop)
                tally = (qlen, nready, nrows, version)
                pq = ((seq, g_rv, g_read, g_start, g_done), finished, in_queue, ready, queue)
                qlen, nready, nrows, version = _take_current(
                    t, k, nan, tally, pq, out, until_updates
                )
            else:  # the first k gradients form an update, while there are k
                while qlen >= k:
                    for a in range(k):
                        i = queue[a]
                        out[0][nrows], out[1][nrows], out[2][nrows] = i, seq[i], g_rv[i]
                        out[3][nrows], out[4][nrows], out[5][nrows] = version, g_read[i], g_start[i]
                        out[6][nrows], out[7][nrows], out[8][nrows] = g_done[i], t, 0
                        nrows += 1
                        in_queue[i] = False
                        if not finished[i]:
                            ready[nready] = i
                            nready += 1
                    for a in range(qlen - k):
                        queue[a] = queue[a + k]
                    qlen -= k
                    version += 1
                    if version == until_updates:
                        break
            if version == until_updates:
                stop = BY_UPDATES
            if stop >= 0:
                break
            while nstart < n and start[order[nstart]] == t:
                ready[nready] = order[nstart]
                nready += 1
                nstart += 1
        at_reads = False
        # 3. reads at t, through the gate (held learners are looked at again only once
        # the slowest clock has moved: nothing else opens the gate)
        if slowest != gate_at:
            ready[nready : nready + ngated] = gated[:ngated]
            nready += ngated
            ngated = 0
            gate_at = slowest
        st = (seq, g_rv, g_read, g_start, g_done, in_flight, started, ready, dptr, have)
        hsize, nready, need = _reads(t, version, slowest, s, nready, clock, dur,
                                     first_start, pull, push, st, ht, hl, hsize)  # fmt: skip
        if need >= 0:
            code = NEED_DRAWS
            break
        for r in range(nready):  # (a loop: cheaper than a slice copy of 0 or 1 learners)
            gated[ngated + r] = ready[r]
        ngated += nready
        nready = 0
    sc[_NREADY], sc[_NGATED], sc[_QLEN], sc[_HSIZE], sc[_NSTART] = (
        nready,
        ngated,
        qlen,
        hsize,
        nstart,
    )
    sc[_LIVE], sc[_SLOWEST], sc[_NSLOW], sc[_GATE_AT] = live, slowest, nslow, gate_at
    sc[_VERSION], sc[_NROWS], sc[_STOP] = version, nrows, stop
    sc[_PHASE] = _AT_READS if code == NEED_DRAWS else _AT_INSTANT
    tm[_T], tm[_T_LAST] = t, t_last
    if code == DONE:
        t_end = until_time if stop == BY_TIME else (t if stop == BY_UPDATES else t_last)
        tm[_T_END] = t_end
        _running_at_stop(stop, t_end, in_flight, g_start, g_done, pull, running, mask)
    return code


@numba.njit(cache=True, inline="always")
def _row(out: tuple, r: int, i: int, src: tuple, version: int, t_apply: Any, status: int) -> None:
    """Write learner ``i``'s queued gradient as row ``r`` of ``out``; ``src`` is (seq,
    read version, t_read, t_start, t_done) per learner."""
    seq, g_rv, g_read, g_start, g_done = src
    out[0][r], out[1][r], out[2][r] = i, seq[i], g_rv[i]
    out[3][r], out[4][r], out[5][r] = version, g_read[i], g_start[i]
    out[6][r], out[7][r], out[8][r] = g_done[i], t_apply, status


@numba.njit(cache=True)
def _take_current(
    t: Any, k: int, nan: Any, counts: tuple, lrn: tuple, out: tuple, until: int
) -> tuple:
    """Step 2 of an instant for a ``current_only`` protocol (backup), after the arrivals
    joined the queue: gradients read at an older version are dropped, and once ``k`` are
    left the first ``k`` form an update and the rest are dropped (stopping at the
    ``until``-th update); rows as the SimPy engine writes them, drops first. Learners of
    dropped and applied gradients become ready to read. ``counts``: (queue length, ready
    learners, rows, version), returned updated; ``lrn``: ((seq, read version, t_read,
    t_start, t_done), finished, in queue, ready, queue), per learner."""
    qlen, nready, nrows, version = counts
    src, finished, in_queue, ready, queue = lrn
    g_rv = src[1]
    while qlen > 0:
        kept = 0
        for a in range(qlen):
            i = queue[a]
            if g_rv[i] == version:
                queue[kept] = i
                kept += 1
                continue
            _row(out, nrows, i, src, -1, nan, DROPPED)  # read at an older version
            nrows += 1
            in_queue[i] = False
            if not finished[i]:
                ready[nready] = i
                nready += 1
        qlen = kept
        if qlen < k:
            break
        extra = qlen - k
        for j in range(qlen):  # the rest dropped (written first), then the first k applied
            a = k + j if j < extra else j - extra
            i = queue[a]
            if a >= k:
                _row(out, nrows, i, src, -1, nan, DROPPED)
            else:
                _row(out, nrows, i, src, version, t, APPLIED)
            nrows += 1
            in_queue[i] = False
            if not finished[i]:
                ready[nready] = i
                nready += 1
        qlen = 0
        version += 1
        if version == until:
            break
    return qlen, nready, nrows, version


@numba.njit(cache=True, inline="always")
def _arrivals(
    t: Any,
    ht: Any,
    hl: Any,
    hsize: int,
    in_flight: Any,
    clock: Any,
    budget: Any,
    finished: Any,
    s: int,
    arr: Any,
    counts: tuple,
) -> tuple:
    """Pop the arrivals at ``t`` off the heap into ``arr``: each learner's clock counts its
    push, a learner whose budget is used finishes, and the ssp gate's slowest clock follows
    (looked for again only when the last live learner at the slowest clock moves on).
    ``counts`` is (live learners, slowest clock, live learners at it); returns (heap size,
    arrivals, and the three counts)."""
    live, slowest, nslow = counts
    na = 0
    while hsize > 0 and ht[0] == t:
        i = hl[0]
        hsize = heap_pop(ht, hl, hsize)
        in_flight[i] = False
        at_slowest = clock[i] == slowest
        clock[i] += 1
        if budget[i] >= 0 and clock[i] >= budget[i]:
            finished[i] = True
            live -= 1
        if at_slowest and s >= 0:
            nslow -= 1
            if nslow == 0:
                slowest, nslow = _slowest(clock, finished)
        arr[na] = i
        na += 1
    return hsize, na, live, slowest, nslow


@numba.njit(cache=True, inline="always")
def _next_instant(ht: Any, hsize: int, start: Any, order: Any, nstart: int, t: Any) -> tuple:
    """(whether there is one, the time of) the next arrival or learner start."""
    if hsize > 0:
        t = ht[0]
        if nstart < len(start) and start[order[nstart]] <= t:
            t = start[order[nstart]]
        return True, t
    if nstart < len(start):
        return True, start[order[nstart]]
    return False, t


@numba.njit(cache=True, inline="always")
def _reads(
    t: Any,
    version: int,
    slowest: int,
    s: int,
    nready: int,
    clock: Any,
    dur: Any,
    first_start: Any,
    pull: Any,
    push: Any,
    st: Any,
    ht: Any,
    hl: Any,
    hsize: int,
) -> tuple[int, int, int]:
    """Step 3 of an instant: every ready learner (``ready[:nready]``) the gate lets through
    reads at ``t`` and starts its next gradient; the gated ones stay ready. Returns (heap
    size, learners still ready, a learner that ran out of draws or -1); in the last case
    the learners not yet looked at stay ready too, so the step can be done again once the
    caller has drawn more."""
    seq, g_rv, g_read, g_start, g_done, in_flight, started, ready, dptr, have = st
    kept = 0
    for r in range(nready):
        i = ready[r]
        if s >= 0 and clock[i] - slowest > s:
            ready[kept] = i
            kept += 1
            continue
        if dptr[i] == have[i]:
            for r2 in range(r, nready):
                ready[kept] = ready[r2]
                kept += 1
            return hsize, kept, i
        d = dur[i, dptr[i]]
        dptr[i] += 1
        seq[i] += 1
        g_rv[i] = version
        g_read[i] = t
        g_start[i] = first_start[i] if not started[i] else t + pull[i]
        started[i] = True
        g_done[i] = g_start[i] + d
        in_flight[i] = True
        hsize = heap_push(ht, hl, hsize, g_done[i] + push[i], i)
    return hsize, kept, -1


@numba.njit(cache=True, inline="always")
def _join_queue(arr: Any, na: int, g_rv: Any, queue: Any, qlen: int, in_queue: Any) -> int:
    """Append the ``na`` arrivals of one instant to the queue in order of (read version,
    learner); return the new queue length."""
    for a in range(1, na):
        x = arr[a]
        b = a - 1
        while b >= 0 and (g_rv[arr[b]] > g_rv[x] or (g_rv[arr[b]] == g_rv[x] and arr[b] > x)):
            arr[b + 1] = arr[b]
            b -= 1
        arr[b + 1] = x
    for a in range(na):
        queue[qlen] = arr[a]
        in_queue[arr[a]] = True
        qlen += 1
    return qlen


@numba.njit(cache=True)
def _slowest(clock: Any, finished: Any) -> tuple[int, int]:
    """The smallest clock among live learners (-1 if none) and how many have it."""
    slowest = -1
    count = 0
    for i in range(len(clock)):
        if finished[i]:
            continue
        if slowest < 0 or clock[i] < slowest:
            slowest = clock[i]
            count = 0
        if clock[i] == slowest:
            count += 1
    return slowest, count


@numba.njit(cache=True)
def _running_at_stop(
    stop: int,
    t_end: Any,
    in_flight: Any,
    g_start: Any,
    g_done: Any,
    pull: Any,
    running: Any,
    mask: Any,
) -> None:
    """Compute start of each learner's computation in flight at the stop into ``running``,
    and which have one into ``mask`` (a read at the stop instant has not happened; see the
    SimPy engine's tie rule)."""
    if stop != BY_UPDATES and stop != BY_TIME:
        return
    for i in range(len(in_flight)):
        if not in_flight[i]:
            continue
        if stop == BY_UPDATES:
            began = g_start[i] < t_end or (g_start[i] == t_end and pull[i] != 0)
            on = began and g_done[i] > t_end
        else:
            on = g_start[i] < t_end and g_done[i] >= t_end
        if on:
            mask[i] = True
            running[i] = g_start[i]


class EventLoop(BlockLoop):
    """:func:`event_loop` and its state, as :func:`~.vector_common.drive` calls it."""

    ROWS, UPDATES, STOP, NOW, END = _NROWS, _VERSION, _STOP, _T, _T_END

    def __init__(self, scenario: Scenario, units: Units) -> None:
        n = scenario.n
        proto = scenario.protocol
        u, tt = scenario.until_updates, scenario.until_time
        start, first_start, pull, push = learner_net(scenario, units)
        budget = [-1 if x.budget is None else x.budget for x in scenario.learners]
        self.net = (
            start,
            first_start,
            pull,
            push,
            np.array(budget, dtype=np.int64),
            np.argsort(start, kind="mergesort"),
        )
        self.running = np.zeros(n, dtype=units.dtype)
        self.mask = np.zeros(n, np.bool_)
        self.rule = (
            proto.batch_size(n) or 1,
            proto.current_only,
            (proto.param or 0) if proto.gated else -1,
            -1 if u is None else u,
            tt is not None,
            units.of(tt) if tt is not None else units.dtype(0),
            self.running,
            self.mask,
            no_time(units),
        )
        self.lrn, self.sc, self.tm = new_state(n, units.dtype)
        self.ints, self.times = self.sc, self.tm
        self.tm[_T] = self.tm[_T_LAST] = start[0]
        self.ptr, self.finished = np.zeros(n, np.int64), self.lrn[2]

    def step(self, draws: Draws, out: tuple[np.ndarray, ...]) -> int:
        return event_loop((draws.dur, self.ptr, draws.have), self.net, self.rule, self.lrn,
                          self.sc, self.tm, out)  # fmt: skip


def run(
    scenario: Scenario,
    rngs: list[np.random.Generator],
    reason: str,
    sink: Callable[[dict[str, np.ndarray]], None] | None = None,
    keep: bool = False,
) -> RawRun:
    """Run a scenario of async, ssp, k-async or backup on the compiled loop. With ``sink``,
    the rows go there block by block and the result keeps none unless ``keep``."""
    units = Units(scenario)
    return drive(EventLoop(scenario, units), scenario, rngs, units, reason, sink, keep)


__all__ = ["EventLoop", "event_loop", "new_state", "run"]
