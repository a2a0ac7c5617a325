"""Experiment ``error-runtime``: which protocol reaches a target error first in wall-clock time.

Claim (Dutta et al., AISTATS 2018, "Slow and Stale Gradients Can Win the Race"): with
learners whose compute times are shifted exponentials, async SGD lowers the error fastest
at first but has a higher error floor than the synchronous variants; a larger K in K-sync
lowers the floor at the cost of waiting for more learners. Here each protocol (sync,
K-sync for several K, K-async, async) is simulated for the same simulated time and
replayed on a real model (:func:`dlsys.training.replay.studies.error_runtime`): test error
against simulated seconds on one plot, the simulated time each needs to reach the target
error, and a reading naming which gets there first and which ends lowest.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dlsys.common.errors import check_int, check_positive
from dlsys.training.experiments.context import Common, Context, ExperimentResult
from dlsys.training.experiments.defaults import default
from dlsys.training.experiments.replay_runs import base_config, replay_runner
from dlsys.training.replay.studies import error_runtime as run_study
from dlsys.training.replay.studies import error_runtime_figure, error_runtime_reading

__all__ = ["error_runtime_experiment"]


def error_runtime_experiment(
    common: Common,
    out: str | Path | None = None,
    *,
    learners: int | None = None,
    ks: Sequence[int] | None = None,
    k_async: int | None = None,
    sim_time: float | None = None,
    target_error: float | None = None,
    shift: float | None = None,
    rate: float | None = None,
) -> ExperimentResult:
    """``learners`` P with ``shift + Exp(rate)`` seconds per gradient (Dutta et al.'s
    model), protocols sync, k-sync for each K in ``ks``, k-async with ``k_async`` and async,
    each given ``sim_time`` simulated seconds and replayed with per-learner batch
    ``--batch-size`` at ``--lr``; ``target_error`` in percent test error. One row per
    protocol: ``protocol``, ``time_to_target`` (simulated seconds, None if never reached),
    ``test_accuracy``."""
    name, preset = "error-runtime", common.preset
    p = check_int("--learners", default(name, "learners", preset, learners), minimum=1)
    ks_ = [check_int("ks", k, minimum=1, maximum=p) for k in default(name, "ks", preset, ks)]
    ka = check_int("k_async", default(name, "k_async", preset, k_async), minimum=1, maximum=p)
    t = check_positive("sim_time", default(name, "sim_time", preset, sim_time))
    target = check_positive("--target-error", default(name, "target_error", preset, target_error))
    sh = check_positive("shift", default(name, "shift", preset, shift), allow_zero=True)
    rt = check_positive("rate", default(name, "rate", preset, rate))
    params = {"learners": p, "ks": ks_, "k_async": ka, "sim_time": t, "target_error": target,
              "shift": sh, "rate": rt}  # fmt: skip
    ctx = Context(name, common, out, params)
    base = base_config(ctx)
    evals = int(default(name, "evals", preset))
    rows, runs = run_study(
        ctx.data, base, learners=p, shift=sh, rate=rt, ks=ks_, k_async=ka, sim_time=t,
        target_error=target, evals=evals, seed=common.seed, run=replay_runner(ctx),
    )  # fmt: skip
    reading = error_runtime_reading(rows, target)
    ctx.csv("error_runtime.csv", rows)
    ctx.figure(
        "error_runtime",
        error_runtime_figure(runs, target),
        {"target_error": target, "curves": {r.name: r.evals for r in runs}},
    )
    keep = ("protocol", "time_to_target", "test_accuracy", "test_error", "mean_staleness",
            "updates", "gradients")  # fmt: skip
    return ctx.finish(
        {
            "model": base.model,
            "learners": p,
            "per_learner_batch": base.per_learner_batch,
            "lr": base.lr,
            "sim_time": t,
            "target_error": target,
            "rows": [{k: r[k] for k in keep} for r in rows],
            "reading": reading,
        }
    )
