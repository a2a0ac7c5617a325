"""The simulator against the real parameter server, on the same scenario and seed.

:func:`compare` simulates the scenario and runs it on the real PS with the same seed, so both
draw the same compute times per learner (the simulator's per-learner streams), and reports
side by side: mean, p95 and max staleness per learner, gradients per learner, seconds per
update (the real run's in scenario seconds: wall seconds / ``time_scale``), and the
total-variation distance between the two staleness histograms,
``TV = 1/2 * sum_s |p_sim(s) - p_real(s)|`` over the applied gradients (0: identical, 1:
disjoint).

Why they differ is measured, not guessed: the real run pays for what the simulator takes as
instantaneous, and the report gives each in scenario seconds beside the mean compute time:

* ``ps_latency``: from a gradient's compute end at the learner to its update at the PS
  (``t_apply - t_done``; the learner's return, Ray's scheduling, unpickling and the update);
* ``read_latency``: from the PS handing out the weights to the learner starting to compute
  (``t_start - t_read``; Ray's scheduling and the weights' transfer);
* ``compute_overrun``: how much longer than drawn the computations took, counted from the
  actual start (negative: the latencies were absorbed by the drawn time).

A learner counts its drawn compute time from the scenario's read time (see
:mod:`dlsys.distributed.learner`), so these latencies do not lengthen its cycles, with two
exceptions that make the histograms differ: a draw shorter than the round trip (PS latency
+ read latency + the real gradient) cannot be honoured, and its cycle lasts the round trip
(``draws_below_round_trip``: the share of draws shorter than the mean PS + read latency);
and the latencies vary, so gradients reach the PS in a slightly different order than they
ended. ``tv_noise_floor`` says what distance sampling alone gives at this size: the TV
between two simulations of the scenario with different seeds (the next seed), as many
updates each.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlsys.simulator import Result, Scenario, load_scenario, simulate
from dlsys.simulator.engine import APPLIED


def tv_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total-variation distance between the histograms of integer samples ``a`` and ``b``."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("tv_distance: both samples need at least one value")
    top = int(max(a.max(), b.max())) + 1
    p = np.bincount(a, minlength=top) / len(a)
    q = np.bincount(b, minlength=top) / len(b)
    return float(0.5 * np.abs(p - q).sum())


def _side(result: Result, scale: float) -> dict[str, Any]:
    s = result.summary
    per = [
        {
            "learner": row["learner"],
            "gradients": row["gradients"],
            "mean": row["staleness"]["mean"],
            "p95": row["staleness"]["p95"],
            "max": row["staleness"]["max"],
        }
        for row in s["per_learner"]
    ]
    tpu = s["time_per_update"]
    return {
        "staleness": s["staleness"],
        "seconds_per_update": None if tpu is None else tpu / scale,
        "updates": s["updates"],
        "gradients_applied": s["gradients_applied"],
        "per_learner": per,
    }


def _latencies(result: Result, scale: float) -> dict[str, float | None]:
    t = result.trace
    ok = t["status"] == APPLIED
    if not ok.any():
        return {"ps_latency": None, "read_latency": None}
    return {
        "ps_latency": float(np.mean(t["t_apply"][ok] - t["t_done"][ok])) / scale,
        "read_latency": float(np.mean(t["t_start"][ok] - t["t_read"][ok])) / scale,
    }


@dataclass
class Comparison:
    """:func:`compare`'s result: both sides, the distance, the measured latencies, the runs."""

    simulated: dict[str, Any]
    real: dict[str, Any]
    tv_distance: float
    why: dict[str, Any]
    sim_result: Result
    real_run: Any

    def to_json(self) -> dict[str, Any]:
        """The JSON document of ``dlsys ps compare --json``."""
        sim_mean = self.simulated["staleness"]["mean"]
        real_mean = self.real["staleness"]["mean"]
        rel = None if not sim_mean else (real_mean - sim_mean) / sim_mean
        return {
            "simulated": self.simulated,
            "real": self.real,
            "tv_distance": self.tv_distance,
            "mean_staleness_relative_difference": rel,
            "why": self.why,
            "test_accuracy": self.real_run.test_accuracy,
        }

    def text(self) -> str:
        """A side-by-side table and the measured reasons for the differences."""
        d = self.to_json()
        lines = [
            "simulated: the scenario as written (same seed and compute draws); real: the "
            "Ray parameter server, its learners counting each drawn time from the scenario's "
            "read time",
            "",
            f"{'learner':<12}{'grads sim':>10}{'grads real':>11}{'mean sim':>10}"
            f"{'mean real':>10}{'p95 sim':>9}{'p95 real':>9}{'max sim':>9}{'max real':>9}",
        ]
        for a, b in zip(self.simulated["per_learner"], self.real["per_learner"], strict=True):
            lines.append(
                f"{a['learner']:<12}{a['gradients']:>10}{b['gradients']:>11}"
                f"{_f(a['mean']):>10}{_f(b['mean']):>10}{_f(a['p95']):>9}{_f(b['p95']):>9}"
                f"{_f(a['max']):>9}{_f(b['max']):>9}"
            )
        s, r = self.simulated, self.real
        lines += [
            "",
            f"mean staleness: simulated {_f(s['staleness']['mean'])}, real "
            f"{_f(r['staleness']['mean'])} (relative difference "
            f"{_pct(d['mean_staleness_relative_difference'])})",
            f"total-variation distance of the staleness histograms: {self.tv_distance:.4f}",
            f"seconds per update (scenario seconds): simulated {_f(s['seconds_per_update'])}, "
            f"real {_f(r['seconds_per_update'])}",
            f"why: mean compute {_f(self.why['mean_compute'])} s; the real run adds PS latency "
            f"{_f(self.why['ps_latency'])} s and read latency {_f(self.why['read_latency'])} s "
            f"per gradient ({_share(self.why['overhead_share'])} of the mean compute time: "
            "scheduling, pickling, PS service); computations ran "
            f"{_f(self.why.get('compute_overrun'))} s longer than drawn (counted from their "
            "actual start); learners count their drawn time from the scenario's read time, so "
            "the latencies lengthen only cycles drawn shorter than the round trip "
            f"({_share(self.why.get('draws_below_round_trip'))} of the draws) and reorder "
            "arrivals; two simulations with different seeds differ by TV "
            f"{_f(self.why.get('tv_noise_floor'))} at this size (sampling alone)",
        ]
        return "\n".join(lines)


