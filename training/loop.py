"""The training loop: one :func:`train` call trains one model on one :class:`Splits`.

What it does, per update: take the next mini-batch from the seeded permutation (the batch
size may follow a schedule of the update count), compute the gradient of the mean loss — as
accumulated micro-batches when the batch would not fit the memory budget — apply the flood
level, step the optimizer (SGD with momentum, or Adam) and then torch's per-step LR scheduler.
Per epoch it evaluates validation (and test) loss and accuracy, keeps the best model by
validation accuracy, stops early after ``patience`` epochs without improvement
(:class:`EarlyStopping`) and writes a checkpoint atomically (:mod:`dlsys.training.checkpoint`).

Resuming from a checkpoint restores the model, optimizer, scheduler, the batch permutation
generator, torch's global RNG (dropout), the early-stopping state and the metrics so far, so
an interrupted run continues to the same weights and metrics as an uninterrupted one (wall
times aside). Checkpoints hold only tensors and plain Python values and load with
``torch.load(weights_only=True)``.

Micro-batching: the gradient of the mean loss over a batch of ``B`` equals the sum over
micro-batches ``m`` of ``(|m| / B) * grad(mean loss over m)``. Flooding's gradient is
``sign(L - b) * grad L`` for the batch loss ``L`` (:func:`flood_sign`, the one statement of
the rule), so with micro-batches the accumulated cross-entropy gradient is negated when
``L < b`` (and zeroed when ``L == b``, as ``torch.abs``'s gradient is at 0). Batch-norm
statistics are per micro-batch, as in any gradient accumulation.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlsys.common.io import to_jsonable
from dlsys.common.memory import check_memory, format_bytes
from dlsys.common.progress import progress
from dlsys.training.checkpoint import (
    CHECKPOINT_FORMAT,
    config_differences,
    load_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from dlsys.training.config import OPTIMIZERS, SCHEDULERS, TrainConfig, TrainResult
from dlsys.training.data import Batches, Splits
from dlsys.training.models import build_model, flooding_loss, parameter_count

__all__ = [
    "CHECKPOINT_FORMAT",
    "OPTIMIZERS",
    "SCHEDULERS",
    "EarlyStopping",
    "TrainConfig",
    "TrainResult",
    "batch_size_at",
    "config_differences",
    "evaluate",
    "flood_sign",
    "load_checkpoint",
    "micro_batch_size",
    "save_checkpoint",
    "train",
]

# ----------------------------------------------------------------------------- pieces


def batch_size_at(config: TrainConfig, updates: int) -> int:
    """Batch size (samples) for the update after ``updates`` updates."""
    bs = config.batch_schedule
    if bs is None:
        return config.batch_size
    return int(min(bs["max"], bs["start"] * bs["factor"] ** (updates // bs["every"])))


def micro_batch_size(
    model: nn.Module, sample: torch.Tensor, memory_budget_mb: float
) -> tuple[int, int]:
    """Largest micro-batch whose activations fit ``memory_budget_mb`` MiB.

    Bytes per sample are estimated from one forward pass of ``sample`` (shape ``(1, C, H, W)``)
    in eval mode: ``3 * 4 * (input + every leaf module's output elements)`` — float32 values,
    kept for backward, their gradients and one temporary. Returns ``(micro_batch, bytes)``.
    """
    total = [int(sample.numel())]
    hooks = []

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            total[0] += int(out.numel())

    for m in model.modules():
        if not list(m.children()):
            hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    per_sample = 3 * 4 * total[0]
    budget = int(memory_budget_mb * 2**20)
    return max(1, budget // per_sample), per_sample


def _check_batch_memory(config: TrainConfig, n_train: int, micro: int, per_sample: int) -> None:
    """Refuse a forward/backward whose activations cannot fit: the largest batch (capped by
    the training set) or, when the batch is split, the micro-batch the budget allows."""
    bs = config.batch_schedule
    largest = min(int(bs["max"]) if bs is not None else config.batch_size, n_train)
    field = "batch_size" if largest <= micro else "memory_budget_mb"
    samples = min(largest, micro)
    check_memory(
        field,
        samples * per_sample,
        "use a smaller --batch-size or --memory-budget-mb (batches are split into micro-batches "
        "that fit the budget)",
        what=f"a forward/backward of {samples} samples at {format_bytes(per_sample)} each",
    )


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 1024
) -> tuple[float, float]:
    """Mean cross-entropy (nats) and accuracy (fraction) of ``model`` on ``(x, y)``, in eval
    mode, ``chunk`` samples at a time."""
    if x.shape[0] == 0:
        return float("nan"), float("nan")
    was_training = model.training
    model.eval()
    loss_sum = 0.0
    correct = 0
    with torch.no_grad():
        for s in range(0, x.shape[0], chunk):
            logits = model(x[s : s + chunk])
            yy = y[s : s + chunk]
            loss_sum += float(F.cross_entropy(logits, yy, reduction="sum"))
            correct += int((logits.argmax(1) == yy).sum())
    model.train(was_training)
    n = int(x.shape[0])
    return loss_sum / n, correct / n


def _build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def _build_scheduler(
    config: TrainConfig, opt: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler | None:
    s = config.scheduler
    if s is None:
        return None
    if s["name"] == "cyclic":
        return torch.optim.lr_scheduler.CyclicLR(
            opt,
            base_lr=float(s["base_lr"]),
            max_lr=float(s["max_lr"]),
            step_size_up=int(s["step_size_up"]),
            mode=s.get("mode", "triangular"),
            gamma=float(s.get("gamma", 1.0)),
            cycle_momentum=False,
        )
    if s["name"] == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(
            opt, milestones=[int(m) for m in s["milestones"]], gamma=float(s["gamma"])
        )
    return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=float(s["gamma"]))


def _seeds(seed: int) -> tuple[int, int]:
    """Independent seeds for weight initialisation and batch order (SeedSequence.spawn)."""
    init, batches = np.random.SeedSequence(seed).spawn(2)
    return int(init.generate_state(1, np.uint64)[0]), int(batches.generate_state(1, np.uint64)[0])


def _state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- rules


def flood_sign(loss: float, b: float) -> float:
    """The flooding rule (Ishida et al. 2020): the gradient of ``|L - b| + b`` is
    ``flood_sign(L, b) * grad L`` for the batch loss ``L`` (nats) and flood level ``b``:
    +1 above the flood level, -1 below it (gradient ascent), 0 at it (``torch.abs``'s gradient
    at 0). ``b == 0`` is no flooding (+1 for any loss). The fused loss (:func:`flooding_loss`)
    applies this rule inside its gradient; the micro-batch path applies it to the accumulated
    cross-entropy gradient; ``tests/training/test_loop.py`` holds the two to each other."""
    if b <= 0.0 or loss > b:
        return 1.0
    return 0.0 if loss == b else -1.0


@dataclass
class EarlyStopping:
    """Early stopping on validation accuracy: the state and the rule, epoch by epoch.

    :meth:`update` takes an epoch's validation accuracy; an epoch improves when its accuracy
    is finite and strictly above the best so far. After ``patience`` epochs in a row without
    improvement :attr:`should_stop` is True (``patience`` None: never). ``best_epoch`` is 0
    until an epoch improves; ``updates_to_best`` and ``time_to_best`` (wall seconds) record
    when the best model was reached; ``best_state`` holds its weights (CPU copies) when the
    caller keeps them.
    """

    patience: int | None = None
    best_val_acc: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    updates_to_best: int = 0
    time_to_best: float = 0.0
    best_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def update(self, epoch: int, val_acc: float, updates: int = 0, elapsed: float = 0.0) -> bool:
        """Record epoch ``epoch`` (1-based); True if it is the new best."""
        if math.isfinite(val_acc) and val_acc > self.best_val_acc:
            self.best_val_acc, self.best_epoch, self.bad_epochs = val_acc, epoch, 0
            self.updates_to_best, self.time_to_best = updates, elapsed
            self.best_state = None
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        """True once ``patience`` epochs in a row have not improved."""
        return self.patience is not None and self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """Plain values for a checkpoint (loads with ``torch.load(weights_only=True)``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)[1:]}

    @classmethod
    def from_state(cls, patience: int | None, state: dict[str, Any]) -> EarlyStopping:
        """The inverse of :meth:`state_dict`."""
        return cls(patience=patience, **state)


