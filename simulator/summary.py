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


@numba.njit(cache=True)
def _add_rows(
    learner: np.ndarray,
    status: np.ndarray,
    stale: np.ndarray,
    busy_row: np.ndarray,
    busy: np.ndarray,
    counts: np.ndarray,
    hist: np.ndarray,
    offsets: np.ndarray,
) -> None:
    """Per-row accumulation in trace order (busy time added as bincount adds it); learner
    i's staleness histogram is ``hist[offsets[i]:offsets[i + 1]]``."""
    for r in range(len(learner)):
        i = learner[r]
        busy[i] += busy_row[r]
        counts[status[r], i] += 1
        if status[r] == 0:
            hist[offsets[i] + stale[r]] += 1


@numba.njit(cache=True)
def _learner_max(learner: np.ndarray, stale: np.ndarray, n: int) -> np.ndarray:
    """Largest staleness of each learner's rows (0 for none)."""
    top = np.zeros(n, np.int64)
    for r in range(len(learner)):
        if stale[r] > top[learner[r]]:
            top[learner[r]] = stale[r]
    return top


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
        self.buf.append(x)
        self.held += len(x)
        self.count += len(x)
        if self.held > BLOCK:  # (a run of at most BLOCK values is summed in one go)
            a = np.concatenate(self.buf)
            full = len(a) // BLOCK * BLOCK
            for j in range(0, full, BLOCK):
                self.total += float(np.sum(a[j : j + BLOCK]))
            rest = a[full:]
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
        self.hist = np.zeros(16 * n, dtype=np.int64)
        self.total_hist = np.zeros(16, dtype=np.int64)
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
        ok = status == APPLIED
        stale = np.where(ok, cols["version"] - cols["read_version"], 0)
        self._fit(learner, stale)
        busy_row = np.nan_to_num(cols["t_done"] - cols["t_start"], nan=0.0)
        _add_rows(learner, status, stale, busy_row, self.busy, self.counts, self.hist, self.offsets)
        h = np.bincount(stale[ok])
        if len(h) > len(self.total_hist):
            h[: len(self.total_hist)] += self.total_hist
            self.total_hist = h
        else:
            self.total_hist[: len(h)] += h
        self.rows += len(learner)
        if ok.any():
            t_apply = cols["t_apply"][ok]
            self.last_apply = max(self.last_apply, float(np.max(t_apply)))
            self.lr_sum.add(self.lr.rates(stale[ok]))
            arrive = cols["t_done"][ok] + self.push[learner[ok]]
            wait = t_apply - self.service - arrive
            self.wait_sum.add(wait)
            self.wait_max = max(self.wait_max, float(np.max(wait)))

    def _fit(self, learner: np.ndarray, stale: np.ndarray) -> None:
        """Grow the histograms of learners whose staleness in this chunk does not fit."""
        top = _learner_max(learner, stale, self.n)
        width = np.diff(self.offsets)
        grow = top >= width
        if not grow.any():
            return
        new_width = np.where(grow, np.maximum(top + 1, 2 * width), width)
        offsets = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(new_width, out=offsets[1:])
        hist = np.zeros(int(offsets[-1]), dtype=np.int64)
        for i in range(self.n):
            a, w = self.offsets[i], width[i]
            hist[offsets[i] : offsets[i] + w] = self.hist[a : a + w]
        self.offsets, self.hist = offsets, hist

    def learner_hist(self, i: int) -> np.ndarray:
        """Learner ``i``'s staleness histogram (applied gradients)."""
        return self.hist[self.offsets[i] : self.offsets[i + 1]]


@numba.njit(cache=True)
def _learner_stats(hist: np.ndarray, offsets: np.ndarray, m: np.ndarray) -> tuple:
    """Per learner: exact staleness sum, and the values at sorted indices ceil(q m) - 1 for
    q = 0.50, 0.95, 0.99 and at m - 1 (from the flat histograms)."""
    n = len(m)
    sums = np.zeros(n, np.int64)
    picks = np.zeros((n, 4), np.int64)
    for i in range(n):
        if m[i] == 0:
            continue
        want = np.empty(4, np.int64)
        for j, q in enumerate((0.50, 0.95, 0.99)):
            want[j] = math.ceil(q * m[i]) - 1
        want[3] = m[i] - 1
        cum = 0
        j = 0
        for v in range(offsets[i + 1] - offsets[i]):
            c = hist[offsets[i] + v]
            sums[i] += v * c
            cum += c
            while j < 4 and cum >= want[j] + 1:
                picks[i, j] = v
                j += 1
    return sums, picks


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
    sums, picks = _learner_stats(stats.hist, stats.offsets, counts[APPLIED])
    per = []
    for i, spec in enumerate(scenario.learners):
        m = int(counts[APPLIED, i])
        share = float(busy[i] / t_end) if t_end > 0 else 0.0
        st: dict[str, Any] = {"mean": None, "p50": None, "p95": None, "p99": None, "max": None}
        if m:
            p = picks[i]
            st = {
                "mean": int(sums[i]) / m,
                "p50": int(p[0]),
                "p95": int(p[1]),
                "p99": int(p[2]),
                "max": int(p[3]),
            }
        per.append(
            {
                "learner": spec.name,
                "gradients": m,
                "lost": int(counts[LOST, i]),
                "cancelled": int(counts[CANCELLED, i]),
                "dropped": int(counts[DROPPED, i]),
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
