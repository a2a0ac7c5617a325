"""The experiments by name (:data:`EXPERIMENTS`, the one list to extend), and how to run one
(:func:`run_experiment`) or repeat one over seeds (:func:`run_seeds`)."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np

from dlsys.common.errors import unknown_name
from dlsys.common.io import to_jsonable, write_json
from dlsys.training.experiments.batch_size_ramp import batch_ramp
from dlsys.training.experiments.batch_sizes import batch_size_sweep
from dlsys.training.experiments.context import Common, ExperimentResult
from dlsys.training.experiments.cyclical_lr import clr
from dlsys.training.experiments.early_stop import early_stopping
from dlsys.training.experiments.error_runtime import error_runtime_experiment
from dlsys.training.experiments.flood_level import flooding
from dlsys.training.experiments.lr_range_test import lr_range
from dlsys.training.experiments.momentum import momentum_sweep
from dlsys.training.experiments.out_of_distribution import ood
from dlsys.training.experiments.staleness_lr import staleness_lr_experiment

__all__ = ["EXPERIMENTS", "run_experiment", "run_seeds"]

#: Experiment name (as ``dlsys train NAME`` takes it) -> function ``f(common, out, **kw)``.
EXPERIMENTS: dict[str, Callable[..., ExperimentResult]] = {
    "lr-range": lr_range,
    "clr": clr,
    "batch-ramp": batch_ramp,
    "flooding": flooding,
    "batch-size": batch_size_sweep,
    "early-stopping": early_stopping,
    "momentum": momentum_sweep,
    "ood": ood,
    "staleness-lr": staleness_lr_experiment,
    "error-runtime": error_runtime_experiment,
}


def run_experiment(
    name: str, common: Common, out: str | Path | None = None, **kwargs: Any
) -> ExperimentResult:
    """Run experiment ``name`` (a key of :data:`EXPERIMENTS`)."""
    if name not in EXPERIMENTS:
        raise unknown_name("experiment", name, EXPERIMENTS)
    return EXPERIMENTS[name](common, out, **kwargs)


def _numeric_leaves(d: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_numeric_leaves(v, f"{prefix}{k}."))
    elif isinstance(d, list) and d and all(isinstance(v, dict) for v in d):
        for i, v in enumerate(d):
            out.update(_numeric_leaves(v, f"{prefix}{i}."))
    elif isinstance(d, int | float) and not isinstance(d, bool):
        out[prefix[:-1]] = float(d)
    return out


def _seed_task(
    name: str, common: Common, kwargs: dict[str, Any], keep_files: bool
) -> tuple[ExperimentResult, dict[str, bytes]]:
    """One seed's run where an executor placed it (another process or machine): written into a
    temporary folder there and handed back as ``{relative path: bytes}``."""
    with tempfile.TemporaryDirectory(prefix="dlsys-seed-") as tmp:
        res = run_experiment(name, common, tmp if keep_files else None, **kwargs)
        files = {
            p.relative_to(tmp).as_posix(): p.read_bytes()
            for p in Path(tmp).rglob("*")
            if p.is_file()
        }
    return res, files


def run_seeds(
    name: str,
    common: Common,
    seeds: Sequence[int],
    out: str | Path | None = None,
    *,
    executor: Executor | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Repeat experiment ``name`` for each seed (files under ``out/seed-N``) and return
    ``{"seeds", "mean", "std", "min", "max", "per_seed"}`` over every numeric summary entry
    (std: sample standard deviation, ddof 1; 0 for one seed). Writes ``out/metrics.json``.

    ``executor``: run the seeds as its tasks (``dlsys.distributed.executor.RayExecutor`` for a
    Ray cluster; default: one after the other in this process). Each seed's files come back
    from the task and are written here; the runs keep no checkpoints. A seed gives the same
    numbers wherever it runs (set ``common.threads`` where thread counts differ)."""
    if not seeds:
        raise ValueError("--seeds: give at least one seed")
    ck = common.checkpoint_dir
    subs = [Path(out) / f"seed-{s}" if out is not None else None for s in seeds]
    commons = [
        dataclasses.replace(
            common,
            seed=int(s),
            checkpoint_dir=Path(ck) / f"seed-{s}" if ck is not None and executor is None else None,
        )
        for s in seeds
    ]
    if executor is None:
        per_seed = [
            run_experiment(name, c, sub, **kwargs) for c, sub in zip(commons, subs, strict=True)
        ]
    else:
        futures = [executor.submit(_seed_task, name, c, kwargs, out is not None) for c in commons]
        per_seed = []
        for fut, sub in zip(futures, subs, strict=True):
            res, files = fut.result()
            for rel, blob in files.items():
                assert sub is not None  # files only come back when out is given
                (sub / rel).parent.mkdir(parents=True, exist_ok=True)
                (sub / rel).write_bytes(blob)
            per_seed.append(res)
    leaves = [_numeric_leaves(r.summary) for r in per_seed]
    keys = [k for k in leaves[0] if all(k in lf for lf in leaves)]
    agg: dict[str, Any] = {
        "experiment": name,
        "seeds": list(seeds),
        "mean": {},
        "std": {},
        "min": {},
        "max": {},
    }
    for k in keys:
        vals = np.array([lf[k] for lf in leaves], dtype=np.float64)
        agg["mean"][k] = float(vals.mean())
        agg["std"][k] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        agg["min"][k] = float(vals.min())
        agg["max"][k] = float(vals.max())
    agg["per_seed"] = [r.to_dict() for r in per_seed]
    if out is not None:
        write_json(Path(out) / "metrics.json", agg)
    return to_jsonable(agg)