# ----------------------------------------------------------------------------- progress


@dataclass
class _Progress:
    """Everything a checkpoint restores besides the model, optimizer, scheduler and RNGs."""

    early_stopping: EarlyStopping
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    updates: int = 0
    elapsed: float = 0.0
    epoch: int = 0
    diverged: bool = False
    done: bool = False

    def state(self) -> dict[str, Any]:
        """Plain values for :func:`dlsys.training.checkpoint.save_checkpoint`."""
        return {
            "epoch": self.epoch,
            "done": self.done,
            "es": self.early_stopping.state_dict(),
            "history": self.history,
            "steps": self.steps,
            "updates": self.updates,
            "elapsed": self.elapsed,
            "diverged": self.diverged,
        }

    @classmethod
    def from_state(cls, patience: int | None, ckpt: dict[str, Any]) -> _Progress:
        """The inverse of :meth:`state` (``ckpt``: a loaded checkpoint)."""
        return cls(
            early_stopping=EarlyStopping.from_state(patience, dict(ckpt["es"])),
            history=list(ckpt["history"]),
            steps=list(ckpt["steps"]),
            updates=int(ckpt["updates"]),
            elapsed=float(ckpt["elapsed"]),
            epoch=int(ckpt["epoch"]),
            diverged=bool(ckpt["diverged"]),
            done=bool(ckpt["done"]),
        )