def _f(x: Any) -> str:
    return "-" if x is None else (f"{x:.4g}" if isinstance(x, float) else str(x))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}%"


def _share(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def compare(
    scenario: Scenario | str | os.PathLike[str],
    config: Any = None,
    *,
    updates: int | None = None,
    time_scale: float = 1.0,
    **run_kwargs: Any,
) -> Comparison:
    """Simulate ``scenario`` and run it on the real PS (same seed and stopping rule).

    ``config`` and ``run_kwargs`` go to :func:`dlsys.distributed.run_ps` (data set, address,
    pool, ...); ``updates``: PS updates of both runs.
    """
    from dlsys.distributed.run import run_ps

    sc = scenario if isinstance(scenario, Scenario) else load_scenario(Path(scenario))
    real = run_ps(sc, config, updates=updates, time_scale=time_scale, **run_kwargs)
    sim = simulate(real.result.scenario)  # the scenario as run (updates applied)
    scale = float(time_scale)
    ok_s = sim.trace["status"] == APPLIED
    ok_r = real.result.trace["status"] == APPLIED
    tv = tv_distance(sim.trace["staleness"][ok_s], real.result.trace["staleness"][ok_r])
    why: dict[str, Any] = _latencies(real.result, scale)
    t = sim.trace
    compute = float(np.mean(t["t_done"][ok_s] - t["t_start"][ok_s])) if ok_s.any() else None
    why["mean_compute"] = compute
    rt = real.result.trace
    if compute is not None and ok_r.any():
        real_compute = float(np.mean(rt["t_done"][ok_r] - rt["t_start"][ok_r])) / scale
        why["compute_overrun"] = real_compute - compute
    lat = (why["ps_latency"] or 0.0) + (why["read_latency"] or 0.0)
    why["overhead_share"] = lat / compute if compute else None
    if ok_s.any() and ok_r.any():
        # The round trip without the real gradient's own time (the trace does not hold it;
        # for the small models here it is a fraction of a millisecond).
        drawn = t["t_done"][ok_s] - t["t_start"][ok_s]
        why["draws_below_round_trip"] = float(np.mean(drawn < lat))
    why["tv_noise_floor"] = noise_floor(sim)
    return Comparison(_side(sim, 1.0), _side(real.result, scale), tv, why, sim, real)


def noise_floor(sim: Result) -> float:
    """TV distance between ``sim``'s staleness histogram and that of the same scenario
    simulated with the next seed: the distance sampling alone gives at this many updates."""
    other = simulate(sim.scenario.replace(seed=sim.scenario.seed + 1))
    a = sim.trace["staleness"][sim.trace["status"] == APPLIED]
    b = other.trace["staleness"][other.trace["status"] == APPLIED]
    return tv_distance(a, b)


def plot_comparison(comp: Comparison, path: str | os.PathLike[str]) -> Path:
    """The two staleness histograms on one axis (PNG), data in ``comparison.json`` beside."""
    from matplotlib.figure import Figure

    a = comp.sim_result.trace["staleness"][comp.sim_result.trace["status"] == APPLIED]
    tr = comp.real_run.result.trace
    b = tr["staleness"][tr["status"] == APPLIED]
    top = int(max(a.max(initial=0), b.max(initial=0))) + 1
    xs = np.arange(top)
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    ax.bar(xs - 0.2, np.bincount(a, minlength=top) / max(len(a), 1), 0.4, label="simulated")
    ax.bar(xs + 0.2, np.bincount(b, minlength=top) / max(len(b), 1), 0.4, label="real (Ray)")
    ax.set_xlabel("staleness (PS updates between read and apply)")
    ax.set_ylabel("fraction of applied gradients")
    ax.set_title(f"simulated vs real staleness: TV distance {comp.tv_distance:.3f}")
    ax.legend()
    out = Path(path)
    fig.savefig(out, dpi=100)
    return out


__all__ = ["Comparison", "compare", "noise_floor", "plot_comparison", "tv_distance"]
