"""How much memory a scenario asks for, checked before the run allocates it.

A learner ``count`` of a billion or an ``until_updates`` of 10**11 with a trace would fill
the machine and fail hours later; :func:`dlsys.common.check_memory` refuses them at once,
naming the field and the implied size. This module holds the simulator's estimates:

- per learner, :data:`LEARNER_BYTES` while the run builds it (checked when a scenario file is
  read, before the learners exist: :func:`check_learner_count`);
- per trace row, :data:`ROW_BYTES` at the run's peak; a run's rows are bounded by
  ``until_updates`` (times the rows an update can produce), by ``until_time`` times the
  learners' gradient rate, and by the learners' ``max_gradients`` (:func:`expected_rows`,
  checked before a run that keeps its trace: :func:`check_run`);
- an ``until_time`` run whose rows outgrow the estimate is checked again as its trace grows
  (:func:`check_trace_growth`, called by the SimPy engines every 65536 events), and each
  window of the vector engine before it draws its durations (:func:`check_window`);
- a sweep's grid points x replications (:func:`check_sweep`).

Summary-only runs are charged their rows too, except on the vector engine, whose paths
stream them block by block (``check_run(streams=True)``).
"""

from __future__ import annotations

import math
from typing import Any

from dlsys.common import check_memory, format_bytes
from dlsys.simulator.protocols import Async

#: Bytes per learner during a run: its scenario record, RNG stream, SimPy process and first
#: sample block. 4005 bytes measured with tracemalloc (peak of a 20000-learner async run of
#: 2 updates, numpy 2, SimPy 4), rounded up.
LEARNER_BYTES = 4096

#: Bytes per trace row at the run's peak, whichever engine runs it: 322 measured with
#: tracemalloc on the SimPy engine's async fast path (100000 updates of the async example;
#: it appends to arrays, then builds the numpy columns with their temporaries), 154 to 177
#: on the general SimPy engine (sync, k-sync, ssp, softsync, backup), 138 to 149 on the
#: vector engine; rounded up. The trace itself holds 41 to 57 bytes a row (two int32, two
#: int64, four float64 and an int8 column, some shared).
ROW_BYTES = 336


ADVICE = "use --summary-only, a smaller until_updates, or until_time"
ADVICE_NO_TRACE = "use a smaller until_updates or until_time"


def check_learner_count(field: str, count: int, total: int) -> None:
    """Refuse ``count`` more learners (``total`` with them) that cannot fit in memory.

    ``field`` names the ``count`` as written (``learner[0].count``); when one table fits but
    the tables together do not, the message names ``learner`` and the total.
    """
    advice = "use fewer learners (a smaller count)"
    check_memory(
        field,
        count * LEARNER_BYTES,
        advice,
        what=f"{_learners(count)} at {format_bytes(LEARNER_BYTES)} each",
    )
    check_memory(
        "learner",
        total * LEARNER_BYTES,
        advice,
        what=f"{total} learners in all at {format_bytes(LEARNER_BYTES)} each",
    )


def _rows_per_update(scenario: Any) -> int:
    """Async and SSP (its subclass) make every gradient an update of its own: one trace row
    per update. Every other protocol writes at most one row per learner per update (the
    gradients an update uses, and those it drops or cancels)."""
    return 1 if isinstance(scenario.protocol, Async) else int(scenario.n)


def _gradient_rate(scenario: Any) -> float:
    """Gradients per second of all learners together, at most (each one computes back to
    back: 1 / mean compute time, times its speed); ``inf`` for a mean of 0."""
    rate = 0.0
    for lrn in scenario.learners:
        mean = float(lrn.compute.mean) / float(lrn.speed)
        rate += math.inf if mean <= 0 else 1.0 / mean
    return rate


def expected_rows(scenario: Any) -> tuple[float, str]:
    """The most trace rows ``scenario`` can write, and the field that bounds them.

    ``until_updates`` times the rows per update (1 for async and SSP, else one per learner),
    ``until_time`` times the learners' gradient rate (at most; plus one in-flight gradient
    per learner), the sum of the learners' gradient budgets (``max_gradients``, finite
    traces): the smallest of these.
    """
    n = int(scenario.n)
    bounds: list[tuple[float, str]] = []
    if scenario.until_updates is not None:
        bounds.append((float(scenario.until_updates) * _rows_per_update(scenario), "until_updates"))
    if scenario.until_time is not None:
        bounds.append((float(scenario.until_time) * _gradient_rate(scenario) + n, "until_time"))
    budgets = [lrn.budget for lrn in scenario.learners]
    if all(b is not None for b in budgets):
        bounds.append((float(sum(budgets)), "learner.max_gradients"))
    if not bounds:
        return math.inf, "until_updates"
    return min(bounds, key=lambda b: b[0])


