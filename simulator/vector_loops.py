"""Compiled loops of the vector engine (numba, no fast-math: every float operation is the one
IEEE operation SimPy makes, so results are bit-for-bit the same).

* :func:`merge_order` -- the merge of per-learner arrival times into the PS queue
  order (time, then read version, then learner: the tie rule), with each gradient's read
  version;
* the round and gated event loops of :mod:`dlsys.simulator.vector_rounds`.

Functions are compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np

# NOTE: numba compiles these for float64 (random compute times) and int64 (exact times).


@numba.njit(cache=True)
def sort_by_time(t: np.ndarray) -> np.ndarray:
    """Indices that sort ``t`` by (value, index): a bucket sort (buckets of about four
    values, in time order: IEEE division and floor are monotone, so bucket order is time
    order) with an insertion sort inside each bucket. Linear time for spread-out times."""
    total = len(t)
    order = np.empty(total, dtype=np.int64)
    if total == 0:
        return order
    lo, hi = t[0], t[0]
    for v in t:
        lo = min(lo, v)
        hi = max(hi, v)
    nb = total // 4 + 1
    span = float(hi - lo)
    scale = (nb - 1) / span if span > 0 else 0.0
    bucket = np.empty(total, dtype=np.int64)
    start = np.zeros(nb + 1, dtype=np.int64)
    for g in range(total):
        b = int(float(t[g] - lo) * scale)
        bucket[g] = b
        start[b + 1] += 1
    for b in range(nb):
        start[b + 1] += start[b]
    fill = start[:-1].copy()
    for g in range(total):  # indices ascending inside each bucket
        b = bucket[g]
        order[fill[b]] = g
        fill[b] += 1
    for b in range(nb):
        for r in range(start[b] + 1, start[b + 1]):
            x = order[r]
            tx = t[x]
            s = r - 1
            while s >= start[b] and (t[order[s]] > tx or (t[order[s]] == tx and order[s] > x)):
                order[s + 1] = order[s]
                s -= 1
            order[s + 1] = x
    return order


@numba.njit(cache=True)
def merge_order(
    arrive: np.ndarray,
    offsets: np.ndarray,
    first_read: np.ndarray,
    first_base: np.ndarray,
    base: int,
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Queue order of a window of gradients, their read versions, the sorted arrival times
    and, per gradient, the number of arrivals (all windows) at or before its arrival.

    ``arrive``: arrival times, learner by learner (each learner's ascending), learner ``i``
    in ``arrive[offsets[i]:offsets[i + 1]]``; every earlier window's ``base`` arrivals came
    before all of these. ``first_read``: each learner's first read time in the window (its
    later reads are at its previous arrival); ``first_base``: arrivals of earlier windows
    at or before that read. ``k``: gradients per update. The read version is the number of
    updates at or before the read: floor(arrivals at or before it / k).
    """
    n = len(offsets) - 1
    total = offsets[n]
    # Gradients are numbered learner by learner, so (time, index) order is (time, learner).
    order = sort_by_time(arrive)
    pos = np.empty(total, dtype=np.int64)
    sorted_t = np.empty(total, dtype=arrive.dtype)
    for p in range(total):
        pos[order[p]] = p
        sorted_t[p] = arrive[order[p]]
    # Arrivals at or before each sorted position: the end of its run of equal times.
    le = np.empty(total, dtype=np.int64)
    p = total - 1
    while p >= 0:
        q = p
        while q > 0 and sorted_t[q - 1] == sorted_t[p]:
            q -= 1
        for r in range(q, p + 1):
            le[r] = p + 1
        p = q - 1
    read_version = np.empty(total, dtype=np.int64)
    for i in range(n):
        a, b = offsets[i], offsets[i + 1]
        if a == b:
            continue
        read_version[a] = (
            first_base[i] + np.searchsorted(sorted_t, first_read[i], side="right")
        ) // k
        for g in range(a + 1, b):
            read_version[g] = (base + le[pos[g - 1]]) // k
    # The tie rule inside runs of equal arrival times: (read version, learner index).
    p = 0
    while p < total:
        q = p + 1
        while q < total and sorted_t[q] == sorted_t[p]:
            q += 1
        if q - p > 1:
            for r in range(p + 1, q):  # insertion sort of a short run
                x = order[r]
                s = r - 1
                while s >= p and (
                    read_version[order[s]] > read_version[x]
                    or (read_version[order[s]] == read_version[x] and order[s] > x)
                ):
                    order[s + 1] = order[s]
                    s -= 1
                order[s + 1] = x
        p = q
    gle = np.empty(total, dtype=np.int64)
    for g in range(total):
        gle[g] = base + le[pos[g]]
    return order, read_version, sorted_t, gle
