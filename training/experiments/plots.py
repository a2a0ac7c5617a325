"""The experiments' figures: one function per figure, from the numbers to a ``Figure``.

Each takes plain data (histories: one dict per epoch as in
:attr:`dlsys.training.loop.TrainResult.history`) and returns a
:class:`matplotlib.figure.Figure`; :meth:`Context.figure` saves it with its data beside it.
Nothing here trains or decides anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dlsys.common.plotting import colormap, subplots

__all__ = [
    "batch_ramp_figure",
    "batch_size_figure",
    "clr_curves_figure",
    "clr_lr_figure",
    "early_stopping_figure",
    "flooding_b_figure",
    "flooding_curves_figure",
    "lr_range_figure",
    "momentum_figure",
    "ood_figure",
]

History = Sequence[Mapping[str, Any]]


def _axes(title: str, xlabel: str, ylabel: str, ncols: int = 1) -> tuple[Any, list[Any]]:
    fig, axes = subplots(1, ncols, figsize=(5.5 * ncols, 4))
    axs = list(np.atleast_1d(axes))
    axs[0].set_title(title)
    for a in axs:
        a.set_xlabel(xlabel)
        a.set_ylabel(ylabel)
        a.grid(True, alpha=0.3)
    return fig, axs


def _series(history: History, key: str) -> tuple[list[int], list[float]]:
    return [h["epoch"] for h in history], [h.get(key, float("nan")) for h in history]


def lr_range_figure(
    grid: Mapping[str, Sequence[float]] | None,
    sweep: Mapping[str, Sequence[float]] | None,
    lr_min: float,
    lr_max: float,
) -> Any:
    """Loss vs LR: the grid's last-epoch losses (``{"lr", "loss"}``), the sweep's per-update
    and smoothed losses (``{"lrs", "losses", "smoothed"}``), lr_min/lr_max marked."""
    fig, axs = _axes("LR range test", "learning rate (per update, log scale)", "training loss")
    starts = []
    if grid is not None:
        fin = [(a, b) for a, b in zip(grid["lr"], grid["loss"], strict=True) if math.isfinite(b)]
        axs[0].plot([a for a, _ in fin], [b for _, b in fin], "o-", label="grid (last epoch)")
        starts += list(grid["loss"][:1])
    if sweep is not None:
        axs[0].plot(sweep["lrs"], sweep["losses"], alpha=0.3, label="sweep (per update)")
        axs[0].plot(sweep["lrs"], sweep["smoothed"], label="sweep (smoothed)")
        starts += list(sweep["smoothed"][:1])
    for v, style in ((lr_min, ":"), (lr_max, "--")):
        axs[0].axvline(v, color="k", linestyle=style, alpha=0.6)
    axs[0].set_xscale("log")
    starts = [v for v in starts if math.isfinite(v)]
    if starts:  # diverged losses would flatten the curve: show up to 1.5x the starting loss
        axs[0].set_ylim(0.0, 1.5 * max(starts))
    axs[0].legend(title=f"lr_min {lr_min:.2g}, lr_max {lr_max:.2g}")
    return fig


def clr_curves_figure(histories: Mapping[str, History]) -> Any:
    """Training/validation loss and accuracy per epoch, one line per policy (and fixed LR)."""
    fig, axs = _axes("Cyclical LR vs fixed LR", "epoch", "", ncols=4)
    for a, key, lab in zip(
        axs,
        ("train_loss", "val_loss", "train_acc", "val_acc"),
        (
            "training loss (nats)",
            "validation loss (nats)",
            "training accuracy",
            "validation accuracy",
        ),
        strict=True,
    ):
        a.set_ylabel(lab)
        for name, h in histories.items():
            a.plot(*_series(h, key), label=name)
    axs[0].legend()
    return fig


def clr_lr_figure(steps: Mapping[str, Sequence[Mapping[str, Any]]]) -> Any:
    """The learning rate of every update, one line per run (``steps``: per-update records)."""
    fig, axs = _axes("Learning rate per update", "update", "learning rate")
    for name, st in steps.items():
        axs[0].plot([s["update"] for s in st], [s["lr"] for s in st], label=name)
    axs[0].legend()
    return fig


def batch_ramp_figure(histories: Mapping[str, History]) -> Any:
    """Training loss per epoch and per update, validation accuracy per epoch, per run."""
    fig, axs = _axes("Batch-size ramp vs LR decay", "epoch", "training loss (nats)", ncols=3)
    axs[1].set_xlabel("updates")
    axs[2].set_ylabel("validation accuracy")
    for name, h in histories.items():
        axs[0].plot(*_series(h, "train_loss"), label=name)
        axs[1].plot([r["updates"] for r in h], [r["train_loss"] for r in h], label=name)
        axs[2].plot(*_series(h, "val_acc"), label=name)
    axs[0].legend()
    return fig


def flooding_curves_figure(mlp: Mapping[float, History], cnn: Mapping[str, History]) -> Any:
    """Training and validation error per epoch: the MLP for each flood level ``b`` (viridis),
    the CNN at b = 0 (black dashes) and at the chosen b (red dashes)."""
    fig, axs = _axes("Flooding: error during training", "epoch", "training error (%)", ncols=2)
    axs[1].set_ylabel("validation error (%)")
    cmap = colormap("viridis")
    for i, (b, h) in enumerate(mlp.items()):
        col = cmap(i / max(len(mlp) - 1, 1))
        axs[0].plot(*_series(h, "train_error"), color=col, label=f"MLP b={b:g}")
        axs[1].plot(*_series(h, "val_error"), color=col, label=f"MLP b={b:g}")
    for b_text, h in cnn.items():
        style = "k--" if b_text == "0" else "r--"
        axs[0].plot(*_series(h, "train_error"), style, label=f"CNN b={b_text}")
        axs[1].plot(*_series(h, "val_error"), style, label=f"CNN b={b_text}")
    axs[1].legend(fontsize=7)
    return fig


def flooding_b_figure(grid: Sequence[float], best_val_acc: Sequence[float], chosen: float) -> Any:
    """Best validation accuracy against the flood level, the chosen level marked."""
    fig, axs = _axes(
        "Flooding: validation accuracy vs flood level",
        "flood level b (nats)",
        "best validation accuracy",
    )
    axs[0].plot(list(grid), list(best_val_acc), "o-")
    axs[0].axvline(chosen, color="r", linestyle="--", label=f"chosen b = {chosen:g}")
    axs[0].legend()
    return fig


def batch_size_figure(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Test accuracy, training time (s) and updates to the best model against batch size."""
    xs = [r["batch_size"] for r in rows]
    fig, axs = _axes(
        "Batch size with early stopping",
        "batch size (samples, log scale)",
        "test accuracy",
        ncols=3,
    )
    axs[0].plot(xs, [r["test_acc"] for r in rows], "o-")
    axs[1].plot(xs, [r["train_time_s"] for r in rows], "o-")
    axs[1].set_ylabel("training time (s)")
    axs[2].plot(xs, [r["updates_to_best"] for r in rows], "o-")
    axs[2].set_ylabel("gradient updates to the best model")
    axs[2].set_yscale("log")
    for a in axs:
        a.set_xscale("log")
    return fig