# ----------------------------------------------------------------------------- one update


def _update(
    model: nn.Module,
    losses: tuple[nn.Module, nn.Module],
    flood: float,
    micro: int,
    x: torch.Tensor,
    y: torch.Tensor,
) -> tuple[float, int]:
    """Gradient of one batch (x, y) into ``.grad``; returns (mean CE in nats, correct count).

    ``losses`` is (the flooding loss, plain cross-entropy). A batch of at most ``micro``
    samples runs the flooding loss directly; a larger one accumulates ``(|m| / B) * grad CE``
    over micro-batches ``m`` and then applies :func:`flood_sign` of the batch CE.
    """
    loss_fn, ce_fn = losses
    n = int(x.shape[0])
    if n <= micro:
        logits = model(x)
        loss = loss_fn(logits, y)
        loss.backward()
        with torch.no_grad():
            ce = float(F.cross_entropy(logits, y)) if flood > 0 else float(loss.detach())
            return ce, int((logits.argmax(1) == y).sum())
    ce_sum = 0.0
    correct = 0
    for s in range(0, n, micro):
        xb, yb = x[s : s + micro], y[s : s + micro]
        logits = model(xb)
        part = ce_fn(logits, yb)
        (part * (xb.shape[0] / n)).backward()
        ce_sum += float(part.detach()) * xb.shape[0]
        correct += int((logits.argmax(1) == yb).sum())
    ce = ce_sum / n
    sign = flood_sign(ce, flood)
    if sign != 1.0:
        for p in model.parameters():
            if p.grad is not None:
                if sign == 0.0:
                    p.grad.zero_()
                else:
                    p.grad.neg_()
    return ce, correct


def _epoch_record(
    config: TrainConfig,
    model: nn.Module,
    data: Splits,
    micro: int,
    head: dict[str, Any],
    running: tuple[float, int, int],
) -> dict[str, Any]:
    """The epoch's history row: ``head`` (epoch, updates, lr, batch size) plus train, val
    (and test) loss, accuracy and error; train from ``running`` (loss sum, correct, seen)
    unless ``config.eval_train``."""
    rec = dict(head)
    if config.eval_train:
        tl, ta = evaluate(model, data.train_x, data.train_y, micro)
    else:
        loss_sum, correct_sum, seen = running
        tl, ta = loss_sum / max(seen, 1), correct_sum / max(seen, 1)
    vl, va = evaluate(model, data.val_x, data.val_y, micro)
    rec.update(train_loss=tl, train_acc=ta, val_loss=vl, val_acc=va)
    if config.track_test:
        sl, sa = evaluate(model, data.test_x, data.test_y, micro)
        rec.update(test_loss=sl, test_acc=sa)
    for split in ("train", "val", "test"):
        if f"{split}_acc" in rec:
            rec[f"{split}_error"] = 100.0 * (1.0 - rec[f"{split}_acc"])
    return rec


# ----------------------------------------------------------------------------- train


