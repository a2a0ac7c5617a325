"""The replay engine: apply a :class:`Schedule` to any model, update by update.

Update ``v`` computes each of its gradients on the stored weights of the gradient's
``read_version`` (with :func:`torch.func.functional_call` on the one model: the weights are
plain tensors, not model copies), combines them and steps with the
:class:`~dlsys.training.replay.optimizer.PSOptimizer`, giving version ``v + 1``.

Memory: a weight version is kept only while some not-yet-applied gradient still reads it
(``Schedule.last_read``); the current version is always kept. Version ``v`` is stepped in
place when no later gradient reads it. For async with ``n`` learners at most ``n + 1``
versions are held between updates (one per in-flight gradient, plus the current one);
``max_versions`` reports the largest number held between updates.

Module buffers (batch-norm running statistics) are not versioned: they live in the model
and every gradient's forward pass updates them in replay order, as one model trained on the
same batches in that order would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from dlsys.common.memory import check_memory, format_bytes
from dlsys.training.replay.optimizer import PSOptimizer
from dlsys.training.replay.schedule import Schedule

__all__ = ["BoundModel", "Replayer", "UpdateRecord"]

#: ``batch(learner, seq) -> (x, y)``: the mini-batch of learner ``learner``'s ``seq``-th gradient.
BatchFn = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class UpdateRecord:
    """One applied update: ``version`` (the PS version it was applied to, so the weights
    become ``version + 1``), ``t`` (simulated seconds of ``t_apply``), ``train_loss`` (mean
    of its gradients' mini-batch losses, each at the weights it was computed on),
    ``mean_staleness`` (PS updates), ``gradients`` (count) and ``lr`` (mean per-gradient
    learning rate)."""

    version: int
    t: float
    train_loss: float
    mean_staleness: float
    gradients: int
    lr: float

    def as_dict(self) -> dict[str, Any]:
        """The record as a plain dict."""
        return {
            "version": self.version,
            "t": self.t,
            "train_loss": self.train_loss,
            "mean_staleness": self.mean_staleness,
            "gradients": self.gradients,
            "lr": self.lr,
        }


class BoundModel(nn.Module):
    """``model`` evaluated with the parameter tensors ``params`` (a name -> tensor dict) in
    place of its own, through :func:`torch.func.functional_call`; ``eval()`` / ``train()``
    reach the wrapped model."""

    def __init__(self, model: nn.Module, params: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.params = params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = functional_call(self.model, self.params, (x,))
        return out


class _Slots:
    """Where each trainable parameter lives (owning module, attribute), so stored tensors
    can be put in for one forward and the model's own put back after.

    NOTE: this is :func:`torch.func.functional_call` without its per-call checks (tied
    weights, buffers, strictness), which cost more than the forward of a small model at a
    small batch; the result is the same computation on the same tensors.
    """

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        self.slots = []
        for name in names:
            owner, _, attr = name.rpartition(".")
            self.slots.append((model.get_submodule(owner), attr))
        self.own = [m._parameters[a] for m, a in self.slots]

    def put(self, tensors: list[torch.Tensor]) -> None:
        for (m, a), t in zip(self.slots, tensors, strict=True):
            m._parameters[a] = t  # type: ignore[assignment]

    def restore(self) -> None:
        for (m, a), t in zip(self.slots, self.own, strict=True):
            m._parameters[a] = t


class Replayer:
    """Replay ``schedule`` on ``model`` (see the module docstring).

    ``loss_fn(output, y)`` gives the mean loss of a mini-batch; ``batch(learner, seq)``
    gives that gradient's mini-batch; ``optimizer`` is the parameter server's. The
    starting weights (version 0) are the model's parameters at construction (copied).
    """

    def __init__(
        self,
        schedule: Schedule,
        model: nn.Module,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        batch: BatchFn,
        optimizer: PSOptimizer,
    ) -> None:
        self.schedule = schedule
        self.model = model
        self.loss_fn = loss_fn
        self.batch = batch
        self.optimizer = optimizer
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        per_version = sum(
            p.numel() * p.element_size() for p in model.parameters() if p.requires_grad
        )
        held = schedule.versions_held()
        check_memory(
            "source",
            held * per_version,
            "replay fewer updates (--until-updates) or a smaller model",
            what=f"{held} weight versions held at once ({format_bytes(per_version)} each: "
            "the trace's most gradients in flight, plus the current weights)",
        )
        self.versions: dict[int, list[torch.Tensor]] = {
            0: [p.detach().clone() for n, p in model.named_parameters() if p.requires_grad]
        }
        self.next_update = 0
        self.max_versions = 1
        self._bounds = schedule.bounds()
        self._last_read = schedule.last_read()
        self._stale = schedule.staleness
        self._rates = optimizer.rates(self._stale)
        self._scales = (self._rates / optimizer.lr).tolist()
        self._slots = _Slots(model, self.names)
        model.train()

    @property
    def done(self) -> bool:
        """True when every update of the schedule has been applied."""
        return self.next_update >= self.schedule.updates

    def params(self, version: int | None = None) -> dict[str, torch.Tensor]:
        """The weights of ``version`` (default: the current one) as a name -> tensor dict."""
        v = self.next_update if version is None else version
        if v not in self.versions:
            raise KeyError(f"weight version {v} is not held (held: {sorted(self.versions)})")
        return dict(zip(self.names, self.versions[v], strict=True))

    def bound_model(self) -> BoundModel:
        """The model with the current weights, e.g. for evaluation."""
        return BoundModel(self.model, self.params())

    def _gradient(
        self, weights: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> tuple[float, tuple[torch.Tensor, ...]]:
        leaves = [w.detach().requires_grad_(True) for w in weights]
        self._slots.put(leaves)
        try:
            loss = self.loss_fn(self.model(x), y)
        finally:
            self._slots.restore()
        grads = torch.autograd.grad(loss, leaves)
        return float(loss.detach()), grads

    def step(self) -> UpdateRecord:
        """Apply the next update; return its record."""
        if self.done:
            raise RuntimeError("replay: every update of the schedule has been applied")
        v = self.next_update
        lo, hi = int(self._bounds[v]), int(self._bounds[v + 1])
        s = self.schedule
        grads = []
        losses = []
        for k in range(lo, hi):
            x, y = self.batch(int(s.learner[k]), int(s.seq[k]))
            loss, g = self._gradient(self.versions[int(s.read_version[k])], x, y)
            grads.append(g)
            losses.append(loss)
        combined = self.optimizer.combine_scaled(grads, self._scales[lo:hi])
        del grads
        for r in {int(r) for r in s.read_version[lo:hi]}:
            if r != v and self._last_read[r] <= v:
                del self.versions[r]
        in_place = self._last_read[v] <= v
        new = self.optimizer.step(self.versions[v], combined, in_place=in_place)
        if in_place:
            del self.versions[v]
        self.versions[v + 1] = new
        self.next_update = v + 1
        self.max_versions = max(self.max_versions, len(self.versions))
        return UpdateRecord(
            version=v,
            t=float(s.t_apply[hi - 1]),
            train_loss=losses[0] if hi - lo == 1 else float(np.mean(losses)),
            mean_staleness=float(self._stale[lo:hi].sum()) / (hi - lo),
            gradients=hi - lo,
            lr=float(self._rates[lo:hi].sum()) / (hi - lo),
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: held versions, optimizer and module buffers."""
        return {
            "next_update": self.next_update,
            "max_versions": self.max_versions,
            "versions": {int(v): list(ws) for v, ws in self.versions.items()},
            "optimizer": self.optimizer.state_dict(),
            "buffers": {n: b.detach().clone() for n, b in self.model.named_buffers()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.next_update = int(state["next_update"])
        self.max_versions = int(state["max_versions"])
        self.versions = {int(v): list(ws) for v, ws in state["versions"].items()}
        self.optimizer.load_state_dict(state["optimizer"])
        own = dict(self.model.named_buffers())
        with torch.no_grad():
            for n, b in state["buffers"].items():
                own[n].copy_(b)
