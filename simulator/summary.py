"""The run summary, computed from trace rows fed in chunks: the same numbers from a full trace
or from a run that keeps no trace (``simulate(..., trace=False)``, ``--summary-only``).

:class:`SummaryStats` holds what the summary needs and nothing that grows with the updates:
counts and busy time per learner, per-learner staleness histograms (memory: learners x
largest staleness), running maxima and sums. Every number is defined so that it does not
depend on how the rows are cut into chunks:

* sums of floats (busy time per learner, learning rates, PS queue waits) are added row by
  row in trace order (busy time, as ``numpy.bincount`` adds), or in fixed blocks of
  :data:`BLOCK` rows summed by numpy and then added in order (learning rate and queue wait
  means; a run of at most BLOCK applied gradients gives exactly ``numpy.mean``);
* staleness means are exact integer sums divided once; quantiles are picked from the
  histograms at the index ``numpy.percentile(..., method="inverted_cdf")`` picks for the
  whole run, and at ``ceil(q m) - 1`` per learner.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from dlsys.simulator.core import APPLIED, CANCELLED, DROPPED, LOST
from dlsys.simulator.scenario import Scenario

#: Rows per block of the block-wise float sums (learning rate and queue wait means).
BLOCK = 1 << 16


#: Applied rows of one learner up to which the per-learner histograms count in uint16,
#: and rows of the run up to which they count in int32 (no bin can overflow below either);
#: beyond, they widen (to int32, then int64). Narrow bins: less memory and cache traffic.
HIST16_ROWS = 2**16 - 1
HIST32_ROWS = 2**31 - 1
#: Histogram bins (all learners) up to which rows are counted in row order: they stay in
#: the caches (larger ones are counted learner by learner, see ``_add_rows``).
DIRECT_BINS = 1 << 15


@numba.njit(cache=True)
def _scan_rows(
    learner: np.ndarray,
    status: np.ndarray,
    version: np.ndarray,
    read_version: np.ndarray,
    n: int,
    stale: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``stale`` := staleness of each row (version - read_version if applied, else 0);
    returns the largest staleness of each learner's rows (0 for none) and each learner's
    number of applied rows."""
    top = np.zeros(n, np.int64)
    got = np.zeros(n, np.int64)
    for r in range(len(learner)):
        if status[r] == 0:
            s = version[r] - read_version[r]
            stale[r] = s
            if s > top[learner[r]]:
                top[learner[r]] = s
            got[learner[r]] += 1
        else:
            stale[r] = 0
    return top, got


@numba.njit(cache=True)
def _add_rows(
    learner: np.ndarray,
    status: np.ndarray,
    stale: np.ndarray,
    t_start: np.ndarray,
    t_done: np.ndarray,
    busy: np.ndarray,
    counts: np.ndarray,
    hist: np.ndarray,
    offsets: np.ndarray,
    total_hist: np.ndarray,
    stale_sum: np.ndarray,
    grouped: np.ndarray,
) -> None:
    """Per-row accumulation in trace order: busy time ``t_done - t_start`` (NaN as 0 and
    infinities as the largest float, as ``numpy.nan_to_num``; added as ``numpy.bincount``
    adds), status counts, and the staleness of applied rows into learner i's histogram
    ``hist[offsets[i]:offsets[i + 1]]``, into ``total_hist`` and into the exact integer
    sum ``stale_sum[i]``. ``grouped``: scratch of one entry per applied row, or empty:
    the histograms are small (:data:`DIRECT_BINS`), counted in row order."""
    n = len(offsets) - 1
    big = np.finfo(np.float64).max
    direct = len(grouped) == 0
    before = counts[0].copy()
    for r in range(len(learner)):
        i = learner[r]
        b = t_done[r] - t_start[r]
        if b != b:
            b = 0.0
        elif b == np.inf:
            b = big
        elif b == -np.inf:
            b = -big
        busy[i] += b
        counts[status[r], i] += 1
        if status[r] == 0:
            total_hist[stale[r]] += 1
            stale_sum[i] += stale[r]
            if direct:
                hist[offsets[i] + stale[r]] += 1
    if direct:
        return
    # NOTE: staleness grouped by learner first, then counted learner by learner: the
    # histograms are far larger than the caches, and row order would hit them at random.
    fill = np.zeros(n + 1, np.int64)
    for i in range(n):
        fill[i + 1] = fill[i] + counts[0, i] - before[i]
    for r in range(len(learner)):
        if status[r] == 0:
            i = learner[r]
            grouped[fill[i]] = stale[r]
            fill[i] += 1
    a = 0
    for i in range(n):
        base = offsets[i]
        for j in range(a, fill[i]):
            hist[base + grouped[j]] += 1
        a = fill[i]


