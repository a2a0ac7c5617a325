"""Memory of a model: inference (weights + peak live activations) and training at batch B.

Inference: the weights plus the largest set of activations alive at once while the forward
runs in order (each tensor lives from the op that writes it to the last op that reads it;
in-place ops and views write nothing new). Training: weights + gradients (one per weight) +
optimizer state (SGD none, momentum one buffer, Adam two) + the activations saved for the
backward pass. NB: saved activations are approximated by every activation the report counts
(the input and every op's output under the report's convention, pointwise ops in place);
frameworks may save a little more (max-pool indices, dropout masks) or less.

All results are bytes (ints) at the report's batch size and the chosen dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlsys.analytics.report import CostReport, dtype_bytes
from dlsys.common.errors import unknown_name

#: Optimizer state held per parameter element, in parameter-sized buffers.
OPTIMIZER_STATES: dict[str, int] = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}


def peak_activations(report: CostReport) -> int:
    """Largest number of activation elements alive at once during the forward pass."""
    last: dict[int, int] = {}
    n = len(report.steps)
    for i, step in enumerate(report.steps):
        for k in step.reads:
            last[k] = i
    for k in report.outputs:
        last[k] = n
    size: dict[int, int] = {}
    live = peak = 0
    for i, step in enumerate(report.steps):
        if step.size:
            size[step.writes] = size.get(step.writes, 0) + step.size
            live += step.size
        peak = max(peak, live)
        for k in {*step.reads, step.writes}:
            if last.get(k, i) <= i and k in size:
                live -= size.pop(k)
    return peak


@dataclass(frozen=True)
class MemoryEstimate:
    """Memory in bytes: ``weights``, ``gradients``, ``optimizer`` state, ``activations``
    (peak live for inference, saved for training) and their ``total``."""

    mode: str
    dtype: str
    batch: int
    weights: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        """Sum of the parts, bytes."""
        return self.weights + self.gradients + self.optimizer + self.activations

    def as_dict(self) -> dict[str, object]:
        """The estimate as a JSON-ready dict (bytes)."""
        return {
            "mode": self.mode,
            "dtype": self.dtype,
            "batch": self.batch,
            "weights": self.weights,
            "gradients": self.gradients,
            "optimizer": self.optimizer,
            "activations": self.activations,
            "total": self.total,
        }


def inference_memory(report: CostReport, dtype: str = "float32") -> MemoryEstimate:
    """Weights + peak live activations (bytes) for one forward pass at the report's batch."""
    nb = dtype_bytes(dtype)
    return MemoryEstimate(
        mode="inference",
        dtype=dtype,
        batch=report.batch,
        weights=report.totals["params"] * nb,
        gradients=0,
        optimizer=0,
        activations=peak_activations(report) * nb,
    )


def training_memory(
    report: CostReport, optimizer: str = "adam", dtype: str = "float32"
) -> MemoryEstimate:
    """Weights + gradients + optimizer state + saved activations (bytes) at the report's batch.

    ``optimizer``: ``"sgd"`` (no state), ``"momentum"`` (one buffer), ``"adam"``/``"adamw"``
    (two moments).
    """
    if optimizer not in OPTIMIZER_STATES:
        raise unknown_name("optimizer", str(optimizer), OPTIMIZER_STATES)
    nb = dtype_bytes(dtype)
    p = report.totals["params"] * nb
    return MemoryEstimate(
        mode=f"training ({optimizer})",
        dtype=dtype,
        batch=report.batch,
        weights=p,
        gradients=p,
        optimizer=OPTIMIZER_STATES[optimizer] * p,
        activations=report.totals["activations"] * nb,
    )
