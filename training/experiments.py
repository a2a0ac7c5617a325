"""The eight experiments of the seeds, each a function returning an :class:`ExperimentResult`.

Every function takes the shared settings (:class:`Common`: data set, model, epochs, batch
size, learning rate, seed, kernels, device, preset, checkpoints) plus its own keyword
arguments, trains what it needs through :func:`dlsys.training.loop.train`, writes
``config.json``, ``metrics.json``, CSV tables and PNG plots (each with its JSON data) into
``out`` when given, and returns the key numbers in ``result.summary`` with the plot file names
in ``result.plots`` (relative to ``out``).

Unset settings take the experiment's defaults for the preset: ``quick`` (minutes on 2 CPU
cores on ``digits``) or ``homework`` (the seeds' epochs and sizes, meant for MNIST /
FashionMNIST). All runs of one experiment share the seed, so they start from the same
weights and see the same batch order (common random numbers), and differ only in what the
experiment varies.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlsys.common.errors import check_positive, unknown_name
from dlsys.common.io import atomic_write_text, to_jsonable, write_json
from dlsys.common.plotting import pyplot as plt
from dlsys.common.plotting import save_figure
from dlsys.training.data import load_dataset, rotate, shift_up
from dlsys.training.loop import TrainConfig, TrainResult, evaluate, train
from dlsys.training.models import KERNELS

__all__ = [
    "EXPERIMENTS",
    "PRESETS",
    "Common",
    "ExperimentResult",
    "batch_ramp",
    "batch_size_sweep",
    "clr",
    "early_stopping",
    "flooding",
    "lr_range",
    "momentum_sweep",
    "ood",
    "run_experiment",
    "run_seeds",
    "suggest_lr",
]

#: Presets: ``quick`` defaults and the seeds' ``homework`` sizes.
PRESETS = ("quick", "homework")

LR_RULE = (
    "lr_min = smallest LR at which the loss has fallen 10% of the way from its first value to "
    "its minimum (Smith 2017: where the loss starts to fall); lr_max = LR at the loss minimum "
    "(where it stops falling); the sweep uses the bias-corrected exponential moving average "
    "of the per-update loss (beta 0.98)"
)


@dataclass
class Common:
    """Settings shared by every experiment; ``None`` means "the experiment's default".

    ``epochs`` (passes over the training split), ``batch_size`` (samples), ``lr`` (per update),
    ``memory_budget_mb`` (MiB of activations per micro-batch), ``limit`` (keep at most this
    many training and test images, for quick checks), ``threads`` (torch intra-op threads).
    ``checkpoint_dir`` receives one checkpoint per run, written every epoch; with ``resume``
    existing checkpoints are continued.
    """

    dataset: str = "digits"
    model: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    momentum: float | None = None
    optimizer: str | None = None
    seed: int = 0
    kernels: str = "dlsys"
    device: str = "auto"
    preset: str = "quick"
    memory_budget_mb: float = 512.0
    limit: int | None = None
    threads: int | None = None
    checkpoint_dir: str | Path | None = None
    resume: bool = False
    quiet: bool = True

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise unknown_name("preset", self.preset, PRESETS)
        if self.kernels not in KERNELS:
            raise unknown_name("kernels", self.kernels, KERNELS)
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"--device: must be auto, cpu or cuda[:N], got {self.device!r}")
        for name in ("epochs", "batch_size", "threads"):
            v = getattr(self, name)
            if v is not None:
                if isinstance(v, bool) or not isinstance(v, int):
                    raise TypeError(f"--{name.replace('_', '-')}: must be an integer, got {v!r}")
                if v < 1:
                    raise ValueError(f"--{name.replace('_', '-')}: must be >= 1, got {v!r}")
        if self.lr is not None:
            check_positive("--lr", self.lr)
        check_positive("--memory-budget-mb", self.memory_budget_mb)

    def resolved_device(self) -> str:
        """``auto`` -> ``cuda`` when a CUDA device is present, else ``cpu``."""
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {self.device}: no CUDA device is available; use cpu")
        return self.device

    def record(self) -> dict[str, Any]:
        """The settings that shape results (for config.json and checkpoint comparison)."""
        d = dataclasses.asdict(self)
        for k in ("checkpoint_dir", "resume", "quiet", "threads", "device"):
            d.pop(k)
        return to_jsonable(d)  # type: ignore[no-any-return]


@dataclass
class ExperimentResult:
    """What an experiment returns: ``summary`` holds its key numbers (JSON-ready), ``plots``
    and ``files`` the names it wrote under ``out`` (empty when ``out`` was None), ``runs`` one
    :meth:`TrainResult.summary` (without per-update steps) per training run."""

    experiment: str
    summary: dict[str, Any]
    config: dict[str, Any]
    data: dict[str, Any]
    runs: dict[str, Any] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what ``metrics.json`` holds)."""
        return to_jsonable(dataclasses.asdict(self))  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------- helpers


