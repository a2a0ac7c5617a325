"""Benchmark: replaying an async parameter-server schedule against plain dlsys.training.

Claim (issue 13): replay throughput (gradients per second) is at least 0.8x plain
:func:`dlsys.training.train` throughput with the same model, per-gradient batch and
threads, for async SGD with 16 learners. Replay does more per gradient than ``train``: it
looks up the gradient's read version, computes on those stored tensors through
``torch.func.functional_call``, and keeps a new weight version per update while older ones
are still read (``train`` steps in place).

Setup: the 784-128-10 MLP (``mlp:128``) on the built-in digits set (1,198 training images),
batch 16 per gradient, U updates (default 2,000). ``train`` runs ``max_updates = U`` with
one validation pass at the end; the replay follows a simulated async schedule of 16
learners with exponential compute times (rates 0.5 .. 1.44 per second) and evaluates
validation and test once before and once after. The two run interleaved in one process
(train, replay, train, replay, ...) after one warm-up each; the table shows medians.

Second claim: the ``staleness-lr`` quick run (``dlsys train staleness-lr`` with its quick
defaults: 16 learners, n = 1 .. 16, two rates, one single-learner run) takes under 3
minutes on 2 cores; it is timed once, end to end, at the end (``--no-study`` skips it).

    .venv/bin/python benchmarks/replay.py [--updates 2000] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

from dlsys.simulator import Exponential, Learner, Scenario, simulate
from dlsys.training import TrainConfig, load_dataset, train
from dlsys.training.replay import ReplayConfig, load_schedule, replay


def interleaved(cases: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call for each case: one warm-up each, then ``repeats`` rounds in turn."""
    for fn in cases.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for k, fn in cases.items():
            times[k].append(fn())
    return times


def study_time(threads: int) -> None:
    """Time the staleness-lr quick run once and print it against the 3-minute target."""
    import tempfile

    from dlsys.training.experiments import Common, run_experiment

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = run_experiment("staleness-lr", Common(threads=threads), tmp)
        dt = time.perf_counter() - t0
    runs = len(res.summary["rows"]) + 1
    print(
        f"staleness-lr quick ({runs} replays, {res.summary['learners']} learners): {dt:.1f} s "
        f"(target < 180 s: {'met' if dt < 180 else 'MISSED'})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=2000, help="PS updates (default 2000)")
    ap.add_argument("--learners", type=int, default=16, help="async learners (default 16)")
    ap.add_argument("--batch", type=int, default=16, help="samples per gradient (default 16)")
    ap.add_argument("--model", default="mlp:128", help="model (default mlp:128)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of each (default 5)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--no-study", action="store_true", help="skip timing staleness-lr quick")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    data = load_dataset("digits", seed=0)
    n = a.learners
    sc = Scenario(
        tuple(Learner(f"w-{i}", Exponential(0.5 + i / n)) for i in range(n)),
        until_updates=a.updates,
    )
    sched = load_schedule(simulate(sc))
    kernels = "torch" if a.model.startswith("mlp") else "dlsys"
    tcfg = TrainConfig(
        model=a.model,
        epochs=10**6,
        batch_size=a.batch,
        lr=0.05,
        max_updates=a.updates,
        track_test=False,
        kernels=kernels,
    )
    rcfg = ReplayConfig(
        model=a.model, per_learner_batch=a.batch, lr=0.05, eval_every=10**9, kernels=kernels
    )
    info: dict[str, float] = {}

    def run_train() -> float:
        t0 = time.perf_counter()
        res = train(tcfg, data)
        dt = time.perf_counter() - t0
        assert res.updates == a.updates
        return dt

    def run_replay() -> float:
        t0 = time.perf_counter()
        res = replay(sched, rcfg, data)
        dt = time.perf_counter() - t0
        info["versions"] = res.max_weight_versions
        info["staleness"] = res.mean_staleness
        return dt

    times = interleaved({"train": run_train, "replay": run_replay}, a.repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: a.updates / v for k, v in med.items()}  # one gradient per update in both
    ratio = rate["replay"] / rate["train"]
    print(
        f"async, {n} learners, {a.updates:,} updates, {a.model}, batch {a.batch} per gradient; "
        f"replay: mean staleness {info['staleness']:.2f}, at most {info['versions']:.0f} "
        "weight versions held"
    )
    print(f"{'':22}{'median s':>10}{'gradients/s':>14}")
    for k in ("train", "replay"):
        print(
            f"{'dlsys.training.train' if k == 'train' else 'replay':22}"
            f"{med[k]:>10.3f}{rate[k]:>14.0f}"
        )
    print(
        f"ratio replay / train throughput: {ratio:.3f}  "
        f"(target >= 0.8: {'met' if ratio >= 0.8 else 'MISSED'})"
    )
    print("all runs (s): " + ", ".join(f"{k} {[round(x, 3) for x in v]}" for k, v in times.items()))
    if not a.no_study:
        study_time(a.threads)
    print(
        f"torch threads: {torch.get_num_threads()}, cpus {os.cpu_count()}; "
        f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
