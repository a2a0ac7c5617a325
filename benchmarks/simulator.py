"""Benchmark: dlsys.simulator against hand-written SimPy scripts, interleaved in one process.

Cases (the targets of issue 12):

* async: N learners (default 1,000) with exponential compute times of rates 0.5 + i / N
  per second, U updates (default 1,000,000), full trace. Target: dlsys (engine auto, the
  vector engine) at least 20x faster than the script. Also the SimPy engine itself
  (engine="simpy") against the same script: it must not regress (0.83x before issue 12).
* sync: 100 learners Exp(1), 100,000 iterations (10M gradients), full trace, against a
  hand-written SimPy barrier script. Target: 20x.
* ssp: s = 3, 100 learners of rates 0.5 + i / 100, 1,000,000 updates, against a SimPy
  script with the gate (the smallest clock kept in a count table, not recomputed).
  Target: 10x.
* summary-only: async, 1,000 learners, 100,000,000 updates, ``--summary-only`` in a child
  process (its peak RSS from getrusage). Target: < 60 s and < 1 GiB.
* trace storage: bytes per update of the async trace. Target: <= 64. Also the sync
  trace's bytes per gradient row (its per-round columns are held as runs).

Each pair runs interleaved (script, dlsys, script, dlsys, ...) ``--repeat`` times, after
one untimed run of each at the same size (``--cold`` skips it): a process's first run at a
size touches memory it never had, and those first-touch page faults (about 13,000 for the
dlsys async case, 0.1-0.2 s on this virtual machine) are not the engine's speed. Medians are
compared. Sizes scale with ``--scale`` (0.01 for a quick look).

    .venv/bin/python benchmarks/simulator.py                 # the issue's sizes
    .venv/bin/python benchmarks/simulator.py --scale 0.02 --repeat 1   # quick
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import simpy

from dlsys.simulator import Exponential, Learner, Protocol, Scenario, simulate


def rates(n: int) -> list[float]:
    """Compute rates per second: 0.5 + i / n for learner i (a 3x spread)."""
    return [0.5 + i / n for i in range(n)]


def streams(n: int, seed: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


# ----------------------------------------------------------------------------- scripts


def script_async(n: int, updates: int, seed: int) -> float:
    """The minimal SimPy async script: one process per learner. Returns mean staleness."""
    env = simpy.Environment()
    rngs = streams(n, seed)
    state = {"version": 0}
    staleness: list[int] = []
    done = env.event()

    def learner(rng: np.random.Generator, scale: float):  # type: ignore[no-untyped-def]
        read = 0
        while True:
            yield env.timeout(rng.exponential(scale))
            staleness.append(state["version"] - read)
            state["version"] += 1
            if state["version"] == updates:
                done.succeed()
            read = state["version"]

    for i, r in enumerate(rates(n)):
        env.process(learner(rngs[i], 1.0 / r))
    env.run(until=done)
    return float(np.mean(staleness))


def script_sync(n: int, rounds: int, seed: int) -> float:
    """A SimPy barrier script: every learner computes, the last arrival ends the round.
    Returns the mean round time."""
    env = simpy.Environment()
    rngs = streams(n, seed)
    state = {"arrived": 0, "round": 0, "barrier": env.event()}
    times: list[float] = []
    done = env.event()

    def learner(rng: np.random.Generator):  # type: ignore[no-untyped-def]
        while True:
            yield env.timeout(rng.exponential(1.0))
            barrier = state["barrier"]
            state["arrived"] += 1
            if state["arrived"] == n:
                state["arrived"] = 0
                state["round"] += 1
                times.append(env.now)
                state["barrier"] = env.event()
                barrier.succeed()
                if state["round"] == rounds:
                    done.succeed()
            yield barrier

    for i in range(n):
        env.process(learner(rngs[i]))
    env.run(until=done)
    return times[-1] / rounds


def script_ssp(n: int, updates: int, s: int, seed: int) -> float:
    """A SimPy SSP script: a learner more than s clocks ahead of the slowest waits on a
    shared gate event, re-triggered when the slowest clock moves. Returns mean staleness."""
    env = simpy.Environment()
    rngs = streams(n, seed)
    clock = [0] * n
    at = {0: n}  # how many learners have each clock
    state = {"version": 0, "slowest": 0, "gate": env.event()}
    staleness: list[int] = []
    done = env.event()

    def learner(i: int, rng: np.random.Generator, scale: float):  # type: ignore[no-untyped-def]
        while True:
            while clock[i] - state["slowest"] > s:
                yield state["gate"]
            read = state["version"]
            yield env.timeout(rng.exponential(scale))
            staleness.append(state["version"] - read)
            state["version"] += 1
            if state["version"] == updates:
                done.succeed()
            c = clock[i]
            clock[i] = c + 1
            at[c] -= 1
            at[c + 1] = at.get(c + 1, 0) + 1
            if at[c] == 0:
                del at[c]
                if c == state["slowest"]:
                    state["slowest"] = c + 1
                    gate = state["gate"]
                    state["gate"] = env.event()
                    gate.succeed()

    for i, r in enumerate(rates(n)):
        env.process(learner(i, rngs[i], 1.0 / r))
    env.run(until=done)
    return float(np.mean(staleness))


# ----------------------------------------------------------------------------- dlsys


def scenario(n: int, updates: int, protocol: Protocol, hetero: bool = True) -> Scenario:
    rs = rates(n) if hetero else [1.0] * n
    return Scenario(
        learners=tuple(Learner(f"w{i}", Exponential(r)) for i, r in enumerate(rs)),
        protocol=protocol,
        until_updates=updates,
    )


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def pair(
    script: Callable[[], object], ours: Callable[[], object], repeat: int, warm: bool = True
) -> dict:
    """Interleaved medians of the script and dlsys, after one untimed run of each (``warm``;
    numba's compiled loops are loaded by the caller's small warm-up runs)."""
    st, dt = [], []
    s_out = d_out = None
    if warm:
        script()
        ours()
    for _ in range(repeat):
        t, s_out = timed(script)
        st.append(t)
        t, d_out = timed(ours)
        dt.append(t)
    return {
        "script": statistics.median(st),
        "dlsys": statistics.median(dt),
        "script_out": s_out,
        "dlsys_out": d_out,
        "runs": (st, dt),
    }


def summary_only_child(n: int, updates: int) -> None:
    """Run in a child process: --summary-only async, print seconds and peak RSS."""

    sc = scenario(n, updates, Protocol("async"))
    t0 = time.perf_counter()
    res = simulate(sc, trace=False)
    dt = time.perf_counter() - t0
    print(f"{dt} {peak_rss()} {res.summary['staleness']['mean']} {res.summary['updates']}")


def peak_rss() -> int:
    """This process's peak resident set size in bytes: VmHWM of /proc/self/status.

    Not ``getrusage().ru_maxrss``: on Linux a child started by ``subprocess`` (vfork, then
    exec) inherits the parent's high-water mark there, so it reported the benchmark
    parent's peak (about 2 GiB after the full-trace cases) instead of its own.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", type=float, default=1.0, help="size factor (default 1)")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved runs (default 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", default="", help="comma list of cases to skip")
    ap.add_argument("--cold", action="store_true", help="no untimed run before the timed ones")
    ap.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        summary_only_child(*a.child)
        return
    skip = set(a.skip.split(","))
    sz = a.scale
    rows = []
    # Warm-up: numba loads its compiled loops once per process.
    simulate(scenario(20, 2000, Protocol("async")))
    simulate(scenario(20, 200, Protocol("sync"), hetero=False))
    simulate(scenario(20, 2000, Protocol("ssp", s=3)))
    simulate(scenario(20, 2000, Protocol("async")), trace=False)

    if "async" not in skip:
        n, u = 1000, int(1_000_000 * sz)
        sc = scenario(n, u, Protocol("async"))
        r = pair(lambda: script_async(n, u, a.seed), lambda: simulate(sc), a.repeat, not a.cold)
        res = r["dlsys_out"]
        bpu = res.trace.nbytes / res.summary["updates"]  # type: ignore[attr-defined]
        rows.append((f"async 1000 x {u:,}, full trace", r, 20.0))
        rs = pair(
            lambda: script_async(n, u, a.seed),
            lambda: simulate(sc, engine="simpy"),
            a.repeat,
            not a.cold,
        )
        rows.append(("  SimPy engine (regression)", rs, None))
    if "sync" not in skip:
        n, rounds = 100, int(100_000 * sz)
        sc = scenario(n, rounds, Protocol("sync"), hetero=False)
        r = pair(lambda: script_sync(n, rounds, a.seed), lambda: simulate(sc), a.repeat, not a.cold)
        rows.append((f"sync 100 x {rounds:,} rounds", r, 20.0))
        tr = r["dlsys_out"].trace  # type: ignore[attr-defined]
        sync_bpr = tr.nbytes / len(tr)  # (per-round columns held as runs)
    if "ssp" not in skip:
        n, u = 100, int(1_000_000 * sz)
        sc = scenario(n, u, Protocol("ssp", s=3))
        r = pair(lambda: script_ssp(n, u, 3, a.seed), lambda: simulate(sc), a.repeat, not a.cold)
        rows.append((f"ssp s=3 100 x {u:,}", r, 10.0))

    print(f"{'case':34}{'script s':>10}{'dlsys s':>10}{'speed-up':>10}{'target':>8}  verdict")
    for name, r, target in rows:
        sp = r["script"] / r["dlsys"]
        verdict = "-" if target is None else ("met" if sp >= target else "MISSED")
        tgt = "-" if target is None else f">={target:g}x"
        print(f"{name:34}{r['script']:>10.3f}{r['dlsys']:>10.3f}{sp:>9.2f}x{tgt:>8}  {verdict}")
    if "async" not in skip:
        print(f"trace storage: {bpu:.1f} bytes per update (target <= 64: "
              f"{'met' if bpu <= 64 else 'MISSED'})")  # fmt: skip
    if "sync" not in skip:
        print(f"sync trace storage: {sync_bpr:.1f} bytes per gradient row (57 plain)")
    if "summary" not in skip:
        u = int(100_000_000 * sz)
        out = subprocess.run(
            [sys.executable, __file__, "--child", "1000", str(u)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        secs, rss = float(out[0]), int(out[1])
        ok = secs < 60 and rss < 2**30
        print(
            f"summary-only async 1000 x {u:,}: {secs:.1f} s, peak RSS {rss / 2**20:.0f} MiB "
            f"(mean staleness {float(out[2]):.2f}; targets < 60 s and < 1024 MiB: "
            f"{'met' if ok else 'MISSED'})"
        )
    for name, r, _ in rows:
        st, dt = r["runs"]
        print(f"runs (s) {name.strip()}: script {[round(x, 3) for x in st]}, "
              f"dlsys {[round(x, 3) for x in dt]}")  # fmt: skip
    print(
        f"threads: {threading.active_count()} python, cpus {os.cpu_count()}, numba "
        f"{os.environ.get('NUMBA_NUM_THREADS', 'default')}; load average: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