class _Ctx:
    """Per-experiment state: the data, where files and checkpoints go, what was written."""

    def __init__(self, name: str, common: Common, out: str | Path | None, params: dict[str, Any]):
        self.name = name
        self.common = common
        self.out = Path(out) if out is not None else None
        self.params = params
        self.plots: list[str] = []
        self.files: list[str] = []
        self.runs: dict[str, Any] = {}
        if common.threads is not None:
            torch.set_num_threads(common.threads)
        self.data = load_dataset(
            common.dataset, seed=common.seed, device=common.resolved_device(), limit=common.limit
        )

    def config(self) -> dict[str, Any]:
        return {"experiment": self.name, "common": self.common.record(), "params": self.params}

    def run(self, run: str, cfg: TrainConfig, **kw: Any) -> TrainResult:
        ckpt = None
        if self.common.checkpoint_dir is not None:
            ckpt = Path(self.common.checkpoint_dir) / f"{run}.pt"
        res = train(
            cfg,
            self.data,
            checkpoint=ckpt,
            resume=self.common.resume,
            context={"experiment": self.name, "run": run, "params": to_jsonable(self.params)},
            quiet=self.common.quiet,
            desc=f"{self.name} {run}",
            **kw,
        )
        s = res.summary()
        s.pop("steps")
        self.runs[run] = s
        if self.out is not None:
            self.csv(f"{run}_epochs.csv", res.history)
            self.csv(f"{run}_steps.csv", res.steps)
        return res

    def csv(self, name: str, rows: Sequence[dict[str, Any]]) -> None:
        if self.out is None:
            return
        buf = io.StringIO()
        if rows:
            cols = list(dict.fromkeys(k for r in rows for k in r))
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(cols)
            for r in rows:
                w.writerow([_cell(r.get(c)) for c in cols])
        atomic_write_text(self.out / name, buf.getvalue())
        self.files.append(name)

    def figure(self, name: str, fig: Any, data: Any) -> None:
        if self.out is None:
            plt.close(fig)
            return
        title = fig.axes[0].get_title() if fig.axes else ""
        if self.data.stand_in:
            fig.suptitle(f"{title}\n[{self.data.name}: stand-in data, not MNIST]", fontsize=9)
            if fig.axes:
                fig.axes[0].set_title("")
        save_figure(fig, self.out / f"{name}.png", data=data)
        self.plots.append(f"{name}.png")
        self.files += [f"{name}.png", f"{name}.json"]

    def finish(self, summary: dict[str, Any]) -> ExperimentResult:
        data = self.data.describe()
        summary = {"data": data["name"], "stand_in": data["stand_in"], **summary}
        if data["stand_in"]:
            summary["note"] = data["note"]
        res = ExperimentResult(
            experiment=self.name,
            summary=to_jsonable(summary),
            config=to_jsonable(self.config()),
            data=data,
            runs=self.runs,
            plots=list(self.plots),
            files=[],
        )
        if self.out is not None:
            write_json(self.out / "config.json", res.config)
            res.files = sorted({*self.files, "config.json", "metrics.json"})
            write_json(self.out / "metrics.json", res.to_dict())
        return res


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ""
    return str(v)


def _pick(value: Any, quick: Any, homework: Any, preset: str) -> Any:
    if value is not None:
        return value
    return homework if preset == "homework" else quick


def _base(ctx: _Ctx, **defaults: Any) -> dict[str, Any]:
    """TrainConfig fields from the common settings, falling back to ``defaults``
    (each default is a ``(quick, homework)`` pair or a single value)."""
    c = ctx.common
    out: dict[str, Any] = {}
    for key in ("model", "epochs", "batch_size", "lr", "momentum", "optimizer"):
        d = defaults.get(key)
        q, h = d if isinstance(d, tuple) else (d, d)
        v = _pick(getattr(c, key), q, h, c.preset)
        if v is not None:
            out[key] = v
    out.update(seed=c.seed, kernels=c.kernels, memory_budget_mb=c.memory_budget_mb)
    return out


def _ax(title: str, xlabel: str, ylabel: str, ncols: int = 1) -> tuple[Any, Any]:
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 4))
    axs = list(np.atleast_1d(axes))
    axs[0].set_title(title)
    for a in axs:
        a.set_xlabel(xlabel)
        a.set_ylabel(ylabel)
        a.grid(True, alpha=0.3)
    return fig, axs


def _series(history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    return [h["epoch"] for h in history], [h.get(key, float("nan")) for h in history]


# ----------------------------------------------------------------------------- 1. lr-range


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


def _smooth(losses: Sequence[float], beta: float = 0.98) -> list[float]:
    avg, out = 0.0, []
    for i, v in enumerate(losses, 1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta**i))
    return out


def _lr_sweep(
    ctx: _Ctx, base: dict[str, Any], lo: float, hi: float, steps: int, run: str
) -> dict[str, Any]:
    """Smith's fast test: one run, LR x (hi/lo)^(1/(steps-1)) per update from ``lo``; stops
    when the smoothed loss exceeds 4x its minimum (divergence) or after ``steps`` updates."""
    per_epoch = math.ceil(ctx.data.sizes["train"] / base["batch_size"])
    gamma = (hi / lo) ** (1.0 / max(steps - 1, 1))
    cfg = TrainConfig(
        **{**base, "lr": lo, "epochs": math.ceil(steps / per_epoch)},
        scheduler={"name": "exponential", "gamma": gamma},
        max_updates=steps,
        track_test=False,
    )
    state = {"avg": 0.0, "n": 0, "best": math.inf}

    def on_step(rec: dict[str, Any]) -> bool:
        loss = rec["loss"]
        if not math.isfinite(loss):
            return True
        state["n"] += 1
        state["avg"] = 0.98 * state["avg"] + 0.02 * loss
        sm = state["avg"] / (1 - 0.98 ** state["n"])
        state["best"] = min(state["best"], sm)
        return bool(state["n"] > 10 and sm > 4 * state["best"])

    # The sweep is one short run and its stopping rule carries state: it is not resumed.
    ckdir, ctx.common.checkpoint_dir = ctx.common.checkpoint_dir, None
    try:
        res = ctx.run(run, cfg, on_step=on_step)
    finally:
        ctx.common.checkpoint_dir = ckdir
    lrs = [s["lr"] for s in res.steps]
    losses = [s["loss"] for s in res.steps]
    finite = [v if math.isfinite(v) else math.nan for v in losses]
    n_ok = sum(1 for v in losses if math.isfinite(v))
    smooth = _smooth(finite[:n_ok])
    return {
        "lrs": lrs,
        "losses": losses,
        "smoothed": smooth + [math.nan] * (len(losses) - n_ok),
        "suggestion": suggest_lr(lrs[:n_ok], smooth),
        "stopped_at_lr": lrs[-1] if lrs else lo,
        "updates": len(lrs),
        "diverged": len(lrs) < steps,
    }


