"""Experiment 3, ``batch-ramp``: increasing the batch size instead of decaying the LR
(Smith, Kindermans, Ying, Le 2018, "Don't decay the learning rate, increase the batch size").

Claim: a batch size that grows by ``factor`` every ``every`` updates at a fixed LR follows
the same curve in epochs as a fixed batch whose LR shrinks by the same factor at the same
points in samples seen (:func:`dlsys.training.experiments.rules.ramp_milestones`), with fewer
updates.
"""

from __future__ import annotations

from pathlib import Path

from dlsys.common.errors import check_int
from dlsys.training.experiments.context import Common, Context, ExperimentResult
from dlsys.training.experiments.defaults import default
from dlsys.training.experiments.lr_range_test import sweep_for_bounds
from dlsys.training.experiments.plots import batch_ramp_figure
from dlsys.training.experiments.rules import LR_RULE, ramp_milestones
from dlsys.training.loop import TrainConfig

__all__ = ["batch_ramp"]


def batch_ramp(
    common: Common,
    out: str | Path | None = None,
    *,
    start: int | None = None,
    max_batch: int | None = None,
    every: int | None = None,
) -> ExperimentResult:
    """Batch-size ramp vs LR decay (experiment 3, Smith et al. 2018).

    ``ramp``: fixed LR (``--lr``, default ``lr_max`` of a fast LR sweep), batch ``start``
    (default 32) doubling every ``every`` updates up to ``max_batch`` (default 8192, capped at
    the training-set size). ``decay``: batch ``start`` fixed, LR halved at the same points in
    *samples seen* — after ``every * (2**k - 1)`` updates, k = 1..log2(max/start) — so both
    follow one schedule in epochs. Both train the same number of epochs.
    """
    p = common.preset
    start = default("batch-ramp", "start", p, start)
    max_batch = default("batch-ramp", "max_batch", p, max_batch)
    check_int("--ramp-start", start, minimum=1)
    check_int("--ramp-max", max_batch, minimum=1)
    if max_batch < start:
        raise ValueError(f"--ramp-max: must be >= --ramp-start ({start}), got {max_batch}")
    every = check_int("--ramp-every", default("batch-ramp", "every", p, every), minimum=1)
    factor = default("batch-ramp", "factor", p)
    params = {"start": start, "max_batch": max_batch, "every": every}
    ctx = Context("batch-ramp", common, out, params)
    base = ctx.train_fields()
    base["batch_size"] = start
    lr_source = "given (--lr)"
    if "lr" not in base:  # the homework: fix the LR at lr_max of the range test
        base["lr"] = sweep_for_bounds(ctx, base)["suggestion"]["lr_max"]
        lr_source = "lr_max of a fast LR sweep (" + LR_RULE + ")"
    milestones = ramp_milestones(start, max_batch, every, factor)
    ramp = ctx.run(
        "ramp",
        TrainConfig(
            **base,
            batch_schedule={"start": start, "factor": factor, "every": every, "max": max_batch},
        ),
    )
    gamma = ctx.default("decay_gamma")
    decay = ctx.run(
        "decay",
        TrainConfig(
            **base, scheduler={"name": "multistep", "milestones": milestones, "gamma": gamma}
        ),
    )
    histories = {"batch ramp (fixed LR)": ramp.history, "LR decay (fixed batch)": decay.history}
    ctx.figure(
        "batch_ramp", batch_ramp_figure(histories), {"ramp": ramp.history, "decay": decay.history}
    )
    n_train = ctx.data.sizes["train"]
    summary = {
        "model": base["model"],
        "lr": base["lr"],
        "lr_source": lr_source,
        "decay_milestones_updates": milestones,
        "batch_cap": min(max_batch, n_train),
        "capped_by_train_size": max_batch > n_train,
        "ramp": {
            "final_val_acc": ramp.history[-1]["val_acc"],
            "final_test_acc": ramp.final["test_acc"],
            "updates": ramp.updates,
            "final_batch_size": ramp.history[-1]["batch_size"],
        },
        "decay": {
            "final_val_acc": decay.history[-1]["val_acc"],
            "final_test_acc": decay.final["test_acc"],
            "updates": decay.updates,
            "final_lr": decay.steps[-1]["lr"] if decay.steps else base["lr"],
        },
    }
    return ctx.finish(summary)
