"""Compiled loops of the vector engine's merge path (numba, no fast-math: every float
operation is the one IEEE operation SimPy makes, so results are bit-for-bit the same).

* :func:`extend_timelines` -- each learner's next gradients as running sums of its pull,
  compute and push times;
* :func:`cut_timelines` -- hand out the gradients that arrive up to a cut;
* :func:`merge_window` -- the merge of every learner's arrivals into the PS queue order
  (time, then read version, then learner: the tie rule), with each gradient's read version,
  written out as the window's trace rows.

Every large array is allocated here, in Python, by numpy and filled by a compiled loop:
numpy backs large arrays with huge pages, and the first touch of the 4 KiB pages of an
array allocated inside a compiled function cost more than the loops themselves.
Functions are compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

# NOTE: numba compiles these for float64 (random compute times) and int64 (exact times).

#: A learner-by-learner store of gradients: (t_start, t_done, t_arrive). (A gradient
#: reads at its learner's previous arrival, so t_read is not stored.)
Columns = tuple[np.ndarray, np.ndarray, np.ndarray]


def _empty3(size: int, dtype: Any) -> Columns:
    return (np.empty(size, dtype=dtype), np.empty(size, dtype=dtype), np.empty(size, dtype=dtype))


# ----------------------------------------------------------------------------- timelines


def extend_timelines(
    pend: Columns,
    pend_off: np.ndarray,
    dur: np.ndarray,
    dur_off: np.ndarray,
    count: np.ndarray,
    last_arrival: np.ndarray,
    first_start: np.ndarray,
    pull: np.ndarray,
    push: np.ndarray,
) -> tuple[Columns, np.ndarray]:
    """Each learner's pending (t_start, t_done, t_arrive), learner by learner,
    followed by the gradients of its new durations ``dur[dur_off[i]:dur_off[i + 1]]``;
    and the learners' offsets in them.

    A learner that never waits for others has running sums for times: from its last
    arrival (``last_arrival``; its first compute starts at ``first_start``), SimPy's
    additions ``+ pull``, ``+ compute``, ``+ push`` one at a time, as ``numpy.cumsum``
    adds (a pull or push of 0 adds nothing). Updates ``count`` and ``last_arrival``.
    """
    off = np.zeros(len(pend_off), dtype=np.int64)
    np.cumsum(np.diff(pend_off) + np.diff(dur_off), out=off[1:])
    out = _empty3(int(off[-1]), last_arrival.dtype)
    _extend(pend, pend_off, dur, dur_off, count, last_arrival, first_start, pull, push, out, off)
    return out, off


@numba.njit(cache=True)
def _extend(
    pend: Columns,
    pend_off: np.ndarray,
    dur: np.ndarray,
    dur_off: np.ndarray,
    count: np.ndarray,
    last_arrival: np.ndarray,
    first_start: np.ndarray,
    pull: np.ndarray,
    push: np.ndarray,
    out: Columns,
    off: np.ndarray,
) -> None:
    n = len(pend_off) - 1
    start_o, done_o, arrive_o = out
    for i in range(n):
        w = off[i]
        for c in range(3):
            out[c][w : w + pend_off[i + 1] - pend_off[i]] = pend[c][pend_off[i] : pend_off[i + 1]]
        w += pend_off[i + 1] - pend_off[i]
        if dur_off[i] == dur_off[i + 1]:
            continue
        prev = last_arrival[i]
        network = pull[i] != 0 or push[i] != 0
        for j in range(dur_off[i], dur_off[i + 1]):
            if count[i] == 0:
                s = first_start[i]  # start_delay + pull, exact
            elif network:
                s = prev + pull[i]
            else:
                s = prev
            d = s + dur[j]
            a = d + push[i] if network else d
            start_o[w] = s
            done_o[w] = d
            arrive_o[w] = a
            prev = a
            count[i] += 1
            w += 1
        last_arrival[i] = prev


@numba.njit(cache=True)
def _cut_counts(arrive: np.ndarray, pend_off: np.ndarray, cut: Any) -> np.ndarray:
    n = len(pend_off) - 1
    take = np.zeros(n, dtype=np.int64)
    for i in range(n):
        take[i] = np.searchsorted(arrive[pend_off[i] : pend_off[i + 1]], cut, side="right")
    return take


@numba.njit(cache=True)
def _rest(
    pend: Columns, pend_off: np.ndarray, take: np.ndarray, rest: Columns, keep: np.ndarray
) -> None:
    for i in range(len(pend_off) - 1):
        a = pend_off[i] + take[i]
        for c in range(3):
            rest[c][keep[i] : keep[i + 1]] = pend[c][a : pend_off[i + 1]]


def cut_timelines(
    pend: Columns, pend_off: np.ndarray, cut: Any
) -> tuple[np.ndarray, Columns, np.ndarray]:
    """Cut each learner's pending gradients at ``cut``: how many of each learner's arrive
    at or before it (the window: ``pend[c][pend_off[i]:pend_off[i] + take[i]]``, left in
    place) and a copy of the rest (the new pending) with its offsets."""
    take = _cut_counts(pend[2], pend_off, cut)
    keep = np.zeros(len(pend_off), dtype=np.int64)
    np.cumsum(np.diff(pend_off) - take, out=keep[1:])
    rest = _empty3(int(keep[-1]), pend[2].dtype)
    _rest(pend, pend_off, take, rest, keep)
    return take, rest, keep


# ----------------------------------------------------------------------------- merge


#: An entry of a merge order: (learner << shift) | gradient index, ``shift`` the bits of
#: the largest index (:func:`merge_window` picks it per window). Gradients are
#: numbered learner by learner, so entries compare as indices do.


#: Rounds of time in which :func:`_sort_by_time` scatters the entries into buckets.
SCATTER_ROUNDS = 32


@numba.njit(cache=True)
def _sort_by_time(
    t: np.ndarray, lo: np.ndarray, hi: np.ndarray, order: np.ndarray, st: np.ndarray, shift: int
) -> None:
    """``order`` := the entries (learner, index) of ``t`` sorted by (value, index): a bucket
    sort (buckets of about four values, in time order: IEEE division and floor are
    monotone, so bucket order is time order) with an insertion sort inside each bucket
    (any order of the scatter gives the same result).
    Linear time for spread-out times. Learner i's values are ``t[lo[i]:hi[i]]``, ascending;
    ``st`` := the sorted values (carried along, so that no step reads ``t`` at random)."""
    n = len(lo)
    total = np.sum(hi - lo)
    if total == 0:
        return
    first = True
    t_lo, t_hi = t[0], t[0]  # (ascending per learner: its first and last are its extremes)
    for i in range(n):
        if lo[i] < hi[i]:
            if first or t[lo[i]] < t_lo:
                t_lo = t[lo[i]]
            if first or t[hi[i] - 1] > t_hi:
                t_hi = t[hi[i] - 1]
            first = False
    nb = total // 4 + 1
    span = float(t_hi - t_lo)
    scale = (nb - 1) / span if span > 0 else 0.0
    start = np.zeros(nb + 1, dtype=np.int32)  # (merge_window: fewer than 2**31 entries)
    for i in range(n):
        for g in range(lo[i], hi[i]):
            start[int(float(t[g] - t_lo) * scale) + 1] += 1
    for b in range(nb):
        start[b + 1] += start[b]
    fill = start[:-1].copy()
    # The scatter goes in SCATTER_ROUNDS rounds of time (each learner's values up to the
    # round's last bucket), not learner by learner: a round writes into one stretch of
    # ``order`` and ``st`` that stays in cache. (The insertion sort below orders each
    # bucket fully, so the order of the scatter does not change the result.)
    ptr = lo.copy()
    step = nb // SCATTER_ROUNDS + 1
    limit = 0
    while limit < nb:
        limit += step
        for i in range(n):
            g, e = ptr[i], hi[i]
            while g < e:
                b = int(float(t[g] - t_lo) * scale)  # (recomputed: cheaper than stored)
                if b >= limit:
                    break
                f = fill[b]
                order[f] = (i << shift) | g
                st[f] = t[g]
                fill[b] = f + 1
                g += 1
            ptr[i] = g
    for b in range(nb):
        for r in range(start[b] + 1, start[b + 1]):
            x, tx = order[r], st[r]
            s = r - 1
            while s >= start[b] and (st[s] > tx or (st[s] == tx and order[s] > x)):
                order[s + 1] = order[s]
                st[s + 1] = st[s]
                s -= 1
            order[s + 1] = x
            st[s + 1] = tx


def merge_window(
    cols: Columns,
    lo: np.ndarray,
    hi: np.ndarray,
    first_read: np.ndarray,
    first_base: np.ndarray,
    seq0: np.ndarray,
    base: int,
    k: int,
    network: bool,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A window's rows in PS queue order, with their read versions.

    ``cols``: (t_start, t_done, t_arrive) of gradients, learner by learner (each learner's
    ascending); the window holds learner ``i``'s at ``lo[i]:hi[i]``; every earlier
    window's ``base`` arrivals came before all of these. ``first_read``: each learner's
    first read time in the window (its later reads are at its previous arrival);
    ``first_base``: arrivals of earlier windows at or before that read;
    ``seq0``: gradients each learner handed out before; ``k``: gradients per update. The
    read version is the number of updates at or before the read: floor(arrivals at or
    before it / k). Without ``network`` (no pull or push times) t_start is t_read and
    t_done is t_arrive, and the rows share those arrays.

    Returns the rows (learner, seq, read_version, t_read, t_start, t_done, arrive),
    ``reads_le`` (per learner: arrivals of this window at or before ``first_read``) and
    ``last_le`` (per learner: ``base`` + arrivals at or before its last arrival here; -1
    if it has none).
    """
    total = int(np.sum(hi - lo))
    dt = cols[2].dtype
    out: dict[str, np.ndarray] = {
        "learner": np.empty(total, dtype=np.int32),
        "seq": np.empty(total, dtype=np.int32),
        "read_version": np.empty(total, dtype=np.int64),
        "t_read": np.empty(total, dtype=dt),
        "arrive": np.empty(total, dtype=dt),
    }
    if network:
        out["t_start"] = np.empty(total, dtype=dt)
        out["t_done"] = np.empty(total, dtype=dt)
    else:
        out["t_start"] = out["t_read"]
        out["t_done"] = out["arrive"]
    order = np.empty(total, dtype=np.int64)
    shift = max(len(cols[2]).bit_length(), 1)
    if len(lo) >= 1 << (63 - shift):
        raise OverflowError(
            f"merge: {len(lo)} learners x {len(cols[2])} gradients overflow 63 bits"
        )
    if total >= 1 << 31:
        raise OverflowError(f"merge: a window of {total} gradients (at most 2**31 - 1)")
    _sort_by_time(cols[2], lo, hi, order, out["arrive"], shift)
    reads_le, last_le = _merge(
        cols,
        lo,
        hi,
        first_read,
        first_base,
        seq0,
        base,
        k,
        order,
        out["learner"],
        out["seq"],
        out["read_version"],
        out["t_read"],
        out["t_start"],
        out["t_done"],
        out["arrive"],
        network,
        shift,
    )
    return out, reads_le, last_le


