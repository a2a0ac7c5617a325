"""Ready-made studies for the ``dlsys reproduce`` report; each returns its numbers.

* :func:`homework_study` -- the two-learner homework case: the per-gradient table and the
  timeline (staleness 0, 0, 1, 0, 2, 2);
* :func:`staleness_study` -- async with 8 exponential learners: the staleness histogram
  against the mixture-of-geometrics theory;
* :func:`protocol_study` -- sync, k-sync, async, k-batch-async and ssp on the same learners:
  time per update and mean staleness, with the closed forms where they exist.

Each takes ``out`` (a folder, or None to write nothing) and size options so a quick run is
possible; all are seeded and deterministic.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dlsys.common import atomic_write_text, write_json
from dlsys.simulator.distributions import Exponential, Times
from dlsys.simulator.scenario import Learner, Protocol, Scenario
from dlsys.simulator.trace import simulate

#: The homework's completion times in seconds (seeds 000/001, problem 5).
HOMEWORK_TIMES = {"L1": (1, 2, 3, 4), "L2": (2.5, 5)}


def homework_scenario() -> Scenario:
    """The two-learner async homework case (examples/scenarios/homework_two_learners.toml)."""
    return Scenario(
        learners=tuple(Learner(name, Times(ts)) for name, ts in HOMEWORK_TIMES.items()),
        name="homework_two_learners",
    )


def homework_study(out: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Run the homework case; write table.md, table.json, timeline.png/.json into ``out``.

    Returns ``{"staleness": [0, 0, 1, 0, 2, 2], "rows": [...], "table": "..."}`` with the
    staleness in the order g[L1,1..4], g[L2,1..2].
    """
    from dlsys.simulator.report import gradient_table, plot_timeline

    res = simulate(homework_scenario())
    rows = res.trace.records(order="learner")
    table = gradient_table(res)
    result = {"staleness": [r["staleness"] for r in rows], "rows": rows, "table": table}
    if out is not None:
        d = Path(out)
        atomic_write_text(d / "table.md", "```\n" + table + "\n```\n")
        write_json(d / "table.json", rows)
        plot_timeline(res, d / "timeline.png")
    return result


def exponential_scenario(
    n: int = 8, updates: int = 50_000, rates: tuple[float, ...] | None = None, seed: int = 0
) -> Scenario:
    """Async, ``n`` exponential learners; default rates 1, 1.5, 2, ... per second."""
    r = rates if rates is not None else tuple(1.0 + 0.5 * i for i in range(n))
    return Scenario(
        learners=tuple(Learner(f"L{i + 1}", Exponential(x)) for i, x in enumerate(r)),
        until_updates=updates,
        seed=seed,
        name=f"async_{len(r)}_exponential",
    )


def staleness_study(
    out: str | os.PathLike[str] | None = None, *, n: int = 8, updates: int = 50_000, seed: int = 0
) -> dict[str, Any]:
    """Async with ``n`` exponential learners; staleness histogram vs theory.

    Writes staleness.png/.json and summary.json into ``out``. Returns the histogram
    (observed and theoretical probabilities), the mean against n - 1, each learner's mean
    against (L - l_i) / l_i, and the total variation distance between observed and theory.
    """
    from dlsys.simulator.report import plot_staleness, staleness_histogram
    from dlsys.simulator.theory import async_learner_mean_staleness, scenario_rates

    sc = exponential_scenario(n, updates, seed=seed)
    res = simulate(sc)
    h = staleness_histogram(res)
    rates = scenario_rates(sc)
    assert rates is not None and h["theory"] is not None
    tv = 0.5 * sum(abs(a - b) for a, b in zip(h["observed"], h["theory"], strict=True))
    tv += 0.5 * max(0.0, 1.0 - sum(h["theory"]))  # theory mass beyond the largest observed k
    per = [
        {"learner": p["learner"], "mean": p["staleness"]["mean"], "theory": float(t)}
        for p, t in zip(
            res.summary["per_learner"], async_learner_mean_staleness(rates), strict=True
        )
    ]
    result = {
        "n": n,
        "updates": updates,
        "mean": res.summary["staleness"]["mean"],
        "mean_theory": float(n - 1),
        "per_learner": per,
        "total_variation": tv,
        "histogram": h,
    }
    if out is not None:
        d = Path(out)
        plot_staleness(res, d / "staleness.png")
        write_json(d / "summary.json", res.summary)
    return result