@numba.njit(cache=True)
def _waits(
    t_apply: np.ndarray,
    t_done: np.ndarray,
    push: np.ndarray,
    learner: np.ndarray,
    service: float,
    out: np.ndarray,
) -> None:
    """``out`` := PS queue waits in seconds, ``(t_apply - service) - (t_done + push)``,
    the IEEE operations numpy's ``t_apply - service - (t_done + push[learner])`` makes."""
    for r in range(len(t_apply)):
        out[r] = (t_apply[r] - service) - (t_done[r] + push[learner[r]])


class BlockSum:
    """A float sum in fixed blocks of :data:`BLOCK` values: each block summed by numpy
    (pairwise), block sums added in order; independent of how values arrive."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0
        self.buf: list[np.ndarray] = []
        self.held = 0

    def add(self, x: np.ndarray) -> None:
        """Add the values ``x`` (in order)."""
        if len(x) == 0:
            return
        self.count += len(x)
        if self.held + len(x) <= BLOCK:  # (a run of at most BLOCK values is summed in one go)
            self.buf.append(x)
            self.held += len(x)
            return
        i = 0
        if self.held:  # complete the block begun by earlier values
            i = BLOCK - self.held
            self.total += float(np.sum(np.concatenate([*self.buf, x[:i]])))
        # NOTE: the later full blocks are summed where they lie in x (no copy of x)
        full = (len(x) - i) // BLOCK * BLOCK
        for j in range(i, i + full, BLOCK):
            self.total += float(np.sum(x[j : j + BLOCK]))
        rest = x[i + full :]
        self.buf = [rest] if len(rest) else []
        self.held = len(rest)

    def sum(self) -> float:
        """The sum of every value added."""
        tail = float(np.sum(np.concatenate(self.buf))) if self.buf else 0.0
        return self.total + tail


def quantile_index(m: int, percent: float) -> int:
    """The 0-based sorted index ``numpy.percentile(x, percent, method="inverted_cdf")``
    returns for ``m`` values."""
    index = m * (percent / 100) - 1
    low = math.floor(index)
    i = low if index - low == 0 else low + 1
    return min(max(i, 0), m - 1)


def _nth(cum: np.ndarray, i: int) -> int:
    """The value at 0-based sorted index ``i`` of a histogram with cumulative counts
    ``cum``."""
    return int(np.searchsorted(cum, i + 1, side="left"))


class SummaryStats:
    """Accumulates trace rows (in trace order, any chunking) for :func:`summary`."""

    def __init__(self, scenario: Scenario) -> None:
        n = scenario.n
        self.n = n
        self.push = np.array([float(lrn.push_time) for lrn in scenario.learners])
        self.service = float(scenario.service_time)
        self.lr = scenario.lr
        self.busy = np.zeros(n)
        self.counts = np.zeros((4, n), dtype=np.int64)
        # Per-learner staleness histograms, one flat array (learner i's bins from
        # offsets[i]); each grows to that learner's own largest staleness.
        self.offsets = np.arange(0, 16 * (n + 1), 16, dtype=np.int64)
        self.hist = np.zeros(16 * n, dtype=np.uint16)  # widened as rows come (HIST16_ROWS)
        self.top = np.zeros(n, dtype=np.int64)  # largest staleness of each learner
        self.total_hist = np.zeros(16, dtype=np.int64)
        self.stale_sum = np.zeros(n, dtype=np.int64)  # exact staleness sum per learner
        self.last_apply = -math.inf
        self.lr_sum = BlockSum()
        self.wait_sum = BlockSum()
        self.wait_max = -math.inf
        self.rows = 0

    def add(self, cols: dict[str, np.ndarray]) -> None:
        """Add a chunk of trace rows (the stored columns of :mod:`dlsys.simulator.core`)."""
        learner = cols["learner"]
        if len(learner) == 0:
            return
        status = cols["status"]
        # (large arrays come from numpy, on huge pages: cheaper to touch first)
        stale = np.empty(len(learner), dtype=np.int64)
        top, got = _scan_rows(learner, status, cols["version"], cols["read_version"], self.n, stale)
        applied = int(got.sum())
        np.maximum(self.top, top, out=self.top)
        most = int(np.max(self.counts[APPLIED] + got))  # a learner's rows: bound of its bins
        dtype = np.dtype(np.uint16 if most <= HIST16_ROWS else np.int32)
        if self.rows + len(learner) > HIST32_ROWS:
            dtype = np.dtype(np.int64)
        if dtype.itemsize > self.hist.itemsize:
            self.hist = self.hist.astype(dtype)
        self._fit(top)
        _add_rows(
            learner,
            status,
            stale,
            cols["t_start"],
            cols["t_done"],
            self.busy,
            self.counts,
            self.hist,
            self.offsets,
            self.total_hist,
            self.stale_sum,
            np.empty(0 if len(self.hist) <= DIRECT_BINS else applied, dtype=np.int64),
        )
        self.rows += len(learner)
        if applied == len(learner):  # (the common case: no boolean selection, no copies)
            t_apply, t_done, ok_stale, ok_learner = cols["t_apply"], cols["t_done"], stale, learner
        else:
            if applied == 0:
                return
            ok = status == APPLIED
            t_apply, t_done = cols["t_apply"][ok], cols["t_done"][ok]
            ok_stale, ok_learner = stale[ok], learner[ok]
        self.last_apply = max(self.last_apply, float(np.max(t_apply)))
        self.lr_sum.add(self.lr.rates(ok_stale))
        wait = np.empty(len(t_apply))
        _waits(t_apply, t_done, self.push, ok_learner, self.service, wait)
        self.wait_sum.add(wait)
        self.wait_max = max(self.wait_max, float(np.max(wait)))

    def _fit(self, top: np.ndarray) -> None:
        """Grow the histograms of learners whose largest staleness ``top`` in a chunk does
        not fit (and the total histogram with them)."""
        width = np.diff(self.offsets)
        grow = top >= width
        high = int(np.max(top))
        if high >= len(self.total_hist):
            total = np.zeros(max(high + 1, 2 * len(self.total_hist)), dtype=np.int64)
            total[: len(self.total_hist)] = self.total_hist
            self.total_hist = total
        if not grow.any():
            return
        new_width = np.where(grow, np.maximum(top + 1, 2 * width), width)
        offsets = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(new_width, out=offsets[1:])
        hist = np.zeros(int(offsets[-1]), dtype=self.hist.dtype)
        for i in range(self.n):
            a, w = self.offsets[i], width[i]
            hist[offsets[i] : offsets[i] + w] = self.hist[a : a + w]
        self.offsets, self.hist = offsets, hist

    def learner_hist(self, i: int) -> np.ndarray:
        """Learner ``i``'s staleness histogram (applied gradients)."""
        return self.hist[self.offsets[i] : self.offsets[i + 1]]


