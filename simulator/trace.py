"""Simulation results: the per-gradient trace, its summary, and :func:`simulate`.

The trace has one row per gradient whose fate is known at the end of the run: applied,
lost (its learner crashed), cancelled (k-sync / k-batch-sync stopped it) or dropped (it
arrived too late for its round). Rows are in the order their fate was decided, which for
applied gradients is the order of application. Columns (numpy arrays, by name):

==============  =========================================================================
learner         learner index (int32); ``learner_name`` gives the names
seq             the learner's 1-based gradient number (int32)
read_version    PS version the weights were read at (int64)
version         PS version the gradient was applied to (before the update), -1 if not
staleness       version - read_version: PS updates between the read and the update that
                applies it; -1 if not applied (derived)
t_read          seconds: when the weights were read at the PS
t_start         seconds: compute start (t_read + pull time); NaN if lost while pulling
t_done          seconds: compute end (or the crash / cancel time)
t_arrive        seconds: t_done + push time (derived)
t_apply         seconds: when the update was applied; NaN if not applied
status          0 applied, 1 lost, 2 cancelled, 3 dropped (int8); ``status_name`` as text
lr              learning rate of the scenario's rule for this gradient (derived)
==============  =========================================================================
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlsys.simulator.columns import RunColumn
from dlsys.simulator.core import APPLIED, STATUS_NAMES, RawRun
from dlsys.simulator.engine import choose_engine, run
from dlsys.simulator.limits import check_run
from dlsys.simulator.scenario import LRRule, Scenario, load_scenario
from dlsys.simulator.summary import SummaryStats, summary
from dlsys.simulator.vector import streams as vector_streams

#: Column order of the CSV trace and of ``--json`` update records.
CSV_COLUMNS = (
    "learner",
    "seq",
    "read_version",
    "version",
    "staleness",
    "t_read",
    "t_start",
    "t_done",
    "t_arrive",
    "t_apply",
    "status",
    "lr",
)


class Trace:
    """Per-gradient columns of one run; ``trace["staleness"]`` is a numpy array.

    ``columns``: numpy arrays, or :class:`~dlsys.simulator.columns.RunColumn` where a
    round protocol's column is held as runs (expanded when it is asked for).
    """

    def __init__(
        self,
        columns: dict[str, Any],
        learner_names: list[str],
        push_time: np.ndarray,
        lr: LRRule,
    ) -> None:
        self._cols = columns
        self.learner_names = list(learner_names)
        self._push = push_time
        self._lr = lr

    #: Names served by ``trace[name]``.
    @property
    def columns(self) -> list[str]:
        """Stored and derived column names."""
        return [*self._cols, "staleness", "t_arrive", "lr", "learner_name", "status_name"]

    def __len__(self) -> int:
        return len(self._cols["learner"])

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._cols:
            col = self._cols[name]
            return col.expand() if isinstance(col, RunColumn) else col
        if name == "staleness":
            version = self["version"]
            out: np.ndarray = np.where(version >= 0, version - self["read_version"], -1)
            return out
        if name == "t_arrive":
            return self["t_done"] + self._push[self["learner"]]
        if name == "lr":
            return self._lr.rates(self["staleness"])
        if name == "learner_name":
            return np.asarray(self.learner_names, dtype=object)[self["learner"]]
        if name == "status_name":
            return np.asarray(STATUS_NAMES, dtype=object)[self["status"]]
        from dlsys.common import unknown_name

        raise KeyError(str(unknown_name("trace column", name, self.columns)))

    def stored(self) -> dict[str, np.ndarray]:
        """The stored columns (no derived ones) as numpy arrays, by name."""
        return {k: self[k] for k in self._cols}

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored columns (arrays shared between columns counted once;
        a column held as runs: its values and start rows)."""
        seen: dict[int, int] = {}
        for a in self._cols.values():
            seen[id(a)] = int(a.nbytes)
        return sum(seen.values())

    def applied(self) -> np.ndarray:
        """Boolean mask of applied rows."""
        return self["status"] == APPLIED

    def records(self, order: str = "trace") -> list[dict[str, Any]]:
        """Rows as dicts (learner by name, status by name, NaN as None in JSON).

        ``order="learner"`` sorts by (learner, seq) as a student lists g[L1,1], g[L1,2], ...
        """
        idx = np.arange(len(self))
        if order == "learner":
            idx = np.lexsort((self["seq"], self["learner"]))
        names = self.learner_names
        cols = {k: self[k] for k in CSV_COLUMNS}
        out = []
        for i in idx.tolist():
            rec: dict[str, Any] = {}
            for k in CSV_COLUMNS:
                v = cols[k][i]
                if k == "learner":
                    rec[k] = names[int(v)]
                elif k == "status":
                    rec[k] = STATUS_NAMES[int(v)]
                elif cols[k].dtype.kind in "iu":
                    rec[k] = int(v)
                else:
                    rec[k] = float(v)
            out.append(rec)
        return out

    def csv_text(self) -> str:
        """The trace as CSV text (columns :data:`CSV_COLUMNS`; floats written round-trip exact)."""
        buf = io.StringIO()
        buf.write(",".join(CSV_COLUMNS) + "\n")
        cols = []
        for k in CSV_COLUMNS:
            a = self[k]
            if k == "learner":
                cols.append([self.learner_names[i] for i in a.tolist()])
            elif k == "status":
                cols.append([STATUS_NAMES[i] for i in a.tolist()])
            elif a.dtype.kind == "f":
                cols.append(["" if v != v else repr(v) for v in a.tolist()])
            else:
                cols.append([str(v) for v in a.tolist()])
        for row in zip(*cols, strict=True):
            buf.write(",".join(row))
            buf.write("\n")
        return buf.getvalue()

    def to_dataframe(self) -> Any:
        """The trace as a pandas DataFrame (pandas is optional: not a dlsys dependency)."""
        try:
            import pandas as pd  # type: ignore[import-untyped,unused-ignore]
        except ImportError:
            raise ImportError(
                "Trace.to_dataframe needs pandas (pip install pandas); trace[name] gives "
                "numpy arrays without it"
            ) from None

        return pd.DataFrame({k: self[k] for k in CSV_COLUMNS})


