"""Experiment 1, ``lr-range``: Smith's LR range test (Smith 2017, "Cyclical learning rates").

Claim: training loss against learning rate falls, flattens and blows up; the LR where it
starts to fall (``lr_min``) and where it stops falling (``lr_max``) bound a good cyclical
schedule. Two ways to draw the curve: a grid of LRs, each trained ``epochs`` epochs from the
same weights, and one fast sweep whose LR grows exponentially every update. The sweep
(:func:`lr_sweep`) also serves clr and batch-ramp when they are given no LR.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from dlsys.common.errors import check_choice, check_int, check_positive
from dlsys.training.experiments.context import Common, Context, ExperimentResult
from dlsys.training.experiments.defaults import default
from dlsys.training.experiments.plots import lr_range_figure
from dlsys.training.experiments.rules import LR_RULE, DivergenceStop, smooth_losses, suggest_lr
from dlsys.training.loop import TrainConfig

__all__ = ["MODES", "lr_range", "lr_sweep", "sweep_for_bounds"]

#: What lr-range draws: the grid, the sweep, or both.
MODES = ("both", "grid", "sweep")


def lr_sweep(
    ctx: Context, base: dict[str, Any], lo: float, hi: float, steps: int, run: str
) -> dict[str, Any]:
    """Smith's fast test: one run, LR x (hi/lo)^(1/(steps-1)) per update from ``lo``; stops
    on divergence (:class:`DivergenceStop`) or after ``steps`` updates. The run is short and
    its stopping rule carries state, so it is not checkpointed."""
    table = {k: default("lr-sweep", k, ctx.common.preset) for k in ("smoothing", "divergence")}
    per_epoch = ctx.updates_per_epoch(base["batch_size"])
    gamma = (hi / lo) ** (1.0 / max(steps - 1, 1))
    cfg = TrainConfig(
        **{**base, "lr": lo, "epochs": math.ceil(steps / per_epoch)},
        scheduler={"name": "exponential", "gamma": gamma},
        max_updates=steps,
        track_test=False,
    )
    stop = DivergenceStop(
        beta=table["smoothing"],
        factor=table["divergence"],
        warmup=default("lr-sweep", "warmup", ctx.common.preset),
    )
    res = ctx.run(run, cfg, resumable=False, on_step=lambda rec: stop(rec["loss"]))
    lrs = [s["lr"] for s in res.steps]
    losses = [s["loss"] for s in res.steps]
    n_ok = sum(1 for v in losses if math.isfinite(v))
    smooth = smooth_losses(losses[:n_ok], table["smoothing"])
    return {
        "lrs": lrs,
        "losses": losses,
        "smoothed": smooth + [math.nan] * (len(losses) - n_ok),
        "suggestion": suggest_lr(lrs[:n_ok], smooth),
        "stopped_at_lr": lrs[-1] if lrs else lo,
        "updates": len(lrs),
        "diverged": len(lrs) < steps,
    }


def sweep_for_bounds(ctx: Context, base: dict[str, Any]) -> dict[str, Any]:
    """The default fast sweep (the ``lr-sweep`` row of the defaults table) from ``base``;
    returns :func:`lr_sweep`'s result (``["suggestion"]`` holds lr_min / lr_max)."""
    lo, hi, steps = (default("lr-sweep", k, ctx.common.preset) for k in ("lo", "hi", "steps"))
    return lr_sweep(ctx, {**base, "lr": lo}, lo, hi, steps, "lr-sweep")


def lr_range(
    common: Common,
    out: str | Path | None = None,
    *,
    lo: float | None = None,
    hi: float | None = None,
    num: int | None = None,
    mode: str = "both",
    sweep_steps: int | None = None,
) -> ExperimentResult:
    """LR range test (experiment 1): ``grid``: ``num`` log-spaced LRs in ``[lo, hi]``, each
    trained ``epochs`` epochs from the same initial weights; the loss is the last epoch's
    training loss.
    ``sweep``: one run whose LR grows exponentially from ``lo`` to ``hi`` over ``sweep_steps``
    updates, smoothed, stopped on divergence. ``both`` runs both. The suggestion follows
    ``LR_RULE`` (from the sweep when it ran, else the grid).
    """
    p = common.preset
    lo = default("lr-range", "lo", p, lo)
    hi = default("lr-range", "hi", p, hi)
    num = default("lr-range", "num", p, num)
    sweep_steps = default("lr-range", "sweep_steps", p, sweep_steps)
    check_positive("--lo", lo)
    check_positive("--hi", hi)
    if not lo < hi:
        raise ValueError(f"--lo/--hi: lo must be < hi, got lo={lo!r}, hi={hi!r}")
    check_choice("--mode", mode, MODES)
    check_int("--num-lrs", num, minimum=2)
    check_int("--sweep-steps", sweep_steps, minimum=10)
    params = {"lo": lo, "hi": hi, "num": num, "mode": mode, "sweep_steps": sweep_steps}
    ctx = Context("lr-range", common, out, params)
    base = ctx.train_fields(lr=lo)
    summary: dict[str, Any] = {"model": base["model"], "rule": LR_RULE}
    grid = sweep = None
    if mode in ("both", "grid"):
        rates = np.logspace(math.log10(lo), math.log10(hi), num).tolist()
        grid_loss = []
        for i, lr in enumerate(rates):
            res = ctx.run(f"grid-{i:02d}", TrainConfig(**{**base, "lr": lr}, track_test=False))
            last = res.history[-1]["train_loss"] if res.history else math.inf
            grid_loss.append(math.inf if res.diverged or not math.isfinite(last) else last)
        ctx.csv(
            "lr_grid.csv",
            [
                {"lr": lr, "final_train_loss": v, "diverged": not math.isfinite(v)}
                for lr, v in zip(rates, grid_loss, strict=True)
            ],
        )
        summary["grid"] = {
            "lrs": rates,
            "losses": grid_loss,
            "epochs_per_lr": base["epochs"],
            **suggest_lr(rates, grid_loss),
        }
        summary["grid"].pop("rule")
        grid = {"lr": rates, "loss": grid_loss}
    if mode in ("both", "sweep"):
        start = lo if mode == "sweep" else max(lo, default("lr-sweep", "lo", p))
        sw = lr_sweep(ctx, base, start, hi, sweep_steps, "sweep")
        ctx.csv(
            "lr_sweep.csv",
            [
                {"update": i + 1, "lr": a, "loss": b, "smoothed": c}
                for i, (a, b, c) in enumerate(
                    zip(sw["lrs"], sw["losses"], sw["smoothed"], strict=True)
                )
            ],
        )
        summary["sweep"] = {k: sw[k] for k in ("stopped_at_lr", "updates", "diverged")}
        summary["sweep"].update({k: v for k, v in sw["suggestion"].items() if k != "rule"})
        summary["sweep"]["start_lr"] = sw["lrs"][0] if sw["lrs"] else None
        sweep = {k: sw[k] for k in ("lrs", "losses", "smoothed")}
    pick = summary.get("sweep") or summary["grid"]
    summary["lr_min"], summary["lr_max"] = pick["lr_min"], pick["lr_max"]
    summary["suggested_by"] = "sweep" if "sweep" in summary else "grid"
    fig = lr_range_figure(grid, sweep, summary["lr_min"], summary["lr_max"])
    plot_data: dict[str, Any] = {"grid": grid, "sweep": sweep}
    plot_data = {k: v for k, v in plot_data.items() if v is not None}
    ctx.figure("lr_range", fig, {**plot_data, "lr_min": pick["lr_min"], "lr_max": pick["lr_max"]})
    return ctx.finish(summary)
