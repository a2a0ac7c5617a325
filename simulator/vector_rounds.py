"""The vector engine's round path: sync and k-sync without an event loop.

Under sync and k-sync every live learner reads the weights at the same instant -- the
previous update ``T[r-1]`` -- and computes one gradient for round ``r``: after an update the
PS wakes every waiting learner (sync) or cancels every computation still in flight (k-sync),
and all of them read at once. So a round needs no events at all, only its learners'
durations ``d[i, r]`` (drawn per learner from its own stream, in the SimPy engine's blocks)
and order statistics:

* learner ``i`` reads at ``T[r-1]`` (its first read: at its start delay), starts computing at
  ``T[r-1] + pull``, is done at ``+ d[i, r]`` and arrives at ``+ push``: the same chain of
  additions the SimPy engine makes, one delay at a time;
* the update takes the first ``k`` arrivals of the round (the protocol's
  :meth:`~dlsys.simulator.protocols.Protocol.batch_size`; sync: every live learner, so
  the last arrival), in the tie rule's order (time, read version, learner index -- all of a
  round read the same version): ``T[r]`` is the ``k``-th smallest arrival time;
* other arrivals at ``T[r]`` itself are dropped (the PS takes exactly ``k``), and the
  computations still running at ``T[r]`` are cancelled (the protocol's ``on_update`` is
  ``CANCEL_ALL``): their rows follow the update's, in learner order, as the SimPy engine
  writes them (dropped, applied, cancelled).

A learner that has not started yet (a start delay beyond ``T[r-1]``) joins the round if it
starts before ``T[r]``, reading at its start. A learner leaves the rounds when it has pushed
``max_gradients`` gradients or its durations run out (``times``, a ``trace`` without
repeat); a round of k-sync that cannot gather ``k`` gradients stalls the run. The loop
(numba, over arrays, no fast-math) goes round by round through blocks of drawn durations and
of trace rows, so memory holds one block, however long the run: with a ``sink`` the rows go
there block by block (``--summary-only`` keeps none of them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from dlsys.simulator.core import APPLIED, CANCELLED, DROPPED, RawRun
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
    learner_net,
    no_time,
)

#: Buckets per arrival of the round's bucket sort.
BUCKETS = 4

#: Slots of the round (and chain) loop's integer state: version, rows in the block, stop
#: reason; and of its time state: last update, last instant, end.
VERSION, POS, STOP = 0, 1, 2
T_PREV, T_LAST, T_END = 0, 1, 2


@numba.njit(cache=True, inline="always")
def _candidates(
    draws: tuple, ptr: Any, fin: Any, started: Any, net: Any, t_prev: Any, work: tuple
) -> int:
    """Every live learner's next gradient if it read now, into ``work[:5]`` (learners,
    t_read, t_start, t_done, arrival; learners in index order); returns how many, or -1 if
    a live learner needs more durations drawn first. ``draws`` is (durations, how many
    there are, whether more can come) per learner; a learner whose durations ran out
    finishes here, at its read. ``net`` is (start, first_start, pull, push)."""
    dur, have, dur_done = draws
    start, first_start, pull, push = net
    who, tr, ts, td, ta = work[:5]
    m = 0
    for i in range(len(fin)):
        if fin[i]:
            continue
        if ptr[i] == have[i]:
            if not dur_done[i]:
                return -1
            fin[i] = True
            continue
        if started[i]:
            tr[m] = t_prev
            ts[m] = t_prev + pull[i]
        else:
            tr[m] = start[i]
            ts[m] = first_start[i]
        td[m] = ts[m] + dur[i, ptr[i]]
        ta[m] = td[m] + push[i]
        who[m] = i
        m += 1
    return m


@numba.njit(cache=True)
def _arrival_order(ta: Any, order: Any, bucket: Any, count: Any) -> None:
    """``order[:m]``: the candidates ``0 .. m-1`` sorted by (arrival ``ta``, index), stably.

    A bucket sort: ``BUCKETS * m`` equal-width buckets between the earliest and the latest
    arrival, filled in index order, then an insertion sort by strict ``>`` (so ties keep
    index order, and elements move only within their bucket: the bucket of a time never
    decreases as the time grows). Expected O(m) for spread-out times (more buckets than
    times: fewer moves where the times are dense, as near the minimum of exponential
    arrivals); a round whose times crowd into a few buckets (a heavy tail) falls back to a
    merge sort. ``count``: room for ``BUCKETS * m + 1``."""
    m = len(ta)
    if m == 0:
        return
    nb = BUCKETS * m
    lo, hi = ta.min(), ta.max()
    scale = (nb - 1) / (float(hi) - float(lo)) if hi > lo else 0.0
    count[: nb + 1] = 0
    for c in range(m):
        b = int((float(ta[c]) - float(lo)) * scale)
        bucket[c] = b
        count[b + 1] += 1
    for b in range(nb):
        count[b + 1] += count[b]
    for c in range(m):
        order[count[bucket[c]]] = c
        count[bucket[c]] += 1
    moves = 0
    for j in range(1, m):
        x = order[j]
        y = j - 1
        while y >= 0 and ta[order[y]] > ta[x]:
            order[y + 1] = order[y]
            y -= 1
        moves += j - 1 - y
        order[y + 1] = x
        if moves > 16 * m:  # crowded buckets: sort the whole round at once
            order[:m] = np.argsort(ta, kind="mergesort")
            return


@numba.njit(cache=True, inline="always")
def write_row(
    out: Any, pos: int, i: int, seq: int, rv: int, ver: int, times: tuple, st: int
) -> int:
    """Write one trace row at ``pos``; ``times`` is (t_read, t_start, t_done, t_apply)."""
    learner, oseq, orv, over, t_read, t_start, t_done, t_apply, status = out
    learner[pos], oseq[pos], orv[pos], over[pos] = i, seq, rv, ver
    t_read[pos], t_start[pos], t_done[pos], t_apply[pos] = times
    status[pos] = st
    return pos + 1


@numba.njit(cache=True)
def _in_flight(
    stop: int, t_end: Any, cand: tuple, pull: Any, running: Any, mask: Any, skip: Any
) -> None:
    """Compute start of each candidate's computation in flight at the stop (the SimPy
    engine's state at that instant: a read or pull end at the stop instant has happened for
    an update stop, nothing at the stop instant has for a time stop). ``skip``: candidates
    that had arrived."""
    who, _tr, ts, td, _ta = cand
    for c in range(len(who)):
        i = who[c]
        if skip[c]:
            continue
        if stop == BY_UPDATES:
            on = (ts[c] < t_end or (ts[c] == t_end and pull[i] != 0)) and td[c] > t_end
        else:
            on = ts[c] < t_end and td[c] >= t_end
        if on:
            mask[i] = True
            running[i] = ts[c]


@numba.njit(cache=True, inline="always")
def _consume(cand: tuple, c: int, join: Any, arrived: bool, lrn: tuple) -> None:
    """Candidate ``c`` joined the round: it used a duration and read; if it ``arrived``, its
    push counts (a learner at its ``max_gradients`` finishes)."""
    seq, pushed, fin, started, ptr, budget = lrn
    i = cand[0][c]
    join[c] = True
    ptr[i] += 1
    seq[i] += 1
    started[i] = True
    if arrived:
        pushed[i] += 1
        if budget[i] >= 0 and pushed[i] >= budget[i]:
            fin[i] = True


@numba.njit(cache=True)
def rounds_loop(
    dur: Any,
    have: Any,
    dur_done: Any,
    lrn: tuple,
    net: tuple,
    rule: tuple,
    state: Any,
    clock: Any,
    out: tuple,
    running: Any,
    mask: Any,
) -> int:
    """Run rounds until the run stops (``DONE``), a live learner needs more durations
    (``NEED_DRAWS``) or the rows of one more round may not fit (``NEED_ROOM``); the run
    goes on from ``state`` / ``clock`` after the caller refills. ``dur[i, ptr[i]:have[i]]``:
    learner i's durations not used yet (``dur_done[i]``: no more to come); ``lrn``: (seq,
    pushed, finished, started, ptr, budget) per learner; ``net``: (start, first start, pull,
    push) per learner; ``rule``: (k -- 0 for every live learner --, until_updates or -1,
    whether there is an until_time, until_time, the NaN of the time dtype); ``state``:
    (version, rows in ``out``, stop reason); ``clock``: (last update, last instant, end)."""
    seq, _pushed, fin, started, ptr, _budget = lrn
    k, until_updates, has_time, until_time, nan = rule
    pull = net[2]
    n = len(fin)
    work = (
        np.empty(n, np.int64),  # candidates' learners
        np.empty(n, dur.dtype),  # t_read
        np.empty(n, dur.dtype),  # t_start
        np.empty(n, dur.dtype),  # t_done
        np.empty(n, dur.dtype),  # arrival
        np.empty(n, np.int64),  # arrival order
        np.empty(n, np.int64),  # buckets
        np.empty(BUCKETS * n + 1, np.int64),  # bucket counts
        np.empty(n, np.bool_),  # joined
    )
    order_all, bucket, count, join_all = work[5:]
    while True:
        if state[POS] + n > len(out[0]):
            return NEED_ROOM
        m = _candidates((dur, have, dur_done), ptr, fin, started, net, clock[T_PREV], work)
        if m < 0:
            return NEED_DRAWS
        cand = (work[0][:m], work[1][:m], work[2][:m], work[3][:m], work[4][:m])
        who, tr, ts, td, ta = cand
        join = join_all[:m]
        join[:] = False
        need = k if k > 0 else m
        if m == 0 or m < need:  # nobody left, or a k-sync round that never fills: all push, wait
            for c in range(m):
                _consume(cand, c, join, True, lrn)
                clock[T_LAST] = max(clock[T_LAST], ta[c])
            if has_time:
                state[STOP] = BY_TIME
                clock[T_END] = until_time
                _in_flight(BY_TIME, until_time, cand, pull, running, mask, np.zeros(m, np.bool_))
            else:
                state[STOP] = FINISHED if np.all(fin) else STALLED
                clock[T_END] = clock[T_LAST]
            return DONE
        order = order_all[:m]
        _arrival_order(ta, order, bucket, count)  # ties by learner index
        t = ta[order[need - 1]]
        if has_time and t >= until_time:
            state[STOP] = BY_TIME
            clock[T_END] = until_time
            _in_flight(BY_TIME, until_time, cand, pull, running, mask, np.zeros(m, np.bool_))
            return DONE
        version, pos = state[VERSION], state[POS]
        for j in range(need, m):  # arrivals at t beyond the k-th: dropped, written first
            c = order[j]
            if ta[c] != t:
                break
            _consume(cand, c, join, True, lrn)
            pos = write_row(
                out, pos, who[c], seq[who[c]], version, -1, (tr[c], ts[c], td[c], nan), DROPPED
            )
        for j in range(need):
            c = order[j]
            _consume(cand, c, join, True, lrn)
            pos = write_row(
                out, pos, who[c], seq[who[c]], version, version, (tr[c], ts[c], td[c], t), APPLIED
            )
        state[VERSION] = version + 1
        clock[T_PREV] = t
        clock[T_LAST] = max(clock[T_LAST], t)
        if version + 1 == until_updates:
            state[POS], state[STOP] = pos, BY_UPDATES
            clock[T_END] = t
            skip = ta <= t
            for c in range(m):  # late starters that start at or after t have not read
                skip[c] = skip[c] or (not started[who[c]] and tr[c] >= t)
            _in_flight(BY_UPDATES, t, cand, pull, running, mask, skip)
            return DONE
        for c in range(m):  # still computing at t: cancelled, in learner order
            i = who[c]
            if join[c] or (not started[i] and tr[c] >= t):
                continue  # (used above, or starts at t or later: not read yet)
            _consume(cand, c, join, False, lrn)
            t_start = ts[c] if ts[c] <= t else nan  # still pulling: no compute start
            # SimPy's clock still passes the end of the phase it was cancelled in.
            phase_end = ts[c] if ts[c] > t else (td[c] if td[c] > t else ta[c])
            clock[T_LAST] = max(clock[T_LAST], phase_end)
            pos = write_row(
                out, pos, i, seq[i], version, -1, (tr[c], t_start, min(td[c], t), nan), CANCELLED
            )
        state[POS] = pos


class RoundLoop(BlockLoop):
    """:func:`rounds_loop` (or a loop with its arguments and results: the chain loop of
    :mod:`.vector_chains`) and its state, as :func:`~.vector_common.drive` calls it."""

    ROWS, UPDATES, STOP, NOW, END = POS, VERSION, STOP, T_PREV, T_END

    def __init__(self, loop: Callable[..., int], scenario: Scenario, units: Units) -> None:
        n = scenario.n
        proto = scenario.protocol
        u, tt = scenario.until_updates, scenario.until_time
        self.loop = loop
        self.net = learner_net(scenario, units)
        budget = [-1 if x.budget is None else x.budget for x in scenario.learners]
        self.lrn = (
            np.zeros(n, np.int64),  # seq
            np.zeros(n, np.int64),  # pushed
            np.zeros(n, np.bool_),  # finished
            np.zeros(n, np.bool_),  # started
            np.zeros(n, np.int64),  # ptr
            np.array(budget, dtype=np.int64),
        )
        self.ptr, self.finished = self.lrn[4], self.lrn[2]
        self.rule = (
            proto.batch_size(n) or 0,
            -1 if u is None else u,
            tt is not None,
            units.of(tt) if tt is not None else units.dtype(0),
            no_time(units),
        )
        self.state = self.ints = np.zeros(3, np.int64)
        self.clock = self.times = np.zeros(3, dtype=units.dtype)
        self.running = np.zeros(n, dtype=units.dtype)
        self.mask = np.zeros(n, np.bool_)

    def step(self, draws: Draws, out: tuple[np.ndarray, ...]) -> int:
        return self.loop(draws.dur, draws.have, draws.done, self.lrn, self.net, self.rule,
                         self.state, self.clock, out, self.running, self.mask)  # fmt: skip


def run(
    scenario: Scenario,
    rngs: list[np.random.Generator],
    reason: str,
    sink: Callable[[dict[str, np.ndarray]], None] | None = None,
    keep: bool = False,
) -> RawRun:
    """Run a sync or k-sync ``scenario`` round by round (see the module docstring). With
    ``sink``, the rows go there block by block and the result keeps none unless ``keep``."""
    units = Units(scenario)
    loop = RoundLoop(rounds_loop, scenario, units)
    return drive(loop, scenario, rngs, units, reason, sink, keep)


__all__ = [
    "BUCKETS",
    "POS",
    "STOP",
    "T_END",
    "T_LAST",
    "T_PREV",
    "VERSION",
    "RoundLoop",
    "rounds_loop",
    "run",
    "write_row",
]
