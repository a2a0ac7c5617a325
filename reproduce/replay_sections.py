"""The replay sections of the ``dlsys reproduce`` report: the two staleness studies.

Each runs one experiment of :mod:`dlsys.training.experiments` (``staleness-lr``,
``error-runtime``), embeds its plot, tabulates its ``rows`` and prints the study's reading,
whose every number comes from this run. ``quick`` uses the quick defaults on the built-in
``digits`` stand-in; ``tiny`` cuts learners, data and time so a test reaches every code path
in seconds; ``full`` uses ``--preset homework`` on MNIST under ``--data``.
"""

from __future__ import annotations

from typing import Any

from dlsys.reproduce.section import Context, Section, SectionResult, markdown_table

__all__ = ["REPLAY_SECTIONS"]

#: Smaller experiment arguments for ``tiny`` runs (tests).
TINY_KWARGS: dict[str, dict[str, Any]] = {
    "staleness-lr": {"learners": 4},
    "error-runtime": {"learners": 4, "ks": (2,), "k_async": 2, "sim_time": 60.0},
}


def _run(ctx: Context, name: str) -> Any:
    from dlsys.training.experiments import Common, run_experiment

    if ctx.size == "full":
        assert ctx.data_root is not None
        common = Common(
            dataset=f"mnist:{ctx.data_root}", preset="homework", seed=ctx.seed, quiet=ctx.quiet
        )
    elif ctx.size == "tiny":
        common = Common(
            dataset="digits", model="mlp:16", epochs=1, limit=240, seed=ctx.seed, quiet=ctx.quiet
        )
    else:
        common = Common(dataset="digits", seed=ctx.seed, quiet=ctx.quiet)
    kwargs = TINY_KWARGS[name] if ctx.size == "tiny" else {}
    return run_experiment(name, common, ctx.out, **kwargs)


def _finish(ctx: Context, result: Any, table: str, lines: list[str]) -> SectionResult:
    s = result.summary
    note = [f"> {s['note']}", ""] if s.get("stand_in") and s.get("note") else []
    images = [f"![{p}]({ctx.rel(ctx.out / p)})" for p in result.plots]
    reading = ["Reading (from this run's numbers):", "", *(f"- {x}" for x in lines)]
    md = [*note, table, "", *reading, "", *images]
    return SectionResult("\n".join(md), {"dataset": s.get("data"), "summary": s})


def staleness_lr(ctx: Context) -> SectionResult:
    """n-softsync with constant and alpha / tau rates against one learner."""
    r = _run(ctx, "staleness-lr")
    s = r.summary
    rows = [
        (x["n"], x["rule"], f"{x['mean_staleness']:.2f}", f"{x['test_error']:.1f}%")
        for x in s["rows"]
    ]
    rows.append(("1 learner", "constant", "0.00", f"{s['single_learner']['test_error']:.1f}%"))
    intro = (
        f"{s['learners']} learners, {s['model']}, per-learner batch {s['per_learner_batch']}, "
        f"alpha {s['lr']:g}, {s['epochs']} epochs of gradients per run (replayed schedules "
        "of simulated n-softsync runs)."
    )
    table = intro + "\n\n" + markdown_table(rows, ["n", "rate", "mean staleness", "test error"])
    return _finish(ctx, r, table, s["reading"]["lines"])


def error_runtime(ctx: Context) -> SectionResult:
    """Sync, k-sync, k-async and async against simulated wall-clock time."""
    r = _run(ctx, "error-runtime")
    s = r.summary

    def t(x: Any) -> str:
        return "never" if x is None else f"{x:.4g} s"

    rows = [
        (x["protocol"], t(x["time_to_target"]), f"{x['test_error']:.2f}%", x["updates"])
        for x in s["rows"]
    ]
    intro = (
        f"{s['learners']} learners with shifted-exponential compute times, {s['model']}, "
        f"per-learner batch {s['per_learner_batch']}, lr {s['lr']:g}, {s['sim_time']:g} "
        f"simulated seconds per protocol; target {s['target_error']:g}% test error."
    )
    header = ["protocol", "time to target", "final test error", "updates"]
    return _finish(ctx, r, intro + "\n\n" + markdown_table(rows, header), s["reading"]["lines"])


REPLAY_SECTIONS: tuple[Section, ...] = (
    Section("staleness-lr", "Replay: staleness and the learning rate", staleness_lr),
    Section("error-runtime", "Replay: error against wall-clock time", error_runtime),
)
