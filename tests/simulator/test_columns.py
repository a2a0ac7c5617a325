"""The round-protocol trace layout (:mod:`dlsys.simulator.columns`): columns held as runs.

Checked against plain numpy: a :class:`RunColumn` expands (whole and by slices) to the column
it was made from, a :class:`ColumnStore` gives the same columns and bytes however the rows
are cut into blocks, chooses runs exactly where they take fewer bytes (hand arithmetic),
keeps 0.0 / -0.0 apart and every NaN together, and counts the same bytes without keeping
rows. A sync trace's bytes per update are worked out by hand, and every public accessor of
the trace gives plain arrays of the documented dtypes.
"""

from __future__ import annotations

import itertools
import mmap

import numpy as np
import pytest

from dlsys.simulator import Exponential, Learner, Protocol, Scenario, simulate
from dlsys.simulator.columns import RUN_COLUMNS, ColumnStore, RunColumn
from dlsys.simulator.core import COLUMNS, NP_TYPES
from dlsys.simulator.testing import assert_engines_agree


def _columns(rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Trace-shaped columns: per-row learner and t_done, round-like runs elsewhere (runs of
    random lengths, NaNs of two payloads, 0.0 and -0.0)."""
    cuts = np.sort(rng.choice(np.arange(1, rows), size=rows // 10, replace=False))
    run_id = np.zeros(rows, np.int64)
    run_id[cuts] = 1
    run_id = np.cumsum(run_id)
    other_nan = np.array([0x7FF8000000000001], np.int64).view(np.float64)[0]
    vals = rng.choice([0.0, -0.0, np.nan, other_nan, 1.5, 2.5], size=run_id[-1] + 1)
    out = {k: np.zeros(rows, NP_TYPES[c]) for k, c in COLUMNS.items()}
    out["learner"][:] = rng.integers(0, 7, rows)
    out["t_done"][:] = rng.random(rows)
    out["seq"][:] = run_id // 3
    out["read_version"][:] = run_id
    out["version"][:] = np.where(run_id % 4 == 0, -1, run_id)
    out["t_read"][:] = vals[run_id]
    out["t_start"][:] = rng.random(rows)  # per row: stays plain
    out["t_apply"][:] = vals[(run_id + 1) % len(vals)]
    out["status"][:] = (run_id % 4 == 0) * 3
    return out


def _bits(a: np.ndarray) -> np.ndarray:
    """Values as comparable bytes (floats by bits, except that every NaN is one NaN)."""
    if a.dtype.kind == "f":
        a = np.where(np.isnan(a), np.nan, a)
    return a.view(np.uint8)


def test_run_column_expands_whole_and_by_slices():
    # values 5, 7, 5 on rows [0, 3), [3, 4), [4, 9)
    col = RunColumn(np.array([5, 7, 5]), np.array([0, 3, 4]), 9)
    assert col.expand().tolist() == [5, 5, 5, 7, 5, 5, 5, 5, 5]
    assert col.expand(2, 5).tolist() == [5, 7, 5]
    assert col.expand(3, 4).tolist() == [7]
    assert col.expand(4).tolist() == [5] * 5
    assert col.expand(6, 6).tolist() == []
    assert col.nbytes == 3 * 8 + 3 * 8  # values (int64) and start rows (int64)
    assert len(RunColumn(np.empty(0), np.empty(0, np.int64), 0).expand()) == 0


@pytest.mark.parametrize("keep_first_runs", [1, 1 << 16])
def test_store_gives_the_columns_back_however_the_blocks_are_cut(monkeypatch, keep_first_runs):
    from dlsys.simulator import columns

    monkeypatch.setattr(columns, "FIRST_RUNS", keep_first_runs)  # 1: the runs grow often
    rng = np.random.default_rng(0)
    rows = 5000
    cols = _columns(rows, rng)
    results = []
    for blocks in (1, 7, 300):
        cuts = [0, *np.sort(rng.choice(np.arange(1, rows), blocks - 1, replace=False)), rows]
        store = ColumnStore(RUN_COLUMNS, capacity=100)  # (the plain columns grow too)
        count = ColumnStore(RUN_COLUMNS, capacity=0, keep=False)
        for a, b in itertools.pairwise(cuts):
            block = {k: v[a:b].copy() for k, v in cols.items()}
            store.add(block)
            count.add(block)
            for v in block.values():
                v[:] = 0  # the store copied what it keeps: the block may be reused
        held = store.columns()
        for k, v in cols.items():
            got = held[k].expand() if isinstance(held[k], RunColumn) else held[k]
            assert got.dtype == v.dtype, k
            np.testing.assert_array_equal(_bits(got), _bits(v), err_msg=k)
        nbytes = sum(int(v.nbytes) for v in held.values())
        assert store.nbytes == count.nbytes == nbytes
        results.append((nbytes, {k: type(v).__name__ for k, v in held.items()}))
    assert results[0] == results[1] == results[2]
    # learner and t_done are never runs; t_start changes every row: plain, as runs would
    # take 16 bytes a row instead of 8
    kinds = results[0][1]
    assert kinds["learner"] == kinds["t_done"] == kinds["t_start"] == "ndarray"
    assert kinds["read_version"] == kinds["t_read"] == kinds["status"] == "RunColumn"


def test_runs_keep_zero_signs_apart_and_nans_together():
    nan2 = np.array([0x7FF8000000000001], np.int64).view(np.float64)[0]
    x = np.array([0.0] * 3 + [-0.0] * 3 + [np.nan, nan2, np.nan] + [1.0] * 3)
    x = np.tile(x, 4)
    cols = {k: np.zeros(len(x), NP_TYPES[c]) for k, c in COLUMNS.items()}
    cols["t_read"] = x
    store = ColumnStore(("t_read",), len(x))
    store.add(cols)
    col = store.columns()["t_read"]
    # per repeat 4 runs (0.0, -0.0, the three NaNs, 1.0): 16 runs * 16 bytes = 256 < 48 * 8
    assert isinstance(col, RunColumn) and len(col.values) == 16
    got = col.expand()
    assert np.signbit(got[3:6]).all() and not np.signbit(got[:3]).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(x))
    np.testing.assert_array_equal(got[~np.isnan(x)], x[~np.isnan(x)])


def test_a_column_is_runs_exactly_when_that_takes_fewer_bytes():
    # seq (int32): 100 rows in r runs take r * (4 + 8) bytes as runs, 400 plain
    for runs, expect in ((33, "RunColumn"), (34, "ndarray")):  # 396 < 400; 408 >= 400
        cols = {k: np.zeros(100, NP_TYPES[c]) for k, c in COLUMNS.items()}
        cols["seq"][:] = np.arange(100) * runs // 100  # values 0 .. runs - 1, in order
        store = ColumnStore(("seq",), 100)
        store.add(cols)
        held = store.columns()
        assert type(held["seq"]).__name__ == expect
        np.testing.assert_array_equal(
            held["seq"].expand() if isinstance(held["seq"], RunColumn) else held["seq"],
            cols["seq"],
        )


def _sync(n: int, rounds: int) -> Scenario:
    return Scenario(
        learners=tuple(Learner(f"w{i}", Exponential(1.0 + i)) for i in range(n)),
        protocol=Protocol("sync"),
        until_updates=rounds,
    )


def test_sync_trace_bytes_by_hand():
    # 4 learners, 50 rounds: 200 rows. Plain: learner 200 * 4 = 800, t_done 200 * 8 = 1600.
    # Runs, one a round: seq (int32) 50 * 12 = 600 (< 800); read_version, version, t_read,
    # t_start (no pull time: the read time), t_apply 50 * 16 = 800 each (< 1600); status
    # (all applied) 1 run * 9 = 9. Total 800 + 1600 + 600 + 5 * 800 + 9 = 7009 bytes.
    sc = _sync(4, 50)
    for engine in ("vector", "simpy"):
        res = simulate(sc, engine=engine)
        assert res.trace.nbytes == 7009, engine
        assert res.summary["trace_bytes_per_update"] == 7009 / 50
        lean = simulate(sc, engine=engine, trace=False)
        assert lean.summary["trace_bytes_per_update"] == 7009 / 50
    assert assert_engines_agree(sc) == ("simpy", "vector")


def test_round_trace_accessors_give_plain_arrays():
    res = simulate(_sync(3, 20), engine="vector")
    tr = res.trace
    assert isinstance(res.raw.columns["t_read"], RunColumn)  # held as runs
    stored = tr.stored()
    for k, code in COLUMNS.items():
        assert isinstance(stored[k], np.ndarray) and stored[k].dtype == NP_TYPES[code], k
        np.testing.assert_array_equal(tr[k], stored[k])
    assert tr["staleness"].tolist() == [0] * 60
    assert tr["t_read"][:3].tolist() == [0.0] * 3
    np.testing.assert_array_equal(tr["t_apply"][3:6], tr["t_read"][6:9])  # read at the update
    assert tr.applied().all() and len(tr.records()) == 60


def test_fresh_array_large_ones_on_their_own_map():
    from dlsys.simulator.columns import MAPPED_BYTES, fresh_array

    small = fresh_array(10, np.int32)
    assert small.dtype == np.int32 and small.shape == (10,)
    big = fresh_array(MAPPED_BYTES // 8 + 1, np.float64)  # one element past the bound
    assert big.dtype == np.float64 and big.shape == (MAPPED_BYTES // 8 + 1,)
    assert big.flags.writeable and isinstance(big.base.obj, mmap.mmap)  # (a memoryview)
    big[:] = 2.5
    view = big[3:5]
    del big
    assert view.tolist() == [2.5, 2.5]  # a view keeps the map alive


def test_rows_written_into_the_window_are_kept_in_place():
    # ColumnStore.window hands out views of the kept plain columns; a block written there is
    # found in place by add (nothing copied), one written elsewhere is copied. Either way the
    # columns come back as written (reference: the plain numpy columns).
    rng = np.random.default_rng(3)
    full = _columns(300, rng)
    store = ColumnStore(RUN_COLUMNS, 300)
    w = store.window(100)
    assert set(w) == set(COLUMNS) - set(RUN_COLUMNS)  # plain ones only
    assert store.window(301) == {}  # less room left than asked: none
    for k, view in w.items():
        view[:] = full[k][:100]
    block = {k: (w[k] if k in w else full[k][:100].copy()) for k in COLUMNS}
    store.add(block)
    assert np.shares_memory(store.columns()["learner"], w["learner"])
    store.add({k: full[k][100:].copy() for k in COLUMNS})  # a block of its own: copied
    got = store.columns()
    for k in COLUMNS:
        col = got[k].expand() if isinstance(got[k], RunColumn) else got[k]
        np.testing.assert_array_equal(_bits(col), _bits(full[k]), err_msg=k)
    assert ColumnStore((), 10, keep=False).window(5) == {}


def test_vector_loops_write_the_kept_trace_in_place(monkeypatch):
    # The compiled loops' row block is the kept trace itself where the dtypes agree (float
    # times: every column), so block j + 1 starts in memory where block j's rows ended
    # (64-row blocks: several of them), and the rows equal the SimPy engine's.
    from dlsys.simulator import vector_common

    monkeypatch.setattr(vector_common, "BLOCK_ROWS", 64)
    sc = Scenario(
        learners=tuple(Learner(f"L{i}", Exponential(1.0 + i)) for i in range(3)),
        protocol=Protocol("ssp", s=1),
        until_updates=500,
    )
    seen: list[tuple[int, int]] = []
    real = vector_common.Rows.flush

    def flush(self, m):
        seen.append((self.cols[0].ctypes.data, m))
        real(self, m)

    monkeypatch.setattr(vector_common.Rows, "flush", flush)
    assert_engines_agree(sc, 0)
    blocks = [(p, m) for p, m in seen if m > 0]
    assert len(blocks) >= 5
    # (the last block or two may be the loop's own: the trace has less room left there)
    in_place = [a[0] + 4 * a[1] == b[0] for a, b in itertools.pairwise(blocks)]
    assert sum(in_place) >= len(blocks) - 3, in_place
