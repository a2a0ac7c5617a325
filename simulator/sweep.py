"""Parameter sweeps: a scenario over a grid of settings and seeds, in parallel processes.

Each grid point is run ``replications`` times; replication ``r`` uses the r-th child of
``SeedSequence(seed)`` at every grid point (common random numbers, so differences between
points are not drowned by seed noise). Each metric is reported as its mean with a
Student-t confidence interval, mean +- t_{(1+conf)/2, R-1} * sd / sqrt(R).
"""

from __future__ import annotations

import copy
import itertools
import math
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlsys.common import check_choice, check_int, unknown_name
from dlsys.common.progress import progress
from dlsys.simulator.engine import ENGINES
from dlsys.simulator.limits import check_sweep
from dlsys.simulator.scenario import Scenario, scenario_from_dict

#: Metrics reported by default (dotted paths into ``Result.summary``).
DEFAULT_METRICS = ("staleness.mean", "time_per_update", "updates_per_second")


def _get(summary: Mapping[str, Any], path: str) -> float:
    cur: Any = summary
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            keys = list(cur) if isinstance(cur, Mapping) else []
            raise ValueError(f"metrics: {unknown_name('summary entry', part, keys)} in {path!r}")
        cur = cur[part]
    return math.nan if cur is None else float(cur)


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path in a scenario dict; ``learner.*.x`` sets x in every learner table."""
    parts = path.split(".")
    targets: list[Any] = [data]
    for j, part in enumerate(parts[:-1]):
        nxt: list[Any] = []
        for t in targets:
            if isinstance(t, list):
                if part == "*":
                    nxt.extend(t)
                else:
                    try:
                        nxt.append(t[int(part)])
                    except (ValueError, IndexError):
                        raise ValueError(
                            f"grid: {path!r}: no entry {part!r} in {'.'.join(parts[:j])}"
                        ) from None
            else:
                if part not in t or not isinstance(t[part], dict | list):
                    if isinstance(t.get(part), str) and parts[j + 1] != "kind":
                        t[part] = {"kind": t[part]}  # protocol = "async" -> a table
                    elif part not in t:
                        t[part] = {}
                nxt.append(t[part])
        targets = nxt
    for t in targets:
        t[parts[-1]] = value


@dataclass
class SweepResult:
    """Rows of a sweep: one per grid point, each metric as mean and confidence interval."""

    params: list[str]
    metrics: list[str]
    rows: list[dict[str, Any]]
    values: list[dict[str, list[float]]] = field(default_factory=list)
    confidence: float = 0.95

    def to_text(self) -> str:
        """A plain-text table (mean [low, high] per metric)."""
        head = [*self.params] + [f"{m} (mean [{self.confidence:.0%} CI])" for m in self.metrics]
        lines = [head]
        for row in self.rows:
            cells = [str(row[p]) for p in self.params]
            for m in self.metrics:
                cells.append(f"{row[m]:.6g} [{row[m + '.ci_low']:.6g}, {row[m + '.ci_high']:.6g}]")
            lines.append(cells)
        widths = [max(len(r[j]) for r in lines) for j in range(len(head))]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in lines
        )


def _job(args: tuple[Scenario, np.random.SeedSequence, Sequence[str], str]) -> list[float]:
    """One replication: the metrics of one run (a plain function, so any executor can ship
    it to a worker)."""
    from dlsys.simulator.trace import simulate

    sc, ss, metrics, engine = args
    res = simulate(sc, seed=ss, engine=engine, trace=False)
    return [_get(res.summary, m) for m in metrics]


def _interval(x: list[float], confidence: float) -> tuple[float, float, float, float]:
    a = np.asarray(x, dtype=np.float64)
    m = float(np.mean(a))
    if len(a) < 2:
        return m, math.nan, math.nan, math.nan
    from scipy import stats

    sd = float(np.std(a, ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, len(a) - 1)) * sd / math.sqrt(len(a))
    return m, sd, m - half, m + half


def sweep(
    scenario: Scenario | Mapping[str, Any] | str | os.PathLike[str] | Callable[..., Scenario],
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    replications: int = 10,
    seed: int = 0,
    metrics: Sequence[str] = DEFAULT_METRICS,
    processes: int | None = None,
    confidence: float = 0.95,
    quiet: bool = True,
    executor: Executor | None = None,
    engine: str = "auto",
) -> SweepResult:
    """Run ``scenario`` at every point of ``grid`` ``replications`` times; return a table.

    ``scenario``: a TOML path or its dict (``grid`` keys are dotted paths such as
    ``"simulation.protocol.k"`` or ``"learner.*.compute.rate"``), a :class:`Scenario`
    (``grid`` keys are its field names) or a function returning a Scenario (``grid`` keys
    are its keyword arguments; it must be importable for the worker processes).
    ``metrics``: dotted paths into the run summary. ``processes``: worker processes of the
    default local pool (default: CPU count; 1 runs in this process). ``executor``: any
    :class:`concurrent.futures.Executor` to run the replications on instead (a Ray pool, a
    thread pool, ...); it is used, not shut down. ``engine``: as in
    :func:`dlsys.simulator.simulate`. Every run keeps only its summary (no trace).
    """
    grid = dict(grid or {})
    check_int("replications", replications, minimum=1)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence!r}")
    for k, choices in grid.items():
        if isinstance(choices, str) or not isinstance(choices, Sequence) or not choices:
            raise ValueError(f"grid[{k!r}]: must be a non-empty list of values, got {choices!r}")
    base: Any = scenario
    base_dir: Path | None = None
    if isinstance(scenario, str | os.PathLike):
        import tomllib

        p = Path(scenario)
        if not p.is_file():
            raise FileNotFoundError(f"scenario file {str(p)!r} not found")
        base = tomllib.loads(p.read_text(encoding="utf-8"))
        base_dir = p.parent
    keys = list(grid)
    check_sweep(math.prod(len(v) for v in grid.values()), replications)
    points = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]
    scenarios: list[Scenario] = []
    for pt in points:
        if isinstance(base, Scenario):
            scenarios.append(base.replace(**pt))
        elif isinstance(base, Mapping):
            d = copy.deepcopy(dict(base))
            for k, v in pt.items():
                _set(d, k, v)
            scenarios.append(scenario_from_dict(d, base_dir=base_dir))
        elif callable(base):
            scenarios.append(base(**pt))
        else:
            raise TypeError(f"scenario: must be a Scenario, dict, path or function, got {base!r}")
    seeds = np.random.SeedSequence(seed).spawn(replications)
    check_choice("engine", engine, ENGINES)
    jobs = [(sc, ss, tuple(metrics), engine) for sc in scenarios for ss in seeds]
    # Check the metric names once here, so a typo fails before any process starts.
    from dlsys.simulator.trace import simulate

    probe = (
        simulate(scenarios[0].replace(until_updates=1, until_time=None), seed=0)
        if (scenarios[0].until_updates or scenarios[0].until_time)
        else None
    )
    if probe is not None:
        for m in metrics:
            _get(probe.summary, m)
    if executor is not None:
        out = list(progress(executor.map(_job, jobs), total=len(jobs), desc="sweep", quiet=quiet))
    else:
        nproc = processes if processes is not None else (os.cpu_count() or 1)
        if nproc <= 1 or len(jobs) == 1:
            out = [_job(j) for j in progress(jobs, total=len(jobs), desc="sweep", quiet=quiet)]
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(nproc, len(jobs)), mp_context=ctx) as pool:
                it = pool.map(_job, jobs)
                out = list(progress(it, total=len(jobs), desc="sweep", quiet=quiet))
    rows = []
    values = []
    for i, pt in enumerate(points):
        chunk = out[i * replications : (i + 1) * replications]
        row: dict[str, Any] = dict(pt)
        vals: dict[str, list[float]] = {}
        for j, m in enumerate(metrics):
            xs = [c[j] for c in chunk]
            mean, sd, lo, hi = _interval(xs, confidence)
            row[m] = mean
            row[m + ".sd"] = sd
            row[m + ".ci_low"] = lo
            row[m + ".ci_high"] = hi
            vals[m] = xs
        row["replications"] = replications
        rows.append(row)
        values.append(vals)
    return SweepResult(keys, list(metrics), rows, values, confidence)
