"""The training sections of the ``dlsys reproduce`` report: one per experiment.

Each runs one experiment of :mod:`dlsys.training.experiments` on dlsys's own kernels, embeds
its plots, tabulates its key numbers and writes a one-paragraph reading whose every number
comes from the run's summary. ``quick`` uses the experiments' quick defaults on the built-in
``digits`` stand-in; ``tiny`` cuts the data and epochs so a test reaches every code path in
seconds; ``full`` uses ``--preset homework`` on the data set each homework used (FashionMNIST,
or MNIST for flooding) under ``--data``.
"""

from __future__ import annotations

from typing import Any

from dlsys.reproduce.section import Context, Section, SectionResult, markdown_table

#: Data set of the homework experiment (used by ``full`` runs, under ``--data``).
HOMEWORK_DATA = {
    "lr-range": "fashion-mnist",
    "clr": "fashion-mnist",
    "batch-ramp": "fashion-mnist",
    "flooding": "mnist",
    "batch-size": "fashion-mnist",
    "early-stopping": "fashion-mnist",
    "momentum": "fashion-mnist",
    "ood": "fashion-mnist",
}

#: Smaller experiment arguments for ``tiny`` runs (tests).
TINY_KWARGS: dict[str, dict[str, Any]] = {
    "lr-range": {"num": 3, "sweep_steps": 20},
    "clr": {"policies": ("triangular",), "lr_min": 0.005, "lr_max": 0.05},  # no LR sweep
    "batch-ramp": {"max_batch": 128},
    "flooding": {"b_grid": (0.0, 0.1)},
    "batch-size": {"batch_sizes": (5, 50)},
    "momentum": {"momenta": (0.5, 0.9)},
    "ood": {"models": ("mlp", "cnn7")},
}


def _run(ctx: Context, name: str) -> Any:
    from dlsys.training.experiments import Common, run_experiment

    if ctx.size == "full":
        assert ctx.data_root is not None
        common = Common(
            dataset=f"{HOMEWORK_DATA[name]}:{ctx.data_root}",
            preset="homework",
            seed=ctx.seed,
            quiet=ctx.quiet,
        )
    elif ctx.size == "tiny":
        # A given --lr spares batch-ramp its LR sweep, as lr_min/lr_max spare clr's.
        lr = 0.05 if name == "batch-ramp" else None
        common = Common(
            dataset="digits", epochs=1, limit=240, lr=lr, seed=ctx.seed, quiet=ctx.quiet
        )
    else:
        common = Common(dataset="digits", seed=ctx.seed, quiet=ctx.quiet)
    kwargs = TINY_KWARGS.get(name, {}) if ctx.size == "tiny" else {}
    return run_experiment(name, common, ctx.out, **kwargs)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _images(ctx: Context, result: Any) -> list[str]:
    return [f"![{p}]({ctx.rel(ctx.out / p)})" for p in result.plots]


def _data_note(result: Any) -> list[str]:
    note = result.summary.get("note")
    return [f"> {note}", ""] if result.summary.get("stand_in") and note else []


def _finish(ctx: Context, result: Any, table: str, reading: str) -> SectionResult:
    md = [*_data_note(result), table, "", f"Reading: {reading}", "", *_images(ctx, result)]
    data = {"dataset": result.summary.get("data"), "summary": result.summary}
    return SectionResult("\n".join(md), data)