@numba.njit(cache=True)
def _learner_picks(
    hist: np.ndarray, offsets: np.ndarray, m: np.ndarray, top: np.ndarray
) -> np.ndarray:
    """Per learner: the staleness values at sorted indices ceil(q m) - 1 for q = 0.50,
    0.95, 0.99 (from the flat histograms; a learner's scan stops at its p99) and at m - 1
    (its largest, ``top``)."""
    n = len(m)
    picks = np.zeros((n, 4), np.int64)
    for i in range(n):
        if m[i] == 0:
            continue
        want = np.empty(3, np.int64)
        for j, q in enumerate((0.50, 0.95, 0.99)):
            want[j] = math.ceil(q * m[i]) - 1
        picks[i, 3] = top[i]
        cum = 0
        j = 0
        for v in range(offsets[i + 1] - offsets[i]):
            cum += hist[offsets[i] + v]
            while j < 3 and cum >= want[j] + 1:
                picks[i, j] = v
                j += 1
            if j == 3:
                break
    return picks


def _stats(hist: np.ndarray, m: int) -> dict[str, Any]:
    """Mean and p50/p95/p99/max of staleness from a histogram of ``m`` values, picked as
    ``numpy.percentile(..., method="inverted_cdf")`` picks them."""
    if m == 0:
        return {"mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    cum = np.cumsum(hist)
    total = int(np.dot(np.arange(len(hist), dtype=np.int64), hist))
    idx = [quantile_index(m, p) for p in (50, 95, 99)]
    return {
        "mean": total / m,
        "p50": _nth(cum, idx[0]),
        "p95": _nth(cum, idx[1]),
        "p99": _nth(cum, idx[2]),
        "max": _nth(cum, m - 1),
    }


def summary(scenario: Scenario, raw: Any, stats: SummaryStats, trace_bytes: int) -> dict[str, Any]:
    """The summary dict of a run (times in seconds, shares as fractions of [0, t_end]).

    ``raw``: the engine's end state (updates, t_end, stop reason, in-flight starts);
    ``trace_bytes``: bytes the stored trace columns take (or would take).
    """
    n = scenario.n
    t_end = raw.t_end
    updates = raw.updates
    busy = stats.busy + np.nan_to_num(t_end - raw.inflight_start, nan=0.0)
    counts = stats.counts
    sums = stats.stale_sum
    picks = _learner_picks(stats.hist, stats.offsets, counts[APPLIED], stats.top).tolist()
    # (Python ints and floats, one conversion per array: the same values and divisions)
    c_applied, c_lost, c_cancelled, c_dropped = (
        counts[APPLIED].tolist(),
        counts[LOST].tolist(),
        counts[CANCELLED].tolist(),
        counts[DROPPED].tolist(),
    )
    busy_l, sums_l = busy.tolist(), sums.tolist()
    t_end_f = float(t_end)
    per = []
    for i, spec in enumerate(scenario.learners):
        m = c_applied[i]
        share = busy_l[i] / t_end_f if t_end > 0 else 0.0
        st: dict[str, Any] = {"mean": None, "p50": None, "p95": None, "p99": None, "max": None}
        if m:
            p = picks[i]
            st = {"mean": sums_l[i] / m, "p50": p[0], "p95": p[1], "p99": p[2], "max": p[3]}
        per.append(
            {
                "learner": spec.name,
                "gradients": m,
                "lost": c_lost[i],
                "cancelled": c_cancelled[i],
                "dropped": c_dropped[i],
                "staleness": st,
                "busy_share": share,
                "idle_share": 1.0 - share,
            }
        )
    applied = int(counts[APPLIED].sum())
    last_apply = stats.last_apply if updates else None
    service = stats.service
    return {
        "scenario": scenario.name,
        "protocol": scenario.protocol.label(),
        "learners": n,
        "seed": scenario.seed,
        "stop_reason": raw.stop_reason,
        "sim_time": t_end,
        "updates": updates,
        "gradients_applied": applied,
        "gradients_lost": int(counts[LOST].sum()),
        "gradients_cancelled": int(counts[CANCELLED].sum()),
        "gradients_dropped": int(counts[DROPPED].sum()),
        "time_per_update": (last_apply / updates) if updates and last_apply else None,
        "updates_per_second": updates / t_end if t_end > 0 else None,
        "gradients_per_second": applied / t_end if t_end > 0 else None,
        "staleness": _stats(stats.total_hist, applied),
        "per_learner": per,
        "ps": {
            "service_time": service,
            "busy_share": updates * service / t_end if t_end > 0 else 0.0,
            "queue_wait_mean": stats.wait_sum.sum() / applied if applied else None,
            "queue_wait_max": stats.wait_max if applied else None,
        },
        "lr": {
            "rule": scenario.lr.rule,
            "mean": stats.lr_sum.sum() / applied if applied else None,
        },
        "trace_bytes_per_update": trace_bytes / updates if updates else None,
        "engine": {"name": raw.engine, "reason": raw.engine_reason},
    }
