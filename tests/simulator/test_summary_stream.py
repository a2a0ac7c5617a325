"""Summaries without a trace: simulate(trace=False) gives the very summary the full trace
gives (JSON byte for byte), whatever engine runs and however the rows are cut into chunks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlsys.simulator import (
    Crash,
    Exponential,
    Fixed,
    Learner,
    LogNormal,
    Protocol,
    Scenario,
    simulate,
)
from dlsys.simulator.summary import BLOCK, BlockSum, SummaryStats, quantile_index, summary


def hetero(n: int = 6, **kw) -> Scenario:
    return Scenario(
        learners=tuple(
            Learner(f"w{i}", Exponential(0.5 + i) if i % 2 else LogNormal(0.0, 0.7))
            for i in range(n)
        ),
        **kw,
    )


def dump(s: dict) -> str:
    return json.dumps(s, sort_keys=True)


@pytest.mark.parametrize(
    "sc",
    [
        hetero(until_updates=3000),
        hetero(until_time=200.0, protocol=Protocol("k-batch-async", k=3)),
        hetero(until_updates=500, protocol=Protocol("k-sync", k=4)),
        hetero(until_updates=500, faults=(Crash("w1", at=5.0, restart_after=2.0),)),
        Scenario(learners=(Learner("a", Fixed(1)), Learner("b", Fixed(0.5))), until_updates=99),
    ],
    ids=["async", "k-batch-async", "k-sync", "crash", "fixed-ties"],
)
def test_summary_only_equals_the_full_trace_summary(sc):
    full = simulate(sc, seed=3)
    lean = simulate(sc, seed=3, trace=False)
    assert dump(lean.summary) == dump(full.summary)
    with pytest.raises(ValueError, match="this run kept no trace"):
        lean.trace  # noqa: B018


def test_chunking_does_not_change_the_summary():
    # 3 * BLOCK + 5 rows, so the block-wise sums span several blocks and a remainder.
    sc = hetero(n=8, until_updates=3 * BLOCK + 5)
    res = simulate(sc, seed=1)
    cols = res.trace.stored()
    rows = len(res.trace)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, rows), size=40, replace=False))
    stats = SummaryStats(sc)
    for a, b in zip([0, *cuts], [*cuts, rows], strict=True):
        stats.add({k: v[a:b] for k, v in cols.items()})
    chunked = summary(res.scenario, res.raw, stats, res.trace.nbytes)
    plain = dict(res.summary)
    plain.pop("theory")
    assert dump(chunked) == dump(plain)
    # The staleness statistics agree with numpy on the whole trace.
    st = res.trace["staleness"]
    q = np.percentile(st, [50, 95, 99], method="inverted_cdf")
    s = res.summary["staleness"]
    assert [s["p50"], s["p95"], s["p99"], s["max"]] == [*q.astype(int).tolist(), st.max()]
    assert s["mean"] == float(np.mean(st))


def test_quantile_index_is_numpys_choice():
    for m in [1, 2, 3, 7, 19, 20, 21, 99, 100, 101, 1000, 12345]:
        x = np.arange(m)
        for p in (50, 95, 99):
            assert quantile_index(m, p) == int(np.percentile(x, p, method="inverted_cdf")), (m, p)


def test_block_sum_is_numpy_sum_within_a_block():
    x = np.random.default_rng(0).random(BLOCK)
    b = BlockSum()
    for part in np.array_split(x, 7):
        b.add(part)
    assert b.sum() == float(np.sum(x))


def test_histograms_widen_before_a_bin_could_overflow(monkeypatch):
    # The histograms count in uint16 while no learner has more than HIST16_ROWS applied
    # rows, in int32 while the run has at most HIST32_ROWS rows, else in int64. With the
    # bounds at 100 and 500 and chunks of 100 rows, all three are used; the dtype each chunk
    # needs is worked out here from the trace's own learner counts.
    from dlsys.simulator import summary as summary_mod

    monkeypatch.setattr(summary_mod, "HIST16_ROWS", 100)
    monkeypatch.setattr(summary_mod, "HIST32_ROWS", 500)
    sc = hetero(n=4, until_updates=1500, protocol=Protocol("k-batch-async", k=2))
    res = simulate(sc, seed=2)
    cols = res.trace.stored()
    assert len(res.trace) == 3000 and (cols["status"] == 0).all()  # 1500 updates x 2
    stats = SummaryStats(sc)
    dtypes, expected, width = [], [], 2
    for a in range(0, 3000, 100):
        stats.add({k: v[a : a + 100] for k, v in cols.items()})
        dtypes.append(stats.hist.dtype)
        most = np.bincount(cols["learner"][: a + 100]).max()  # one learner's rows so far
        need = 8 if a + 100 > 500 else (2 if most <= 100 else 4)
        width = max(width, need)  # histograms only widen
        expected.append({2: np.uint16, 4: np.int32, 8: np.int64}[width])
    assert dtypes == expected
    assert {np.dtype(d) for d in dtypes} == {
        np.dtype(np.uint16),
        np.dtype(np.int32),
        np.dtype(np.int64),
    }
    chunked = summary(res.scenario, res.raw, stats, res.trace.nbytes)
    plain = dict(res.summary)
    plain.pop("theory")
    assert dump(chunked) == dump(plain)


def test_block_sum_is_blockwise_whatever_the_pieces():
    # 3 full blocks and 17 values: numpy's sum of each block, added in order, then the 17.
    v = np.random.default_rng(5).lognormal(0.0, 2.0, 3 * BLOCK + 17)
    want = 0.0
    for j in range(0, 3 * BLOCK, BLOCK):
        want += float(np.sum(v[j : j + BLOCK]))
    want += float(np.sum(v[3 * BLOCK :]))
    rng = np.random.default_rng(6)
    for pieces in ([len(v)], [BLOCK, BLOCK, BLOCK, 17], [5, 2 * BLOCK, len(v) - 2 * BLOCK - 5]):
        for _ in range(3):
            b = BlockSum()
            for part in np.split(v, np.cumsum(pieces)[:-1]):
                b.add(part)
            assert b.sum() == want and b.count == len(v)
            cuts = np.sort(rng.choice(np.arange(1, len(v)), size=9, replace=False))
            pieces = np.diff([0, *cuts, len(v)]).tolist()


@pytest.mark.parametrize("direct_bins", [0, 1 << 30])
def test_histograms_counted_in_row_order_or_grouped_agree(monkeypatch, direct_bins):
    # Small histograms are counted row by row, large ones learner by learner (grouped
    # first): forcing either way on the same rows gives every histogram numpy's bincount
    # of that learner's applied staleness, and the same summary.
    from dlsys.simulator import summary as summary_mod

    monkeypatch.setattr(summary_mod, "DIRECT_BINS", direct_bins)
    sc = hetero(n=5, until_updates=4000)
    res = simulate(sc, seed=4)
    cols, tr = res.trace.stored(), res.trace
    stats = SummaryStats(sc)
    for a in range(0, len(tr), 999):
        stats.add({k: v[a : a + 999] for k, v in cols.items()})
    ok = tr.applied()
    for i in range(sc.n):
        want = np.bincount(tr["staleness"][ok & (tr["learner"] == i)])
        got = stats.learner_hist(i)
        np.testing.assert_array_equal(got[: len(want)], want)
        assert not got[len(want) :].any()
    chunked = summary(res.scenario, res.raw, stats, res.trace.nbytes)
    plain = dict(res.summary)
    plain.pop("theory")
    assert dump(chunked) == dump(plain)
