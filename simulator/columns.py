"""Trace columns held as runs of equal values: the in-memory layout of round-protocol traces.

Under sync and k-sync (and k-batch-sync) every live learner reads the weights at each
update, so the rows of a round share their read time, read version, the version and time of
the update that applies them, their status and, where the learners have the same pull time
and started together, their compute start and gradient number: these columns change about
once a round, not once a row. The trace of such a protocol (``Protocol.round_trace``) holds
each of them (:data:`RUN_COLUMNS`) as a :class:`RunColumn` -- the value of each run and the
row where it begins, ``itemsize + 8`` bytes a run -- where that takes fewer bytes than the
plain column, and the learner and compute-end columns as plain arrays. For 100 learners
that is about 12 bytes a row instead of 57, so a run touches about a fifth of the fresh
memory (its first-touch page faults are most of the time of a large run).

The layout is a function of the column values only (a column is held as runs exactly when
``runs * (itemsize + 8) < rows * itemsize``; equal means the same bits, and every NaN equals
every NaN), so every engine that writes the same rows holds the same bytes and reports the
same ``summary["trace_bytes_per_update"]``: the vector engine builds it block by block
(:class:`ColumnStore`), the SimPy engine from its whole columns, and a run without a trace
counts what it would hold (``ColumnStore(..., keep=False)``). :class:`dlsys.simulator.Trace`
expands a run column where it is asked for (``numpy.repeat``); the CSV, the summary and
every accessor see the plain values.
"""

from __future__ import annotations

import math
import mmap
from typing import Any

import numba
import numpy as np

from dlsys.simulator.core import COLUMNS, NP_TYPES, row_bytes

#: Columns a round-protocol trace may hold as runs (the others are always plain arrays).
RUN_COLUMNS = ("seq", "read_version", "version", "t_read", "t_start", "t_apply", "status")

#: Bytes of a run's start row (int64), on top of its value.
START_BYTES = 8
#: Runs a column makes room for at first (up to; doubled as needed).
FIRST_RUNS = 1 << 16
#: Bytes from which :func:`fresh_array` puts an array on a memory map of its own (32 MiB:
#: the sync benchmark's 40 and 80 MB columns were faster on maps, the ssp benchmark's 8 MB
#: ones on numpy's huge pages; docs/simulator.md, "Sync, third session").
MAPPED_BYTES = 1 << 25


def fresh_array(size: int, dtype: Any) -> np.ndarray:
    """An uninitialised 1-D array of ``size`` elements; a large one (at least
    :data:`MAPPED_BYTES`) on an anonymous memory map of its own, in 4 KiB pages.

    NOTE: for speed. numpy asks the kernel for huge pages for large arrays; a trace column
    is written once, front to back, and where free memory is fragmented each 2 MiB page's
    first touch waits for the kernel to compact memory (docs/simulator.md: "Sync, third
    session"). The map is unmapped when the last array using it goes.
    """
    dtype = np.dtype(dtype)
    nbytes = int(size) * dtype.itemsize
    if nbytes < MAPPED_BYTES:
        return np.empty(size, dtype)
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype=dtype)


def run_columns(scenario: Any) -> tuple[str, ...]:
    """The columns ``scenario``'s trace may hold as runs: :data:`RUN_COLUMNS` for a
    protocol with ``round_trace``, none otherwise."""
    return RUN_COLUMNS if scenario.protocol.round_trace else ()


