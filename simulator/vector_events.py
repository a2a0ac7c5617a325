"""The vector engine's compiled event loop: protocols whose learners wait for the PS.

async, ssp and k-async learners push a gradient and wait for the update that uses it (ssp
also waits at its gate), so no learner's times can be summed on their own (sync and k-sync,
whose learners all read at each update, go round by round: :mod:`.vector_rounds`). This loop
(numba, over arrays) steps from instant to instant as the SimPy engine does, with the
SimPy engine's tie rule:

1. every gradient arriving at instant ``t`` raises its learner's clock (a learner that has
   pushed its last gradient finishes here);
2. they join the PS queue in order of (read version, learner index), and the PS takes
   updates from the queue by the protocol's rule (``k`` first gradients -- for k-async
   they are ``k`` distinct learners, as a waiting learner has one gradient queued at most);
3. then the learners of those updates (and learners that start at ``t``, and gated ones
   once the smallest live clock has moved) read at ``t`` if the gate lets them (ssp:
   clock - smallest live clock <= s; the order of reads within an instant changes nothing), seeing
   every update of ``t``, and start pull, compute and push: ``t + pull``, ``+ compute``,
   ``+ push``, the same additions SimPy makes.

The compute durations are drawn beforehand (same streams and blocks as SimPy); the loop
asks for more when a learner runs out, and is then run again from the start with the
longer draws (it is deterministic, so the result is the same as one long run).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numba
import numpy as np

from dlsys.simulator.core import RawRun
from dlsys.simulator.scenario import Scenario

# Loop results.
_OK, _MORE_DRAWS, _MORE_ROWS = 0, 1, 2
# Stop reasons.
_BY_UPDATES, _BY_TIME, _FINISHED, _STALLED = 0, 1, 2, 3
STOP_NAMES = ("until_updates", "until_time", "learners finished", "stalled")


@numba.njit(cache=True, inline="always")
def _heap_push(ht: Any, hl: Any, size: int, t: Any, i: int) -> int:
    j = size
    ht[j], hl[j] = t, i
    while j > 0:
        p = (j - 1) // 2
        if ht[j] < ht[p] or (ht[j] == ht[p] and hl[j] < hl[p]):
            ht[j], ht[p] = ht[p], ht[j]
            hl[j], hl[p] = hl[p], hl[j]
            j = p
        else:
            break
    return size + 1


@numba.njit(cache=True, inline="always")
def _heap_pop(ht: Any, hl: Any, size: int) -> int:
    size -= 1
    ht[0], hl[0] = ht[size], hl[size]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and (ht[c + 1] < ht[c] or (ht[c + 1] == ht[c] and hl[c + 1] < hl[c])):
            c += 1
        if ht[c] < ht[i] or (ht[c] == ht[i] and hl[c] < hl[i]):
            ht[c], ht[i] = ht[i], ht[c]
            hl[c], hl[i] = hl[i], hl[c]
            i = c
        else:
            break
    return size


@numba.njit(cache=True)
def event_loop(
    dur: Any,
    doff: Any,
    budget: Any,
    start: Any,
    first_start: Any,
    pull: Any,
    push: Any,
    k: int,
    s: int,
    until_updates: int,
    has_time: bool,
    until_time: Any,
    out: tuple,
) -> tuple[int, int, int, int, Any, Any, Any, int, Any]:
    """Run the loop. ``dur[doff[i]:doff[i + 1]]``: learner i's drawn durations;
    ``budget[i]``: its most pushes (-1: none); updates are batches of ``k``; ``s``: the ssp
    bound (-1: no gate); ``until_updates`` (-1: none). Rows go to
    the columns ``out`` (learner, seq, read_version, version, t_read, t_start, t_done,
    t_apply). Returns (result code, rows, updates, stop reason, t_end, compute start of the
    computation in flight at the stop per learner, which learners have one, the learner
    that needs more draws, how far each learner's draws were used)."""
    n = len(start)
    dt = dur.dtype
    dptr = doff[:-1].copy()
    seq = np.zeros(n, np.int64)
    clock = np.zeros(n, np.int64)
    finished = np.zeros(n, np.bool_)
    started = np.zeros(n, np.bool_)
    ready = np.zeros(n, np.int64)  # learners waiting to read (gate permitting): ready[:nready]
    nready = 0
    gated = np.zeros(n, np.int64)  # learners the ssp gate holds: gated[:ngated]
    ngated = 0
    g_rv = np.zeros(n, np.int64)
    g_read = np.zeros(n, dt)
    g_start = np.zeros(n, dt)
    g_done = np.zeros(n, dt)
    in_flight = np.zeros(n, np.bool_)
    queue = np.empty(n, np.int64)
    qlen = 0
    in_queue = np.zeros(n, np.bool_)
    ht = np.empty(n, dt)
    hl = np.empty(n, np.int64)
    hsize = 0
    order = np.argsort(start, kind="mergesort")
    nstart = 0
    live = n
    slowest = 0  # smallest clock of the live learners (the ssp gate)
    nslow = n  # live learners whose clock is the slowest
    gate_at = 0  # the slowest clock when the gated learners were last checked
    version = 0
    nrows = 0
    arr = np.empty(n, np.int64)
    t = start[0]
    t_last = start[0]
    stop = -1
    while True:
        # The next instant: an arrival or a learner's start.
        has_next, t = _next_instant(ht, hsize, start, order, nstart, t)
        if not has_next:  # (an until_time run ends at until_time all the same)
            stop = _BY_TIME if has_time else (_FINISHED if live == 0 else _STALLED)
            break
        if has_time and t >= until_time:
            stop = _BY_TIME
            break
        t_last = t
        # 1. arrivals at t
        counts = (live, slowest, nslow)
        hsize, na, live, slowest, nslow = _arrivals(
            t, ht, hl, hsize, in_flight, clock, budget, finished, s, arr, counts
        )
        # 2. they join the queue by (read version, learner), and updates are taken
        qlen = _join_queue(arr, na, g_rv, queue, qlen, in_queue)
        while qlen > 0:
            if qlen < k:
                break
            take = k
            if nrows + take > len(out[0]):
                return _MORE_ROWS, nrows, version, -1, t, g_start, in_queue, -1, dptr
            for a in range(take):
                i = queue[a]
                out[0][nrows], out[1][nrows], out[2][nrows] = i, seq[i], g_rv[i]
                out[3][nrows], out[4][nrows], out[5][nrows] = version, g_read[i], g_start[i]
                out[6][nrows], out[7][nrows] = g_done[i], t
                nrows += 1
                in_queue[i] = False
                if not finished[i]:
                    ready[nready] = i
                    nready += 1
            for a in range(qlen - take):  # (no temporary: this runs once per update)
                queue[a] = queue[a + take]
            qlen -= take
            version += 1
            if version == until_updates:
                stop = _BY_UPDATES
                break
        if stop >= 0:
            break
        while nstart < n and start[order[nstart]] == t:
            ready[nready] = order[nstart]
            nready += 1
            nstart += 1
        # 3. reads at t, through the gate (held learners are looked at again only once
        # the slowest clock has moved: nothing else opens the gate)
        if slowest != gate_at:
            ready[nready : nready + ngated] = gated[:ngated]
            nready += ngated
            ngated = 0
            gate_at = slowest
        st = (seq, g_rv, g_read, g_start, g_done, in_flight, started, ready, dptr)
        hsize, nready, need = _reads(t, version, slowest, s, nready, clock, dur, doff,
                                     first_start, pull, push, st, ht, hl, hsize)  # fmt: skip
        if need >= 0:
            return _MORE_DRAWS, nrows, version, -1, t, g_start, in_queue, need, dptr
        gated[ngated : ngated + nready] = ready[:nready]
        ngated += nready
        nready = 0
    if stop == _BY_TIME:
        t_end = until_time
    elif stop == _BY_UPDATES:
        t_end = t
    else:
        t_end = t_last
    running, mask = _running_at_stop(stop, t_end, in_flight, g_start, g_done, pull)
    return _OK, nrows, version, stop, t_end, running, mask, -1, dptr


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
        hsize = _heap_pop(ht, hl, hsize)
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
    doff: Any,
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
    size, learners still ready, a learner that ran out of draws or -1)."""
    seq, g_rv, g_read, g_start, g_done, in_flight, started, ready, dptr = st
    kept = 0
    for r in range(nready):
        i = ready[r]
        if s >= 0 and clock[i] - slowest > s:
            ready[kept] = i
            kept += 1
            continue
        if dptr[i] == doff[i + 1]:
            return hsize, nready, i  # (the loop is then run again from the start)
        d = dur[dptr[i]]
        dptr[i] += 1
        seq[i] += 1
        g_rv[i] = version
        g_read[i] = t
        g_start[i] = first_start[i] if not started[i] else t + pull[i]
        started[i] = True
        g_done[i] = g_start[i] + d
        in_flight[i] = True
        hsize = _heap_push(ht, hl, hsize, g_done[i] + push[i], i)
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
    stop: int, t_end: Any, in_flight: Any, g_start: Any, g_done: Any, pull: Any
) -> tuple[Any, Any]:
    """Compute start of each learner's computation in flight at the stop, and which have
    one (a read at the stop instant has not happened; see the SimPy engine's tie rule)."""
    n = len(in_flight)
    running = np.zeros(n, g_start.dtype)
    mask = np.zeros(n, np.bool_)
    if stop != _BY_UPDATES and stop != _BY_TIME:
        return running, mask
    for i in range(n):
        if not in_flight[i]:
            continue
        if stop == _BY_UPDATES:
            began = g_start[i] < t_end or (g_start[i] == t_end and pull[i] != 0)
            on = began and g_done[i] > t_end
        else:
            on = g_start[i] < t_end and g_done[i] >= t_end
        if on:
            mask[i] = True
            running[i] = g_start[i]
    return running, mask


def _first_draws(scenario: Scenario, units: Any) -> list[int]:
    """How many durations each learner draws at first (enough for most runs)."""
    from dlsys.simulator.vector import cycle_means

    n = scenario.n
    proto = scenario.protocol
    u = scenario.until_updates
    cyc = cycle_means(scenario)
    out = []
    for i in range(n):
        est = math.inf
        if scenario.until_time is not None:
            est = float(scenario.until_time) / cyc[i] * 1.1 + 16
        if u is not None:
            # A learner's share of the gradients if none waited; ssp bounds it.
            k = proto.batch_size(n) or n
            est = min(est, u * k / float(np.sum(cyc[i] / cyc)) * 1.1 + 16)
            if proto.gated:  # held within s of the slowest: about u / n each
                share = max(est, u / n * 1.1 + 16)
                est = min(share, u // n + (proto.param or 0) + 2)
        out.append(int(min(est, 2**31)))
    return out


def run(scenario: Scenario, rngs: list[np.random.Generator], reason: str) -> RawRun:
    """Run a scenario of async, ssp or k-async on the compiled loop."""
    from dlsys.simulator.vector import Durations, Units

    units = Units(scenario)
    n = scenario.n
    proto = scenario.protocol
    durs = [Durations(scenario, i, rngs[i], units) for i in range(n)]
    drawn = [d.take(m) for d, m in zip(durs, _first_draws(scenario, units), strict=True)]
    specs = scenario.learners
    start = np.array([units.of(x.start_delay) for x in specs], dtype=units.dtype)
    first = np.array(
        [units.of(Fraction(x.start_delay) + Fraction(x.pull_time)) for x in specs],
        dtype=units.dtype,
    )
    pull = np.array([units.of(x.pull_time) for x in specs], dtype=units.dtype)
    push = np.array([units.of(x.push_time) for x in specs], dtype=units.dtype)
    budget = np.array([-1 if x.budget is None else x.budget for x in specs], dtype=np.int64)
    u = scenario.until_updates
    tt = scenario.until_time
    cap = sum(len(d) for d in drawn) + n
    while True:
        doff = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(d) for d in drawn], out=doff[1:])
        dur = np.concatenate(drawn) if n else np.zeros(0, dtype=units.dtype)
        out = (
            np.empty(cap, np.int32),  # learner
            np.empty(cap, np.int32),  # seq
            np.empty(cap, np.int64),  # read_version
            np.empty(cap, np.int64),  # version
            *(np.empty(cap, units.dtype) for _ in range(4)),  # t_read, t_start, t_done, t_apply
        )
        code, nrows, updates, stop, t_end, running, mask, who, used = event_loop(
            dur.astype(units.dtype),
            doff,
            budget,
            start,
            first,
            pull,
            push,
            proto.batch_size(n) or 1,
            (proto.param or 0) if proto.gated else -1,
            -1 if u is None else u,
            tt is not None,
            units.of(tt) if tt is not None else units.dtype(0),
            out,
        )
        if code == _MORE_ROWS:
            cap *= 2
        elif code == _MORE_DRAWS:
            if durs[who].done:
                raise AssertionError(f"learner {who}: durations ran out before its budget")
            # Every learner that has used most of its draws gets twice as many.
            for i in range(n):
                if i == who or (used[i] - doff[i] >= 0.8 * len(drawn[i]) and not durs[i].done):
                    more = durs[i].take(max(16, len(drawn[i])))
                    drawn[i] = np.concatenate([drawn[i], more])
        else:
            break
    names = ("learner", "seq", "read_version", "version", "t_read", "t_start", "t_done", "t_apply")
    cols = {c: a[:nrows] for c, a in zip(names, out, strict=True)}
    for c in ("t_read", "t_start", "t_done", "t_apply"):
        cols[c] = units.seconds(cols[c])
    cols["status"] = np.zeros(nrows, dtype=np.int8)
    inflight = np.full(n, np.nan)
    inflight[mask] = units.seconds(running[mask])
    return RawRun(cols, updates, units.scalar(t_end), STOP_NAMES[stop], inflight, "vector", reason)
