"""Experiment 2, ``clr``: cyclical learning rates (Smith 2017) against a fixed LR.

Claim: cycling the LR between ``lr_min`` and ``lr_max`` (triangular, triangular2, exp_range)
reaches a given accuracy in fewer epochs than the best fixed LR. Without bounds a fast LR
sweep (:func:`dlsys.training.experiments.lr_range_test.sweep_for_bounds`) picks them first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dlsys.common.errors import check_choice, check_positive
from dlsys.training.experiments.context import Common, Context, ExperimentResult
from dlsys.training.experiments.defaults import default
from dlsys.training.experiments.lr_range_test import sweep_for_bounds
from dlsys.training.experiments.plots import clr_curves_figure, clr_lr_figure
from dlsys.training.experiments.rules import LR_RULE
from dlsys.training.loop import TrainConfig, TrainResult

__all__ = ["CLR_POLICIES", "clr"]

#: torch's CyclicLR modes.
CLR_POLICIES = ("triangular", "triangular2", "exp_range")


def clr(
    common: Common,
    out: str | Path | None = None,
    *,
    lr_min: float | None = None,
    lr_max: float | None = None,
    policies: Sequence[str] = CLR_POLICIES,
    step_epochs: float | None = None,
) -> ExperimentResult:
    """Cyclical LR (experiment 2): each policy of ``policies`` cycles between ``lr_min`` and
    ``lr_max`` with a half-cycle of ``step_epochs`` epochs, against a fixed LR (``--lr``,
    default ``lr_max``). Without ``lr_min``/``lr_max`` a fast LR sweep picks them first.
    ``exp_range`` shrinks the amplitude to ``exp_range_end`` (10%) over the run (gamma per
    update)."""
    for pol in policies:
        check_choice("--policies", pol, CLR_POLICIES)
    if not policies:
        raise ValueError(f"--policies: give at least one of {', '.join(CLR_POLICIES)}")
    for nm, v in (("--lr-min", lr_min), ("--lr-max", lr_max)):
        if v is not None:
            check_positive(nm, v)
    if lr_min is not None and lr_max is not None and not lr_min < lr_max:
        raise ValueError(f"--lr-min/--lr-max: lr_min must be < lr_max, got {lr_min} >= {lr_max}")
    step_epochs = default("clr", "step_epochs", common.preset, step_epochs)
    check_positive("--step-epochs", step_epochs)
    params = {
        "lr_min": lr_min,
        "lr_max": lr_max,
        "policies": list(policies),
        "step_epochs": step_epochs,
    }
    ctx = Context("clr", common, out, params)
    base = ctx.train_fields()
    source = "given"
    if lr_min is None or lr_max is None:
        sw = sweep_for_bounds(ctx, base)
        lr_min = lr_min if lr_min is not None else sw["suggestion"]["lr_min"]
        lr_max = lr_max if lr_max is not None else sw["suggestion"]["lr_max"]
        source = "fast LR sweep (" + LR_RULE + ")"
        if not lr_min < lr_max:
            lr_min = lr_max / 10
    per_epoch = ctx.updates_per_epoch(base["batch_size"])
    step_up = max(1, round(step_epochs * per_epoch))
    total = per_epoch * base["epochs"]
    fixed_lr = common.lr if common.lr is not None else lr_max
    end = ctx.default("exp_range_end")
    results: dict[str, TrainResult] = {}
    for pol in policies:
        sched = {
            "name": "cyclic",
            "mode": pol,
            "base_lr": lr_min,
            "max_lr": lr_max,
            "step_size_up": step_up,
            "gamma": end ** (1.0 / total) if pol == "exp_range" else 1.0,
        }
        results[pol] = ctx.run(pol, TrainConfig(**{**base, "lr": lr_min}, scheduler=sched))
    results["fixed"] = ctx.run("fixed", TrainConfig(**{**base, "lr": fixed_lr}))
    histories = {n: r.history for n, r in results.items()}
    ctx.figure("clr_curves", clr_curves_figure(histories), histories)
    steps = {n: r.steps for n, r in results.items()}
    ctx.figure(
        "clr_lr", clr_lr_figure(steps), {n: [s["lr"] for s in st] for n, st in steps.items()}
    )
    summary = {
        "model": base["model"],
        "lr_min": lr_min,
        "lr_max": lr_max,
        "lr_source": source,
        "fixed_lr": fixed_lr,
        "step_size_up_updates": step_up,
        "policies": {
            n: {
                "final_val_acc": r.history[-1]["val_acc"],
                "best_val_acc": r.best_val_acc,
                "final_train_loss": r.history[-1]["train_loss"],
                "final_test_acc": r.final["test_acc"],
            }
            for n, r in results.items()
        },
    }
    return ctx.finish(summary)
