"""``replay``: a parameter-server schedule on one of dlsys.training's models and data sets.

The model starts from the weights :func:`dlsys.training.train` starts from for the same
seed and model; learner streams are seeded as :mod:`~dlsys.training.replay.streams` says;
the loss is dlsys.training's (cross-entropy through ``--kernels``). Every ``eval_every``
updates (and before the first and after the last) the current weights are evaluated on the
validation and test sets. With a checkpoint file the state is written atomically at every
evaluation, and ``resume`` continues from it to the same weights and metrics as an
uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlsys.common.errors import check_choice, check_int
from dlsys.common.io import atomic_write_bytes, to_jsonable
from dlsys.common.memory import check_memory, format_bytes
from dlsys.common.progress import progress
from dlsys.training.data import Splits
from dlsys.training.loop import _seeds, config_differences, evaluate, micro_batch_size
from dlsys.training.models import KERNELS, build_model, flooding_loss
from dlsys.training.replay.engine import Replayer, UpdateRecord
from dlsys.training.replay.optimizer import PSOptimizer
from dlsys.training.replay.schedule import Schedule
from dlsys.training.replay.streams import SampleStreams

__all__ = ["REPLAY_CHECKPOINT_FORMAT", "ReplayConfig", "ReplayResult", "initial_model", "replay"]

#: Version tag stored in every replay checkpoint.
REPLAY_CHECKPOINT_FORMAT = "dlsys.training.replay.checkpoint/1"


@dataclass(frozen=True)
class ReplayConfig:
    """Everything besides the schedule and data that determines a replay.

    ``per_learner_batch``: samples per gradient; ``lr``: alpha (per update); ``lr_rule``:
    constant | inverse-staleness | inverse-power; ``lr_power``: a of inverse-power;
    ``momentum`` in [0, 1) and ``weight_decay`` (L2) of the PS's SGD; ``seed``: model
    initialisation and the learners' sample streams; ``eval_every``: updates between
    evaluations; ``history_every``: keep every k-th update record (and the last);
    ``kernels``: dlsys | torch; ``stop_on_divergence``: stop at the first non-finite loss.
    """

    model: str = "mlp:128"
    per_learner_batch: int = 16
    lr: float = 0.05
    lr_rule: str = "constant"
    lr_power: float = 1.0
    momentum: float = 0.0
    weight_decay: float = 0.0
    seed: int = 0
    eval_every: int = 100
    history_every: int = 1
    kernels: str = "dlsys"
    stop_on_divergence: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise TypeError(f"model: must be a model name, got {self.model!r}")
        check_int("per_learner_batch", self.per_learner_batch, minimum=1)
        self.optimizer()  # the optimizer's own checks of lr, lr_rule, lr_power, momentum, ...
        check_int("seed", self.seed, minimum=0)
        check_int("eval_every", self.eval_every, minimum=1)
        check_int("history_every", self.history_every, minimum=1)
        check_choice("kernels", self.kernels, KERNELS)

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready values."""
        out: dict[str, Any] = to_jsonable(dataclasses.asdict(self))
        return out

    def replace(self, **changes: Any) -> ReplayConfig:
        """A copy with fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def optimizer(self) -> PSOptimizer:
        """A fresh parameter-server optimizer for this config."""
        return PSOptimizer(
            self.lr,
            self.lr_rule,
            power=self.lr_power,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )


@dataclass
class ReplayResult:
    """What :func:`replay` returns.

    ``history``: one dict per kept update (:class:`UpdateRecord` fields: ``version``, ``t``
    simulated seconds, ``train_loss`` nats, ``mean_staleness``, ``gradients``, ``lr``);
    ``evals``: one dict per evaluation (``update`` count, ``t`` simulated seconds,
    ``val_loss``/``val_acc``/``test_loss``/``test_acc``; losses in nats, accuracies as
    fractions); ``test_accuracy`` of the final weights (fraction); ``mean_staleness`` over
    the applied gradients; ``max_weight_versions`` held between updates; ``seconds``: wall
    time of this call (the only wall-clock number).
    """

    config: dict[str, Any]
    schedule: dict[str, Any]
    updates: int
    gradients_applied: int
    mean_staleness: float
    max_weight_versions: int
    test_accuracy: float
    final_train_loss: float
    diverged: bool
    sim_time: float
    history: list[dict[str, Any]]
    evals: list[dict[str, Any]]
    seconds: float
    model: nn.Module | None = field(default=None, repr=False)

    def summary(self, *, wall_clock: bool = True) -> dict[str, Any]:
        """JSON-ready result without the model (and without ``seconds`` if not
        ``wall_clock``, for files that must be byte-identical across runs)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        if not wall_clock:
            del d["seconds"]
        out: dict[str, Any] = to_jsonable(d)
        return out


