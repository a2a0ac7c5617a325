"""Learners' compute times from the cost model: the ``[model]`` table and ``dist = "model"``.

A scenario may name a model; its learners may then take their compute time from it::

    [model]
    name = "cnn"               # any `dlsys cost` zoo model
    input = [1, 28, 28]        # (C, H, W) of one sample
    batch = 16                 # per-learner mini-batch (samples)
    device = "a100"            # a roofline preset: a100, h100, v100, cpu (measured here)

    [[learner]]
    name = "w"
    count = 8
    compute = { dist = "model", speed = 1.0, cv = 0.2 }

The step time is the roofline's forward + backward seconds of one mini-batch
(:func:`dlsys.analytics.roofline.roofline` of :func:`dlsys.analytics.cost`); a learner takes
``step / speed`` seconds per gradient, times lognormal noise of mean 1 and coefficient of
variation ``cv`` (``cv = 0``: every step takes exactly that). With a ``[model]`` table the
network's ``message_bytes`` defaults to the model's parameter bytes (float32: 4 per
parameter), and the run's summary reports ``model.step_seconds`` and
``model.message_bytes``. ``peak_flops`` (FLOP/s) and ``memory_bandwidth`` (bytes/s) override
the device's numbers; ``device = "cpu"`` measures this machine, so its step time (and the
trace) can differ from run to run: use a preset or the overrides for reproducible traces.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlsys.common.errors import check_int, check_positive, unknown_name
from dlsys.simulator.distributions import Distribution, parse_distribution

__all__ = ["MODEL_KEYS", "ModelSpec", "ModelTime", "model_spec", "parse_compute"]

#: Keys of the ``[model]`` table.
MODEL_KEYS = ("name", "input", "batch", "device", "peak_flops", "memory_bandwidth")
#: Keys of ``compute = { dist = "model", ... }``.
COMPUTE_KEYS = ("dist", "speed", "cv")
#: Bytes per parameter in a message (float32 weights and gradients).
PARAM_BYTES = 4


@dataclass(frozen=True)
class ModelSpec:
    """A scenario's model: ``step_seconds`` = ``forward_seconds + backward_seconds`` of one
    mini-batch of ``batch`` samples of shape ``input`` on ``device``; ``params`` (elements)
    and ``message_bytes`` (``4 * params``)."""

    name: str
    input: tuple[int, ...]
    batch: int
    device: str
    forward_seconds: float
    backward_seconds: float
    params: int
    message_bytes: int

    @property
    def step_seconds(self) -> float:
        """Forward + backward seconds of one mini-batch."""
        return self.forward_seconds + self.backward_seconds

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for the run's summary."""
        return {
            "name": self.name,
            "input": list(self.input),
            "batch": self.batch,
            "device": self.device,
            "forward_seconds": self.forward_seconds,
            "backward_seconds": self.backward_seconds,
            "step_seconds": self.step_seconds,
            "params": self.params,
            "message_bytes": self.message_bytes,
        }


def model_spec(table: Mapping[str, Any], where: str = "model") -> ModelSpec:
    """Build the :class:`ModelSpec` of a ``[model]`` table; errors name ``where.key``."""
    from dlsys.analytics import cost
    from dlsys.analytics.roofline import DEVICES, roofline

    if not isinstance(table, Mapping):
        raise TypeError(f"{where}: must be a table ([model]), got {table!r}")
    for k in table:
        if k not in MODEL_KEYS:
            raise ValueError(f"{where}: {unknown_name('key', str(k), MODEL_KEYS)}")
    for k in ("name", "input", "batch"):
        if k not in table:
            raise ValueError(f"{where}.{k}: missing ([model] needs name, input and batch)")
    name = table["name"]
    if not isinstance(name, str):
        raise TypeError(f"{where}.name: must be a model name, got {name!r}")
    shape = table["input"]
    if not isinstance(shape, list) or not shape:
        raise TypeError(f"{where}.input: must be a list of sizes like [1, 28, 28], got {shape!r}")
    dims = tuple(check_int(f"{where}.input", d, minimum=1) for d in shape)
    batch = check_int(f"{where}.batch", table["batch"], minimum=1)
    device = table.get("device", "a100")
    if not isinstance(device, str) or (device != "cpu" and device not in DEVICES):
        raise ValueError(
            f"{where}.device: {unknown_name('device', str(device), [*DEVICES, 'cpu'])}"
        )
    peak = bandwidth = None
    if "peak_flops" in table:
        peak = check_positive(f"{where}.peak_flops", table["peak_flops"])
    if "memory_bandwidth" in table:
        bandwidth = check_positive(f"{where}.memory_bandwidth", table["memory_bandwidth"])
    try:
        report = cost(name, input_shape=dims, batch=batch)
    except (ValueError, TypeError) as exc:
        field = "name" if "unknown model" in str(exc) else "input"
        raise type(exc)(f"{where}.{field}: {exc}") from None
    try:
        est = roofline(report, device, peak_flops=peak, bandwidth=bandwidth)
    except OverflowError:
        raise ValueError(
            f"{where}.input: {list(dims)} at batch {batch} is too large to price "
            f"({report.totals['macs']:,} MACs)"
        ) from None
    params = int(report.totals["params"])
    return ModelSpec(
        name=name,
        input=dims,
        batch=batch,
        device=est.device,
        forward_seconds=est.forward_s,
        backward_seconds=est.backward_s,
        params=params,
        message_bytes=PARAM_BYTES * params,
    )


@dataclass(frozen=True)
class ModelTime(Distribution):
    """``step / speed`` seconds per gradient times lognormal noise of mean 1 and coefficient
    of variation ``cv``: ``exp(N(-s^2 / 2, s^2))`` with ``s^2 = ln(1 + cv^2)``."""

    step: float
    speed: float = 1.0
    cv: float = 0.0
    kind = "model"

    def __post_init__(self) -> None:
        object.__setattr__(self, "step", check_positive("step", self.step))
        object.__setattr__(self, "speed", check_positive("speed", self.speed))
        object.__setattr__(self, "cv", check_positive("cv", self.cv, allow_zero=True))

    @property
    def mean(self) -> float:
        return self.step / self.speed

    def _draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        base = self.step / self.speed
        if self.cv == 0:
            return np.full(n, base)
        s2 = math.log1p(self.cv**2)
        return base * rng.lognormal(-s2 / 2, math.sqrt(s2), n)


def parse_compute(
    table: Any,
    where: str,
    base_dir: str | os.PathLike[str] | None,
    model: ModelSpec | None,
) -> Distribution:
    """A learner's ``compute`` table: ``dist = "model"`` here, everything else by
    :func:`dlsys.simulator.distributions.parse_distribution`."""
    if not (isinstance(table, Mapping) and table.get("dist") == "model"):
        return parse_distribution(table, where, base_dir)
    if model is None:
        raise ValueError(f'{where}.dist: "model" needs a [model] table naming the model')
    for k in table:
        if k not in COMPUTE_KEYS:
            bad = unknown_name("key for dist 'model'", str(k), COMPUTE_KEYS)
            raise ValueError(f"{where}: {bad}")
    try:
        return ModelTime(model.step_seconds, table.get("speed", 1.0), table.get("cv", 0.0))
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{where}.{exc}") from None
