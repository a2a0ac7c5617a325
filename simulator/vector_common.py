"""What the vector engine's compiled loops share: one driver, their blocks and their heap.

The round loop (:mod:`.vector_rounds`), the chain loop (:mod:`.vector_chains`) and the
event loop (:mod:`.vector_events`) each keep their whole state in arrays and run a scenario
in calls: a call returns when a learner needs more durations drawn (:data:`NEED_DRAWS`),
when one more step's rows may not fit in the block (:data:`NEED_ROOM`) or at the end
(:data:`DONE`), and the next call goes on where it stopped. :func:`drive` is the one loop
around them: it draws durations (:class:`Draws`: every learner's, in the SimPy engine's
blocks), hands each full block of rows (:class:`Rows`: the kept trace's own columns where
their dtypes agree, one reused block for the rest) to the summary and to the kept trace
(:class:`~dlsys.simulator.columns.ColumnStore`) while it is in the caches, checks an
``until_time`` run's growth, and makes the run's result. Each loop's adapter (a
:class:`BlockLoop`) says how to call it and where its state keeps the rows written, the time
and the end.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any, ClassVar

import numba
import numpy as np

from dlsys.simulator.columns import ColumnStore, run_columns
from dlsys.simulator.core import RawRun
from dlsys.simulator.limits import check_trace_growth, expected_rows
from dlsys.simulator.protocols import CANCEL_ALL, REUSE
from dlsys.simulator.scenario import Scenario
from dlsys.simulator.vector import Durations, Units

#: Durations drawn at once, over all learners.
DRAW_BLOCK = 1 << 20
#: Trace rows per block (the block is reused; each one goes to the summary and the kept
#: trace while it is still in the caches).
BLOCK_ROWS = 1 << 17

#: What a loop call returns.
DONE, NEED_DRAWS, NEED_ROOM = 0, 1, 2
#: Why a run stopped, and the names the result gives them.
BY_UPDATES, BY_TIME, FINISHED, STALLED = 0, 1, 2, 3
STOP_NAMES = ("until_updates", "until_time", "learners finished", "stalled")


def no_time(units: Units) -> Any:
    """The loops' mark for "no time" (a t_start or t_apply that did not happen): NaN, or
    -1 in exact units (made NaN in the trace)."""
    return units.dtype(-1) if units.exact else np.nan


def learner_net(scenario: Scenario, units: Units) -> tuple[np.ndarray, ...]:
    """Per learner, in ``units``: start delay, first compute start (start delay + pull time,
    added exactly), pull time and push time."""
    specs = scenario.learners
    return (
        np.array([units.of(x.start_delay) for x in specs], dtype=units.dtype),
        np.array(
            [units.of(Fraction(x.start_delay) + Fraction(x.pull_time)) for x in specs],
            dtype=units.dtype,
        ),
        np.array([units.of(x.pull_time) for x in specs], dtype=units.dtype),
        np.array([units.of(x.push_time) for x in specs], dtype=units.dtype),
    )


#: Children per node of the arrival heap (a 4-ary heap is shallower than a binary one).
ARITY = 4


@numba.njit(cache=True, inline="always")
def _before(ta: Any, la: int, tb: Any, lb: int) -> bool:
    """The heap order: (time, learner)."""
    return ta < tb or (ta == tb and la < lb)


@numba.njit(cache=True, inline="always")
def heap_push(ht: Any, hl: Any, size: int, t: Any, i: int) -> int:
    """Add arrival (``t``, learner ``i``) to the heap ``ht``/``hl`` of ``size``; return the
    new size."""
    j = size
    while j > 0:
        p = (j - 1) // ARITY
        if not _before(t, i, ht[p], hl[p]):
            break
        ht[j], hl[j] = ht[p], hl[p]
        j = p
    ht[j], hl[j] = t, i
    return size + 1


@numba.njit(cache=True, inline="always")
def heap_pop(ht: Any, hl: Any, size: int) -> int:
    """Remove the heap's first arrival (read it first at ``ht[0]``, ``hl[0]``); return the
    new size."""
    size -= 1
    t, i = ht[size], hl[size]
    j = 0
    while True:
        c = ARITY * j + 1
        if c >= size:
            break
        best = c
        for x in range(c + 1, min(c + ARITY, size)):
            if _before(ht[x], hl[x], ht[best], hl[best]):
                best = x
        if not _before(ht[best], hl[best], t, i):
            break
        ht[j], hl[j] = ht[best], hl[best]
        j = best
    ht[j], hl[j] = t, i
    return size


class Draws:
    """Every learner's durations not used yet, ``dur[i, ptr[i]:have[i]]`` (seconds, in
    :class:`~dlsys.simulator.vector.Units`), refilled from its
    :class:`~dlsys.simulator.vector.Durations` (the SimPy engine's blocks) ``width`` at a
    time."""

    def __init__(self, scenario: Scenario, rngs: list[np.random.Generator], units: Units):
        n = scenario.n
        # keep: what a learner may use in one round stays drawn (k + 2 for k-batch-sync,
        # whose learners compute on after their pushes; 1 elsewhere)
        proto = scenario.protocol
        self.keep = (proto.batch_size(n) or 0) + 2 if proto.after_push == REUSE else 1
        self.width = max(16 + self.keep, min(DRAW_BLOCK // max(n, 1), _width_bound(scenario)))
        self.durs = [Durations(scenario, i, rngs[i], units) for i in range(n)]
        if scenario.protocol.on_update == CANCEL_ALL:
            # A cancelled computation used its duration but pushed nothing: max_gradients
            # counts pushes (the loop's budget), so only the values themselves run out here.
            for d in self.durs:
                d.budget = None
        self.dur = np.zeros((n, self.width), dtype=units.dtype)
        self.have = np.zeros(n, dtype=np.int64)
        self.done = np.zeros(n, dtype=np.bool_)

    def refill(self, ptr: np.ndarray, fin: np.ndarray) -> int:
        """Top up every live learner that has used half of its durations or more, or has
        fewer than ``keep`` left; return how many were topped up."""
        topped = 0
        for i, d in enumerate(self.durs):
            if fin[i] or self.done[i]:
                continue
            if ptr[i] < self.have[i] // 2 and self.have[i] - ptr[i] >= self.keep:
                continue
            rest = self.dur[i, ptr[i] : self.have[i]].copy()
            more = d.take(self.width - len(rest))
            self.dur[i, : len(rest)] = rest
            self.dur[i, len(rest) : len(rest) + len(more)] = more
            self.have[i] = len(rest) + len(more)
            ptr[i] = 0
            self.done[i] = d.done
            topped += 1
        return topped


def _width_bound(scenario: Scenario) -> int:
    """Durations a learner can use at most (rounds of the run, plus one): no more are drawn
    at once."""
    u = scenario.until_updates
    return 2**62 if u is None else u + 1


#: The loops' row columns, in the order of their ``out`` tuple.
ROW_NAMES = (
    "learner", "seq", "read_version", "version", "t_read", "t_start", "t_done", "t_apply",
    "status",
)  # fmt: skip


class Rows:
    """Trace rows made by a compiled loop: one block of ``size`` rows (learner, seq,
    read_version, version, t_read, t_start, t_done, t_apply in :class:`Units`, status),
    handed to ``emit`` as trace columns (times in float seconds) when full and at the end,
    then written over (``emit`` copies what it keeps).

    With ``window`` (:meth:`~dlsys.simulator.columns.ColumnStore.window`), a column the kept
    trace holds plain, in the loop's own dtype and units, is written straight into the trace
    instead (a fresh view after each flush), so it is not copied there afterwards."""

    def __init__(
        self,
        units: Units,
        size: int,
        emit: Callable[[dict[str, np.ndarray]], None],
        window: Callable[[int], dict[str, np.ndarray]] | None = None,
    ):
        self.units, self.size, self.emit, self.window = units, size, emit, window
        self.emitted = 0  # rows handed out so far
        self.nan = no_time(units)
        t = units.dtype
        self.own: tuple[np.ndarray, ...] = (
            np.empty(size, np.int32),
            np.empty(size, np.int32),
            np.empty(size, np.int64),
            np.empty(size, np.int64),
            *(np.empty(size, t) for _ in range(4)),
            np.empty(size, np.int8),
        )
        self.cols = self._next_block()

    def _next_block(self) -> tuple[np.ndarray, ...]:
        """The block the next rows go to: the trace's own views where it can take them."""
        views = self.window(self.size) if self.window is not None else {}
        return tuple(
            views[k] if k in views and views[k].dtype == a.dtype else a
            for k, a in zip(ROW_NAMES, self.own, strict=True)
        )

    def columns(self, m: int) -> dict[str, np.ndarray]:
        """The first ``m`` rows as trace columns (times in float seconds)."""
        c = [a[:m] for a in self.cols]
        names = ("learner", "seq", "read_version", "version")
        out = dict(zip(names, c[:4], strict=True))
        for name, a in zip(("t_read", "t_start", "t_done", "t_apply"), c[4:8], strict=True):
            if self.units.exact:
                none = a == -1
                a = self.units.seconds(a)
                a[none] = np.nan
            out[name] = a
        out["status"] = c[8]
        return out

    def flush(self, m: int) -> None:
        """Hand the first ``m`` rows to ``emit``; the next rows go from the block's start."""
        if m == 0:
            return
        self.emitted += m
        self.emit(self.columns(m))
        self.cols = self._next_block()


class BlockLoop:
    """A compiled loop as :func:`drive` calls it: :meth:`step` calls it once. ``ptr``
    (each learner's next duration in :attr:`Draws.dur`), ``finished``, and ``running`` /
    ``mask`` (the compute start, in units, of the computation in flight at the stop, and
    which learners have one) are the loop's per-learner arrays; its integer state ``ints``
    keeps the rows written into the block, the updates and the stop reason at slots
    ``ROWS``, ``UPDATES`` and ``STOP``, its time state ``times`` the time reached and the
    end time (units) at ``NOW`` and ``END``."""

    ROWS: ClassVar[int]
    UPDATES: ClassVar[int]
    STOP: ClassVar[int]
    NOW: ClassVar[int]
    END: ClassVar[int]
    ptr: np.ndarray
    finished: np.ndarray
    running: np.ndarray
    mask: np.ndarray
    ints: np.ndarray
    times: np.ndarray

    def step(self, draws: Draws, out: tuple[np.ndarray, ...]) -> int:
        """Call the loop with ``draws`` and the row block ``out``; return its code."""
        raise NotImplementedError

    def take_rows(self) -> int:
        """Rows written into the block since the last call; the next go from its start."""
        m = int(self.ints[self.ROWS])
        self.ints[self.ROWS] = 0
        return m

    def now(self) -> Any:
        """Simulated time reached, in units."""
        return self.times[self.NOW]

    def end(self) -> tuple[int, Any, int]:
        """(updates, end time in units, stop reason) once the loop returned :data:`DONE`."""
        return int(self.ints[self.UPDATES]), self.times[self.END], int(self.ints[self.STOP])


def drive(
    loop: BlockLoop,
    scenario: Scenario,
    rngs: list[np.random.Generator],
    units: Units,
    reason: str,
    sink: Callable[[dict[str, np.ndarray]], None] | None = None,
    keep: bool = False,
) -> RawRun:
    """Run ``loop`` to the end of ``scenario`` (see the module docstring). With ``sink``,
    each block of rows goes there; without ``sink`` or with ``keep``, the result keeps the
    trace (in the scenario's layout: :mod:`dlsys.simulator.columns`)."""
    n = scenario.n
    keep = keep or sink is None
    # The kept trace makes room for all its rows at once where their number is known.
    capacity = int(min(expected_rows(scenario)[0], 2**40)) + 3 * n
    store = ColumnStore(run_columns(scenario), capacity, keep)

    def emit(cols: dict[str, np.ndarray]) -> None:
        if sink is not None:
            sink(cols)
        store.add(cols)

    # (the loops ask for room for up to 3 n more rows before each step)
    rows = Rows(units, BLOCK_ROWS + 3 * n, emit, store.window)
    draws = Draws(scenario, rngs, units)
    draws.refill(loop.ptr, loop.finished)
    while True:
        code = loop.step(draws, rows.cols)
        if code == NEED_ROOM:
            rows.flush(loop.take_rows())
            if scenario.until_time is not None:
                check_trace_growth(scenario, rows.emitted, units.scalar(loop.now()))
        elif code == NEED_DRAWS:
            # A loop asks for durations only for a learner that can still draw them (one
            # whose durations ran out is finished by the loop itself, at its next read): a
            # request that tops up nobody would come back unchanged for ever. (Not after
            # NEED_ROOM: topping up learners half-way through their durations there too
            # made many more, smaller draws.)
            if draws.refill(loop.ptr, loop.finished) == 0:
                name = loop.__class__.__name__
                raise AssertionError(f"{name}: asked for durations, none to draw")
        else:
            break
    rows.flush(loop.take_rows())
    updates, t_end, stop = loop.end()
    inflight = np.full(n, np.nan)
    inflight[loop.mask] = units.seconds(loop.running[loop.mask])
    raw = RawRun(
        {}, int(updates), units.scalar(t_end), STOP_NAMES[int(stop)], inflight, "vector", reason
    )
    raw.row_bytes = sum(a.itemsize for a in rows.cols)
    raw.trace_bytes = store.nbytes
    if keep:
        raw.columns = store.columns()
    return raw


__all__ = [
    "BLOCK_ROWS",
    "BY_TIME",
    "BY_UPDATES",
    "DONE",
    "DRAW_BLOCK",
    "FINISHED",
    "NEED_DRAWS",
    "NEED_ROOM",
    "STALLED",
    "STOP_NAMES",
    "BlockLoop",
    "Draws",
    "Rows",
    "drive",
    "heap_pop",
    "heap_push",
    "learner_net",
    "no_time",
]