def lr_range(ctx: Context) -> SectionResult:
    """Smith's LR range test: a log-spaced grid and the fast exponential sweep."""
    r = _run(ctx, "lr-range")
    s = r.summary
    grid, sweep = s["grid"], s["sweep"]
    rows = [
        (f"{lr:.3g}", f"{loss:.4f}") for lr, loss in zip(grid["lrs"], grid["losses"], strict=True)
    ]
    finite = [
        (lr, loss) for lr, loss in zip(grid["lrs"], grid["losses"], strict=True) if loss == loss
    ]
    best_lr, best_loss = min(finite, key=lambda p: p[1])
    reading = (
        f"with {len(grid['lrs'])} learning rates from {grid['lrs'][0]:.0e} to "
        f"{grid['lrs'][-1]:.0e}, each trained for {grid['epochs_per_lr']} epoch(s) from the same "
        f"initial weights, the loss is lowest at lr = {best_lr:.3g} ({best_loss:.4f}); the grid "
        f"brackets the useful range as [{grid['lr_min']:.3g}, {grid['lr_max']:.3g}]. The fast "
        f"sweep ({sweep['updates']} updates from {sweep['start_lr']:.0e}"
        f"{', stopped when the loss diverged' if sweep['diverged'] else ''}) suggests "
        f"lr_min = {s['lr_min']:.3g} and lr_max = {s['lr_max']:.3g}, the bounds a cyclical "
        f"schedule would use. Rule: {s['rule']}."
    )
    return _finish(ctx, r, markdown_table(rows, ["learning rate", "loss after training"]), reading)


def clr(ctx: Context) -> SectionResult:
    """Cyclical learning rates (triangular, triangular2, exp_range) against a fixed rate."""
    r = _run(ctx, "clr")
    s = r.summary
    pol = s["policies"]
    rows = [
        (
            name,
            _pct(p["best_val_acc"]),
            _pct(p["final_val_acc"]),
            _pct(p["final_test_acc"]),
            f"{p['final_train_loss']:.4f}",
        )
        for name, p in pol.items()
    ]
    best = max(pol, key=lambda n: pol[n]["best_val_acc"])
    cyc = {n: p for n, p in pol.items() if n != "fixed"}
    best_cyc = max(cyc, key=lambda n: cyc[n]["best_val_acc"]) if cyc else None
    reading = (
        f"between lr_min = {s['lr_min']:.3g} and lr_max = {s['lr_max']:.3g} "
        f"({s['step_size_up_updates']} updates per half cycle), the best validation accuracy "
        f"is reached by {best} ({_pct(pol[best]['best_val_acc'])})"
        + (
            f"; the best cyclical policy, {best_cyc}, reaches "
            f"{_pct(cyc[best_cyc]['best_val_acc'])} against {_pct(pol['fixed']['best_val_acc'])} "
            f"for the fixed rate {s['fixed_lr']:.3g}."
            if best_cyc and "fixed" in pol
            else "."
        )
    )
    header = ["schedule", "best val. acc.", "final val. acc.", "test acc.", "final train loss"]
    return _finish(ctx, r, markdown_table(rows, header), reading)


def batch_ramp(ctx: Context) -> SectionResult:
    """Increasing the batch size instead of decaying the learning rate (Smith et al. 2018)."""
    r = _run(ctx, "batch-ramp")
    s = r.summary
    ramp, decay = s["ramp"], s["decay"]
    rows = [
        (
            "batch doubles, LR fixed",
            _pct(ramp["final_val_acc"]),
            _pct(ramp["final_test_acc"]),
            ramp["updates"],
            ramp["final_batch_size"],
        ),
        (
            "batch fixed, LR halves",
            _pct(decay["final_val_acc"]),
            _pct(decay["final_test_acc"]),
            decay["updates"],
            "-",
        ),
    ]
    ratio = decay["updates"] / ramp["updates"] if ramp["updates"] else float("nan")
    reading = (
        f"at the fixed LR {s['lr']:.3g}, doubling the batch reaches "
        f"{_pct(ramp['final_val_acc'])} validation accuracy in {ramp['updates']} updates, while "
        f"halving the LR at the same points in samples seen reaches "
        f"{_pct(decay['final_val_acc'])} in {decay['updates']} updates ({ratio:.1f}x as many). "
        "Both schedules see the same samples; the ramp needs fewer, larger steps"
        + (
            f" (its batch was capped at {s['batch_cap']}, the training-set size)."
            if s.get("capped_by_train_size")
            else "."
        )
    )
    header = ["schedule", "final val. acc.", "final test acc.", "updates", "final batch"]
    return _finish(ctx, r, markdown_table(rows, header), reading)


