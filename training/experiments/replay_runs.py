"""What the replay experiments (``staleness-lr``, ``error-runtime``) share: the replay
settings taken from ``Common`` and a runner that checkpoints every replay."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from dlsys.training.experiments.context import Context
from dlsys.training.replay import ReplayConfig, Schedule, replay
from dlsys.training.replay.run import ReplayResult

__all__ = ["base_config", "replay_runner"]


def replay_runner(ctx: Context) -> Callable[[str, Schedule, ReplayConfig], ReplayResult]:
    """A study's ``run(name, schedule, config)`` that checkpoints each replay as
    ``<checkpoint_dir>/<file>.pt`` (continued with ``--resume``), writes its evaluations as
    ``<file>_evals.csv`` and keeps its summary (``file``: the name with every character
    other than letters, digits, ``.``, ``_`` and ``-`` made a ``-``: ``k-sync-k-2``)."""

    def run(name: str, sched: Schedule, cfg: ReplayConfig) -> ReplayResult:
        c = ctx.common
        file = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
        ck = Path(c.checkpoint_dir) / f"{file}.pt" if c.checkpoint_dir is not None else None
        res = replay(sched, cfg, ctx.data, checkpoint=ck, resume=c.resume, quiet=c.quiet)
        s = res.summary(wall_clock=False)
        s.pop("history")
        ctx.runs[name] = s
        ctx.csv(f"{file}_evals.csv", res.evals)
        return res

    return run


def base_config(ctx: Context) -> ReplayConfig:
    """The replay settings from ``Common`` and the defaults table (SGD only)."""
    c = ctx.common
    if c.optimizer not in (None, "sgd"):
        raise ValueError(
            f"--optimizer: {ctx.name} replays SGD at the parameter server, got {c.optimizer!r}"
        )
    f = ctx.train_fields()
    return ReplayConfig(
        model=f["model"],
        per_learner_batch=f["batch_size"],
        lr=f["lr"],
        momentum=f.get("momentum", 0.0),
        seed=c.seed,
        kernels=c.kernels,
        eval_every=10**9,
    )
