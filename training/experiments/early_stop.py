"""Experiment 6, ``early-stopping``: where early stopping stops, seen on a full run.

Claim: validation accuracy peaks and then drifts while training accuracy keeps rising;
early stopping with patience ``p`` stops ``p`` epochs after the last improvement and restores
the best epoch, whose test accuracy is close to the best the run ever reached. The run trains
every epoch; the rule (:func:`dlsys.training.experiments.rules.early_stop_epoch`, the same
rule the training loop applies) is replayed on its history.
"""

from __future__ import annotations

from pathlib import Path

from dlsys.common.errors import check_int
from dlsys.training.experiments.context import Common, Context, ExperimentResult
from dlsys.training.experiments.defaults import default
from dlsys.training.experiments.plots import early_stopping_figure
from dlsys.training.experiments.rules import early_stop_epoch
from dlsys.training.loop import TrainConfig

__all__ = ["early_stopping"]


def early_stopping(
    common: Common, out: str | Path | None = None, *, patience: int | None = None
) -> ExperimentResult:
    """Early stopping (experiment 6): train ``epochs`` epochs without stopping, record train,
    validation and test accuracy per epoch and mark where patience ``patience`` (epochs
    without a validation-accuracy improvement) would have stopped and which epoch it would
    have restored."""
    patience = check_int(
        "--patience", default("early-stopping", "patience", common.preset, patience), minimum=1
    )
    ctx = Context("early-stopping", common, out, {"patience": patience})
    base = ctx.train_fields()
    r = ctx.run("run", TrainConfig(**base, eval_train=True))
    hist = r.history
    stop_epoch, best_epoch = early_stop_epoch([h["val_acc"] for h in hist], patience)
    at_best = hist[best_epoch - 1]
    ctx.figure(
        "early_stopping",
        early_stopping_figure(hist, best_epoch, stop_epoch, patience),
        {"history": hist, "stop_epoch": stop_epoch, "best_epoch": best_epoch},
    )
    summary = {
        "model": base["model"],
        "patience": patience,
        "stop_epoch": stop_epoch,
        "restored_epoch": best_epoch,
        "test_acc_at_restored": at_best["test_acc"],
        "max_test_acc": max(h["test_acc"] for h in hist),
        "max_test_acc_epoch": max(hist, key=lambda h: h["test_acc"])["epoch"],
        "final_test_acc": hist[-1]["test_acc"],
        "final_train_acc": hist[-1]["train_acc"],
        "epochs": len(hist),
    }
    return ctx.finish(summary)
