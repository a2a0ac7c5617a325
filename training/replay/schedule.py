"""The schedule a replay follows: which gradients each parameter-server update applies.

A :class:`Schedule` is the applied part of a parameter-server trace (the schema shared by the
simulator and the real parameter server: ``learner, seq, read_version, version, t_read,
t_start, t_done, t_apply, status``), sorted into PS version order. Update ``v`` applies the
gradients whose ``version`` is ``v``, in trace order; each of them was computed on the weights
of its ``read_version``. Lost, cancelled and dropped gradients are counted but not applied.

Learners are known by name. Their stream index (which seeded sample stream a learner draws
from, see :mod:`dlsys.training.replay.streams`) is the name's rank in natural order
(``w-2`` before ``w-10``), so a trace read from CSV and the simulator result it came from
replay identically, and learners named ``w-0 ... w-(n-1)`` by a scenario's ``count`` keep
their streams when more are added.

Sources (:func:`load_schedule`): a :class:`dlsys.simulator.Result`, a
:class:`dlsys.simulator.Scenario` or a scenario ``.toml`` file (simulated first), or a
``trace.csv`` as ``dlsys simulate --out`` writes it.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlsys.common.errors import check_int

__all__ = [
    "REQUIRED_COLUMNS",
    "STATUSES",
    "Schedule",
    "load_schedule",
    "natural_key",
    "read_trace_csv",
    "stream_ranks",
]

#: Trace columns a replay reads (the others of the schema are allowed and ignored).
REQUIRED_COLUMNS = ("learner", "seq", "read_version", "version", "t_apply", "status")
#: Gradient fates as the trace writes them; only ``applied`` gradients are replayed.
STATUSES = ("applied", "lost", "cancelled", "dropped")


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key of a learner name in natural order (``w-2`` before ``w-10``)."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def stream_ranks(names: Sequence[str]) -> np.ndarray:
    """Each learner's sample-stream index: the rank of its name in natural order (the replay's
    rule, which the real parameter server's learners follow too)."""
    ranked = sorted(range(len(names)), key=lambda k: natural_key(names[k]))
    rank = np.empty(len(names), dtype=np.int64)
    rank[ranked] = np.arange(len(names))
    return rank


