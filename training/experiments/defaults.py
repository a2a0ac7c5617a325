"""Every default of the training experiments, in one table (as airbench keeps its ``hyp``).

Each entry is a :class:`Preset` pair ``(quick, homework)``: ``quick`` runs in minutes on 2 CPU
cores on the built-in ``digits`` stand-in; ``homework`` follows the homework sheets' epochs
and sizes (meant for MNIST / FashionMNIST). A value given by the user (``Common`` or an
experiment's keyword) always wins. A missing training field (``lr`` of batch-ramp, ``model``
of ood) means the experiment derives it (an LR sweep; its own list of models).

Units: ``epochs`` passes over the training split; ``batch_size`` samples per update; ``lr``
learning rate per update; ``momentum`` SGD's alpha (``v <- alpha v + grad``); flood levels
``b`` in nats; ``every`` and ``sweep_steps`` in updates; ``step_epochs`` in epochs;
``shift`` in pixels; ``lo``/``hi`` learning rates.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["DEFAULTS", "PRESETS", "TRAIN_FIELDS", "Preset", "default"]

#: Presets: ``quick`` defaults and the homework sheets' ``homework`` sizes.
PRESETS = ("quick", "homework")

#: Fields of :class:`dlsys.training.loop.TrainConfig` that ``Common`` may set.
TRAIN_FIELDS = ("model", "epochs", "batch_size", "lr", "momentum", "optimizer")


class Preset(NamedTuple):
    """One default: its value under the ``quick`` and the ``homework`` preset."""

    quick: Any
    homework: Any


def _same(value: Any) -> Preset:
    return Preset(value, value)


DEFAULTS: dict[str, dict[str, Preset]] = {
    "lr-range": {
        "model": Preset("cnn", "inception"),
        "epochs": Preset(1, 5),  # per LR of the grid
        "batch_size": _same(64),
        "momentum": _same(0.9),
        "optimizer": _same("sgd"),
        "lo": _same(1e-9),  # lowest LR of the grid (the sweep starts at max(lo, sweep_lo))
        "hi": _same(10.0),  # highest LR
        "num": _same(10),  # LRs in the grid, log-spaced
        "sweep_steps": Preset(150, 1000),  # updates of the exponential sweep
    },
    # The fast LR sweep that clr and batch-ramp run when no LR is given (and lr-range's
    # sweep in mode "both" starts at max(lo, this lo)).
    "lr-sweep": {
        "lo": _same(1e-6),
        "hi": _same(10.0),
        "steps": _same(150),  # updates
        "smoothing": _same(0.98),  # beta of the bias-corrected moving average of the loss
        "divergence": _same(4.0),  # stop once the smoothed loss exceeds this x its minimum
        "warmup": _same(10),  # updates before the divergence rule may stop the sweep
    },
    "clr": {
        "model": Preset("cnn", "inception"),
        "epochs": Preset(6, 10),
        "batch_size": _same(64),
        "momentum": _same(0.9),
        "optimizer": _same("sgd"),
        "step_epochs": Preset(1.0, 2.0),  # half-cycle
        "exp_range_end": _same(0.1),  # exp_range amplitude left at the end of the run
    },
    "batch-ramp": {
        "model": Preset("cnn", "inception"),
        "epochs": Preset(8, 30),
        "momentum": _same(0.9),
        "start": _same(32),  # first batch size (samples)
        "max_batch": _same(8192),  # last batch size (samples), capped by the training split
        "every": Preset(20, 2000),  # updates between doublings
        "factor": _same(2),  # batch-size multiplier at each ramp step
        "decay_gamma": _same(0.5),  # LR multiplier at each milestone of the "decay" run
    },
    "flooding": {
        "model": _same("mlp:500"),
        "epochs": Preset(15, 500),
        "batch_size": Preset(64, 128),
        "lr": _same(0.1),
        "momentum": _same(0.9),
        "optimizer": _same("sgd"),
        "b_grid": Preset(
            [0.0, 0.05, 0.1, 0.15, 0.2], [round(0.01 * i, 2) for i in range(21)]
        ),  # nats; 0 (no flooding) is always added
        "compare_cnn": _same(True),  # also train the flooding CNN at b = 0 and the chosen b
    },
    "batch-size": {
        "model": _same("mlp:128"),
        "epochs": Preset(20, 500),  # at most; early stopping ends most runs sooner
        "lr": _same(0.01),
        "momentum": _same(0.0),
        "optimizer": _same("sgd"),
        "batch_sizes": _same((1, 5, 50, 500, 5000)),
        "patience": _same(3),  # epochs without a validation-accuracy improvement
    },
    "early-stopping": {
        "model": _same("mlp:128"),
        "epochs": Preset(15, 30),
        "batch_size": _same(5),
        "lr": _same(0.01),
        "momentum": _same(0.0),
        "optimizer": _same("sgd"),
        "patience": _same(3),
    },
    "momentum": {
        "model": _same("mlp:128"),
        "epochs": Preset(10, 30),
        "batch_size": Preset(50, 5),
        "lr": _same(0.01),
        "optimizer": _same("sgd"),
        "momenta": _same((0.1, 0.3, 0.5, 0.7, 0.9)),
    },
    # Replay studies (training/replay/studies.py): batch_size is the per-learner mini-batch
    # mu, lr the PS's alpha (per update), epochs passes over the training split by all
    # learners together; learners lambda (staleness-lr) or P (error-runtime).
    "staleness-lr": {
        "model": Preset("mlp:128", "mlp:500"),
        "epochs": Preset(5, 10),
        "batch_size": _same(4),
        "lr": _same(0.1),
        "momentum": _same(0.0),
        "optimizer": _same("sgd"),
        "learners": Preset(16, 30),
        "near_points": _same(5.0),  # test-error points that still count as "near"
    },
    "error-runtime": {
        "model": Preset("mlp:128", "mlp:500"),
        "batch_size": _same(16),
        "lr": _same(0.05),
        "momentum": _same(0.0),
        "optimizer": _same("sgd"),
        "learners": Preset(8, 16),
        "ks": Preset((2, 4), (2, 4, 8)),  # K of the k-sync runs
        "k_async": Preset(4, 8),  # K of the k-async run
        "shift": _same(1.0),  # seconds: compute time is shift + Exp(rate)
        "rate": _same(1.0),  # per second
        "sim_time": Preset(600.0, 3000.0),  # simulated seconds per protocol
        "target_error": Preset(10.0, 5.0),  # percent test error
        "evals": _same(40),  # evaluations per run
    },
    "ood": {
        "epochs": Preset(5, 10),
        "batch_size": _same(64),
        "lr": _same(1e-3),
        "optimizer": _same("adam"),
        "shift": _same(4),  # pixels the test images move up
        "models": _same(("mlp:128", "cnn7", "cnn7-3")),
    },
}


def default(experiment: str, key: str, preset: str, given: Any = None) -> Any:
    """``given`` if not None, else the table's value of ``key`` for ``experiment`` under
    ``preset`` (None when the table has no such entry)."""
    if given is not None:
        return given
    entry = DEFAULTS[experiment].get(key)
    if entry is None:
        return None
    return entry.homework if preset == "homework" else entry.quick