@numba.njit(cache=True)
def _merge(
    cols: Columns,
    lo: np.ndarray,
    hi: np.ndarray,
    first_read: np.ndarray,
    first_base: np.ndarray,
    seq0: np.ndarray,
    base: int,
    k: int,
    order: np.ndarray,
    o_learner: np.ndarray,
    o_seq: np.ndarray,
    o_rv: np.ndarray,
    o_read: np.ndarray,
    o_start: np.ndarray,
    o_done: np.ndarray,
    st: np.ndarray,
    network: bool,
    shift: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One walk over the runs of equal arrival times, in time order (``order`` and the
    sorted times ``st`` of :func:`_sort_by_time`). A gradient's read version is its
    learner's ``next_rv`` when it is reached: set by the learner's previous arrival
    (earlier, or earlier in the same run: a run's end is known first) or, for its first
    gradient here, from ``first_read``; it reads at that arrival (``last_t``). Then the run
    is put in tie-rule order (read version, learner index) and written out. Only the
    learners' small arrays are read at random (and t_start, t_done with a network)."""
    start, done, _ = cols
    n = len(lo)
    total = len(st)
    mask = (1 << shift) - 1
    # Arrivals of this window at or before each learner's first read: queries in time order
    # against the sorted arrivals (searchsorted, side="right").
    q_order = np.argsort(first_read)
    reads_le = np.zeros(n, dtype=np.int64)
    p = 0
    for j in range(n):
        i = q_order[j]
        while p < total and st[p] <= first_read[i]:
            p += 1
        reads_le[i] = p
    next_rv = (first_base + reads_le) // k
    last_t = first_read.copy()
    last_le = np.full(n, -1, dtype=np.int64)
    p = 0
    while p < total:
        t = st[p]
        q = p + 1
        while q < total and st[q] == t:
            q += 1
        le = base + q  # arrivals (all windows) at or before t
        rv = le if k == 1 else le // k  # read version of a read at t
        if q == p + 1:  # (a run of one, the usual case for random times: no tie rule)
            key = order[p]
            i = key >> shift
            x = key & mask
            o_rv[p] = next_rv[i]
            next_rv[i] = rv
            if x + 1 == hi[i]:
                last_le[i] = le
            o_learner[p] = i
            o_seq[p] = seq0[i] + x - lo[i] + 1
            o_read[p] = last_t[i]
            last_t[i] = t
            if network:
                o_start[p] = start[x]
                o_done[p] = done[x]
            p = q
            continue
        for r in range(p, q):
            key = order[r]
            i = key >> shift
            o_rv[r] = next_rv[i]
            next_rv[i] = rv  # its next gradient reads at this arrival
            if (key & mask) + 1 == hi[i]:
                last_le[i] = le
        for r in range(p + 1, q):  # the tie rule inside the run: insertion sort
            key, v, tr = order[r], o_rv[r], st[r]
            s = r - 1
            while s >= p and (o_rv[s] > v or (o_rv[s] == v and order[s] > key)):
                order[s + 1] = order[s]
                o_rv[s + 1] = o_rv[s]
                st[s + 1] = st[s]
                s -= 1
            order[s + 1] = key
            o_rv[s + 1] = v
            st[s + 1] = tr
        for r in range(p, q):
            key = order[r]
            i = key >> shift
            x = key & mask
            o_learner[r] = i
            o_seq[r] = seq0[i] + x - lo[i] + 1
            o_read[r] = last_t[i]
            last_t[i] = st[r]
            if network:
                o_start[r] = start[x]
                o_done[r] = done[x]
        p = q
    return reads_le, last_le


@numba.njit(cache=True)
def in_flight(
    win: Columns,
    lo: np.ndarray,
    hi: np.ndarray,
    pend: Columns,
    pend_off: np.ndarray,
    t_end: Any,
    pulls: np.ndarray,
    by_updates: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Per learner: whether a computation is in flight at ``t_end`` and its compute start.

    Learner i's gradients are ``win[c][lo[i]:hi[i]]`` then ``pend[c][pend_off[i]:pend_off[i
    + 1]]`` (t_start, t_done, t_arrive; in time order). At an ``until_updates`` stop
    (``by_updates``) a computation is in flight if it started before ``t_end`` (or at it,
    after a pull) and ends after it; at an ``until_time`` stop if it started before and
    ends at or after it. The last such gradient counts; compute ends ascend, so the scan
    runs backwards and stops at the first that ends too early."""
    n = len(lo)
    found = np.zeros(n, dtype=np.bool_)
    start = np.zeros(n, dtype=win[0].dtype)
    for i in range(n):
        for part in range(2):
            cols = pend if part == 0 else win
            a = pend_off[i] if part == 0 else lo[i]
            b = pend_off[i + 1] if part == 0 else hi[i]
            for g in range(b - 1, a - 1, -1):
                s, d = cols[0][g], cols[1][g]
                if (d <= t_end) if by_updates else (d < t_end):
                    break
                if s < t_end or (by_updates and s == t_end and pulls[i]):
                    found[i] = True
                    start[i] = s
                    break
            else:
                continue
            break
    return found, start
