"""The parameter server's optimizer: per-gradient learning rates, averaging, SGD with momentum.

This is the one definition of how a parameter server turns the gradients of one update into
new weights; the replay uses it and so can a real parameter server (``dlsys.distributed``).

1. Each gradient ``g_i`` gets the learning rate of the rule for its staleness ``tau_i``
   (:class:`dlsys.simulator.LRRule`, the single definition of the rules): ``constant``
   alpha, ``inverse-staleness`` alpha / max(tau, 1) (Zhang et al. 2016), ``inverse-power``
   alpha / (1 + tau) ** a.
2. The update's gradients are averaged with those rates relative to alpha:
   ``G = (1 / m) * sum_i (lr_i / alpha) * g_i`` over its ``m`` gradients (sync, k-sync,
   k-batch and softsync average; async has ``m = 1``). Without momentum this is the step
   ``w <- w - (1 / m) * sum_i lr_i * g_i``.
3. ``G`` goes through SGD with learning rate alpha, momentum and weight decay, the same
   arithmetic as ``torch.optim.SGD`` (dampening 0, no Nesterov): a one-learner, staleness-0
   replay steps exactly as ``torch.optim.SGD`` does, bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dlsys.common.errors import check_choice, check_finite, check_positive
from dlsys.simulator import LRRule

__all__ = ["LR_RULES", "PSOptimizer", "gradient_rates"]

#: Learning-rate rules (names as in scenario files and ``--lr-rule``).
LR_RULES = ("constant", "inverse-staleness", "inverse-power")


def gradient_rates(
    rule: str, alpha: float, staleness: Sequence[int] | np.ndarray, power: float = 1.0
) -> np.ndarray:
    """Learning rate (per update) of each gradient from its staleness (PS updates), by
    :class:`dlsys.simulator.LRRule` ``rule`` with base rate ``alpha`` and exponent ``power``
    (``inverse-power`` only). Returns float64; negative staleness gives NaN."""
    out: np.ndarray = LRRule(rule, alpha=alpha, a=power).rates(np.asarray(staleness))
    return out


_FLOAT32_MAX = float(np.finfo(np.float32).max)


class PSOptimizer:
    """SGD at the parameter server with a per-gradient learning-rate rule (see module doc).

    ``lr``: alpha, per update; ``rule``: one of :data:`LR_RULES`; ``power``: the exponent a
    of ``inverse-power``; ``momentum`` in [0, 1); ``weight_decay`` >= 0 (L2, per update).
    Holds the momentum buffers (one per parameter tensor).
    """

    def __init__(
        self,
        lr: float,
        rule: str = "constant",
        *,
        power: float = 1.0,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        self.lr = check_positive("lr", lr)
        check_choice("lr_rule", rule, LR_RULES)
        self.rule = LRRule(
            rule, alpha=self.lr, a=check_positive("lr_power", power, allow_zero=True)
        )
        m = check_finite("momentum", momentum)
        if not 0.0 <= m < 1.0:
            raise ValueError(f"momentum: must be in [0, 1), got {momentum!r}")
        self.momentum = momentum
        self.weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True)
        for name, v in (("lr", self.lr), ("weight_decay", self.weight_decay)):
            if v > _FLOAT32_MAX:  # torch's add(alpha=v) on float32 weights cannot hold it
                raise ValueError(f"{name}: must be <= 3.4e38 (the largest float32), got {v!r}")
        self.buffers: list[torch.Tensor | None] = []

    def rates(self, staleness: Sequence[int] | np.ndarray) -> np.ndarray:
        """Per-gradient learning rates for these staleness values (float64)."""
        out: np.ndarray = self.rule.rates(np.asarray(staleness))
        return out

    def combine(
        self, grads: Sequence[Sequence[torch.Tensor]], staleness: Sequence[int] | np.ndarray
    ) -> list[torch.Tensor]:
        """``G = (1 / m) * sum_i (lr_i / alpha) * g_i`` for one update's ``m`` gradients
        (each a list of tensors, one per parameter), summed in the given order. With one
        gradient at rate alpha, ``G`` is that gradient itself (no arithmetic)."""
        return self.combine_scaled(grads, (self.rates(staleness) / self.lr).tolist())

    def combine_scaled(
        self, grads: Sequence[Sequence[torch.Tensor]], scales: Sequence[float]
    ) -> list[torch.Tensor]:
        """:meth:`combine` with the factors ``lr_i / alpha`` given (e.g. computed once for a
        whole schedule)."""
        m = len(grads)
        if m == 0:
            raise ValueError("combine: an update needs at least one gradient")
        first = list(grads[0])
        if m == 1 and scales[0] == 1.0:
            return first
        total = [g.clone() if scales[0] == 1.0 else g * scales[0] for g in first]
        if m == 1:
            return total
        for g, s in zip(grads[1:], scales[1:], strict=True):
            torch._foreach_add_(total, list(g), alpha=s)
        torch._foreach_div_(total, float(m))
        return total

    def step(
        self, params: Sequence[torch.Tensor], grad: Sequence[torch.Tensor], *, in_place: bool
    ) -> list[torch.Tensor]:
        """One SGD step with ``grad`` (``G`` of :meth:`combine`); returns the new weights.

        ``in_place`` overwrites ``params`` (when no pending gradient still reads them);
        otherwise new tensors are returned and ``params`` are left as they were. Both give
        the same bits.
        """
        if not self.buffers:
            self.buffers = [None] * len(params)
        out = []
        with torch.no_grad():
            for i, (p, g) in enumerate(zip(params, grad, strict=True)):
                if self.weight_decay != 0:
                    g = g.add(p, alpha=self.weight_decay)
                if self.momentum != 0:
                    buf = self.buffers[i]
                    if buf is None:
                        buf = g.detach().clone()
                        self.buffers[i] = buf
                    else:
                        buf.mul_(self.momentum).add_(g, alpha=1)
                    g = buf
                out.append(p.add_(g, alpha=-self.lr) if in_place else p.add(g, alpha=-self.lr))
        return out

    def state_dict(self) -> dict[str, object]:
        """Momentum buffers (tensors or None), for checkpoints."""
        return {"buffers": list(self.buffers)}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore :meth:`state_dict`."""
        bufs = state.get("buffers", [])
        assert isinstance(bufs, list)
        self.buffers = list(bufs)
