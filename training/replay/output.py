"""Files and text of a replay: metrics.json, history.csv, evals.csv and two plots.

``metrics.json`` holds :meth:`ReplayResult.summary` without the wall-clock ``seconds``, so
the same seed gives byte-identical files; the plots (accuracy against PS updates and
against simulated seconds) have their data beside them as JSON.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from dlsys.common.io import atomic_write_text, write_json
from dlsys.common.plotting import save_figure
from dlsys.training.replay.run import ReplayResult

__all__ = ["EVAL_COLUMNS", "HISTORY_COLUMNS", "summary_text", "write_outputs"]

#: Columns of history.csv (one row per kept update).
HISTORY_COLUMNS = ("version", "t", "train_loss", "mean_staleness", "gradients", "lr")
#: Columns of evals.csv (one row per evaluation).
EVAL_COLUMNS = ("update", "t", "val_loss", "val_acc", "test_loss", "test_acc")


def _csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r[c] is None else repr(r[c]) for c in columns])
    return buf.getvalue()


def _plot(result: ReplayResult, x_key: str, xlabel: str, path: Path) -> None:
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    xs = [e[x_key] for e in result.evals]
    for split, style in (("val", "-"), ("test", "--")):
        ax.plot(xs, [e[f"{split}_acc"] for e in result.evals], style, marker=".", label=split)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (fraction)")
    ax.set_ylim(0.0, 1.0)
    cfg = result.config["replay"]
    ax.set_title(
        f"replay of {result.schedule['learners']} learners: {cfg['model']}, "
        f"lr {cfg['lr']} ({cfg['lr_rule']})",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path, data={"x": x_key, "evals": result.evals})


def write_outputs(result: ReplayResult, folder: str | Path) -> list[str]:
    """Write metrics.json, history.csv, evals.csv, accuracy_vs_updates.png and
    accuracy_vs_time.png (each with its JSON data) into ``folder``; return the file names."""
    out = Path(folder)
    write_json(out / "metrics.json", result.summary(wall_clock=False))
    atomic_write_text(out / "history.csv", _csv(result.history, HISTORY_COLUMNS))
    atomic_write_text(out / "evals.csv", _csv(result.evals, EVAL_COLUMNS))
    _plot(result, "update", "PS updates", out / "accuracy_vs_updates.png")
    _plot(result, "t", "simulated time (s)", out / "accuracy_vs_time.png")
    return [
        "metrics.json",
        "history.csv",
        "evals.csv",
        "accuracy_vs_updates.png",
        "accuracy_vs_time.png",
    ]


def summary_text(result: ReplayResult) -> str:
    """A few lines for the terminal."""
    s = result.schedule
    cfg = result.config["replay"]
    lines = [
        f"replay of {s['source']}: {s['learners']} learners, {s['updates']} updates "
        f"({s['sim_time']:.4g} simulated s)",
        f"model {cfg['model']}, per-learner batch {cfg['per_learner_batch']}, lr {cfg['lr']} "
        f"({cfg['lr_rule']}), momentum {cfg['momentum']}, seed {cfg['seed']}",
        f"applied {result.updates} updates, {result.gradients_applied} gradients; mean "
        f"staleness {result.mean_staleness:.4g}; at most {result.max_weight_versions} weight "
        "versions held",
        f"final train loss {result.final_train_loss:.4g}; test accuracy "
        f"{result.test_accuracy:.4f}"
        + (" (DIVERGED: stopped at a non-finite loss)" if result.diverged else ""),
        f"wall time {result.seconds:.3g} s",
    ]
    note = result.config.get("data", {}).get("note")
    if note:
        lines.insert(0, f"NOTE: {note}")
    return "\n".join(lines)