@dataclass
class Result:
    """One simulation run: the scenario, the seed, the trace and the summary dict.

    ``trace`` raises ``ValueError`` for a run made with ``trace=False`` (``kept_trace`` is
    None there); the summary is complete either way.
    """

    scenario: Scenario
    seed: int | np.random.SeedSequence
    kept_trace: Trace | None
    summary: dict[str, Any]
    raw: RawRun

    @property
    def trace(self) -> Trace:
        """The per-gradient trace."""
        if self.kept_trace is None:
            raise ValueError(
                "trace: this run kept no trace (simulate(..., trace=False) or --summary-only); "
                "run it with trace=True for the per-gradient rows"
            )
        return self.kept_trace


def summarize(
    scenario: Scenario, raw: RawRun, trace: Trace | None = None, stats: SummaryStats | None = None
) -> dict[str, Any]:
    """The summary dict of a run (times in seconds, shares as fractions of [0, t_end]), from
    its ``trace`` or from the ``stats`` the run accumulated as it made its rows (with or
    without a trace); the same numbers either way (see :mod:`dlsys.simulator.summary`)."""
    if stats is None:
        assert trace is not None
        stats = SummaryStats(scenario)
        stats.add(trace.stored())
    if trace is not None:
        trace_bytes = trace.nbytes
    elif raw.trace_bytes >= 0:
        trace_bytes = raw.trace_bytes
    else:
        trace_bytes = stats.rows * raw.row_bytes
    out = summary(scenario, raw, stats, trace_bytes)
    from dlsys.simulator.theory import expectations

    out["theory"] = expectations(scenario)
    if scenario.model is not None:
        out["model"] = scenario.model.describe()
    return out


def simulate(
    scenario: Scenario | str | os.PathLike[str],
    seed: int | np.random.SeedSequence | None = None,
    *,
    until_updates: int | None = None,
    until_time: float | None = None,
    engine: str = "auto",
    trace: bool = True,
) -> Result:
    """Run ``scenario`` (a :class:`Scenario` or a TOML path) and return its :class:`Result`.

    ``seed`` overrides the scenario's seed; ``until_updates`` / ``until_time`` (seconds)
    override its stopping rule. The same seed gives a byte-identical trace. ``engine``:
    ``"auto"`` (the vector engine where it is exact, else SimPy), ``"simpy"`` or ``"vector"``
    (raises ``ValueError`` naming the feature it cannot run exactly); every engine gives
    the same trace and summary, and ``summary["engine"]`` says which one ran and why.
    ``trace=False`` keeps no per-gradient trace (``result.trace`` is None): the summary is
    the same, computed as the rows are made (the vector engine then needs memory for the
    learners and the staleness histograms only, not for the updates).
    """
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(Path(scenario))
    changes: dict[str, Any] = {}
    if until_updates is not None:
        changes["until_updates"] = until_updates
    if until_time is not None:
        changes["until_time"] = until_time
    if isinstance(seed, int) and not isinstance(seed, bool):
        changes["seed"] = seed
    elif seed is not None and not isinstance(seed, np.random.SeedSequence):
        raise TypeError(f"seed: must be an integer >= 0 or a SeedSequence, got {seed!r}")
    if changes:
        sc = sc.replace(**changes)
    use_seed: int | np.random.SeedSequence = (
        seed if isinstance(seed, np.random.SeedSequence) else sc.seed
    )
    # The vector merge path without a trace keeps no rows: it is charged for its learners.
    streams = not trace and choose_engine(sc, engine)[0] == "vector" and vector_streams(sc)
    check_run(sc, trace=trace, streams=streams)
    # The summary is fed as the rows are made (the round path: block by block, each block
    # while it is in the caches), with or without a trace.
    stats = SummaryStats(sc)
    raw = run(sc, use_seed, engine, sink=stats.add, keep=trace)
    kept = None
    if trace:
        push = np.array([float(lrn.push_time) for lrn in sc.learners])
        kept = Trace(raw.columns, [lrn.name for lrn in sc.learners], push, sc.lr)
    summary = summarize(sc, raw, kept, stats)
    if isinstance(use_seed, np.random.SeedSequence):  # e.g. one replication of a sweep
        summary["seed"] = {"entropy": use_seed.entropy, "spawn_key": list(use_seed.spawn_key)}
    return Result(sc, use_seed, kept, summary, raw)