def lr_range(
    common: Common,
    out: str | Path | None = None,
    *,
    lo: float | None = None,
    hi: float | None = None,
    num: int | None = None,
    mode: str = "both",
    sweep_steps: int | None = None,
) -> ExperimentResult:
    """Smith's LR range test (experiment 1).

    ``grid``: ``num`` LRs log-spaced in ``[lo, hi]``, each trained ``epochs`` epochs from the
    same initial weights; the loss is the mean training loss of the last epoch (nats).
    ``sweep``: one run whose LR grows exponentially from ``lo`` to ``hi`` over ``sweep_steps``
    updates, smoothed, stopped on divergence. ``both`` runs both. The suggestion follows
    ``LR_RULE`` (from the sweep when it ran, else the grid).
    """
    p = common.preset
    lo = _pick(lo, 1e-9, 1e-9, p)
    hi = _pick(hi, 10.0, 10.0, p)
    num = _pick(num, 10, 10, p)
    sweep_steps = _pick(sweep_steps, 150, 1000, p)
    check_positive("--lo", lo)
    check_positive("--hi", hi)
    if not lo < hi:
        raise ValueError(f"--lo/--hi: lo must be < hi, got lo={lo!r}, hi={hi!r}")
    if mode not in ("both", "grid", "sweep"):
        raise unknown_name("lr-range mode", mode, ("both", "grid", "sweep"))
    if isinstance(num, bool) or not isinstance(num, int) or num < 2:
        raise ValueError(f"--num-lrs: must be an integer >= 2, got {num!r}")
    if isinstance(sweep_steps, bool) or not isinstance(sweep_steps, int) or sweep_steps < 10:
        raise ValueError(f"--sweep-steps: must be an integer >= 10, got {sweep_steps!r}")
    params = {"lo": lo, "hi": hi, "num": num, "mode": mode, "sweep_steps": sweep_steps}
    ctx = _Ctx("lr-range", common, out, params)
    base = _base(
        ctx,
        model=("cnn", "inception"),
        epochs=(1, 5),
        batch_size=64,
        lr=lo,
        momentum=0.9,
        optimizer="sgd",
    )
    summary: dict[str, Any] = {"model": base["model"], "rule": LR_RULE}
    fig, axs = _ax("LR range test", "learning rate (per update, log scale)", "training loss")
    plot_data: dict[str, Any] = {}
    grid_first: list[float] = []
    sweep_first: list[float] = []
    if mode in ("both", "grid"):
        rates = np.logspace(math.log10(lo), math.log10(hi), num).tolist()
        grid_loss = []
        for i, lr in enumerate(rates):
            res = ctx.run(f"grid-{i:02d}", TrainConfig(**{**base, "lr": lr}, track_test=False))
            last = res.history[-1]["train_loss"] if res.history else math.inf
            grid_loss.append(math.inf if res.diverged or not math.isfinite(last) else last)
        ctx.csv(
            "lr_grid.csv",
            [
                {"lr": lr, "final_train_loss": v, "diverged": not math.isfinite(v)}
                for lr, v in zip(rates, grid_loss, strict=True)
            ],
        )
        summary["grid"] = {
            "lrs": rates,
            "losses": grid_loss,
            "epochs_per_lr": base["epochs"],
            **suggest_lr(rates, grid_loss),
        }
        summary["grid"].pop("rule")
        fin = [(a, b) for a, b in zip(rates, grid_loss, strict=True) if math.isfinite(b)]
        axs[0].plot([a for a, _ in fin], [b for _, b in fin], "o-", label="grid (last epoch)")
        grid_first = grid_loss[:1]
        plot_data["grid"] = {"lr": rates, "loss": grid_loss}
    if mode in ("both", "sweep"):
        sw = _lr_sweep(
            ctx, base, lo if mode == "sweep" else max(lo, 1e-6), hi, sweep_steps, "sweep"
        )
        ctx.csv(
            "lr_sweep.csv",
            [
                {"update": i + 1, "lr": a, "loss": b, "smoothed": c}
                for i, (a, b, c) in enumerate(
                    zip(sw["lrs"], sw["losses"], sw["smoothed"], strict=True)
                )
            ],
        )
        summary["sweep"] = {k: sw[k] for k in ("stopped_at_lr", "updates", "diverged")}
        summary["sweep"].update({k: v for k, v in sw["suggestion"].items() if k != "rule"})
        summary["sweep"]["start_lr"] = sw["lrs"][0] if sw["lrs"] else None
        axs[0].plot(sw["lrs"], sw["losses"], alpha=0.3, label="sweep (per update)")
        axs[0].plot(sw["lrs"], sw["smoothed"], label="sweep (smoothed)")
        sweep_first = sw["smoothed"][:1]
        plot_data["sweep"] = {k: sw[k] for k in ("lrs", "losses", "smoothed")}
    pick = summary.get("sweep") or summary["grid"]
    summary["lr_min"], summary["lr_max"] = pick["lr_min"], pick["lr_max"]
    summary["suggested_by"] = "sweep" if "sweep" in summary else "grid"
    for v, style in ((summary["lr_min"], ":"), (summary["lr_max"], "--")):
        axs[0].axvline(v, color="k", linestyle=style, alpha=0.6)
    axs[0].set_xscale("log")
    starts = [v[0] for v in (grid_first, sweep_first) if v and math.isfinite(v[0])]
    if starts:  # diverged losses would flatten the curve: show up to 1.5x the starting loss
        axs[0].set_ylim(0.0, 1.5 * max(starts))
    axs[0].legend(title=f"lr_min {summary['lr_min']:.2g}, lr_max {summary['lr_max']:.2g}")
    ctx.figure(
        "lr_range", fig, {**plot_data, "lr_min": summary["lr_min"], "lr_max": summary["lr_max"]}
    )
    return ctx.finish(summary)


