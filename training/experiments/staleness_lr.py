"""Experiment ``staleness-lr``: what staleness does to SGD, and what alpha / tau undoes.

Claim (Zhang et al., IJCAI 2016, "Staleness-aware Async-SGD"; Gupta et al., ICDM 2016):
with lambda learners of mini-batch mu under n-softsync (the parameter server updates after
lambda / n gradients), the mean staleness is close to n; with a constant learning rate,
large n fails (the paper: test error stuck at 90 % on CIFAR-10 for 15- and 30-softsync);
with the staleness-dependent rate alpha / tau every n stays near the single learner's
error. Here each n is simulated (exponential compute times, mean 1 s) and replayed on a real
model with both rates (:func:`dlsys.training.replay.studies.staleness_lr`); the reading
states from this run's numbers whether each claim holds.
"""

from __future__ import annotations

from pathlib import Path

from dlsys.common.errors import check_int, check_positive
from dlsys.training.experiments.context import Common, Context, ExperimentResult
from dlsys.training.experiments.defaults import default
from dlsys.training.experiments.replay_runs import base_config, replay_runner
from dlsys.training.replay.studies import staleness_lr as run_study
from dlsys.training.replay.studies import staleness_lr_figure, staleness_reading

__all__ = ["staleness_lr_experiment"]


def staleness_lr_experiment(
    common: Common,
    out: str | Path | None = None,
    *,
    learners: int | None = None,
    near_points: float | None = None,
) -> ExperimentResult:
    """n-softsync with ``learners`` (lambda; quick 16, homework 30) at per-learner batch
    ``--batch-size`` (mu, default 4), constant against inverse-staleness rates, for
    ``--epochs`` passes over the training split; one row per (n, rule), a table and a plot
    of test error against mean staleness, and the reading (``near_points``: percentage
    points of test error counted as "near" the single learner)."""
    lam = check_int(
        "--learners", default("staleness-lr", "learners", common.preset, learners), minimum=1
    )
    near = check_positive(
        "near_points", default("staleness-lr", "near_points", common.preset, near_points)
    )
    ctx = Context("staleness-lr", common, out, {"learners": lam, "near_points": near})
    base = base_config(ctx)
    epochs = ctx.train_fields()["epochs"]
    rows, _runs, single = run_study(
        ctx.data, base, learners=lam, epochs=epochs, seed=common.seed, run=replay_runner(ctx)
    )
    reading = staleness_reading(rows, single, near_points=near)
    ctx.csv("staleness_lr.csv", [single, *rows])
    ctx.figure("staleness_lr", staleness_lr_figure(rows, single), {"rows": rows, "single": single})
    keep = ("n", "c", "rule", "mean_staleness", "test_accuracy", "test_error", "updates",
            "diverged")  # fmt: skip
    return ctx.finish(
        {
            "model": base.model,
            "learners": lam,
            "per_learner_batch": base.per_learner_batch,
            "lr": base.lr,
            "epochs": epochs,
            "rows": [{k: r[k] for k in keep} for r in rows],
            "single_learner": {k: single[k] for k in ("test_accuracy", "test_error")},
            "reading": reading,
        }
    )