def check_run(
    scenario: Any, *, trace: bool = True, prefix: str = "simulation.", streams: bool = False
) -> None:
    """Refuse a run whose learners and rows cannot fit in memory.

    Without ``trace`` (``--summary-only``) the rows are charged all the same on the SimPy
    engines, which keep every row until the run ends (146 to 172 bytes a row measured
    with ``trace=False``); only the advice changes. ``prefix`` is put before
    ``until_updates`` / ``until_time`` in the message (``"simulation."``: the scenario's
    table). ``streams``: the run hands its rows to a summary window by window and keeps
    none (the vector engine without a trace): only its learners are charged.
    """
    n = int(scenario.n)
    rows, bound = expected_rows(scenario)
    if streams:
        rows = 0.0
    field = bound if bound.startswith("learner") else prefix + bound
    nbytes = n * LEARNER_BYTES + rows * ROW_BYTES
    kind = "a trace" if trace else "a run (its rows, even without a trace)"
    what = (
        f"{kind} of about {_count(rows)} rows at {ROW_BYTES} bytes each "
        f"(and {_learners(n)} at {format_bytes(LEARNER_BYTES)} each)"
    )
    check_memory(field, nbytes, ADVICE if trace else ADVICE_NO_TRACE, what=what)


def check_trace_growth(
    scenario: Any, written: int, now: float, prefix: str = "simulation."
) -> None:
    """Check again while an ``until_time`` run grows its trace: ``written`` rows by
    simulated time ``now`` (seconds) project ``written * until_time / now`` rows by the end
    (without end if simulated time has not moved). Engines call it every few tens of
    thousands of events, so a run whose durations are far shorter than the estimate assumed
    (a heavy tail with a tiny minimum) is stopped before it fills the memory."""
    now = float(now)
    if scenario.until_time is None or written == 0:
        return
    projected = math.inf if now <= 0 else written * float(scenario.until_time) / now
    check_memory(
        prefix + "until_time",
        int(scenario.n) * LEARNER_BYTES + projected * ROW_BYTES,
        ADVICE,
        what=(
            f"a trace of about {_count(projected)} rows ({written} in the first {now:.3g} s "
            f"of {float(scenario.until_time):.6g}) at {ROW_BYTES} bytes each"
        ),
    )


#: Bytes per gradient a vector-engine window holds while it is made: the durations and the
#: read, start, done and arrival times (five 8-byte columns), plus up to three same-size
#: temporaries (concatenation and running sums).
WINDOW_BYTES = 64


def check_window(scenario: Any, gradients: int, goal: float, prefix: str = "simulation.") -> None:
    """Refuse a vector-engine window of ``gradients`` gradients (all learners, to simulated
    time ``goal``) that cannot fit: the durations seen so far are far shorter than the
    mean promised (a heavy tail with a tiny minimum), so the window would never end."""
    bound = "until_time" if scenario.until_time is not None else "until_updates"
    check_memory(
        prefix + bound,
        gradients * WINDOW_BYTES,
        ADVICE,
        what=(
            f"the next {_count(gradients)} gradients (to {goal:.6g} s at the rate seen so far) "
            f"at {WINDOW_BYTES} bytes each"
        ),
    )


#: Bytes a sweep holds per run (replication at a grid point) and per grid point until it
#: ends: 669 and 6692 measured with tracemalloc (a 400-point x 10-replication sweep in one
#: process, 4 learners), rounded up with room for a process pool's futures.
SWEEP_RUN_BYTES = 1024
SWEEP_POINT_BYTES = 8192


def check_sweep(points: int, replications: int) -> None:
    """Refuse a sweep of ``points`` grid points x ``replications`` runs that cannot fit."""
    runs = points * replications
    check_memory(
        "grid x replications",
        points * SWEEP_POINT_BYTES + runs * SWEEP_RUN_BYTES,
        "use fewer grid values or replications",
        what=(
            f"{points} grid points x {replications} replications = {runs} runs at "
            f"{format_bytes(SWEEP_RUN_BYTES)} each (and {format_bytes(SWEEP_POINT_BYTES)} "
            "per point)"
        ),
    )


def _learners(n: int) -> str:
    return f"{n} learner" if n == 1 else f"{n} learners"


def _count(rows: float) -> str:
    return str(int(rows)) if rows < 1e15 else f"{rows:.3g}"