# ----------------------------------------------------------------------------- 2. clr

CLR_POLICIES = ("triangular", "triangular2", "exp_range")


def clr(
    common: Common,
    out: str | Path | None = None,
    *,
    lr_min: float | None = None,
    lr_max: float | None = None,
    policies: Sequence[str] = CLR_POLICIES,
    step_epochs: float | None = None,
) -> ExperimentResult:
    """Cyclical LR (experiment 2): each policy of ``policies`` cycles between ``lr_min`` and
    ``lr_max`` with a half-cycle of ``step_epochs`` epochs, against a fixed LR (``--lr``,
    default ``lr_max``). Without ``lr_min``/``lr_max`` a fast LR sweep picks them first.
    ``exp_range`` shrinks the amplitude to 10% over the run (gamma per update)."""
    for pol in policies:
        if pol not in CLR_POLICIES:
            raise unknown_name("CLR policy", pol, CLR_POLICIES)
    if not policies:
        raise ValueError(f"--policies: give at least one of {', '.join(CLR_POLICIES)}")
    for nm, v in (("--lr-min", lr_min), ("--lr-max", lr_max)):
        if v is not None:
            check_positive(nm, v)
    if lr_min is not None and lr_max is not None and not lr_min < lr_max:
        raise ValueError(f"--lr-min/--lr-max: lr_min must be < lr_max, got {lr_min} >= {lr_max}")
    step_epochs = _pick(step_epochs, 1.0, 2.0, common.preset)
    check_positive("--step-epochs", step_epochs)
    params = {
        "lr_min": lr_min,
        "lr_max": lr_max,
        "policies": list(policies),
        "step_epochs": step_epochs,
    }
    ctx = _Ctx("clr", common, out, params)
    base = _base(
        ctx,
        model=("cnn", "inception"),
        epochs=(6, 10),
        batch_size=64,
        momentum=0.9,
        optimizer="sgd",
    )
    source = "given"
    if lr_min is None or lr_max is None:
        sw = _lr_sweep(ctx, {**base, "lr": 1e-6}, 1e-6, 10.0, 150, "lr-sweep")
        lr_min = lr_min if lr_min is not None else sw["suggestion"]["lr_min"]
        lr_max = lr_max if lr_max is not None else sw["suggestion"]["lr_max"]
        source = "fast LR sweep (" + LR_RULE + ")"
        if not lr_min < lr_max:
            lr_min = lr_max / 10
    per_epoch = math.ceil(ctx.data.sizes["train"] / base["batch_size"])
    step_up = max(1, round(step_epochs * per_epoch))
    total = per_epoch * base["epochs"]
    fixed_lr = common.lr if common.lr is not None else lr_max
    results: dict[str, TrainResult] = {}
    for pol in policies:
        sched = {
            "name": "cyclic",
            "mode": pol,
            "base_lr": lr_min,
            "max_lr": lr_max,
            "step_size_up": step_up,
            "gamma": 0.1 ** (1.0 / total) if pol == "exp_range" else 1.0,
        }
        results[pol] = ctx.run(pol, TrainConfig(**{**base, "lr": lr_min}, scheduler=sched))
    results["fixed"] = ctx.run("fixed", TrainConfig(**{**base, "lr": fixed_lr}))
    fig, axs = _ax("Cyclical LR vs fixed LR", "epoch", "", ncols=4)
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
        for name, r in results.items():
            a.plot(*_series(r.history, key), label=name)
    axs[0].legend()
    ctx.figure("clr_curves", fig, {n: r.history for n, r in results.items()})
    fig, axs = _ax("Learning rate per update", "update", "learning rate")
    for name, r in results.items():
        axs[0].plot([s["update"] for s in r.steps], [s["lr"] for s in r.steps], label=name)
    axs[0].legend()
    ctx.figure("clr_lr", fig, {n: [s["lr"] for s in r.steps] for n, r in results.items()})
    summary = {
        "model": base["model"],
        "lr_min": lr_min,
        "lr_max": lr_max,
        "lr_source": source,
        "fixed_lr": fixed_lr,
        "step_size_up_updates": step_up,
        "policies": {
            n: {
                "final_val_acc": r.history[-1]["val_acc"],
                "best_val_acc": r.best_val_acc,
                "final_train_loss": r.history[-1]["train_loss"],
                "final_test_acc": r.final["test_acc"],
            }
            for n, r in results.items()
        },
    }
    return ctx.finish(summary)


