"""The experiments' decision rules, as small pure functions (each has its own unit tests).

- :func:`suggest_lr`: ``lr_min`` / ``lr_max`` from a loss-vs-LR curve (:data:`LR_RULE`).
- :func:`smooth_losses` and :class:`DivergenceStop`: the LR sweep's bias-corrected moving
  average of the loss and the rule that ends the sweep once the loss has blown up.
- :func:`flood_grid` and :func:`choose_flood_level`: which flood levels are tried and which
  one is kept (best validation accuracy, ties to the smaller ``b``).
- :func:`early_stop_epoch`: where early stopping with a given patience stops, and which epoch
  it restores (:class:`dlsys.training.loop.EarlyStopping`, the loop's own rule, replayed on
  a history).
- :func:`ramp_milestones`: the updates at which the batch-ramp experiment's LR decay steps,
  so that it follows the batch ramp in samples seen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dlsys.common.errors import check_int, check_positive
from dlsys.training.loop import EarlyStopping

__all__ = [
    "LR_RULE",
    "DivergenceStop",
    "choose_flood_level",
    "early_stop_epoch",
    "flood_grid",
    "ramp_milestones",
    "smooth_losses",
    "suggest_lr",
]

LR_RULE = (
    "lr_min = smallest LR at which the loss has fallen 10% of the way from its first value to "
    "its minimum (Smith 2017: where the loss starts to fall); lr_max = LR at the loss minimum "
    "(where it stops falling); the sweep uses the bias-corrected exponential moving average "
    "of the per-update loss (beta 0.98)"
)


def suggest_lr(lrs: Sequence[float], losses: Sequence[float]) -> dict[str, Any]:
    """Suggest ``lr_min`` / ``lr_max`` from a loss-vs-LR curve by the rule in ``LR_RULE``.

    Non-finite losses (diverged) are ignored. Returns ``{"lr_min", "lr_max", "rule"}``;
    ``lr_min`` falls back to ``lr_max / 10`` (stated in ``"fallback"``) if the rule gives no LR
    below ``lr_max``.
    """
    pts = [(float(a), float(b)) for a, b in zip(lrs, losses, strict=True) if math.isfinite(b)]
    if len(pts) < 2:
        raise ValueError("lr range test: fewer than 2 finite losses; widen [lo, hi] downwards")
    i_min = min(range(len(pts)), key=lambda i: pts[i][1])
    lr_max, l_min = pts[i_min]
    l0 = pts[0][1]
    target = l0 - 0.1 * (l0 - l_min)
    lr_min = next((lr for lr, loss in pts[: i_min + 1] if loss <= target), lr_max)
    out: dict[str, Any] = {"lr_min": lr_min, "lr_max": lr_max, "rule": LR_RULE}
    if not lr_min < lr_max:
        out["lr_min"] = lr_max / 10
        out["fallback"] = "loss fell at once; lr_min = lr_max / 10"
    return out


def smooth_losses(losses: Sequence[float], beta: float = 0.98) -> list[float]:
    """Bias-corrected exponential moving average: ``avg_i = beta avg_(i-1) + (1 - beta) x_i``,
    reported as ``avg_i / (1 - beta**i)`` (so a constant input comes back unchanged)."""
    avg, out = 0.0, []
    for i, v in enumerate(losses, 1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta**i))
    return out


@dataclass
class DivergenceStop:
    """The LR sweep's stopping rule, fed one per-update loss at a time (``__call__``).

    Stops at a non-finite loss, or once more than ``warmup`` finite losses have been seen and
    their smoothed value (:func:`smooth_losses` with ``beta``) exceeds ``factor`` times its
    smallest value so far.
    """

    beta: float = 0.98
    factor: float = 4.0
    warmup: int = 10
    _avg: float = 0.0
    _n: int = 0
    _best: float = math.inf

    def __call__(self, loss: float) -> bool:
        """Feed the loss (nats) of the next update; True means stop the sweep."""
        if not math.isfinite(loss):
            return True
        self._n += 1
        self._avg = self.beta * self._avg + (1 - self.beta) * loss
        smoothed = self._avg / (1 - self.beta**self._n)
        self._best = min(self._best, smoothed)
        return self._n > self.warmup and smoothed > self.factor * self._best


def flood_grid(levels: Sequence[Any]) -> list[float]:
    """The flood levels to try (nats): ``levels`` plus 0 (no flooding), sorted, duplicates
    dropped. Each level must be a finite number >= 0."""
    for b in levels:
        check_positive("--b-grid", b, allow_zero=True)
    return sorted({0.0, *(float(b) for b in levels)})


def choose_flood_level(best_val_acc: Mapping[float, float]) -> float:
    """The flood level ``b`` with the largest best-epoch validation accuracy; ties go to the
    smaller ``b`` (less flooding is the simpler model)."""
    if not best_val_acc:
        raise ValueError("choose_flood_level: no flood levels were trained")
    return max(best_val_acc, key=lambda b: (best_val_acc[b], -b))


def early_stop_epoch(val_accs: Sequence[float], patience: int) -> tuple[int | None, int]:
    """Replay early stopping on per-epoch validation accuracies (epoch 1 first).

    An epoch improves when its accuracy is finite and strictly above the best so far; after
    ``patience`` epochs in a row without improvement training stops. Returns ``(stop_epoch,
    best_epoch)``: the epoch at which it stops (None if it never does) and the epoch whose
    model it restores (0 if no epoch had a finite accuracy).
    """
    stopping = EarlyStopping(patience=check_int("patience", patience, minimum=1))
    for epoch, acc in enumerate(val_accs, 1):
        stopping.update(epoch, acc)
        if stopping.should_stop:
            return epoch, stopping.best_epoch
    return None, stopping.best_epoch


def ramp_milestones(start: int, max_batch: int, every: int, factor: int = 2) -> list[int]:
    """Updates (of a run at the fixed batch ``start``) at which the LR decays, one per step
    of the batch ramp ``start * factor**k`` (k = 1.. while it stays <= ``max_batch``).

    The ramp has seen ``every * start * (1 + factor + ... + factor**(k-1))`` samples when it
    takes step k; a run at batch ``start`` has seen as many after ``every * (factor**k - 1) /
    (factor - 1)`` updates, so both follow one schedule in epochs. For factor 2:
    ``every * (2**k - 1)``.
    """
    check_int("start", start, minimum=1)
    check_int("max_batch", max_batch, minimum=start)
    check_int("every", every, minimum=1)
    check_int("factor", factor, minimum=2)
    out, k = [], 1
    while start * factor**k <= max_batch:
        out.append(every * (factor**k - 1) // (factor - 1))
        k += 1
    return out
