"""Text tables, files and plots of a simulation result.

* :func:`gradient_table` -- the per-gradient table a student draws for the homework;
* :func:`summary_text` -- the summary (staleness percentiles, throughput, busy shares, PS wait);
* :func:`plot_timeline` -- per-learner pull / compute / push bars with the PS updates marked;
* :func:`plot_staleness` -- the staleness histogram with the theoretical distribution over it;
* :func:`write_outputs` -- all of them into a folder (trace CSV, summary JSON, PNG + JSON).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from dlsys.common import atomic_write_text, write_json
from dlsys.simulator.core import APPLIED, STATUS_NAMES
from dlsys.simulator.theory import async_staleness_pmf, scenario_rates
from dlsys.simulator.trace import CSV_COLUMNS, Result

#: Runs with at most this many gradient rows get the per-gradient table by default.
TABLE_ROWS = 50


def _t(x: float) -> str:
    return "-" if x != x else f"{x:.6g}"


def gradient_table(result: Result, limit: int | None = None) -> str:
    """The per-gradient table, sorted by (learner, seq): g[L1,1], g[L1,2], ..., g[L2,1], ...

    Columns: gradient, learner, read version, applied at version, staleness, and the
    read / compute-done / applied times in seconds.
    """
    recs = result.trace.records(order="learner")
    if limit is not None:
        recs = recs[:limit]
    head = (
        "gradient",
        "learner",
        "read v",
        "applied v",
        "staleness",
        "t_read",
        "t_done",
        "t_apply",
        "status",
    )
    rows = [head]
    for r in recs:
        ok = r["status"] == "applied"
        rows.append(
            (
                f"g[{r['learner']},{r['seq']}]",
                r["learner"],
                str(r["read_version"]),
                str(r["version"]) if ok else "-",
                str(r["staleness"]) if ok else "-",
                _t(r["t_read"]),
                _t(r["t_done"]),
                _t(r["t_apply"]),
                r["status"],
            )
        )
    widths = [max(len(r[j]) for r in rows) for j in range(len(head))]
    lines = [
        "  ".join(
            c.rjust(w) if j >= 2 else c.ljust(w)
            for j, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def summary_text(summary: dict[str, Any]) -> str:
    """The summary as aligned text."""
    s = summary
    st = s["staleness"]
    lines = [
        f"scenario {s['scenario']}: {s['protocol']}, {s['learners']} learners, seed {s['seed']}",
        f"stopped by {s['stop_reason']} at t = {_fmt(s['sim_time'])} s after {s['updates']} "
        f"updates ({s['gradients_applied']} gradients applied, {s['gradients_lost']} lost, "
        f"{s['gradients_cancelled']} cancelled, {s['gradients_dropped']} dropped)",
        f"time per update {_fmt(s['time_per_update'])} s; {_fmt(s['updates_per_second'])} "
        f"updates/s; {_fmt(s['gradients_per_second'])} gradients/s (simulated seconds)",
        f"staleness: mean {_fmt(st['mean'])}, p50 {_fmt(st['p50'])}, p95 {_fmt(st['p95'])}, "
        f"p99 {_fmt(st['p99'])}, max {_fmt(st['max'])}",
    ]
    th = s.get("theory") or {}
    if th:
        parts = [f"{k} {_fmt(v)}" for k, v in th.items() if k != "staleness_pmf"]
        if parts:
            lines.append("theory (steady state): " + ", ".join(parts))
    ps = s["ps"]
    lines.append(
        f"PS: service {_fmt(ps['service_time'])} s, busy {_fmt(ps['busy_share'])}, "
        f"wait before update mean {_fmt(ps['queue_wait_mean'])} s, "
        f"max {_fmt(ps['queue_wait_max'])} s"
    )
    lines.append(f"learning rate ({s['lr']['rule']}): mean {_fmt(s['lr']['mean'])}")
    head = (
        "learner",
        "grads",
        "lost",
        "canc",
        "drop",
        "mean st",
        "p50",
        "p95",
        "p99",
        "max",
        "busy",
        "idle",
    )
    rows = [head]
    for p in s["per_learner"]:
        q = p["staleness"]
        rows.append(
            (
                p["learner"],
                str(p["gradients"]),
                str(p["lost"]),
                str(p["cancelled"]),
                str(p["dropped"]),
                _fmt(q["mean"]),
                _fmt(q["p50"]),
                _fmt(q["p95"]),
                _fmt(q["p99"]),
                _fmt(q["max"]),
                f"{p['busy_share']:.1%}",
                f"{p['idle_share']:.1%}",
            )
        )
    widths = [max(len(r[j]) for r in rows) for j in range(len(head))]
    for r in rows:
        lines.append(
            "  ".join(
                c.rjust(w) if j else c.ljust(w)
                for j, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(lines)


def staleness_histogram(result: Result) -> dict[str, Any]:
    """Empirical staleness frequencies and, where a closed form exists, the theory.

    Returns ``{"k": [...], "observed": [...], "theory": [...] or None, "theory_name": ...}``
    with probabilities (observed counts / applied gradients).
    """
    tr = result.trace
    st = tr["staleness"][tr["status"] == APPLIED]
    kmax = int(st.max()) if len(st) else 0
    k = np.arange(kmax + 1)
    obs = np.bincount(st, minlength=kmax + 1) / max(len(st), 1)
    theory = None
    name = None
    if result.summary.get("theory", {}).get("staleness_pmf") == "async-exponential":
        rates = scenario_rates(result.scenario)
        if rates is not None:
            theory = async_staleness_pmf(rates, k)
            name = "sum_i p_i^2 (1 - p_i)^k, p_i = rate_i / sum(rates)"
    return {
        "k": k.tolist(),
        "observed": obs.tolist(),
        "count": len(st),
        "theory": None if theory is None else theory.tolist(),
        "theory_name": name,
        "mean_observed": float(st.mean()) if len(st) else None,
        "mean_theory": result.summary.get("theory", {}).get("mean_staleness"),
    }


def plot_staleness(result: Result, path: str | os.PathLike[str]) -> Path:
    """Staleness histogram (probability per staleness value) with the theory overlaid."""
    from dlsys.common.plotting import pyplot as plt
    from dlsys.common.plotting import save_figure

    h = staleness_histogram(result)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(
        h["k"],
        h["observed"],
        width=0.9,
        color="#4c72b0",
        alpha=0.7,
        label=f"simulated ({h['count']} gradients)",
    )
    if h["theory"] is not None:
        ax.plot(
            h["k"],
            h["theory"],
            "o-",
            color="#dd8452",
            ms=3,
            lw=1.2,
            label="theory: mixture of geometrics",
        )
    if h["mean_theory"] is not None:
        ax.axvline(
            h["mean_theory"], color="k", ls="--", lw=1, label=f"theory mean {h['mean_theory']:.3g}"
        )
    if h["mean_observed"] is not None:
        ax.axvline(
            h["mean_observed"],
            color="#4c72b0",
            ls=":",
            lw=1.2,
            label=f"simulated mean {h['mean_observed']:.3g}",
        )
    ax.set_xlabel("staleness (PS updates between read and apply)")
    ax.set_ylabel("probability")
    ax.set_title(
        f"{result.scenario.name}: {result.summary['protocol']}, {result.scenario.n} learners"
    )
    ax.legend(fontsize=8)
    return save_figure(fig, path, data=h)


def plot_timeline(result: Result, path: str | os.PathLike[str], max_updates: int = 60) -> Path:
    """Per-learner bars: pull (grey), compute (colour by status), push (grey), idle gaps;
    PS updates as vertical ticks. Shows the time up to the ``max_updates``-th update."""
    from dlsys.common.plotting import pyplot as plt
    from dlsys.common.plotting import save_figure

    tr = result.trace
    ok = tr["status"] == APPLIED
    t_apply = np.sort(tr["t_apply"][ok])
    if len(t_apply) > max_updates:
        t_max = float(t_apply[max_updates - 1])
    elif len(t_apply):
        t_max = float(result.raw.t_end)
    else:
        t_max = float(result.raw.t_end) or 1.0
    names = tr.learner_names
    n = len(names)
    show = tr["t_read"] <= t_max
    colors = {0: "#4c72b0", 1: "#c44e52", 2: "#8c8c8c", 3: "#dd8452"}
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.45 * min(n, 40)))
    data_rows = []
    lrn = tr["learner"]
    t_read, t_start, t_done, t_arr = tr["t_read"], tr["t_start"], tr["t_done"], tr["t_arrive"]
    status, seq, stale = tr["status"], tr["seq"], tr["staleness"]
    for j in np.flatnonzero(show)[:5000].tolist():
        y = int(lrn[j])
        if y >= 40:
            continue
        s0 = t_start[j] if t_start[j] == t_start[j] else t_done[j]
        if s0 > t_read[j]:
            ax.barh(y, s0 - t_read[j], left=t_read[j], color="#cccccc", height=0.5)
        ax.barh(
            y,
            t_done[j] - s0,
            left=s0,
            color=colors[int(status[j])],
            height=0.7,
            edgecolor="white",
            linewidth=0.5,
        )
        if status[j] == APPLIED and t_arr[j] > t_done[j]:
            ax.barh(y, t_arr[j] - t_done[j], left=t_done[j], color="#cccccc", height=0.5)
        if status[j] == APPLIED and len(names) <= 8 and int(ok.sum()) <= max_updates:
            ax.text(
                (s0 + t_done[j]) / 2,
                y,
                f"{seq[j]}:{stale[j]}",
                ha="center",
                va="center",
                fontsize=7,
                color="white",
            )
        data_rows.append(
            {
                "learner": names[y],
                "seq": int(seq[j]),
                "t_read": float(t_read[j]),
                "t_start": float(s0),
                "t_done": float(t_done[j]),
                "status": STATUS_NAMES[int(status[j])],
            }
        )
    marks = t_apply[t_apply <= t_max]
    for t in marks.tolist():
        ax.axvline(t, color="k", lw=0.4, alpha=0.35)
    shown = min(n, 40)
    ax.set_yticks(range(shown))
    ax.set_yticklabels(names[:shown], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, t_max * 1.02 if t_max > 0 else 1)
    ax.set_xlabel("simulated time (s); vertical lines: PS updates")
    label = "compute bars labelled seq:staleness; " if len(names) <= 8 else ""
    ax.set_title(
        f"{result.scenario.name}: {result.summary['protocol']} timeline "
        f"({label}grey: network; red lost, grey cancelled, orange dropped)",
        fontsize=9,
    )
    return save_figure(
        fig, path, data={"bars": data_rows, "updates": marks.tolist(), "t_max": t_max}
    )


def write_outputs(result: Result, out: str | os.PathLike[str]) -> list[Path]:
    """Write trace.csv (and trace.parquet if pyarrow is installed), summary.json,
    timeline.png/.json and staleness.png/.json into folder ``out``; return the paths."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    paths = [atomic_write_text(d / "trace.csv", result.trace.csv_text())]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        pass
    else:  # pragma: no cover - pyarrow is not a dependency
        tr = result.trace
        table = pa.table(
            {
                k: tr[k]
                if k not in ("learner", "status")
                else tr["learner_name" if k == "learner" else "status_name"].astype(str)
                for k in CSV_COLUMNS
            }
        )
        pq.write_table(table, d / "trace.parquet")
        paths.append(d / "trace.parquet")
    paths.append(write_json(d / "summary.json", result.summary))
    paths.append(plot_timeline(result, d / "timeline.png"))
    paths.append(plot_staleness(result, d / "staleness.png"))
    return paths