def initial_model(config: ReplayConfig, data: Splits) -> nn.Module:
    """The model ``train`` would start from for ``config.model`` and ``config.seed``."""
    torch.manual_seed(_seeds(config.seed)[0])
    model = build_model(config.model, data.input_shape, data.num_classes, config.kernels)
    return model.to(data.train_x.device)


def _evaluate(rep: Replayer, data: Splits, t: float) -> dict[str, Any]:
    bound = rep.bound_model()
    vl, va = evaluate(bound, data.val_x, data.val_y)
    sl, sa = evaluate(bound, data.test_x, data.test_y)
    return {
        "update": rep.next_update,
        "t": t,
        "val_loss": vl,
        "val_acc": va,
        "test_loss": sl,
        "test_acc": sa,
    }


@dataclass
class _RunState:
    """What a replay has produced so far (saved in checkpoints besides the Replayer's state)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    diverged: bool = False
    t: float = 0.0


class _Checkpoint:
    """The replay's checkpoint file (``path`` None: none), tagged with its full config."""

    def __init__(self, path: Path | None, config: dict[str, Any]) -> None:
        self.path = path
        self.config = config

    def resume(self, rep: Replayer, device: torch.device) -> _RunState:
        """Load the file into ``rep`` and return the run state (fresh if there is no file)."""
        if self.path is None or not self.path.exists():
            return _RunState()
        ckpt = load_checkpoint_file(self.path, device)
        diffs = config_differences(ckpt["config"], self.config)
        if diffs:
            raise ValueError(
                f"--resume: checkpoint {str(self.path)!r} was written for a different replay: "
                + "; ".join(diffs)
            )
        rep.load_state_dict(ckpt["replayer"])
        torch.set_rng_state(ckpt["rng"].cpu())
        return _RunState(
            list(ckpt["history"]), list(ckpt["evals"]), bool(ckpt["diverged"]), float(ckpt["t"])
        )

    def save(self, rep: Replayer, run: _RunState) -> None:
        """Write the state atomically (nothing without a path)."""
        if self.path is None:
            return
        payload = {
            "format": REPLAY_CHECKPOINT_FORMAT,
            "config": self.config,
            "replayer": rep.state_dict(),
            "history": run.history,
            "evals": run.evals,
            "diverged": run.diverged,
            "t": run.t,
            "rng": torch.get_rng_state(),
        }
        buf = io.BytesIO()
        torch.save(payload, buf)
        atomic_write_bytes(self.path, buf.getvalue())


