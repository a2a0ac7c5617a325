"""vector_loops._sort_by_time: the bucket sort equals numpy's lexsort by (time, entry),
ties included, whatever order its scatter takes (rounds of time, not learner by learner)."""

from __future__ import annotations

import numpy as np
import pytest

from dlsys.simulator.vector_loops import SCATTER_ROUNDS, _sort_by_time


@pytest.mark.parametrize("dtype", [np.float64, np.int64])
@pytest.mark.parametrize("n,per,spread", [(7, 300, 50), (50, 100, 10**6), (3, 2000, 5), (1, 10, 1)])
def test_sort_equals_lexsort(dtype: type, n: int, per: int, spread: int) -> None:
    rng = np.random.default_rng(n * per + spread)
    runs, lo, hi, at = [], [], [], 0
    for _ in range(n):
        m = int(rng.integers(0, per + 1))
        gap = int(rng.integers(0, 3))  # entries of no learner between runs
        at += gap
        runs.append(np.zeros(gap, dtype=dtype))
        # ascending per learner, many ties (small spread: integer-valued times)
        runs.append(np.sort(rng.integers(0, spread, m)).astype(dtype))
        lo.append(at)
        hi.append(at + m)
        at += m
    t = np.concatenate(runs)
    lo_a, hi_a = np.array(lo, dtype=np.int64), np.array(hi, dtype=np.int64)
    shift = max(len(t).bit_length(), 1)
    total = int(np.sum(hi_a - lo_a))
    order = np.empty(total, dtype=np.int64)
    st = np.empty(total, dtype=dtype)
    _sort_by_time(t, lo_a, hi_a, order, st, shift)
    learner = np.concatenate(
        [np.full(h - lo_, i) for i, (lo_, h) in enumerate(zip(lo, hi, strict=True))]
    )
    g = np.concatenate([np.arange(lo_, h) for lo_, h in zip(lo, hi, strict=True)])
    entry = (learner.astype(np.int64) << shift) | g
    want = np.lexsort((entry, t[g]))  # by time, then entry (the tie rule's index order)
    assert np.array_equal(order, entry[want])
    assert np.array_equal(st, t[g][want])
    assert total > SCATTER_ROUNDS or n == 1  # (more entries than rounds, mostly)
