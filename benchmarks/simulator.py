"""Benchmark: dlsys.simulator against a minimal hand-written SimPy script, same async scenario.

Scenario: async SGD, N learners (default 1,000) with exponential compute times of different
rates (rate_i = 0.5 + i / N per second), zero communication, U updates (default 1,000,000).
The hand-written script is what a user would write: one SimPy process per learner drawing
``rng.exponential`` per gradient, a version counter inline, staleness appended to a list,
no PS process. Both run in this process, interleaved (script, dlsys, script, dlsys, ...),
and the best of ``--repeat`` runs is compared.

Targets: dlsys time <= 1.5 x the script's, trace storage <= 64 bytes per update. Both mean
staleness values are printed against the theory, n - 1.

    .venv/bin/python benchmarks/simulator.py                 # full size
    .venv/bin/python benchmarks/simulator.py --updates 100000 --repeat 1   # quick
"""

from __future__ import annotations

import argparse
import gc
import os
import threading
import time

import numpy as np
import simpy

from dlsys.simulator import Exponential, Learner, Scenario, simulate


def rates(n: int) -> list[float]:
    """Compute rates per second: 0.5 + i / n for learner i (a 3x spread from slowest to fastest)."""
    return [0.5 + i / n for i in range(n)]


def hand_written(n: int, updates: int, seed: int) -> tuple[float, float]:
    """The minimal SimPy script. Returns (seconds, mean staleness)."""
    t0 = time.perf_counter()
    env = simpy.Environment()
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]
    state = {"version": 0}
    staleness: list[int] = []
    done = env.event()

    def learner(env: simpy.Environment, rng: np.random.Generator, scale: float):  # type: ignore[no-untyped-def]
        read = 0
        while True:
            yield env.timeout(rng.exponential(scale))
            staleness.append(state["version"] - read)
            state["version"] += 1
            if state["version"] == updates:
                done.succeed()
            read = state["version"]

    for i, r in enumerate(rates(n)):
        env.process(learner(env, rngs[i], 1.0 / r))
    env.run(until=done)
    dt = time.perf_counter() - t0
    return dt, float(np.mean(staleness))


def with_dlsys(n: int, updates: int, seed: int) -> tuple[float, float, float]:
    """dlsys.simulator on the same scenario. Returns (seconds, mean staleness, bytes/update)."""
    t0 = time.perf_counter()
    sc = Scenario(
        learners=tuple(Learner(f"w{i}", Exponential(r)) for i, r in enumerate(rates(n))),
        until_updates=updates,
        seed=seed,
    )
    res = simulate(sc)
    stale = res.trace["staleness"]
    dt = time.perf_counter() - t0
    return dt, float(stale.mean()), res.trace.nbytes / len(stale)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--learners", type=int, default=1000, help="number of learners (default 1000)")
    ap.add_argument("--updates", type=int, default=1_000_000, help="PS updates (default 1e6)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved runs of each (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    script_t, dlsys_t = [], []
    s_stale = d_stale = bpu = 0.0
    for _ in range(a.repeat):
        gc.collect()
        t, s_stale = hand_written(a.learners, a.updates, a.seed)
        script_t.append(t)
        gc.collect()
        t, d_stale, bpu = with_dlsys(a.learners, a.updates, a.seed)
        dlsys_t.append(t)
    best_s, best_d = min(script_t), min(dlsys_t)
    ratio = best_d / best_s
    n1 = a.learners - 1
    print(f"async, {a.learners} exponential learners, {a.updates:,} updates, zero communication")
    print(
        f"{'':24}{'seconds (best of ' + str(a.repeat) + ')':>22}{'mean staleness':>16}{'n - 1':>8}"
    )
    print(f"{'hand-written SimPy':24}{best_s:>22.3f}{s_stale:>16.2f}{n1:>8}")
    print(f"{'dlsys.simulator':24}{best_d:>22.3f}{d_stale:>16.2f}{n1:>8}")
    print(
        f"ratio dlsys / script: {ratio:.3f}  (target <= 1.5: {'met' if ratio <= 1.5 else 'MISSED'})"
    )
    print(
        f"trace storage: {bpu:.1f} bytes per update  "
        f"(target <= 64: {'met' if bpu <= 64 else 'MISSED'})"
    )
    print(
        f"all runs (s): script {[round(x, 3) for x in script_t]}, "
        f"dlsys {[round(x, 3) for x in dlsys_t]}"
    )
    print(
        f"threads: {threading.active_count()} python, cpus {os.cpu_count()}; "
        f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
