"""The vector engine's path for k-batch-sync: rounds of chains, no event loop.

Under k-batch-sync (Dutta et al. 2018) every live learner reads at the update, as under
k-sync, but a learner that has pushed a gradient computes another one on the same weights
at once (no read, no pull), until the update cancels them all. So round ``r`` is one chain
per learner: its first gradient reads at ``T[r-1]`` (its first ever: at its start delay),
starts at ``+ pull``, is done at ``+ d`` and arrives at ``+ push``; each next one starts at
the previous arrival. The update takes the first ``k`` arrivals of all chains in the tie
rule's order (time, read version, learner index -- one read version per round), at ``T[r]``;
later arrivals at ``T[r]`` are dropped, and every computation still running at ``T[r]``
(including one that began at ``T[r]`` itself, after its learner's push) is cancelled. The
rows come as the SimPy engine writes them: dropped, applied, cancelled (learner order).

The chains are merged with a small 4-ary heap over the learners (each learner's next
arrival; :func:`.vector_common.heap_push`), popped ``k`` times (plus the ties) a round;
everything else -- late starters, ``max_gradients`` counting pushes, durations that run
out -- is :mod:`.vector_rounds`' (its state: :class:`.vector_rounds.RoundLoop`), and the
durations drawn per learner in the SimPy engine's blocks and the row blocks are
:func:`.vector_common.drive`'s.
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
    drive,
    heap_pop,
    heap_push,
)
from dlsys.simulator.vector_rounds import (
    POS,
    STOP,
    T_END,
    T_LAST,
    T_PREV,
    VERSION,
    RoundLoop,
    write_row,
)


@numba.njit(cache=True, inline="always")
def _first(i: int, dur: Any, ptr: Any, started: Any, net: tuple, t_prev: Any, el: tuple) -> None:
    """Learner ``i``'s first gradient of the round (read, start, done, arrival) into ``el``."""
    start, first_start, pull, push = net
    tr, ts, td, ta, reuse = el
    tr[i] = t_prev if started[i] else start[i]
    ts[i] = t_prev + pull[i] if started[i] else first_start[i]
    td[i] = ts[i] + dur[i, ptr[i]]
    ta[i] = td[i] + push[i]
    reuse[i] = False