def study_protocols(n: int) -> tuple[Protocol, ...]:
    """The protocols compared by :func:`protocol_study` for ``n`` learners: sync, k-sync with
    K = ceil(3n/4), async, k-batch-async with K = ceil(n/2), ssp with s = 2."""
    return (
        Protocol("sync"),
        Protocol("k-sync", k=max(1, -(-3 * n // 4))),
        Protocol("async"),
        Protocol("k-batch-async", k=max(1, -(-n // 2))),
        Protocol("ssp", s=2),
    )


def protocol_study(
    out: str | os.PathLike[str] | None = None,
    *,
    n: int = 8,
    rate: float = 1.0,
    updates: int = 5_000,
    seed: int = 0,
    protocols: tuple[Protocol, ...] | None = None,
) -> dict[str, Any]:
    """Compare protocols on ``n`` identical Exp(``rate``) learners: seconds per update and
    mean staleness, with Dutta et al. (2018) closed forms where they exist.

    Writes protocols.md, protocols.json and protocols.png into ``out``; returns the rows.
    """
    rows = []
    for proto in protocols if protocols is not None else study_protocols(n):
        sc = Scenario(
            learners=tuple(Learner(f"L{i + 1}", Exponential(rate)) for i in range(n)),
            protocol=proto,
            until_updates=updates,
            seed=seed,
            name=f"compare_{proto.kind}",
        )
        s = simulate(sc).summary
        rows.append(
            {
                "protocol": proto.label(),
                "time_per_update": s["time_per_update"],
                "time_per_update_theory": s["theory"].get("time_per_update"),
                "mean_staleness": s["staleness"]["mean"],
                "mean_staleness_theory": s["theory"].get("mean_staleness"),
                "gradients_per_update": s["gradients_applied"] / s["updates"],
                "cancelled_or_dropped": s["gradients_cancelled"] + s["gradients_dropped"],
            }
        )
    result = {"n": n, "rate": rate, "updates": updates, "rows": rows}
    if out is not None:
        d = Path(out)
        write_json(d / "protocols.json", result)
        atomic_write_text(d / "protocols.md", protocol_table(rows))
        _plot_protocols(rows, d / "protocols.png", n, rate)
    return result


def protocol_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`protocol_study` rows."""

    def f(x: Any) -> str:
        return "-" if x is None else f"{x:.4g}"

    lines = [
        "| protocol | s per update | theory | mean staleness | theory | gradients per update |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['protocol']} | {f(r['time_per_update'])} | {f(r['time_per_update_theory'])} "
            f"| {f(r['mean_staleness'])} | {f(r['mean_staleness_theory'])} "
            f"| {f(r['gradients_per_update'])} |"
        )
    return "\n".join(lines) + "\n"


def _plot_protocols(rows: list[dict[str, Any]], path: Path, n: int, rate: float) -> None:
    from dlsys.common.plotting import pyplot as plt
    from dlsys.common.plotting import save_figure

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    names = [r["protocol"] for r in rows]
    x = range(len(rows))
    a.bar(x, [r["time_per_update"] for r in rows], color="#4c72b0", label="simulated")
    th = [
        (i, r["time_per_update_theory"])
        for i, r in enumerate(rows)
        if r["time_per_update_theory"] is not None
    ]
    if th:
        a.plot([i for i, _ in th], [v for _, v in th], "o", color="#dd8452", label="theory")
    a.set_ylabel("seconds per PS update")
    b.bar(x, [r["mean_staleness"] for r in rows], color="#55a868", label="simulated")
    ths = [
        (i, r["mean_staleness_theory"])
        for i, r in enumerate(rows)
        if r["mean_staleness_theory"] is not None
    ]
    if ths:
        b.plot([i for i, _ in ths], [v for _, v in ths], "o", color="#dd8452", label="theory")
    b.set_ylabel("mean staleness (updates)")
    for ax in (a, b):
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=20, fontsize=8)
        ax.legend(fontsize=8)
    fig.suptitle(f"{n} learners, exponential compute times, rate {rate}/s")
    save_figure(fig, path, data=rows)
