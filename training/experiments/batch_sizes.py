"""Experiment 5, ``batch-size``: batch size with early stopping.

Claim: small batches reach a good model in fewer epochs but more updates and more wall time
per epoch; large batches need more epochs. Each batch size trains until the validation
accuracy has not improved for ``patience`` epochs, then the best model is restored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dlsys.common.errors import check_int
from dlsys.training.experiments.context import Common, Context, ExperimentResult
from dlsys.training.experiments.defaults import default
from dlsys.training.experiments.plots import batch_size_figure
from dlsys.training.loop import TrainConfig

__all__ = ["batch_size_sweep"]


def batch_size_sweep(
    common: Common,
    out: str | Path | None = None,
    *,
    batch_sizes: Sequence[int] | None = None,
    patience: int | None = None,
) -> ExperimentResult:
    """Batch sizes with early stopping (experiment 5): for each batch size (default 1, 5, 50,
    500, 5000), train until the validation accuracy has not improved for ``patience`` epochs
    (at most ``epochs``), restore the best model and report its test accuracy, the training
    time (wall seconds) and the epochs and gradient updates to the best model."""
    sizes = list(default("batch-size", "batch_sizes", common.preset, batch_sizes))
    if not sizes:
        raise ValueError("--batch-sizes: give at least one batch size")
    for b in sizes:
        check_int("--batch-sizes", b, minimum=1)
    patience = check_int(
        "--patience", default("batch-size", "patience", common.preset, patience), minimum=1
    )
    ctx = Context("batch-size", common, out, {"batch_sizes": sizes, "patience": patience})
    base = ctx.train_fields()
    base.pop("batch_size", None)
    rows = []
    for b in sizes:
        r = ctx.run(
            f"b{b}", TrainConfig(**base, batch_size=b, patience=patience, restore_best=True)
        )
        rows.append(
            {
                "batch_size": b,
                "test_acc": r.final["test_acc"],
                "best_val_acc": r.best_val_acc,
                "epochs_to_best": r.best_epoch,
                "updates_to_best": r.updates_to_best,
                "epochs_run": r.epochs_run,
                "updates": r.updates,
                "train_time_s": r.total_time,
                "time_to_best_s": r.time_to_best,
                "stopped_early": r.epochs_run < base["epochs"],
            }
        )
    ctx.csv("batch_size.csv", rows)
    ctx.figure("batch_size", batch_size_figure(rows), rows)
    return ctx.finish(
        {"model": base["model"], "lr": base["lr"], "patience": patience, "rows": rows}
    )
