"""What every engine hands back: the trace columns, the row status codes, the end state.

An engine (:mod:`dlsys.simulator.engine`, :mod:`dlsys.simulator.simpy_fast`,
:mod:`dlsys.simulator.vector`) returns a :class:`RawRun`; :mod:`dlsys.simulator.trace`
turns it into a trace and a summary. Every engine draws learner ``i``'s compute times from
the ``i``-th stream of :func:`learner_streams`, in the same order, so all engines give the
same run for the same seed.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any

import numpy as np

from .streams import fast_streams

#: Row status codes of the trace.
APPLIED, LOST, CANCELLED, DROPPED = 0, 1, 2, 3
STATUS_NAMES = ("applied", "lost", "cancelled", "dropped")

#: Trace columns stored per gradient row and their array typecodes.
COLUMNS = {
    "learner": "i",  # learner index (int32)
    "seq": "i",  # the learner's 1-based gradient number (int32)
    "read_version": "q",  # PS version the weights were read at (int64)
    "version": "q",  # PS version the gradient was applied to; -1 if not applied (int64)
    "t_read": "d",  # seconds: when the weights were read at the PS
    "t_start": "d",  # seconds: compute start (NaN if lost before it)
    "t_done": "d",  # seconds: compute end (or the crash / cancel time)
    "t_apply": "d",  # seconds: update applied; NaN if not applied
    "status": "b",  # APPLIED, LOST, CANCELLED, DROPPED (int8)
}
NP_TYPES = {"i": np.int32, "q": np.int64, "d": np.float64, "b": np.int8}


def new_columns() -> dict[str, array]:
    """Empty trace columns: one typed array per :data:`COLUMNS` entry."""
    return {k: array(code) for k, code in COLUMNS.items()}


def append_row(cols: dict[str, array], g: Any, status: int, version: int, t_apply: float) -> None:
    """Append gradient ``g``'s trace row to ``cols``: its record (a ``Gradient``: learner,
    seq, read_version, t_read, t_start, t_done in seconds, exact or float) and how it ended
    (``status``, the ``version`` it was applied to or -1, ``t_apply`` seconds or NaN)."""
    cols["learner"].append(g.learner)
    cols["seq"].append(g.seq)
    cols["read_version"].append(g.read_version)
    cols["version"].append(version)
    cols["t_read"].append(float(g.t_read))
    cols["t_start"].append(float(g.t_start))
    cols["t_done"].append(float(g.t_done))
    cols["t_apply"].append(t_apply)
    cols["status"].append(status)


@dataclass
class RawRun:
    """What the engine hands to :mod:`dlsys.simulator.trace`: columns and end state."""

    columns: dict[str, Any]  # numpy arrays (and RunColumn for round protocols)
    updates: int
    t_end: float
    stop_reason: str
    inflight_start: np.ndarray  # per learner: compute start of the unfinished gradient, or NaN
    engine: str  # which engine ran: "simpy" or "vector"
    engine_reason: str  # why that engine (for engine="auto"), e.g. "crash faults need ..."
    #: Bytes per trace row the stored columns take (arrays shared between columns once);
    #: set by an engine that streamed its rows into a summary instead of keeping them.
    row_bytes: int = 0
    #: Bytes the trace holds (or, for a run that streamed its rows, would hold) where its
    #: layout is not ``row_bytes`` a row (runs: :mod:`dlsys.simulator.columns`); -1: it is.
    trace_bytes: int = -1


def learner_streams(seed: int | np.random.SeedSequence, n: int) -> list[np.random.Generator]:
    """One independent numpy Generator per learner, from ``SeedSequence(seed).spawn(n)``.

    Child ``i`` depends only on ``seed`` and ``i``, so adding a learner leaves the others'
    draws unchanged.
    """
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    # As spawn() on a fresh copy of ss (spawn() advances the parent's counter; repeated
    # calls must agree), seeded for all learners at once (simulator/streams.py).
    return fast_streams(ss, n)


def row_bytes(columns: dict[str, np.ndarray]) -> int:
    """Bytes per row of stored trace ``columns`` (an array shared by two columns counts
    once)."""
    seen = {id(a): a.itemsize for a in columns.values()}
    return sum(seen.values())
