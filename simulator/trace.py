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
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlsys.simulator.core import APPLIED, CANCELLED, DROPPED, LOST, STATUS_NAMES, RawRun
from dlsys.simulator.engine import run
from dlsys.simulator.limits import check_run
from dlsys.simulator.scenario import LRRule, Scenario, load_scenario

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
    """Per-gradient columns of one run; ``trace["staleness"]`` is a numpy array."""

    def __init__(
        self,
        columns: dict[str, np.ndarray],
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
            return self._cols[name]
        c = self._cols
        if name == "staleness":
            out: np.ndarray = np.where(c["version"] >= 0, c["version"] - c["read_version"], -1)
            return out
        if name == "t_arrive":
            return c["t_done"] + self._push[c["learner"]]
        if name == "lr":
            return self._lr.rates(self["staleness"])  # type: ignore[no-any-return]
        if name == "learner_name":
            return np.asarray(self.learner_names, dtype=object)[c["learner"]]
        if name == "status_name":
            return np.asarray(STATUS_NAMES, dtype=object)[c["status"]]
        from dlsys.common import unknown_name

        raise KeyError(str(unknown_name("trace column", name, self.columns)))

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored columns (arrays shared between columns counted once)."""
        seen: dict[int, int] = {}
        for a in self._cols.values():
            seen[id(a)] = a.nbytes
        return sum(seen.values())

    def applied(self) -> np.ndarray:
        """Boolean mask of applied rows."""
        return self._cols["status"] == APPLIED

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
    """One simulation run: the scenario, the seed, the trace and the summary dict."""

    scenario: Scenario
    seed: int | np.random.SeedSequence
    trace: Trace
    summary: dict[str, Any]
    raw: RawRun


def _stats(x: np.ndarray) -> dict[str, Any]:
    if len(x) == 0:
        return {"mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    q = np.percentile(x, [50, 95, 99], method="inverted_cdf")
    return {
        "mean": float(np.mean(x)),
        "p50": int(q[0]),
        "p95": int(q[1]),
        "p99": int(q[2]),
        "max": int(np.max(x)),
    }


def summarize(scenario: Scenario, raw: RawRun, trace: Trace) -> dict[str, Any]:
    """The summary dict of a run (times in seconds, shares as fractions of [0, t_end])."""
    n = scenario.n
    lrn = trace["learner"]
    status = trace["status"]
    ok = status == APPLIED
    stale = trace["staleness"]
    t_end = raw.t_end
    updates = raw.updates
    t_apply = trace["t_apply"]
    last_apply = float(np.nanmax(t_apply)) if updates else None
    busy_row = np.nan_to_num(trace["t_done"] - trace["t_start"], nan=0.0)
    # (bincount of an empty array is int64 even with weights: cast before adding floats)
    busy = np.bincount(lrn, weights=busy_row, minlength=n).astype(np.float64)
    busy += np.nan_to_num(t_end - raw.inflight_start, nan=0.0)
    counts = np.zeros((4, n), dtype=np.int64)
    for code in (APPLIED, LOST, CANCELLED, DROPPED):
        counts[code] = np.bincount(lrn[status == code], minlength=n)
    # Per-learner staleness statistics in one sort: group by learner, staleness ascending.
    s_ok, l_ok = stale[ok], lrn[ok]
    # One sort of the key learner * M + staleness (M > max staleness) groups by learner with
    # staleness ascending; cheaper than a lexsort of two arrays.
    big = int(s_ok.max()) + 1 if len(s_ok) else 1
    key = np.sort(l_ok.astype(np.int64) * big + s_ok)
    s_sorted = key % big
    starts = np.searchsorted(key, np.arange(n, dtype=np.int64) * big, side="left")
    sums = np.bincount(l_ok, weights=s_ok, minlength=n).astype(np.float64)
    per = []
    for i, spec in enumerate(scenario.learners):
        m = int(counts[APPLIED, i])
        share = float(busy[i] / t_end) if t_end > 0 else 0.0
        if m:
            g = s_sorted[starts[i] : starts[i] + m]
            # inverted-CDF quantile of a sorted sample: x[ceil(q m) - 1]
            st = {
                "mean": float(sums[i] / m),
                "p50": int(g[math.ceil(0.50 * m) - 1]),
                "p95": int(g[math.ceil(0.95 * m) - 1]),
                "p99": int(g[math.ceil(0.99 * m) - 1]),
                "max": int(g[-1]),
            }
        else:
            st = _stats(np.zeros(0, dtype=np.int64))
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
    service = float(scenario.service_time)
    wait = t_apply[ok] - service - trace["t_arrive"][ok]
    applied = int(np.count_nonzero(ok))
    out: dict[str, Any] = {
        "scenario": scenario.name,
        "protocol": scenario.protocol.label(),
        "learners": n,
        "seed": scenario.seed,
        "stop_reason": raw.stop_reason,
        "sim_time": t_end,
        "updates": updates,
        "gradients_applied": applied,
        "gradients_lost": int(np.count_nonzero(status == LOST)),
        "gradients_cancelled": int(np.count_nonzero(status == CANCELLED)),
        "gradients_dropped": int(np.count_nonzero(status == DROPPED)),
        "time_per_update": (last_apply / updates) if updates and last_apply else None,
        "updates_per_second": updates / t_end if t_end > 0 else None,
        "gradients_per_second": applied / t_end if t_end > 0 else None,
        "staleness": _stats(stale[ok]),
        "per_learner": per,
        "ps": {
            "service_time": service,
            "busy_share": updates * service / t_end if t_end > 0 else 0.0,
            "queue_wait_mean": float(np.mean(wait)) if applied else None,
            "queue_wait_max": float(np.max(wait)) if applied else None,
        },
        "lr": {
            "rule": scenario.lr.rule,
            "mean": float(np.mean(trace["lr"][ok])) if applied else None,
        },
        "trace_bytes_per_update": trace.nbytes / updates if updates else None,
        "engine": {"name": raw.engine, "reason": raw.engine_reason},
    }
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
) -> Result:
    """Run ``scenario`` (a :class:`Scenario` or a TOML path) and return its :class:`Result`.

    ``seed`` overrides the scenario's seed; ``until_updates`` / ``until_time`` (seconds)
    override its stopping rule. The same seed gives a byte-identical trace. ``engine``:
    ``"auto"`` (the vector engine where it is exact, else SimPy), ``"simpy"`` or ``"vector"``
    (raises ``ValueError`` naming the feature it cannot run exactly); every engine gives
    the same trace and summary, and ``summary["engine"]`` says which one ran and why.
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
    check_run(sc, trace=True)
    raw = run(sc, use_seed, engine)
    push = np.array([float(lrn.push_time) for lrn in sc.learners])
    trace = Trace(raw.columns, [lrn.name for lrn in sc.learners], push, sc.lr)
    summary = summarize(sc, raw, trace)
    if isinstance(use_seed, np.random.SeedSequence):  # e.g. one replication of a sweep
        summary["seed"] = {"entropy": use_seed.entropy, "spawn_key": list(use_seed.spawn_key)}
    return Result(sc, use_seed, trace, summary, raw)