# ----------------------------------------------------------------------------- 3. batch-ramp


def batch_ramp(
    common: Common,
    out: str | Path | None = None,
    *,
    start: int = 32,
    max_batch: int = 8192,
    every: int | None = None,
) -> ExperimentResult:
    """Batch-size ramp vs LR decay (experiment 3, Smith et al. 2018).

    ``ramp``: fixed LR (``--lr``, default ``lr_max`` of a fast LR sweep), batch ``start``
    doubling every ``every`` updates up to ``max_batch`` (capped at the training-set size).
    ``decay``: batch ``start`` fixed, LR halved at the same points in *samples seen* — after
    ``every * (2**k - 1)`` updates, k = 1..log2(max/start) —
    so both follow one schedule in epochs. Both train the same number of epochs.
    """
    for nm, v in (("--ramp-start", start), ("--ramp-max", max_batch)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{nm}: must be an integer >= 1, got {v!r}")
    if max_batch < start:
        raise ValueError(f"--ramp-max: must be >= --ramp-start ({start}), got {max_batch}")
    every = _pick(every, 20, 2000, common.preset)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"--ramp-every: must be an integer >= 1 (updates), got {every!r}")
    params = {"start": start, "max_batch": max_batch, "every": every}
    ctx = _Ctx("batch-ramp", common, out, params)
    base = _base(ctx, model=("cnn", "inception"), epochs=(8, 30), batch_size=start, momentum=0.9)
    base["batch_size"] = start
    lr_source = "given (--lr)"
    if "lr" not in base:  # the homework: fix the LR at lr_max of the range test
        sw = _lr_sweep(ctx, {**base, "lr": 1e-6}, 1e-6, 10.0, 150, "lr-sweep")
        base["lr"] = sw["suggestion"]["lr_max"]
        lr_source = "lr_max of a fast LR sweep (" + LR_RULE + ")"
    doublings = int(math.log2(max_batch // start))
    milestones = [every * (2**k - 1) for k in range(1, doublings + 1)]
    ramp = ctx.run(
        "ramp",
        TrainConfig(
            **base, batch_schedule={"start": start, "factor": 2, "every": every, "max": max_batch}
        ),
    )
    decay = ctx.run(
        "decay",
        TrainConfig(
            **base, scheduler={"name": "multistep", "milestones": milestones, "gamma": 0.5}
        ),
    )
    runs = {"batch ramp (fixed LR)": ramp, "LR decay (fixed batch)": decay}
    fig, axs = _ax("Batch-size ramp vs LR decay", "epoch", "training loss (nats)", ncols=3)
    axs[1].set_xlabel("updates")
    axs[2].set_ylabel("validation accuracy")
    for name, r in runs.items():
        axs[0].plot(*_series(r.history, "train_loss"), label=name)
        axs[1].plot(
            [h["updates"] for h in r.history], [h["train_loss"] for h in r.history], label=name
        )
        axs[2].plot(*_series(r.history, "val_acc"), label=name)
    axs[0].legend()
    ctx.figure("batch_ramp", fig, {"ramp": ramp.history, "decay": decay.history})
    n_train = ctx.data.sizes["train"]
    summary = {
        "model": base["model"],
        "lr": base["lr"],
        "lr_source": lr_source,
        "decay_milestones_updates": milestones,
        "batch_cap": min(max_batch, n_train),
        "capped_by_train_size": max_batch > n_train,
        "ramp": {
            "final_val_acc": ramp.history[-1]["val_acc"],
            "final_test_acc": ramp.final["test_acc"],
            "updates": ramp.updates,
            "final_batch_size": ramp.history[-1]["batch_size"],
        },
        "decay": {
            "final_val_acc": decay.history[-1]["val_acc"],
            "final_test_acc": decay.final["test_acc"],
            "updates": decay.updates,
            "final_lr": decay.steps[-1]["lr"] if decay.steps else base["lr"],
        },
    }
    return ctx.finish(summary)


# ----------------------------------------------------------------------------- 4. flooding


def flooding(
    common: Common,
    out: str | Path | None = None,
    *,
    b_grid: Sequence[float] | None = None,
    compare_cnn: bool = True,
) -> ExperimentResult:
    """Flooding (experiment 4, Ishida et al. 2020): the MLP (500 ReLU units, SGD lr 0.1,
    momentum 0.9, no augmentation) without flooding and for each flood level b of ``b_grid``
    (nats); training error is measured on the whole training split after each epoch. b is
    chosen by the best validation accuracy (ties: the smaller b); the flooding CNN is trained
    on the same split with b = 0 and the chosen b for comparison."""
    grid = list(
        _pick(
            b_grid,
            [0.0, 0.05, 0.1, 0.15, 0.2],
            [round(0.01 * i, 2) for i in range(21)],
            common.preset,
        )
    )
    for b in grid:
        if isinstance(b, bool) or not isinstance(b, int | float) or not math.isfinite(b) or b < 0:
            raise ValueError(f"--b-grid: flood levels must be finite numbers >= 0, got {b!r}")
    if 0.0 not in grid:
        grid = [0.0, *grid]
    grid = sorted(set(float(b) for b in grid))
    ctx = _Ctx("flooding", common, out, {"b_grid": grid, "compare_cnn": compare_cnn})
    base = _base(
        ctx,
        model="mlp:500",
        epochs=(15, 500),
        batch_size=(64, 128),
        lr=0.1,
        momentum=0.9,
        optimizer="sgd",
    )
    runs: dict[float, TrainResult] = {}
    for b in grid:
        runs[b] = ctx.run(f"mlp-b{b:.3f}", TrainConfig(**base, flood=b, eval_train=True))
    chosen = max(grid, key=lambda b: (runs[b].best_val_acc, -b))
    cnn: dict[str, TrainResult] = {}
    if compare_cnn:
        cbase = {**base, "model": "cnn"}
        for b in sorted({0.0, chosen}):
            cnn[f"{b:g}"] = ctx.run(f"cnn-b{b:.3f}", TrainConfig(**cbase, flood=b, eval_train=True))
    table = []
    for b, r in runs.items():
        best = r.history[r.best_epoch - 1] if r.best_epoch else r.history[-1]
        table.append(
            {
                "model": base["model"],
                "b": b,
                "best_val_acc": r.best_val_acc,
                "best_epoch": r.best_epoch,
                "test_acc_at_best_val": best.get("test_acc"),
                "final_train_error": r.history[-1]["train_error"],
                "final_val_error": r.history[-1]["val_error"],
                "final_test_acc": r.final["test_acc"],
                "final_train_loss": r.history[-1]["train_loss"],
            }
        )
    for b_text, r in cnn.items():
        table.append(
            {
                "model": "cnn",
                "b": float(b_text),
                "best_val_acc": r.best_val_acc,
                "best_epoch": r.best_epoch,
                "test_acc_at_best_val": r.history[r.best_epoch - 1].get("test_acc"),
                "final_train_error": r.history[-1]["train_error"],
                "final_val_error": r.history[-1]["val_error"],
                "final_test_acc": r.final["test_acc"],
                "final_train_loss": r.history[-1]["train_loss"],
            }
        )
    ctx.csv("flooding.csv", table)
    fig, axs = _ax("Flooding: error during training", "epoch", "training error (%)", ncols=2)
    axs[1].set_ylabel("validation error (%)")
    cmap = plt.get_cmap("viridis")
    for i, (b, r) in enumerate(runs.items()):
        col = cmap(i / max(len(runs) - 1, 1))
        axs[0].plot(*_series(r.history, "train_error"), color=col, label=f"MLP b={b:g}")
        axs[1].plot(*_series(r.history, "val_error"), color=col, label=f"MLP b={b:g}")
    for b_text, r in cnn.items():
        axs[0].plot(
            *_series(r.history, "train_error"),
            "k--" if b_text == "0" else "r--",
            label=f"CNN b={b_text}",
        )
        axs[1].plot(
            *_series(r.history, "val_error"),
            "k--" if b_text == "0" else "r--",
            label=f"CNN b={b_text}",
        )
    axs[1].legend(fontsize=7)
    ctx.figure(
        "flooding_curves",
        fig,
        {f"mlp b={b:g}": r.history for b, r in runs.items()}
        | {f"cnn b={k}": r.history for k, r in cnn.items()},
    )
    fig, axs = _ax(
        "Flooding: validation accuracy vs flood level",
        "flood level b (nats)",
        "best validation accuracy",
    )
    axs[0].plot(grid, [runs[b].best_val_acc for b in grid], "o-")
    axs[0].axvline(chosen, color="r", linestyle="--", label=f"chosen b = {chosen:g}")
    axs[0].legend()
    ctx.figure("flooding_b", fig, {"b": grid, "best_val_acc": [runs[b].best_val_acc for b in grid]})
    summary: dict[str, Any] = {
        "model": base["model"],
        "chosen_b": chosen,
        "b_rule": "largest best-epoch validation accuracy; ties go to the smaller b",
        "mlp_test_acc_no_flood": runs[0.0].final["test_acc"],
        "mlp_test_acc_chosen_b": runs[chosen].final["test_acc"],
        "mlp_best_val_acc_no_flood": runs[0.0].best_val_acc,
        "mlp_best_val_acc_chosen_b": runs[chosen].best_val_acc,
        "table": table,
    }
    if cnn:
        summary["cnn_test_acc_no_flood"] = cnn["0"].final["test_acc"]
        summary["cnn_test_acc_chosen_b"] = cnn[f"{chosen:g}"].final["test_acc"]
    return ctx.finish(summary)


# ----------------------------------------------------------------------------- 5. batch-size


def batch_size_sweep(
    common: Common,
    out: str | Path | None = None,
    *,
    batch_sizes: Sequence[int] = (1, 5, 50, 500, 5000),
    patience: int | None = None,
) -> ExperimentResult:
    """Batch sizes with early stopping (experiment 5): for each batch size, train until the
    validation accuracy has not improved for ``patience`` epochs (at most ``epochs``), restore
    the best model and report its test accuracy, the training time (wall seconds) and the
    epochs and gradient updates to the best model."""
    sizes = list(batch_sizes)
    if not sizes:
        raise ValueError("--batch-sizes: give at least one batch size")
    for b in sizes:
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ValueError(f"--batch-sizes: batch sizes must be integers >= 1, got {b!r}")
    patience = _pick(patience, 3, 3, common.preset)
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise ValueError(f"--patience: must be an integer >= 1, got {patience!r}")
    ctx = _Ctx("batch-size", common, out, {"batch_sizes": sizes, "patience": patience})
    base = _base(ctx, model="mlp:128", epochs=(20, 500), lr=0.01, momentum=0.0, optimizer="sgd")
    base.pop("batch_size", None)
    rows = []
    for b in sizes:
        r = ctx.run(
            f"b{b}", TrainConfig(**base, batch_size=b, patience=patience, restore_best=True)
        )
        rows.append(
            {
                "batch_size": b,
                "test_acc": r.final["test_acc"],
                "best_val_acc": r.best_val_acc,
                "epochs_to_best": r.best_epoch,
                "updates_to_best": r.updates_to_best,
                "epochs_run": r.epochs_run,
                "updates": r.updates,
                "train_time_s": r.total_time,
                "time_to_best_s": r.time_to_best,
                "stopped_early": r.epochs_run < base["epochs"],
            }
        )
    ctx.csv("batch_size.csv", rows)
    xs = [r["batch_size"] for r in rows]
    fig, axs = _ax(
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
    ctx.figure("batch_size", fig, rows)
    return ctx.finish(
        {"model": base["model"], "lr": base["lr"], "patience": patience, "rows": rows}
    )


# ----------------------------------------------------------------------------- 6. early-stopping


def early_stopping(
    common: Common, out: str | Path | None = None, *, patience: int | None = None
) -> ExperimentResult:
    """Early stopping (experiment 6): train ``epochs`` epochs without stopping, record train,
    validation and test accuracy per epoch and mark where patience ``patience`` (epochs
    without a validation-accuracy improvement) would have stopped and which epoch it would
    have restored."""
    patience = _pick(patience, 3, 3, common.preset)
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise ValueError(f"--patience: must be an integer >= 1, got {patience!r}")
    ctx = _Ctx("early-stopping", common, out, {"patience": patience})
    base = _base(
        ctx, model="mlp:128", epochs=(15, 30), batch_size=5, lr=0.01, momentum=0.0, optimizer="sgd"
    )
    r = ctx.run("run", TrainConfig(**base, eval_train=True))
    best, best_epoch, bad, stop_epoch = -1.0, 0, 0, None
    for h in r.history:
        if h["val_acc"] > best:
            best, best_epoch, bad = h["val_acc"], h["epoch"], 0
        else:
            bad += 1
            if bad >= patience:
                stop_epoch = h["epoch"]
                break
    hist = r.history
    at_best = hist[best_epoch - 1]
    fig, axs = _ax("Accuracy per epoch (no early stopping)", "epoch", "accuracy")
    for key, lab in (("train_acc", "train"), ("val_acc", "validation"), ("test_acc", "test")):
        axs[0].plot(*_series(hist, key), label=lab)
    axs[0].plot(
        [best_epoch],
        [at_best["test_acc"]],
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
    ctx.figure(
        "early_stopping", fig, {"history": hist, "stop_epoch": stop_epoch, "best_epoch": best_epoch}
    )
    summary = {
        "model": base["model"],
        "patience": patience,
        "stop_epoch": stop_epoch,
        "restored_epoch": best_epoch,
        "test_acc_at_restored": at_best["test_acc"],
        "max_test_acc": max(h["test_acc"] for h in hist),
        "max_test_acc_epoch": max(hist, key=lambda h: h["test_acc"])["epoch"],
        "final_test_acc": hist[-1]["test_acc"],
        "final_train_acc": hist[-1]["train_acc"],
        "epochs": len(hist),
    }
    return ctx.finish(summary)


# ----------------------------------------------------------------------------- 7. momentum


def momentum_sweep(
    common: Common,
    out: str | Path | None = None,
    *,
    momenta: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
) -> ExperimentResult:
    """SGD momentum (experiment 7): training loss per epoch for each momentum factor alpha
    (``v <- alpha v + grad; w <- w - lr v``, torch's SGD with dampening 0), one plot."""
    ms = [float(m) for m in momenta]
    if not ms:
        raise ValueError("--momenta: give at least one momentum")
    for m in ms:
        if not (math.isfinite(m) and 0.0 <= m < 1.0):
            raise ValueError(f"--momenta: each momentum must be in [0, 1), got {m!r}")
    if common.momentum is not None:
        raise ValueError("--momentum: not used by 'momentum' (it sweeps --momenta)")
    ctx = _Ctx("momentum", common, out, {"momenta": ms})
    base = _base(
        ctx, model="mlp:128", epochs=(10, 30), batch_size=(50, 5), lr=0.01, optimizer="sgd"
    )
    runs = {m: ctx.run(f"m{m:g}", TrainConfig(**base, momentum=m)) for m in ms}
    fig, axs = _ax("Training loss for SGD momentum", "epoch", "training loss (nats)")
    for m, r in runs.items():
        axs[0].plot(*_series(r.history, "train_loss"), label=f"momentum {m:g}")
    axs[0].legend()
    ctx.figure("momentum", fig, {f"{m:g}": r.history for m, r in runs.items()})
    rows = [
        {
            "momentum": m,
            "final_train_loss": r.history[-1]["train_loss"],
            "test_acc": r.final["test_acc"],
        }
        for m, r in runs.items()
    ]
    ctx.csv("momentum.csv", rows)
    best = min(rows, key=lambda r: r["final_train_loss"])
    return ctx.finish(
        {
            "model": base["model"],
            "lr": base["lr"],
            "rows": rows,
            "lowest_final_train_loss_momentum": best["momentum"],
        }
    )


# ----------------------------------------------------------------------------- 8. ood

OOD_MODELS = ("mlp:128", "cnn7", "cnn7-3")


def ood(
    common: Common,
    out: str | Path | None = None,
    *,
    shift: int = 4,
    models: Sequence[str] = OOD_MODELS,
) -> ExperimentResult:
    """Out-of-distribution tests (experiment 8): train each model of ``models`` (the 2-layer
    MLP, the 7x7 CNN and its 3-layer variant) and report test accuracy in-domain, with the
    test images shifted up ``shift`` pixels and rotated by 90, 180 and 270 degrees, together
    with each model's parameter count (from dlsys.analytics)."""
    if common.model is not None:
        raise ValueError("--model: not used by 'ood' (it compares mlp:128, cnn7 and cnn7-3)")
    if isinstance(shift, bool) or not isinstance(shift, int) or not 0 <= shift <= 27:
        raise ValueError(f"--shift: must be an integer number of pixels in 0..27, got {shift!r}")
    ctx = _Ctx("ood", common, out, {"shift": shift, "models": list(models)})
    base = _base(ctx, epochs=(5, 10), batch_size=64, lr=1e-3, optimizer="adam")
    x, y = ctx.data.test_x, ctx.data.test_y
    sets = {
        "in-domain": x,
        f"shift up {shift}": shift_up(x, shift),
        "rot 90": rotate(x, 90),
        "rot 180": rotate(x, 180),
        "rot 270": rotate(x, 270),
    }
    rows = []
    for name in models:
        r = ctx.run(name.replace(":", "-"), TrainConfig(**base, model=name))
        assert r.model is not None
        row: dict[str, Any] = {
            "model": name,
            "params": r.params["params"],
            "params_source": r.params["source"],
        }
        for sname, sx in sets.items():
            row[sname] = evaluate(r.model, sx, y, r.micro_batch)[1]
        rows.append(row)
    ctx.csv("ood.csv", rows)
    fig, axs = _ax("Test accuracy in and out of distribution", "test set", "accuracy")
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
    ctx.figure("ood", fig, rows)
    return ctx.finish({"shift_pixels": shift, "rows": rows})


# ----------------------------------------------------------------------------- dispatch

#: Experiment name -> function.
EXPERIMENTS: dict[str, Callable[..., ExperimentResult]] = {
    "lr-range": lr_range,
    "clr": clr,
    "batch-ramp": batch_ramp,
    "flooding": flooding,
    "batch-size": batch_size_sweep,
    "early-stopping": early_stopping,
    "momentum": momentum_sweep,
    "ood": ood,
}


def run_experiment(
    name: str, common: Common, out: str | Path | None = None, **kwargs: Any
) -> ExperimentResult:
    """Run experiment ``name`` (a key of :data:`EXPERIMENTS`)."""
    if name not in EXPERIMENTS:
        raise unknown_name("experiment", name, EXPERIMENTS)
    return EXPERIMENTS[name](common, out, **kwargs)


def _numeric_leaves(d: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_numeric_leaves(v, f"{prefix}{k}."))
    elif isinstance(d, list) and d and all(isinstance(v, dict) for v in d):
        for i, v in enumerate(d):
            out.update(_numeric_leaves(v, f"{prefix}{i}."))
    elif isinstance(d, int | float) and not isinstance(d, bool) and d is not None:
        out[prefix[:-1]] = float(d)
    return out


def run_seeds(
    name: str,
    common: Common,
    seeds: Sequence[int],
    out: str | Path | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Repeat experiment ``name`` for each seed (files under ``out/seed-N``) and return
    ``{"seeds", "mean", "std", "min", "max", "per_seed"}`` over every numeric summary entry
    (std: sample standard deviation, ddof 1; 0 for one seed). Writes ``out/metrics.json``."""
    if not seeds:
        raise ValueError("--seeds: give at least one seed")
    per_seed = []
    for s in seeds:
        sub = Path(out) / f"seed-{s}" if out is not None else None
        ck = common.checkpoint_dir
        c = dataclasses.replace(
            common, seed=int(s), checkpoint_dir=Path(ck) / f"seed-{s}" if ck is not None else None
        )
        per_seed.append(run_experiment(name, c, sub, **kwargs))
    leaves = [_numeric_leaves(r.summary) for r in per_seed]
    keys = [k for k in leaves[0] if all(k in lf for lf in leaves)]
    agg: dict[str, Any] = {
        "experiment": name,
        "seeds": list(seeds),
        "mean": {},
        "std": {},
        "min": {},
        "max": {},
    }
    for k in keys:
        vals = np.array([lf[k] for lf in leaves], dtype=np.float64)
        agg["mean"][k] = float(vals.mean())
        agg["std"][k] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        agg["min"][k] = float(vals.min())
        agg["max"][k] = float(vals.max())
    agg["per_seed"] = [r.to_dict() for r in per_seed]
    if out is not None:
        write_json(Path(out) / "metrics.json", agg)
    return to_jsonable(agg)  # type: ignore[no-any-return]
