"""Experiment 4, ``flooding``: flooding the training loss (Ishida et al. 2020, "Do we need
zero training loss after achieving zero training error?").

Claim: keeping the training loss near a flood level ``b`` (gradient ascent below it) gives
better test accuracy than driving it to zero. The MLP is trained for each ``b`` of a grid,
``b`` is chosen by validation accuracy (:func:`dlsys.training.experiments.rules.
choose_flood_level`), and the flooding CNN is compared at ``b = 0`` and the chosen ``b``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlsys.training.experiments.context import Common, Context, ExperimentResult
from dlsys.training.experiments.defaults import default
from dlsys.training.experiments.plots import flooding_b_figure, flooding_curves_figure
from dlsys.training.experiments.rules import choose_flood_level, flood_grid
from dlsys.training.loop import TrainConfig, TrainResult

__all__ = ["flooding"]

B_RULE = "largest best-epoch validation accuracy; ties go to the smaller b"


def _row(model: str, b: float, r: TrainResult) -> dict[str, Any]:
    best = r.history[r.best_epoch - 1] if r.best_epoch else r.history[-1]
    return {
        "model": model,
        "b": b,
        "best_val_acc": r.best_val_acc,
        "best_epoch": r.best_epoch,
        "test_acc_at_best_val": best.get("test_acc"),
        "final_train_error": r.history[-1]["train_error"],
        "final_val_error": r.history[-1]["val_error"],
        "final_test_acc": r.final["test_acc"],
        "final_train_loss": r.history[-1]["train_loss"],
    }


def _config(base: dict[str, Any], b: float) -> TrainConfig:
    return TrainConfig(**base, flood=b, eval_train=True)


def flooding(
    common: Common,
    out: str | Path | None = None,
    *,
    b_grid: Sequence[float] | None = None,
    compare_cnn: bool | None = None,
) -> ExperimentResult:
    """Flooding (experiment 4, Ishida et al. 2020): the MLP (500 ReLU units, SGD lr 0.1,
    momentum 0.9, no augmentation) without flooding and for each flood level b of ``b_grid``
    (nats); training error is measured on the whole training split after each epoch. b is
    chosen by the best validation accuracy (ties: the smaller b); unless ``compare_cnn`` is
    False the flooding CNN is trained on the same split with b = 0 and the chosen b."""
    grid = flood_grid(list(default("flooding", "b_grid", common.preset, b_grid)))
    compare_cnn = bool(default("flooding", "compare_cnn", common.preset, compare_cnn))
    ctx = Context("flooding", common, out, {"b_grid": grid, "compare_cnn": compare_cnn})
    base = ctx.train_fields()
    runs = {b: ctx.run(f"mlp-b{b:.3f}", _config(base, b)) for b in grid}
    chosen = choose_flood_level({b: r.best_val_acc for b, r in runs.items()})
    cnn: dict[str, TrainResult] = {}
    if compare_cnn:
        for b in sorted({0.0, chosen}):
            cnn[f"{b:g}"] = ctx.run(f"cnn-b{b:.3f}", _config({**base, "model": "cnn"}, b))
    table = [_row(base["model"], b, r) for b, r in runs.items()]
    table += [_row("cnn", float(b_text), r) for b_text, r in cnn.items()]
    ctx.csv("flooding.csv", table)
    mlp_h = {b: r.history for b, r in runs.items()}
    cnn_h = {k: r.history for k, r in cnn.items()}
    ctx.figure(
        "flooding_curves",
        flooding_curves_figure(mlp_h, cnn_h),
        {f"mlp b={b:g}": h for b, h in mlp_h.items()} | {f"cnn b={k}": h for k, h in cnn_h.items()},
    )
    accs = [runs[b].best_val_acc for b in grid]
    ctx.figure(
        "flooding_b", flooding_b_figure(grid, accs, chosen), {"b": grid, "best_val_acc": accs}
    )
    summary: dict[str, Any] = {
        "model": base["model"],
        "chosen_b": chosen,
        "b_rule": B_RULE,
        "mlp_test_acc_no_flood": runs[0.0].final["test_acc"],
        "mlp_test_acc_chosen_b": runs[chosen].final["test_acc"],
        "mlp_best_val_acc_no_flood": runs[0.0].best_val_acc,
        "mlp_best_val_acc_chosen_b": runs[chosen].best_val_acc,
        "table": table,
    }
    if cnn:
        summary["cnn_test_acc_no_flood"] = cnn["0"].final["test_acc"]
        summary["cnn_test_acc_chosen_b"] = cnn[f"{chosen:g}"].final["test_acc"]
    return ctx.finish(summary)