def flooding(ctx: Context) -> SectionResult:
    """Flooding (Ishida et al. 2020) on the MLP and the CNN, b chosen by validation accuracy."""
    r = _run(ctx, "flooding")
    s = r.summary
    rows = [
        (
            t["model"],
            f"{t['b']:.2f}",
            _pct(t["best_val_acc"]),
            t["best_epoch"],
            _pct(t["final_test_acc"]),
            f"{t['final_train_loss']:.4f}",
            f"{t['final_train_error']:.2f}%",
            f"{t['final_val_error']:.2f}%",
        )
        for t in s["table"]
    ]

    def mlp_loss(b: float) -> float:
        return next(
            float(t["final_train_loss"])
            for t in s["table"]
            if t["b"] == b and not str(t["model"]).startswith("cnn")
        )

    reading = (
        f"the flood level chosen by validation accuracy is b = {s['chosen_b']:g} "
        f"({s['b_rule']}). The MLP's test accuracy is {_pct(s['mlp_test_acc_no_flood'])} "
        f"without flooding and {_pct(s['mlp_test_acc_chosen_b'])} with b = {s['chosen_b']:g}; "
        f"the CNN on the same split reaches {_pct(s['cnn_test_acc_no_flood'])} and "
        f"{_pct(s['cnn_test_acc_chosen_b'])}. "
        + (
            f"The MLP's final training loss is {mlp_loss(0.0):.4f} without flooding and "
            f"{mlp_loss(s['chosen_b']):.4f} with b = {s['chosen_b']:g}: once the batch loss "
            "falls below b, flooding turns descent into ascent. "
            if s["chosen_b"] > 0
            else "No flood level beat training without flooding on validation accuracy here. "
        )
        + "The loss is computed by dlsys's fused flooding cross-entropy kernel."
        if "cnn_test_acc_no_flood" in s
        else f"the flood level chosen by validation accuracy is b = {s['chosen_b']:g}."
    )
    header = [
        "model", "b", "best val. acc.", "best epoch", "final test acc.", "final train loss",
        "final train error", "final val. error",
    ]  # fmt: skip
    return _finish(ctx, r, markdown_table(rows, header), reading)


def batch_size(ctx: Context) -> SectionResult:
    """Batch sizes 1 .. 5000 with early stopping: accuracy, time and updates to the best model."""
    r = _run(ctx, "batch-size")
    s = r.summary
    rows = [
        (
            x["batch_size"],
            _pct(x["test_acc"]),
            x["epochs_to_best"],
            x["updates_to_best"],
            f"{x['train_time_s']:.2f}",
            "yes" if x["stopped_early"] else "no",
        )
        for x in s["rows"]
    ]
    best = max(s["rows"], key=lambda x: x["test_acc"])
    fast = min(s["rows"], key=lambda x: x["train_time_s"])
    small, large = s["rows"][0], s["rows"][-1]
    reading = (
        f"at lr {s['lr']:g} with patience {s['patience']}, batch {best['batch_size']} gives the "
        f"best test accuracy ({_pct(best['test_acc'])}, {best['updates_to_best']} updates to "
        f"the best model) and batch {fast['batch_size']} trains fastest "
        f"({fast['train_time_s']:.2f} s). Batch {small['batch_size']} makes "
        f"{small['updates_to_best']} updates in {small['epochs_to_best']} epochs to its best "
        f"model; batch {large['batch_size']} makes {large['updates_to_best']} in "
        f"{large['epochs_to_best']} epochs"
        + (
            " and never triggered early stopping within its epoch budget."
            if not large["stopped_early"]
            else "."
        )
    )
    header = ["batch", "test acc.", "epochs to best", "updates to best", "train s", "stopped"]
    return _finish(ctx, r, markdown_table(rows, header), reading)


