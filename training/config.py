"""What determines a training run (:class:`TrainConfig`) and what it returns
(:class:`TrainResult`); the loop itself is :func:`dlsys.training.loop.train`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from dlsys.common.errors import check_choice, check_finite, check_int, check_positive
from dlsys.common.io import to_jsonable

__all__ = ["OPTIMIZERS", "SCHEDULERS", "TrainConfig", "TrainResult"]

#: Optimizers accepted by :class:`TrainConfig`.
OPTIMIZERS = ("sgd", "adam")
#: Per-step LR schedulers (all torch's own) accepted in ``TrainConfig.scheduler["name"]``.
SCHEDULERS = ("cyclic", "multistep", "exponential")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (and is compared on ``--resume``).

    Units: ``lr`` per update; ``epochs`` full passes over the training split; ``batch_size``
    samples per update; ``flood`` the flood level b in nats (0 = no flooding);
    ``memory_budget_mb`` MiB of activations per forward/backward before a batch is split into
    micro-batches; ``patience`` epochs without a validation-accuracy improvement before
    stopping (``None``: never stop early).

    ``scheduler`` is ``None`` or a dict naming one of torch's schedulers, stepped after every
    update: ``{"name": "cyclic", "mode": "triangular"|"triangular2"|"exp_range",
    "base_lr": float, "max_lr": float, "step_size_up": updates, "gamma": float}``,
    ``{"name": "multistep", "milestones": [updates, ...], "gamma": float}`` or
    ``{"name": "exponential", "gamma": float}``.
    ``batch_schedule`` is ``None`` or ``{"start": samples, "factor": int, "every": updates,
    "max": samples}``: batch size ``min(max, start * factor ** (updates // every))``.
    ``max_updates`` stops a run after that many updates (used by the LR sweep).
    """

    model: str = "mlp:500"
    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    flood: float = 0.0
    scheduler: dict[str, Any] | None = None
    batch_schedule: dict[str, Any] | None = None
    patience: int | None = None
    restore_best: bool = False
    seed: int = 0
    kernels: str = "dlsys"
    memory_budget_mb: float = 512.0
    eval_train: bool = False
    track_test: bool = True
    stop_on_divergence: bool = True
    max_updates: int | None = None

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_positive("lr", self.lr)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        m = check_finite("momentum", self.momentum)
        if not 0.0 <= m < 1.0:
            raise ValueError(f"momentum: must be in [0, 1), got {self.momentum!r}")
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_positive("flood", self.flood, allow_zero=True)
        if self.patience is not None:
            check_int("patience", self.patience, minimum=1)
        check_int("seed", self.seed, minimum=0)
        check_positive("memory_budget_mb", self.memory_budget_mb)
        if self.max_updates is not None:
            check_int("max_updates", self.max_updates, minimum=1)
        if self.scheduler is not None:
            check_choice("scheduler.name", self.scheduler.get("name"), SCHEDULERS)
        if self.batch_schedule is not None:
            bs = self.batch_schedule
            for key in ("start", "factor", "every", "max"):
                if key not in bs:
                    raise ValueError(f"batch_schedule: missing key {key!r}")
                check_int(f"batch_schedule.{key}", bs[key], minimum=1)
            if bs["max"] < bs["start"]:
                raise ValueError(
                    f"batch_schedule: max ({bs['max']}) must be >= start ({bs['start']})"
                )

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready values."""
        return to_jsonable(dataclasses.asdict(self))


@dataclass
class TrainResult:
    """What :func:`train` returns.

    ``history`` has one dict per epoch: ``epoch``, ``updates`` (total so far), ``lr`` and
    ``batch_size`` (of the last update), ``train_loss`` (nats) / ``train_acc`` (fraction) /
    ``train_error`` (%), the same for ``val_`` and ``test_``, and ``time`` (wall seconds since
    the start, excluding evaluation of the checkpoint write). ``steps`` has one dict per
    update: ``update``, ``epoch``, ``batch_size``, ``lr``, ``loss``, ``acc``, ``time``.
    ``final`` holds validation/test metrics of the returned model (the best one when
    ``restore_best``).
    """

    config: dict[str, Any]
    history: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    best_epoch: int
    best_val_acc: float
    epochs_run: int
    updates: int
    updates_to_best: int
    time_to_best: float
    total_time: float
    diverged: bool
    final: dict[str, float]
    params: dict[str, Any]
    micro_batch: int
    model: nn.Module | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        """The result without the model, as JSON-ready values."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        return to_jsonable(d)