@dataclass(frozen=True)
class Schedule:
    """Applied gradients in PS version order (arrays of equal length, one entry per gradient).

    ``learner``: stream index (rank of the learner's name in ``learners``, natural order);
    ``seq``: the learner's 1-based gradient number (its ``seq``-th mini-batch);
    ``read_version`` / ``version``: PS version read / applied to; ``t_apply``: simulated
    seconds when the update was applied. ``updates``: number of PS updates (versions
    ``0 .. updates - 1`` all present). ``not_applied``: counts of lost, cancelled and
    dropped gradients. ``source``: where the schedule came from, for reports.
    """

    learners: tuple[str, ...]
    learner: np.ndarray
    seq: np.ndarray
    read_version: np.ndarray
    version: np.ndarray
    t_apply: np.ndarray
    not_applied: dict[str, int] = field(default_factory=dict)
    source: str = ""

    @property
    def updates(self) -> int:
        """Number of PS updates."""
        return int(self.version[-1]) + 1 if len(self.version) else 0

    @property
    def staleness(self) -> np.ndarray:
        """``version - read_version`` per gradient (PS updates between read and apply)."""
        out: np.ndarray = self.version - self.read_version
        return out

    def __len__(self) -> int:
        return len(self.version)

    def bounds(self) -> np.ndarray:
        """``b`` with update ``v``'s gradients at indices ``b[v]:b[v + 1]`` (``updates + 1``)."""
        out: np.ndarray = np.searchsorted(self.version, np.arange(self.updates + 1), side="left")
        return out

    def last_read(self) -> np.ndarray:
        """Per version ``r`` (``updates + 1`` entries), the last update whose gradients read
        the weights of ``r``; -1 if none does."""
        out = np.full(self.updates + 1, -1, dtype=np.int64)
        np.maximum.at(out, self.read_version, self.version)
        return out

    def versions_held(self) -> int:
        """The most weight versions a replay holds at once: the current one, plus every
        earlier version that a gradient of this or a later update still reads."""
        last = self.last_read()
        r = np.arange(len(last))
        live = last > r  # version r is read after it is replaced: held over [r + 1, last]
        diff = np.zeros(len(last) + 1, dtype=np.int64)
        np.add.at(diff, r[live] + 1, 1)
        np.add.at(diff, last[live] + 1, -1)
        return 1 + int(np.cumsum(diff).max(initial=0))

    def head(self, updates: int) -> Schedule:
        """The first ``updates`` updates (all of them if there are fewer)."""
        check_int("until_updates", updates, minimum=1)
        n = int(np.searchsorted(self.version, updates, side="left"))
        return Schedule(
            self.learners,
            self.learner[:n],
            self.seq[:n],
            self.read_version[:n],
            self.version[:n],
            self.t_apply[:n],
            dict(self.not_applied),
            self.source,
        )

    def fingerprint(self) -> str:
        """SHA-256 of the schedule (names and arrays): a resumed replay must follow the same."""
        h = hashlib.sha256("\n".join(self.learners).encode())
        for a in (self.learner, self.seq, self.read_version, self.version, self.t_apply):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description for reports."""
        st = self.staleness
        return {
            "source": self.source,
            "learners": len(self.learners),
            "updates": self.updates,
            "gradients_applied": len(self),
            "not_applied": dict(self.not_applied),
            "mean_staleness": float(st.mean()) if len(st) else None,
            "max_staleness": int(st.max()) if len(st) else None,
            "sim_time": float(self.t_apply[-1]) if len(self) else 0.0,
        }


def _from_columns(
    names: list[str],
    learner: np.ndarray,
    seq: np.ndarray,
    read_version: np.ndarray,
    version: np.ndarray,
    t_apply: np.ndarray,
    applied: np.ndarray,
    not_applied: dict[str, int],
    source: str,
    where: Any,
) -> Schedule:
    """Check the applied rows and sort them into version order. ``where(i)`` names row ``i``."""
    # A learner's seq-th gradient is drawn after its seq - 1 earlier mini-batches, so its sample
    # stream runs through all of them. A trace holds every gradient of a learner (lost ones
    # included), so seq never exceeds the number of rows; a larger one is a damaged cell that
    # would otherwise cost hours of drawing before the first update.
    far = np.flatnonzero(seq > len(seq))
    if len(far):
        i = int(far[0])
        raise ValueError(
            f"{where(i)}: seq {int(seq[i])} is larger than the trace's {len(seq)} rows; a "
            "learner's seq counts its gradients from 1, and the trace lists each of them"
        )
    keys = learner.astype(np.int64) * (int(seq.max(initial=0)) + 1) + seq
    uniq, first, counts = np.unique(keys, return_index=True, return_counts=True)
    if len(uniq) < len(keys):
        i = int(first[np.argmax(counts > 1)])
        dup = np.flatnonzero(keys == keys[i])
        raise ValueError(
            f"{where(int(dup[1]))}: gradient ({names[learner[i]]!r}, seq {int(seq[i])}) "
            f"appears twice (also at {where(i)})"
        )
    idx = np.flatnonzero(applied)
    if len(idx) == 0:
        raise ValueError(f"{source}: no applied gradients to replay")
    ver, rd, ta = version[idx], read_version[idx], t_apply[idx]
    bad = np.flatnonzero((rd < 0) | (rd > ver))
    if len(bad):
        i = int(idx[bad[0]])
        raise ValueError(
            f"{where(i)}: read_version must be in [0, version] for an applied gradient, "
            f"got read_version {int(read_version[i])} and version {int(version[i])}"
        )
    bad = np.flatnonzero(~np.isfinite(ta))
    if len(bad):
        raise ValueError(f"{where(int(idx[bad[0]]))}: t_apply missing for an applied gradient")
    order = idx[np.argsort(ver, kind="stable")]
    v = version[order]
    if v[0] != 0:
        raise ValueError(
            f"{source}: applied versions start at {int(v[0])} ({where(int(order[0]))}); "
            "update 0 has no gradient"
        )
    jumps = np.flatnonzero(np.diff(v) > 1)
    if len(jumps):
        j = int(jumps[0])
        raise ValueError(
            f"{source}: gap in the applied versions: no gradient applied at version "
            f"{int(v[j]) + 1} (version {int(v[j])} at {where(int(order[j]))}, "
            f"then {int(v[j + 1])} at {where(int(order[j + 1]))})"
        )
    # Learners by natural name order: the stream index of learner k is rank[k].
    rank = stream_ranks(names)
    ranked = np.argsort(rank).tolist()
    return Schedule(
        learners=tuple(names[k] for k in ranked),
        learner=rank[learner[order]],
        seq=seq[order].astype(np.int64),
        read_version=read_version[order].astype(np.int64),
        version=v.astype(np.int64),
        t_apply=t_apply[order].astype(np.float64),
        not_applied=not_applied,
        source=source,
    )


def _int_cell(text: str, col: str, where: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{where}: {col} must be an integer, got {text!r}") from None
    if not -(2**63) <= value < 2**63:  # the schedule's columns are int64
        raise ValueError(f"{where}: {col} must fit in 64 bits (|{col}| < 2**63), got {text!r}")
    return value


def read_trace_csv(path: str | os.PathLike[str]) -> Schedule:
    """Read a ``trace.csv`` (the trace schema; :data:`REQUIRED_COLUMNS` must be present).

    Errors name the file and line: a missing column, a bad cell, an unknown status, a
    gradient listed twice, a read after its apply, a gap in the applied versions.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"trace file {str(p)!r} not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{p}: not UTF-8 text: {exc}") from None
    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    if not header:
        raise ValueError(f"{p}: empty file; expected a header with {', '.join(REQUIRED_COLUMNS)}")
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ValueError(
            f"{p}: trace is missing column {missing[0]!r} (needs {', '.join(REQUIRED_COLUMNS)}; "
            f"has {', '.join(header)})"
        )
    col = {c: header.index(c) for c in REQUIRED_COLUMNS}
    names: dict[str, int] = {}
    learner, seq, rd, ver, ta, st = [], [], [], [], [], []
    for line, row in enumerate(rows, start=2):
        if not row:
            continue
        where = f"{p}:{line}"
        if len(row) != len(header):
            raise ValueError(f"{where}: {len(row)} fields, header has {len(header)}")
        name = row[col["learner"]].strip()
        if not name:
            raise ValueError(f"{where}: learner is empty")
        status = row[col["status"]].strip()
        if status not in STATUSES:
            raise ValueError(
                f"{where}: status must be one of {', '.join(STATUSES)}, got {status!r}"
            )
        s = _int_cell(row[col["seq"]], "seq", where)
        if s < 1:
            raise ValueError(f"{where}: seq must be >= 1, got {s}")
        learner.append(names.setdefault(name, len(names)))
        seq.append(s)
        st.append(STATUSES.index(status))
        if status == "applied":
            rd.append(_int_cell(row[col["read_version"]], "read_version", where))
            ver.append(_int_cell(row[col["version"]], "version", where))
            cell = row[col["t_apply"]].strip()
            try:
                t = float(cell) if cell else math.nan
            except ValueError:
                raise ValueError(f"{where}: t_apply must be a number, got {cell!r}") from None
        else:
            rd.append(-1)
            ver.append(-1)
            t = math.nan
        ta.append(t)
    if not learner:
        raise ValueError(f"{p}: no rows after the header")
    status_a = np.asarray(st, dtype=np.int64)
    counts = {STATUSES[k]: int(np.count_nonzero(status_a == k)) for k in (1, 2, 3)}
    return _from_columns(
        list(names),
        np.asarray(learner, dtype=np.int64),
        np.asarray(seq, dtype=np.int64),
        np.asarray(rd, dtype=np.int64),
        np.asarray(ver, dtype=np.int64),
        np.asarray(ta, dtype=np.float64),
        status_a == 0,
        counts,
        str(p),
        lambda i: f"{p}:{i + 2}",
    )