class RunColumn:
    """A trace column as runs: ``values[j]`` on rows ``starts[j]`` up to ``starts[j + 1]``
    (the last run up to ``length``). ``starts[0]`` is 0 unless the column is empty."""

    def __init__(self, values: np.ndarray, starts: np.ndarray, length: int) -> None:
        self.values, self.starts, self.length = values, starts, length

    @property
    def dtype(self) -> np.dtype:
        """The column's numpy dtype."""
        return self.values.dtype

    def __len__(self) -> int:
        return self.length

    @property
    def nbytes(self) -> int:
        """Bytes held: the values and the start rows."""
        return int(self.values.nbytes + self.starts.nbytes)

    def expand(self, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Rows ``lo`` up to ``hi`` (default: the end) as a plain array."""
        hi = self.length if hi is None else min(hi, self.length)
        if hi <= lo:
            return np.empty(0, self.values.dtype)
        a = int(np.searchsorted(self.starts, lo, side="right")) - 1
        b = int(np.searchsorted(self.starts, hi, side="left"))
        bounds = np.empty(b - a + 1, np.int64)
        bounds[:-1] = self.starts[a:b]
        bounds[0], bounds[-1] = lo, hi
        return np.repeat(self.values[a:b], np.diff(bounds))


@numba.njit(cache=True, inline="always")
def _same(a: Any, b: Any) -> bool:
    """The same value for a run: equal with the same sign (0.0 and -0.0 are written
    differently), or both NaN."""
    return (a == b and math.copysign(1.0, a) == math.copysign(1.0, b)) or (a != a and b != b)


@numba.njit(cache=True)
def _append_runs(x: Any, values: Any, starts: Any, count: int, offset: int) -> int:
    """Append the runs of block ``x`` (rows from ``offset``) after the ``count`` runs held in
    ``values`` / ``starts``; returns the new count, or -1 if they do not fit."""
    c = count
    for r in range(len(x)):
        if c > 0 and _same(x[r], values[c - 1]):
            continue
        if c == len(values):
            return -1
        values[c] = x[r]
        starts[c] = offset + r
        c += 1
    return c


@numba.njit(cache=True)
def _count_runs(x: Any, last: Any, count: int) -> int:
    """The count of runs after block ``x`` when ``count`` runs came before it, the last of
    value ``last[0]``; ``last[0]`` becomes the block's last value."""
    c = count
    for r in range(len(x)):
        if c > 0 and _same(x[r], last[0]):
            continue
        last[0] = x[r]
        c += 1
    return c


class _Runs:
    """One column's runs while they are made."""

    def __init__(self, dtype: np.dtype, capacity: int, keep: bool) -> None:
        self.keep = keep
        self.values = np.empty(capacity if keep else 1, dtype)
        self.starts = np.empty(capacity if keep else 0, np.int64)
        self.count = 0

    def add(self, x: np.ndarray, offset: int) -> None:
        if not self.keep:
            self.count = _count_runs(x, self.values, self.count)
            return
        while True:
            got = _append_runs(x, self.values, self.starts, self.count, offset)
            if got >= 0:
                self.count = got
                return
            size = 2 * len(self.values) + len(x)  # (grow; the block is added again)
            values, starts = np.empty(size, self.values.dtype), np.empty(size, np.int64)
            values[: self.count] = self.values[: self.count]
            starts[: self.count] = self.starts[: self.count]
            self.values, self.starts = values, starts


class ColumnStore:
    """The trace columns of a run, added block by block in trace order: the columns named
    in ``runs`` as runs where that is smaller (see the module docstring), the others as
    plain arrays (``capacity``: rows to make room for at first; more is made as needed).
    ``keep=False`` keeps no rows: it counts the runs, for :attr:`nbytes`."""

    def __init__(self, runs: tuple[str, ...], capacity: int, keep: bool = True) -> None:
        self.keep = keep
        self.rows = 0
        self.dtypes = {k: np.dtype(NP_TYPES[code]) for k, code in COLUMNS.items()}
        first = max(1, min(int(capacity), FIRST_RUNS))
        self._runs = {k: _Runs(self.dtypes[k], first, keep) for k in runs}
        self._plain: dict[str, np.ndarray] = {}
        if keep:
            cap = max(int(capacity), 1)
            self._plain = {k: fresh_array(cap, d) for k, d in self.dtypes.items() if k not in runs}

    def window(self, size: int) -> dict[str, np.ndarray]:
        """The next ``size`` rows of each plain column kept, as views to write rows into
        (:meth:`add` then finds them in place and copies nothing); none where the store
        keeps nothing or has less room left than ``size``."""
        a = self.rows
        if not self.keep or a + size > len(self._plain["learner"]):
            return {}
        return {k: dst[a : a + size] for k, dst in self._plain.items()}

    def add(self, cols: dict[str, np.ndarray]) -> None:
        """Add a block of rows (every stored column of :data:`dlsys.simulator.core.COLUMNS`;
        the store copies what it keeps, so the block may be reused; a column written into
        :meth:`window`'s view is already in place)."""
        m = len(cols["learner"])
        if m == 0:
            return
        a = self.rows
        for k, r in self._runs.items():
            r.add(cols[k], a)
        if self.keep:
            if a + m > len(self._plain["learner"]):
                size = max(2 * len(self._plain["learner"]), a + m)
                for k, old in self._plain.items():
                    grown = fresh_array(size, old.dtype)
                    grown[:a] = old[:a]
                    self._plain[k] = grown
            for k, dst in self._plain.items():
                src = cols[k]
                if src.ctypes.data != dst.ctypes.data + a * dst.itemsize:
                    dst[a : a + m] = src
        self.rows = a + m

    def _as_runs(self, k: str) -> bool:
        """Whether column ``k`` is held as runs (fewer bytes than plain)."""
        if k not in self._runs:
            return False
        size = self.dtypes[k].itemsize
        return self._runs[k].count * (size + START_BYTES) < self.rows * size

    @property
    def nbytes(self) -> int:
        """Bytes the trace holds (``keep=False``: would hold) in this layout."""
        total = 0
        for k, d in self.dtypes.items():
            if self._as_runs(k):
                total += self._runs[k].count * (d.itemsize + START_BYTES)
            else:
                total += self.rows * d.itemsize
        return total

    def columns(self) -> dict[str, np.ndarray | RunColumn]:
        """The trace columns (plain arrays and :class:`RunColumn`), in
        :data:`~dlsys.simulator.core.COLUMNS` order."""
        assert self.keep, "a ColumnStore made with keep=False holds no columns"
        out: dict[str, np.ndarray | RunColumn] = {}
        n = self.rows
        for k in self.dtypes:
            if k in self._plain:
                out[k] = self._plain[k][:n]
                continue
            r = self._runs[k]
            col = RunColumn(r.values[: r.count].copy(), r.starts[: r.count].copy(), n)
            out[k] = col if self._as_runs(k) else col.expand()
        return out


def hold(
    scenario: Any, columns: dict[str, np.ndarray], keep: bool = True
) -> tuple[dict[str, Any], int]:
    """Whole trace ``columns`` (an engine's, plain) in ``scenario``'s layout, and the bytes
    they hold there (unchanged for a protocol without ``round_trace``); ``keep=False``:
    only the bytes (no columns: ``{}``)."""
    runs = run_columns(scenario)
    if not runs:
        return columns if keep else {}, row_bytes(columns) * len(columns["learner"])
    store = ColumnStore(runs, len(columns["learner"]), keep)
    store.add(columns)
    return store.columns() if keep else {}, store.nbytes


__all__ = ["RUN_COLUMNS", "ColumnStore", "RunColumn", "hold", "run_columns"]