def replay(
    schedule: Schedule,
    config: ReplayConfig,
    data: Splits,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    quiet: bool = True,
    on_update: Callable[[UpdateRecord], bool] | None = None,
) -> ReplayResult:
    """Replay ``schedule`` with ``config`` on ``data``; return a :class:`ReplayResult`.

    ``checkpoint``: file written atomically at every evaluation; with ``resume`` and an
    existing file, the replay continues from it (its config, data and schedule must equal
    this one's, else ``ValueError`` lists what differs). ``on_update(record)`` runs after
    every update and may return True to stop (the state is checkpointed first).
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule: must be a Schedule, got {type(schedule).__name__}")
    if not isinstance(config, ReplayConfig):
        raise TypeError(f"config: must be a ReplayConfig, got {type(config).__name__}")
    n_train = int(data.train_x.shape[0])
    if config.per_learner_batch > n_train:
        raise ValueError(
            f"per_learner_batch: must be <= the training set size ({n_train}), "
            f"got {config.per_learner_batch}"
        )
    t0 = time.perf_counter()
    device = data.train_x.device
    model = initial_model(config, data)
    # Each gradient is one forward/backward of the whole per-learner batch (no micro-batches).
    _, per_sample = micro_batch_size(model, data.train_x[:1], 1.0)
    check_memory(
        "per_learner_batch",
        config.per_learner_batch * per_sample,
        "use a smaller --per-learner-batch",
        what=f"a gradient of {config.per_learner_batch} samples at {format_bytes(per_sample)} each",
    )
    streams = SampleStreams(n_train, config.per_learner_batch, config.seed, device)

    def batch(learner: int, seq: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = streams.indices(learner, seq)
        return data.train_x.index_select(0, idx), data.train_y.index_select(0, idx)

    rep = Replayer(schedule, model, flooding_loss(0.0, config.kernels), batch, config.optimizer())
    full_config = to_jsonable(
        {"replay": config.to_dict(), "data": data.describe(), "schedule": schedule.fingerprint()}
    )
    ck = _Checkpoint(Path(checkpoint) if checkpoint is not None else None, full_config)
    run = ck.resume(rep, device) if resume else _RunState()
    history, evals = run.history, run.evals
    if not evals:
        evals.append(_evaluate(rep, data, run.t))
    last_loss = history[-1]["train_loss"] if history else math.nan
    steps = range(rep.next_update, schedule.updates if not run.diverged else rep.next_update)
    for _ in progress(steps, total=len(steps), desc="replay", quiet=quiet):
        rec = rep.step()
        run.t, last_loss = rec.t, rec.train_loss
        if rep.next_update % config.history_every == 0 or rep.done:
            history.append(rec.as_dict())
        run.diverged = not math.isfinite(rec.train_loss) and config.stop_on_divergence
        stop = run.diverged or (on_update is not None and bool(on_update(rec)))
        if rep.next_update % config.eval_every == 0 or rep.done or run.diverged:
            evals.append(_evaluate(rep, data, run.t))
            ck.save(rep, run)
        elif stop:
            ck.save(rep, run)
        if stop:
            if run.diverged and (not history or history[-1]["version"] != rec.version):
                history.append(rec.as_dict())
            break
    if evals[-1]["update"] != rep.next_update:
        evals.append(_evaluate(rep, data, run.t))
    applied = int(schedule.bounds()[rep.next_update])
    stale = schedule.staleness[:applied]
    model_out = rep.bound_model()
    return ReplayResult(
        config=full_config,
        schedule=schedule.describe(),
        updates=rep.next_update,
        gradients_applied=applied,
        mean_staleness=float(stale.mean()) if applied else 0.0,
        max_weight_versions=rep.max_versions,
        test_accuracy=float(evals[-1]["test_acc"]),
        final_train_loss=float(last_loss),
        diverged=run.diverged,
        sim_time=run.t,
        history=history,
        evals=evals,
        seconds=time.perf_counter() - t0,
        model=model_out,
    )


def load_checkpoint_file(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load a replay checkpoint onto ``device`` (``torch.load(weights_only=True)``);
    ``ValueError`` if it is not one."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise ValueError(f"--resume: cannot read checkpoint {str(path)!r} ({exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != REPLAY_CHECKPOINT_FORMAT:
        raise ValueError(f"--resume: {str(path)!r} is not a {REPLAY_CHECKPOINT_FORMAT} checkpoint")
    return ckpt