def early_stopping(ctx: Context) -> SectionResult:
    """Train/validation/test accuracy per epoch and where a given patience would stop."""
    r = _run(ctx, "early-stopping")
    s = r.summary
    best_test = f"{_pct(s['max_test_acc'])} (epoch {s['max_test_acc_epoch']})"
    rows = [
        ("patience", s["patience"]),
        ("epoch where training would stop", s["stop_epoch"]),
        ("epoch restored (best validation)", s["restored_epoch"]),
        ("test accuracy of the restored model", _pct(s["test_acc_at_restored"])),
        ("best test accuracy over all epochs", best_test),
        ("test accuracy after all epochs", f"{_pct(s['final_test_acc'])} ({s['epochs']} epochs)"),
    ]  # fmt: skip
    reading = (
        f"with patience {s['patience']}, training stops after epoch {s['stop_epoch']} and "
        f"restores epoch {s['restored_epoch']}, whose test accuracy is "
        f"{_pct(s['test_acc_at_restored'])}; the best test accuracy seen in {s['epochs']} "
        f"epochs is {_pct(s['max_test_acc'])} at epoch {s['max_test_acc_epoch']}, so stopping "
        f"there gives up {100 * (s['max_test_acc'] - s['test_acc_at_restored']):.1f} points."
    )
    return _finish(ctx, r, markdown_table(rows, ["", ""]), reading)


def momentum(ctx: Context) -> SectionResult:
    """Training loss curves for momentum 0.1 .. 0.9."""
    r = _run(ctx, "momentum")
    s = r.summary
    rows = [(x["momentum"], f"{x['final_train_loss']:.4f}", _pct(x["test_acc"])) for x in s["rows"]]
    lo, hi = s["rows"][0], s["rows"][-1]
    best = s["lowest_final_train_loss_momentum"]
    trend = "falls" if hi["final_train_loss"] < lo["final_train_loss"] else "rises"
    why = (
        " Momentum m scales the effective step by about 1 / (1 - m) along a consistent "
        "gradient, so at this small learning rate the largest momentum trains fastest."
        if best == max(x["momentum"] for x in s["rows"])
        else f" The largest momentum is not the fastest here: momentum {best:g} is."
    )
    reading = (
        f"at lr {s['lr']:g}, the final training loss {trend} from "
        f"{lo['final_train_loss']:.4f} with momentum {lo['momentum']:g} to "
        f"{hi['final_train_loss']:.4f} with momentum {hi['momentum']:g}; the lowest is at "
        f"momentum {best:g}." + why
    )
    header = ["momentum", "final train loss", "test acc."]
    return _finish(ctx, r, markdown_table(rows, header), reading)


def ood(ctx: Context) -> SectionResult:
    """In-domain, shifted and rotated test accuracy of an MLP and two CNNs."""
    r = _run(ctx, "ood")
    s = r.summary
    sets = [k for k in s["rows"][0] if k not in ("model", "params", "params_source")]
    rows = [(x["model"], f"{x['params']:,}", *(_pct(x[k]) for k in sets)) for x in s["rows"]]
    drops = [(x["model"], x["in-domain"] - x[f"shift up {s['shift_pixels']}"]) for x in s["rows"]]
    worst = max(drops, key=lambda d: d[1])
    side = [k for k in sets if k in ("rot 90", "rot 270")]
    top = max((x[k] for x in s["rows"] for k in side), default=float("nan"))
    reading = (
        f"shifting the test images up {s['shift_pixels']} pixels costs up to "
        f"{100 * worst[1]:.1f} accuracy points ({worst[0]})"
        + (
            f"; rotated by 90 or 270 degrees, no model does better than {_pct(top)} (chance "
            "is 10%; a model that maps every rotated image to one class scores exactly that "
            "class's share of the test set)."
            if side
            else "."
        )
        + " Parameter counts come from dlsys.analytics."
    )
    header = ["model", "parameters", *sets]
    return _finish(ctx, r, markdown_table(rows, header), reading)


TRAINING_SECTIONS: tuple[Section, ...] = tuple(
    Section(name, title, fn)
    for name, title, fn in (
        ("lr-range", "Training: LR range test", lr_range),
        ("clr", "Training: cyclical learning rates", clr),
        ("batch-ramp", "Training: batch-size ramp", batch_ramp),
        ("flooding", "Training: flooding", flooding),
        ("batch-size", "Training: batch-size sweep", batch_size),
        ("early-stopping", "Training: early stopping", early_stopping),
        ("momentum", "Training: momentum", momentum),
        ("ood", "Training: out-of-distribution tests", ood),
    )
)
