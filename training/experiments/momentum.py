"""Experiment 7, ``momentum``: SGD momentum factors side by side.

Claim: with a fixed LR, a larger momentum factor ``alpha`` lowers the training loss faster
(the effective step is ``lr / (1 - alpha)``), up to where it overshoots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from dlsys.training.experiments.context import Common, Context, ExperimentResult
from dlsys.training.experiments.defaults import default
from dlsys.training.experiments.plots import momentum_figure
from dlsys.training.loop import TrainConfig

__all__ = ["momentum_sweep"]


def momentum_sweep(
    common: Common,
    out: str | Path | None = None,
    *,
    momenta: Sequence[float] | None = None,
) -> ExperimentResult:
    """SGD momentum (experiment 7): training loss per epoch for each momentum factor alpha
    (default 0.1, 0.3, 0.5, 0.7, 0.9; ``v <- alpha v + grad; w <- w - lr v``, torch's SGD
    with dampening 0), one plot."""
    ms = [float(m) for m in default("momentum", "momenta", common.preset, momenta)]
    if not ms:
        raise ValueError("--momenta: give at least one momentum")
    for m in ms:
        if not (math.isfinite(m) and 0.0 <= m < 1.0):
            raise ValueError(f"--momenta: each momentum must be in [0, 1), got {m!r}")
    if common.momentum is not None:
        raise ValueError("--momentum: not used by 'momentum' (it sweeps --momenta)")
    ctx = Context("momentum", common, out, {"momenta": ms})
    base = ctx.train_fields()
    runs = {m: ctx.run(f"m{m:g}", TrainConfig(**base, momentum=m)) for m in ms}
    histories = {m: r.history for m, r in runs.items()}
    ctx.figure("momentum", momentum_figure(histories), {f"{m:g}": h for m, h in histories.items()})
    rows = [
        {
            "momentum": m,
            "final_train_loss": r.history[-1]["train_loss"],
            "test_acc": r.final["test_acc"],
        }
        for m, r in runs.items()
    ]
    ctx.csv("momentum.csv", rows)
    best = min(rows, key=lambda r: r["final_train_loss"])
    return ctx.finish(
        {
            "model": base["model"],
            "lr": base["lr"],
            "rows": rows,
            "lowest_final_train_loss_momentum": best["momentum"],
        }
    )