def train(
    config: TrainConfig,
    data: Splits,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    context: dict[str, Any] | None = None,
    quiet: bool = True,
    desc: str = "train",
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[dict[str, Any]], bool] | None = None,
) -> TrainResult:
    """Train ``config.model`` on ``data``; return a :class:`TrainResult`.

    ``checkpoint``: file written atomically after every epoch. With ``resume`` and an existing
    file, the run continues from it (a finished run is returned as saved); its stored config
    (``config`` plus ``context`` and the data description) must equal this one, else
    ``ValueError`` lists the keys that differ. ``on_epoch_end(record)`` is called after each
    epoch's checkpoint; ``on_step(record)`` after each update and may return True to stop.
    """
    device = data.train_x.device
    full_config = to_jsonable(
        {"train": config.to_dict(), "data": data.describe(), **(context or {})}
    )
    init_seed, batch_seed = _seeds(config.seed)

    torch.manual_seed(init_seed)
    model = build_model(config.model, data.input_shape, data.num_classes, config.kernels)
    params = parameter_count(model, data.input_shape)  # traced on meta: no RNG, no memory
    model.to(device)
    loss_fn = flooding_loss(config.flood, config.kernels)
    losses = (loss_fn, flooding_loss(0.0, config.kernels) if config.flood > 0 else loss_fn)
    opt = _build_optimizer(config, model)
    sched = _build_scheduler(config, opt)
    gen = torch.Generator().manual_seed(batch_seed)
    batches = Batches(data.train_x, data.train_y, gen)
    micro, per_sample = micro_batch_size(model, data.train_x[:1], config.memory_budget_mb)
    _check_batch_memory(config, int(data.train_x.shape[0]), micro, per_sample)

    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    run = _Progress(early_stopping=EarlyStopping(config.patience))
    if resume and ckpt_path is not None and ckpt_path.exists():
        run = _Progress.from_state(
            config.patience, restore_checkpoint(ckpt_path, full_config, model, opt, sched, gen)
        )

    epochs = range(run.epoch, config.epochs)
    stop = was_done = run.done
    for epoch in progress(epochs, total=len(epochs), desc=desc, quiet=quiet):
        if stop:
            break
        t0 = time.perf_counter()
        model.train()
        loss_sum, correct_sum, seen = 0.0, 0, 0
        lr_now = opt.param_groups[0]["lr"]
        bs_now = batch_size_at(config, run.updates)
        schedule = (lambda u: batch_size_at(config, u)) if config.batch_schedule else bs_now
        for x, y in batches.epoch(schedule, run.updates):
            lr_now = opt.param_groups[0]["lr"]
            bs_now = batch_size_at(config, run.updates)
            n = int(x.shape[0])
            opt.zero_grad(set_to_none=True)
            ce, correct = _update(model, losses, config.flood, micro, x, y)
            opt.step()
            if sched is not None:
                sched.step()
            run.updates += 1
            loss_sum, correct_sum, seen = loss_sum + ce * n, correct_sum + correct, seen + n
            record = {
                "update": run.updates,
                "epoch": epoch + 1,
                "batch_size": n,
                "lr": lr_now,
                "loss": ce,
                "acc": correct / n,
                "time": run.elapsed + time.perf_counter() - t0,
            }
            run.steps.append(record)
            if not math.isfinite(ce) and config.stop_on_divergence:
                run.diverged = stop = True
            else:
                stop = on_step is not None and on_step(record)
                stop = stop or (
                    config.max_updates is not None and run.updates >= config.max_updates
                )
            if stop:
                break
        run.elapsed += time.perf_counter() - t0
        head = {"epoch": epoch + 1, "updates": run.updates, "lr": lr_now, "batch_size": bs_now}
        rec = _epoch_record(config, model, data, micro, head, (loss_sum, correct_sum, seen))
        rec["time"] = run.elapsed
        run.history.append(rec)
        if run.early_stopping.update(epoch + 1, rec["val_acc"], run.updates, run.elapsed):
            run.early_stopping.best_state = _state_copy(model) if config.restore_best else None
        stop = stop or run.early_stopping.should_stop
        run.epoch, run.done = epoch + 1, stop or epoch + 1 == config.epochs
        if run.done and config.restore_best and run.early_stopping.best_state is not None:
            model.load_state_dict(run.early_stopping.best_state)
        if ckpt_path is not None:
            save_checkpoint(ckpt_path, full_config, run.state(), model, opt, sched, gen)
        if on_epoch_end is not None:
            on_epoch_end(rec)
    if was_done and config.restore_best and run.early_stopping.best_state is not None:
        model.load_state_dict(run.early_stopping.best_state)
    return _result(full_config, data, run, model, micro, params)


def _result(
    config: dict[str, Any],
    data: Splits,
    run: _Progress,
    model: nn.Module,
    micro: int,
    params: dict[str, Any],
) -> TrainResult:
    """The :class:`TrainResult` of a finished run; ``final`` evaluates ``model`` as it is."""
    vl, va = evaluate(model, data.val_x, data.val_y, micro)
    sl, sa = evaluate(model, data.test_x, data.test_y, micro)
    return TrainResult(
        config=config,
        history=run.history,
        steps=run.steps,
        best_epoch=int(run.early_stopping.best_epoch),
        best_val_acc=float(run.early_stopping.best_val_acc),
        epochs_run=len(run.history),
        updates=run.updates,
        updates_to_best=int(run.early_stopping.updates_to_best),
        time_to_best=float(run.early_stopping.time_to_best),
        total_time=run.elapsed,
        diverged=run.diverged,
        final={"val_loss": vl, "val_acc": va, "test_loss": sl, "test_acc": sa},
        params=params,
        micro_batch=micro,
        model=model,
    )