@numba.njit(cache=True)
def chains_loop(
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
    """:func:`.vector_rounds.rounds_loop`'s arguments and results, for k-batch-sync."""
    seq, pushed, fin, started, ptr, budget = lrn
    k, until_updates, has_time, until_time, nan = rule
    pull = net[2]
    n = len(fin)
    el = (np.empty(n, dur.dtype), np.empty(n, dur.dtype), np.empty(n, dur.dtype),
          np.empty(n, dur.dtype), np.zeros(n, np.bool_))  # fmt: skip
    tr, ts, td, ta, reuse = el
    ht, hl = np.empty(n, dur.dtype), np.empty(n, np.int64)
    popped = np.empty(k + n, np.int64)  # learners of the arrivals taken, in order
    p_tr, p_ts, p_td = (
        np.empty(k + n, dur.dtype),
        np.empty(k + n, dur.dtype),
        np.empty(k + n, dur.dtype),
    )
    while True:
        if state[POS] + k + 2 * n > len(out[0]):
            return NEED_ROOM
        for i in range(n):
            if not fin[i] and have[i] - ptr[i] < k + 2 and not dur_done[i]:
                return NEED_DRAWS
        t_prev, hsize = clock[T_PREV], 0
        for i in range(n):
            if not fin[i] and ptr[i] == have[i]:
                fin[i] = True  # its durations ran out: it finishes at its read
            if not fin[i]:
                _first(i, dur, ptr, started, net, t_prev, el)
                hsize = heap_push(ht, hl, hsize, ta[i], i)
        npop, t = 0, t_prev
        stop = -1
        while hsize > 0:
            i, a = hl[0], ht[0]
            if npop >= k and a != t:
                break
            if has_time and npop < k and a >= until_time:
                stop = BY_TIME
                break
            hsize = heap_pop(ht, hl, hsize)
            popped[npop], p_tr[npop], p_ts[npop], p_td[npop] = i, tr[i], ts[i], td[i]
            ptr[i] += 1
            seq[i] += 1
            started[i] = True
            pushed[i] += 1
            npop += 1
            t = a if npop <= k else t
            clock[T_LAST] = max(clock[T_LAST], a)
            if budget[i] >= 0 and pushed[i] >= budget[i]:
                fin[i] = True  # its last push
            elif ptr[i] == have[i]:
                fin[i] = True  # no duration left for the next gradient: it finishes here
            else:  # the next gradient on the same weights starts at the push
                ts[i] = a
                td[i] = a + dur[i, ptr[i]]
                ta[i] = td[i] + net[3][i]
                reuse[i] = True
                hsize = heap_push(ht, hl, hsize, ta[i], i)
        if stop < 0 and npop < k:  # every chain ended before the k-th arrival
            stop = BY_TIME if has_time else (FINISHED if np.all(fin) else STALLED)
        if stop >= 0:
            state[STOP] = stop
            clock[T_END] = until_time if has_time else clock[T_LAST]
            if stop == BY_TIME:
                for c in range(hsize):
                    i = hl[c]
                    if ts[i] < until_time and td[i] >= until_time:
                        mask[i], running[i] = True, ts[i]
            return DONE
        version, pos = state[VERSION], state[POS]
        for j in range(k, npop):  # arrivals at t beyond the k-th: dropped, written first
            row = (p_tr[j], p_ts[j], p_td[j], nan)
            pos = write_row(out, pos, popped[j], seq[popped[j]], version, -1, row, DROPPED)
        for j in range(k):
            i = popped[j]
            # (seq: a learner's later arrivals of the round come after this one)
            s_j = seq[i] - _later(popped, npop, j, i)
            pos = write_row(
                out, pos, i, s_j, version, version, (p_tr[j], p_ts[j], p_td[j], t), APPLIED
            )
        state[VERSION] = version + 1
        clock[T_PREV] = t
        if version + 1 == until_updates:
            state[POS], state[STOP] = pos, BY_UPDATES
            clock[T_END] = t
            for c in range(hsize):
                i = hl[c]
                began = ts[i] < t or (ts[i] == t and (pull[i] != 0 or reuse[i]))
                if began and td[i] > t:
                    mask[i], running[i] = True, ts[i]
            return DONE
        in_heap = np.zeros(n, np.bool_)
        for c in range(hsize):
            in_heap[hl[c]] = True
        for i in range(n):  # still computing at t: cancelled, in learner order
            if not in_heap[i] or (not started[i] and tr[i] >= t):
                continue  # (none in flight, or starts at t or later: not read yet)
            ptr[i] += 1
            seq[i] += 1
            started[i] = True
            t_start = ts[i] if ts[i] <= t else nan  # still pulling: no compute start
            phase_end = ts[i] if ts[i] > t else (td[i] if td[i] > t else ta[i])
            clock[T_LAST] = max(clock[T_LAST], phase_end)
            row = (tr[i], t_start, min(td[i], t), nan)
            pos = write_row(out, pos, i, seq[i], version, -1, row, CANCELLED)
        state[POS] = pos


@numba.njit(cache=True, inline="always")
def _later(popped: Any, npop: int, j: int, i: int) -> int:
    """How many of learner ``i``'s arrivals were taken after the ``j``-th."""
    c = 0
    for x in range(j + 1, npop):
        c += popped[x] == i
    return c


def run(
    scenario: Scenario,
    rngs: list[np.random.Generator],
    reason: str,
    sink: Callable[[dict[str, np.ndarray]], None] | None = None,
    keep: bool = False,
) -> RawRun:
    """Run a k-batch-sync ``scenario`` as rounds of chains (see the module docstring). With
    ``sink``, the rows go there block by block and the result keeps none unless ``keep``."""
    units = Units(scenario)
    return drive(RoundLoop(chains_loop, scenario, units), scenario, rngs, units, reason, sink, keep)


__all__ = ["chains_loop", "run"]
