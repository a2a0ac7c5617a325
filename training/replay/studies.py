"""Two staleness studies built on replay (the ``dlsys train`` experiments ``staleness-lr`` and
``error-runtime`` call these and write their files).

1. :func:`staleness_lr` (Zhang et al., IJCAI 2016; Gupta et al., ICDM 2016): ``lambda``
   learners of per-learner batch ``mu``, n-softsync for n = 1, 2, 4, ..., lambda (the PS
   updates after ``c = round(lambda / n)`` gradients), each replayed with the ``constant``
   and the ``inverse-staleness`` learning rate, against one learner (plain sequential SGD
   with the same batch, rate and number of gradients). Claims checked from the numbers:
   mean staleness is close to n; with a constant rate large n fails; with alpha / tau every
   n stays near the single learner's error.
2. :func:`error_runtime` (Dutta et al., AISTATS 2018): ``P`` learners with shifted-
   exponential compute times, protocols sync, k-sync for several K, k-async and async, each
   given the same simulated time; test error against simulated seconds, and the simulated
   time each needs to reach a target error.

Every run of a study uses the same data, initial weights and learner sample streams (one
seed); only the schedule and the rate rule differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure

from dlsys.common.errors import check_int, check_positive
from dlsys.simulator import Learner, Protocol, Scenario, ShiftedExponential, simulate
from dlsys.simulator.distributions import Distribution, Exponential
from dlsys.training.data import Splits
from dlsys.training.replay.run import ReplayConfig, ReplayResult, replay
from dlsys.training.replay.schedule import Schedule, load_schedule

__all__ = [
    "STALENESS_RULES",
    "StudyRun",
    "error_runtime",
    "error_runtime_figure",
    "error_runtime_reading",
    "softsync_grid",
    "staleness_lr",
    "staleness_lr_figure",
    "staleness_reading",
]

#: The two rates the staleness study compares.
STALENESS_RULES = ("constant", "inverse-staleness")

#: ``replay_fn(name, schedule, config) -> ReplayResult``: how a study runs one replay (the
#: experiments pass one that checkpoints under the run's name).
ReplayFn = Callable[[str, Schedule, ReplayConfig], ReplayResult]


def _plain(data: Splits, quiet: bool) -> ReplayFn:
    return lambda _name, sched, cfg: replay(sched, cfg, data, quiet=quiet)


def softsync_grid(learners: int) -> list[tuple[int, int]]:
    """``(n, c)`` pairs of the staleness study: n = 1, 2, 4, ... below ``learners``, then
    ``learners``; ``c = round(learners / n)`` gradients per update (so n-softsync is exact
    when n divides ``learners``)."""
    check_int("learners", learners, minimum=1)
    ns = [2**i for i in range(learners.bit_length()) if 2**i < learners] + [learners]
    return [(n, max(1, round(learners / n))) for n in ns]


def _learners(count: int, dist: Distribution) -> tuple[Learner, ...]:
    return tuple(Learner(f"w-{i}", dist) for i in range(count))


@dataclass(frozen=True)
class StudyRun:
    """One replay of a study: its label, the row it contributes and its evaluations."""

    name: str
    row: dict[str, Any]
    evals: list[dict[str, Any]]


def _row_of(res: ReplayResult) -> dict[str, Any]:
    return {
        "mean_staleness": res.mean_staleness,
        "test_accuracy": res.test_accuracy,
        "test_error": 100.0 * (1.0 - res.test_accuracy),
        "updates": res.updates,
        "gradients": res.gradients_applied,
        "diverged": res.diverged,
    }


def staleness_lr(
    data: Splits,
    base: ReplayConfig,
    *,
    learners: int = 16,
    epochs: float = 5.0,
    ns: Sequence[tuple[int, int]] | None = None,
    seed: int = 0,
    run: ReplayFn | None = None,
    quiet: bool = True,
) -> tuple[list[dict[str, Any]], list[StudyRun], dict[str, Any]]:
    """The n-softsync study (see the module docstring).

    ``base``: model, per-learner batch ``mu``, alpha and seed of every replay (its
    ``lr_rule`` is replaced by each rule); ``learners``: lambda; ``epochs``: passes over the
    training split by all learners together (``epochs * N / mu`` gradients per run);
    compute times are exponential with mean 1 s (scenario seed ``seed``). Returns the rows
    (one per (n, rule): ``n``, ``c``, ``rule``, ``mean_staleness``, ``test_accuracy``, ...),
    the runs, and the single learner's row.
    """
    check_int("learners", learners, minimum=1)
    check_positive("epochs", epochs)
    replay_fn = run or _plain(data, quiet)
    gradients = max(1, round(epochs * data.sizes["train"] / base.per_learner_batch))
    one = Scenario(_learners(1, Exponential(1.0)), until_updates=gradients, seed=seed)
    single = replay_fn("single", load_schedule(simulate(one)), base.replace(lr_rule="constant"))
    rows: list[dict[str, Any]] = []
    runs = [StudyRun("single", {"n": 0, "rule": "single learner", **_row_of(single)}, single.evals)]
    for n, c in ns if ns is not None else softsync_grid(learners):
        proto = Protocol("softsync", c=c) if c > 1 or learners > 1 else Protocol("async")
        sc = Scenario(
            _learners(learners, Exponential(1.0)),
            protocol=proto,
            until_updates=max(1, gradients // c),
            seed=seed,
        )
        sched = load_schedule(simulate(sc))
        for rule in STALENESS_RULES:
            res = replay_fn(f"n{n}-{rule}", sched, base.replace(lr_rule=rule))
            row = {"n": n, "c": c, "rule": rule, **_row_of(res)}
            rows.append(row)
            runs.append(StudyRun(f"n{n}-{rule}", row, res.evals))
    return rows, runs, runs[0].row


def staleness_reading(
    rows: Sequence[dict[str, Any]], single: dict[str, Any], *, near_points: float = 5.0
) -> dict[str, Any]:
    """Whether the papers' three claims hold in ``rows`` (numbers, verdicts and one line each).

    Mean staleness "close to n": within 25 % of n for every n (n >= 2). "Large n fails" with
    the constant rate: the largest n ends more than ``near_points`` percentage points of
    test error above the single learner. "Every n near the single learner" with alpha / tau:
    none more than ``near_points`` points above it.
    """
    base_err = single["test_error"]
    const = [r for r in rows if r["rule"] == "constant"]
    inv = [r for r in rows if r["rule"] == "inverse-staleness"]
    ratios = {r["n"]: r["mean_staleness"] / r["n"] for r in const}
    close = all(abs(q - 1.0) <= 0.25 for n, q in ratios.items() if n >= 2)
    largest = max(const, key=lambda r: r["n"])
    fails = largest["test_error"] > base_err + near_points
    worst_inv = max(inv, key=lambda r: r["test_error"])
    near = all(r["test_error"] <= base_err + near_points for r in inv)
    ms = ", ".join(f"n={n}: {q * n:.2f}" for n, q in ratios.items())
    return {
        "staleness_close_to_n": close,
        "constant_large_n_fails": fails,
        "inverse_staleness_near_single": near,
        "single_learner_error": base_err,
        "lines": [
            f"mean staleness against n ({ms}): {'close to n' if close else 'NOT close to n'} "
            "(within 25 %)",
            f"constant rate at n = {largest['n']}: test error {largest['test_error']:.1f} % "
            f"against {base_err:.1f} % for one learner: "
            + ("fails, as the paper says" if fails else "does NOT fail here"),
            f"alpha / tau: worst test error {worst_inv['test_error']:.1f} % (n = "
            f"{worst_inv['n']}) against {base_err:.1f} %: "
            + (
                f"no n more than {near_points:g} points above it, as the paper says"
                if near
                else f"some n more than {near_points:g} points above it, unlike the paper"
            ),
        ],
    }


def staleness_lr_figure(rows: Sequence[dict[str, Any]], single: dict[str, Any]) -> Figure:
    """Test error (%) against mean staleness, one line per rule, the single learner dashed."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for rule, marker in zip(STALENESS_RULES, ("o", "s"), strict=True):
        rs = sorted((r for r in rows if r["rule"] == rule), key=lambda r: r["mean_staleness"])
        ax.plot(
            [max(r["mean_staleness"], 1e-2) for r in rs],
            [r["test_error"] for r in rs],
            marker=marker,
            label="alpha / tau" if rule == "inverse-staleness" else "constant alpha",
        )
        for r in rs:
            ax.annotate(f"n={r['n']}", (max(r["mean_staleness"], 1e-2), r["test_error"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")  # fmt: skip
    ax.axhline(single["test_error"], color="gray", ls="--", label="one learner")
    ax.set_xscale("log")
    ax.set_xlabel("mean staleness (PS updates)")
    ax.set_ylabel("test error (%)")
    ax.set_ylim(0, 100)
    ax.set_title("n-softsync: test error against staleness (Zhang et al. 2016)")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def error_runtime(
    data: Splits,
    base: ReplayConfig,
    *,
    learners: int = 8,
    shift: float = 1.0,
    rate: float = 1.0,
    ks: Sequence[int] = (2, 4),
    k_async: int = 4,
    sim_time: float = 600.0,
    target_error: float = 10.0,
    evals: int = 40,
    seed: int = 0,
    dist: Distribution | None = None,
    run: ReplayFn | None = None,
    quiet: bool = True,
) -> tuple[list[dict[str, Any]], list[StudyRun]]:
    """The error-runtime study (see the module docstring).

    ``learners`` P with ``shift + Exp(rate)`` seconds per gradient (or ``dist``, e.g. times
    from the cost model: ``ModelTime(model_spec(table).step_seconds, cv=0.2)`` of
    :mod:`dlsys.simulator.model_compute`); protocols sync, k-sync
    for each K in ``ks``, k-async with ``k_async`` and async, each simulated for
    ``sim_time`` seconds (scenario seed ``seed``) and replayed with ``base``, evaluated
    about ``evals`` times. Returns one row per protocol (``protocol``, ``time_to_target``:
    simulated seconds of the first evaluation at or below ``target_error`` percent test
    error, None if never; ``test_accuracy``, ...) and the runs.
    """
    check_int("learners", learners, minimum=1)
    check_positive("sim_time", sim_time)
    check_positive("target_error", target_error)
    check_int("evals", evals, minimum=1)
    for k in (*ks, k_async):
        check_int("K", k, minimum=1, maximum=learners)
    replay_fn = run or _plain(data, quiet)
    protocols = [Protocol("sync")] + [Protocol("k-sync", k=k) for k in ks]
    protocols += [Protocol("k-async", k=k_async), Protocol("async")]
    dist = dist if dist is not None else ShiftedExponential(shift, rate)
    rows: list[dict[str, Any]] = []
    runs: list[StudyRun] = []
    for proto in protocols:
        sc = Scenario(_learners(learners, dist), protocol=proto, until_time=sim_time, seed=seed)
        sched = load_schedule(simulate(sc))
        cfg = base.replace(eval_every=max(1, sched.updates // evals))
        res = replay_fn(proto.label(), sched, cfg)
        hit = [e["t"] for e in res.evals if 100.0 * (1.0 - e["test_acc"]) <= target_error]
        row = {"protocol": proto.label(), "time_to_target": hit[0] if hit else None,
               **_row_of(res)}  # fmt: skip
        rows.append(row)
        runs.append(StudyRun(proto.label(), row, res.evals))
    return rows, runs


def error_runtime_reading(rows: Sequence[dict[str, Any]], target_error: float) -> dict[str, Any]:
    """Which protocol reaches ``target_error`` first and which ends lowest (one line each)."""
    reached = [r for r in rows if r["time_to_target"] is not None]
    first = min(reached, key=lambda r: r["time_to_target"]) if reached else None
    low = min(r["test_error"] for r in rows)
    lowest = [r["protocol"] for r in rows if r["test_error"] == low]
    return {
        "first_to_target": first["protocol"] if first else None,
        "lowest_final_error": lowest,
        "lines": [
            (
                f"first to {target_error:g} % test error: {first['protocol']} at "
                f"{first['time_to_target']:.4g} simulated s"
                if first
                else f"no protocol reached {target_error:g} % test error"
            ),
            f"lowest final test error: {' and '.join(lowest)} ({low:.2f} %)",
        ],
    }


def error_runtime_figure(runs: Sequence[StudyRun], target_error: float) -> Figure:
    """Test error (%) against simulated seconds, one line per protocol, the target dotted."""
    fig = Figure(figsize=(6.5, 4))
    ax = fig.add_subplot()
    for r in runs:
        ax.plot([e["t"] for e in r.evals], [100.0 * (1.0 - e["test_acc"]) for e in r.evals],
                label=r.name)  # fmt: skip
    ax.axhline(target_error, color="gray", ls=":", label=f"target {target_error:g} %")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("test error (%)")
    ax.set_yscale("log")
    ax.set_title("error against wall-clock time (Dutta et al. 2018)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig
