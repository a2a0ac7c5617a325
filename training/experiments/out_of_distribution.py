"""Experiment 8, ``ood``: test accuracy in and out of distribution.

Claim: convolutions with pooling tolerate a small shift of the test images better than an
MLP of similar accuracy; no model tolerates rotations it never saw. Each model is trained
once and tested on the test split as is, shifted up and rotated by 90, 180 and 270 degrees.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlsys.common.errors import check_int
from dlsys.training.data import rotate, shift_up
from dlsys.training.experiments.context import Common, Context, ExperimentResult
from dlsys.training.experiments.defaults import DEFAULTS, default
from dlsys.training.experiments.plots import ood_figure
from dlsys.training.loop import TrainConfig, evaluate

__all__ = ["OOD_MODELS", "ood"]

#: The models compared by default: the 2-layer MLP, the 7x7 CNN and its 3-layer variant.
OOD_MODELS: tuple[str, ...] = DEFAULTS["ood"]["models"].quick


def ood(
    common: Common,
    out: str | Path | None = None,
    *,
    shift: int | None = None,
    models: Sequence[str] | None = None,
) -> ExperimentResult:
    """Out-of-distribution tests (experiment 8): train each model of ``models`` (the 2-layer
    MLP, the 7x7 CNN and its 3-layer variant) and report test accuracy in-domain, with the
    test images shifted up ``shift`` pixels (default 4) and rotated by 90, 180 and 270
    degrees, together with each model's parameter count (from dlsys.analytics)."""
    if common.model is not None:
        raise ValueError("--model: not used by 'ood' (it compares mlp:128, cnn7 and cnn7-3)")
    shift = check_int(
        "--shift", default("ood", "shift", common.preset, shift), minimum=0, maximum=27
    )
    models = list(default("ood", "models", common.preset, models))
    ctx = Context("ood", common, out, {"shift": shift, "models": models})
    base = ctx.train_fields()
    x, y = ctx.data.test_x, ctx.data.test_y
    sets = {
        "in-domain": x,
        f"shift up {shift}": shift_up(x, shift),
        "rot 90": rotate(x, 90),
        "rot 180": rotate(x, 180),
        "rot 270": rotate(x, 270),
    }
    rows = []
    for name in models:
        r = ctx.run(name.replace(":", "-"), TrainConfig(**base, model=name))
        assert r.model is not None
        row: dict[str, Any] = {
            "model": name,
            "params": r.params["params"],
            "params_source": r.params["source"],
        }
        for sname, sx in sets.items():
            row[sname] = evaluate(r.model, sx, y, r.micro_batch)[1]
        rows.append(row)
    ctx.csv("ood.csv", rows)
    ctx.figure("ood", ood_figure(rows, list(sets)), rows)
    return ctx.finish({"shift_pixels": shift, "rows": rows})