def _from_result(result: Any) -> Schedule:
    tr = result.trace
    status = np.asarray(tr["status"])
    names = list(tr.learner_names)
    counts = {STATUSES[k]: int(np.count_nonzero(status == k)) for k in (1, 2, 3)}
    return _from_columns(
        names,
        np.asarray(tr["learner"], dtype=np.int64),
        np.asarray(tr["seq"], dtype=np.int64),
        np.asarray(tr["read_version"], dtype=np.int64),
        np.asarray(tr["version"], dtype=np.int64),
        np.asarray(tr["t_apply"], dtype=np.float64),
        status == STATUSES.index("applied"),
        counts,
        f"simulated {result.summary.get('scenario', 'scenario')} "
        f"({result.summary.get('protocol', '?')}, seed {result.summary.get('seed')})",
        lambda i: f"trace row {i}",
    )


def load_schedule(source: Any, *, until_updates: int | None = None) -> Schedule:
    """The :class:`Schedule` of ``source``: a :class:`dlsys.simulator.Result`, a
    :class:`dlsys.simulator.Scenario`, or a path to a scenario ``.toml`` or a ``trace.csv``.

    A scenario is simulated first (its own seed; ``until_updates`` overrides its stopping
    rule). For every source, ``until_updates`` keeps only the first that many updates.
    """
    from dlsys.simulator import Result, Scenario, simulate

    if until_updates is not None:
        check_int("until_updates", until_updates, minimum=1)
    if isinstance(source, str | os.PathLike):
        p = Path(source)
        if p.suffix.lower() == ".toml":
            source = simulate(p, until_updates=until_updates)
        elif p.suffix.lower() == ".csv":
            sched = read_trace_csv(p)
            return sched if until_updates is None else sched.head(until_updates)
        elif not p.exists():
            raise FileNotFoundError(f"source {str(p)!r} not found")
        else:
            raise ValueError(f"source: {str(p)!r} is neither a scenario (.toml) nor a trace (.csv)")
    elif isinstance(source, Scenario):
        source = simulate(source, until_updates=until_updates)
    if not isinstance(source, Result):
        raise TypeError(
            "source: must be a simulator Result, a Scenario or a path to a .toml scenario or "
            f"a trace .csv, got {type(source).__name__}"
        )
    sched = _from_result(source)
    return sched if until_updates is None else sched.head(until_updates)