def early_stopping_figure(
    history: History, best_epoch: int, stop_epoch: int | None, patience: int
) -> Any:
    """Train, validation and test accuracy per epoch; the restored epoch starred, the epoch
    where patience ``patience`` stops as a dashed line."""
    fig, axs = _axes("Accuracy per epoch (no early stopping)", "epoch", "accuracy")
    for key, lab in (("train_acc", "train"), ("val_acc", "validation"), ("test_acc", "test")):
        axs[0].plot(*_series(history, key), label=lab)
    axs[0].plot(
        [best_epoch],
        [history[best_epoch - 1]["test_acc"]],
        "r*",
        markersize=14,
        label=f"restored (epoch {best_epoch})",
    )
    if stop_epoch is not None:
        axs[0].axvline(
            stop_epoch,
            color="r",
            linestyle="--",
            label=f"patience {patience} stops (epoch {stop_epoch})",
        )
    axs[0].legend()
    return fig


def momentum_figure(histories: Mapping[float, History]) -> Any:
    """Training loss per epoch, one line per momentum factor."""
    fig, axs = _axes("Training loss for SGD momentum", "epoch", "training loss (nats)")
    for m, h in histories.items():
        axs[0].plot(*_series(h, "train_loss"), label=f"momentum {m:g}")
    axs[0].legend()
    return fig


def ood_figure(rows: Sequence[Mapping[str, Any]], sets: Sequence[str]) -> Any:
    """Grouped bars: accuracy of each model (row) on each test set (column of ``sets``)."""
    fig, axs = _axes("Test accuracy in and out of distribution", "test set", "accuracy")
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        axs[0].bar(
            np.arange(len(sets)) + i * width,
            [row[s] for s in sets],
            width,
            label=f"{row['model']} ({row['params']:,} params)",
        )
    axs[0].set_xticks(np.arange(len(sets)) + width * (len(rows) - 1) / 2, list(sets))
    axs[0].legend()
    return fig
