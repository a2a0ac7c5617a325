"""Benchmark: the dlsys parameter server on Ray against Ray's own parameter-server pattern.

1. **PS overhead** (target: dlsys >= 1.0x the peer in updates per second). Async SGD, 8
   learners, no injected delay (each gradient takes only its real compute), MLP 784-64-10
   (``mlp:64`` on 28x28 inputs), batch 16, digits. The peer is the plain loop of Ray's
   parameter-server example (docs: "Parameter Server", asynchronous version), written out
   below: a ``ParameterServer`` actor whose ``apply_gradients`` sums the gradients, steps
   ``torch.optim.SGD`` and returns the weights as a dict of numpy arrays, ``DataWorker``
   actors whose ``compute_gradients(weights)`` loads them and returns per-parameter numpy
   gradients, and a driver that ``ray.wait``s for the next gradient, sends it to the PS and
   hands the new weights' reference to that worker. Both use the same CPU shares (PS 0.5,
   each learner (cpus - 0.5) / 8) on one local Ray instance (127.0.0.1), interleaved
   (peer, dlsys, peer, dlsys, ...); medians of ``--repeats`` runs.
2. **Agreement** (targets: mean staleness within 5%, total-variation distance <= 0.05).
   Async, 8 learners, exponential compute times with mean 50 ms, the same seed for the
   simulator and the real PS (so both draw the same compute times), ``--agree-updates``
   updates. The noise floor printed beside it is the distance sampling alone gives at that
   size: two simulations with different seeds (about 0.05 at 4,000 updates, 0.025 at 16,000).

    .venv/bin/python benchmarks/distributed.py                      # full
    .venv/bin/python benchmarks/distributed.py --updates 300 --repeats 1 --agree-updates 500
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import numpy as np
import torch

from dlsys.distributed import ActorPool, compare, connect, disconnect, run_ps
from dlsys.distributed.cluster import import_ray
from dlsys.simulator import Exponential, Fixed, Learner, Scenario
from dlsys.training.replay import ReplayConfig

MODEL = "mlp:64"
BATCH = 16
LEARNERS = 8
PS_CPUS = 0.5
SHARE = float(os.cpu_count() or 1)  # Ray CPUs of each side: the machine's cores


# ----------------------------------------------------------------------------- the peer
# Ray's parameter-server example, asynchronous version, with dlsys's model and data.


def _peer_model() -> torch.nn.Module:
    from dlsys.training.models import build_model

    return build_model(MODEL, (1, 28, 28), 10, "torch")


class PeerPS:
    """The example's ParameterServer: apply summed gradients with SGD, return the weights."""

    def __init__(self, lr: float) -> None:
        torch.set_num_threads(1)
        self.model = _peer_model()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)

    def apply_gradients(self, *gradients: list[np.ndarray]) -> dict[str, np.ndarray]:
        summed = [np.stack(gs).sum(axis=0) for gs in zip(*gradients, strict=True)]
        self.optimizer.zero_grad()
        for g, p in zip(summed, self.model.parameters(), strict=True):
            p.grad = torch.from_numpy(g)
        self.optimizer.step()
        return self.get_weights()

    def get_weights(self) -> dict[str, np.ndarray]:
        return {k: v.cpu().numpy() for k, v in self.model.state_dict().items()}


class PeerWorker:
    """The example's DataWorker: load the weights, one mini-batch, return the gradients."""

    def __init__(self, train: tuple[np.ndarray, np.ndarray], seed: int) -> None:
        torch.set_num_threads(1)
        self.model = _peer_model()
        self.x = torch.from_numpy(np.array(train[0]))
        self.y = torch.from_numpy(np.array(train[1]))
        self.gen = torch.Generator().manual_seed(seed)

    def compute_gradients(self, weights: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
        idx = torch.randint(0, self.x.shape[0], (BATCH,), generator=self.gen)
        self.model.zero_grad()
        loss = torch.nn.functional.cross_entropy(self.model(self.x[idx]), self.y[idx])
        loss.backward()
        return [p.grad.numpy().copy() for p in self.model.parameters()]  # type: ignore[union-attr]


def peer_run(ray: Any, ps: Any, workers: list[Any], updates: int) -> float:
    """The example's asynchronous driver loop; returns updates per second."""
    t0 = time.perf_counter()
    current = ps.get_weights.remote()
    gradients = {w.compute_gradients.remote(current): w for w in workers}
    for _ in range(updates):
        ready, _ = ray.wait(list(gradients))
        worker = gradients.pop(ready[0])
        current = ps.apply_gradients.remote(*[ready[0]])
        gradients[worker.compute_gradients.remote(current)] = worker
    ray.get(current)
    dt = time.perf_counter() - t0
    for ref in gradients:
        ray.cancel(ref)
    return updates / dt


# ----------------------------------------------------------------------------- dlsys


def no_delay_scenario(updates: int) -> Scenario:
    # Fixed 1 microsecond: far below the real compute, so every gradient takes only that.
    learners = tuple(Learner(f"w-{i}", Fixed(1e-6)) for i in range(LEARNERS))
    return Scenario(learners=learners, until_updates=updates, seed=0)


def dlsys_run(pool: ActorPool, updates: int) -> tuple[float, float]:
    """updates per second of the dlsys PS (from its own clock: start-up excluded) and the mean
    PS latency (seconds from a gradient's end at the learner to its update)."""
    cfg = ReplayConfig(model=MODEL, per_learner_batch=BATCH, lr=0.05)
    res = run_ps(no_delay_scenario(updates), cfg, pool=pool, cpus=SHARE)
    assert res.summary["stop_reason"] == "until_updates", res.summary["stop_reason"]
    t = res.result.trace
    ok = t["status"] == 0
    span = float(t["t_apply"][ok].max() - t["t_read"][ok].min())
    return updates / span, float(np.mean(t["t_apply"][ok] - t["t_done"][ok]))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--updates", type=int, default=2000, help="updates per overhead run")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved runs of each")
    ap.add_argument("--agree-updates", type=int, default=16000, help="updates of the agreement run")
    ap.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="wall seconds per scenario second in the agreement run (default 1: 50 ms mean)",
    )
    ap.add_argument("--skip-overhead", action="store_true", help="only the agreement run")
    a = ap.parse_args()

    # Logical CPUs: twice the cores, so the peer's actors and dlsys's (SHARE each, the same
    # split) can all be alive for interleaved runs; only one side runs at a time.
    session = connect(num_cpus=2 * SHARE)
    ray = import_ray()
    pool = ActorPool()
    try:
        from dlsys.training.data import load_dataset

        data = load_dataset("digits", seed=0)
        train = ray.put((data.train_x.numpy(), data.train_y.numpy()))
        lcpu = (SHARE - PS_CPUS) / LEARNERS
        ps = ray.remote(num_cpus=PS_CPUS)(PeerPS).remote(0.05)
        workers = [ray.remote(num_cpus=lcpu)(PeerWorker).remote(train, i) for i in range(LEARNERS)]
        ray.get([ps.get_weights.remote(), *[w.compute_gradients.remote(ray.get(
            ps.get_weights.remote())) for w in workers]])  # fmt: skip
        peer: list[float] = []
        ours: list[float] = []
        lat: list[float] = []
        # Warm-up of both (actor start-up, first-call costs), then interleaved runs.
        if not a.skip_overhead:
            dlsys_run(pool, 200)
            peer_run(ray, ps, workers, 200)
        for _ in range(0 if a.skip_overhead else a.repeats):
            peer.append(peer_run(ray, ps, workers, a.updates))
            u, latency = dlsys_run(pool, a.updates)
            ours.append(u)
            lat.append(latency)
        for h in (ps, *workers):
            ray.kill(h)
        print(
            f"cpus {os.cpu_count()}, Ray CPUs {session.cpus:g}, torch threads per actor 1, "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        if not a.skip_overhead:
            _overhead_table(a, peer, ours, lat)
        _agreement(a, pool)
    finally:
        pool.close()
        disconnect(session)


def _overhead_table(
    a: argparse.Namespace, peer: list[float], ours: list[float], lat: list[float]
) -> None:
    pm, om = statistics.median(peer), statistics.median(ours)
    print(f"PS overhead: async, {LEARNERS} learners, {MODEL} batch {BATCH}, no delay, "
          f"{a.updates} updates, median of {a.repeats}")  # fmt: skip
    print(f"{'':<28}{'updates/s':>12}{'ms/update':>12}{'ratio':>8}{'target':>8}")
    print(f"{'Ray example PS loop (peer)':<28}{pm:>12.1f}{1000 / pm:>12.2f}{'':>8}{'':>8}")
    print(f"{'dlsys ps':<28}{om:>12.1f}{1000 / om:>12.2f}{om / pm:>8.2f}{'>= 1.0':>8}")
    print(f"overhead per update: dlsys {1000 / om:.2f} ms, peer {1000 / pm:.2f} ms; dlsys PS "
          f"latency (gradient end -> update applied), median "
          f"{1000 * statistics.median(lat):.2f} ms (queueing: 8 learners never wait)")  # fmt: skip
    print()


def _agreement(a: argparse.Namespace, pool: ActorPool) -> None:
    learners = tuple(Learner(f"w-{i}", Exponential(rate=20.0)) for i in range(LEARNERS))
    sc = Scenario(learners=learners, until_updates=a.agree_updates, seed=1)
    cfg = ReplayConfig(model=MODEL, per_learner_batch=BATCH, lr=0.05)
    comp = compare(sc, cfg, pool=pool, cpus=SHARE, time_scale=a.time_scale)
    d = comp.to_json()
    rel = d["mean_staleness_relative_difference"]
    print(f"Agreement: async, {LEARNERS} learners, exponential mean 50 ms (scenario), time "
          f"scale {a.time_scale:g}, {a.agree_updates} updates, seed 1")  # fmt: skip
    print(f"{'':<34}{'simulated':>10}{'real':>10}{'measure':>10}{'target':>10}")
    sm, rm = d["simulated"]["staleness"]["mean"], d["real"]["staleness"]["mean"]
    print(f"{'mean staleness':<34}{sm:>10.3f}{rm:>10.3f}{100 * rel:>9.2f}%{'<= 5%':>10}")
    print(f"{'TV distance of staleness hist.':<34}{'':>10}{'':>10}"
          f"{comp.tv_distance:>10.4f}{'<= 0.05':>10}")  # fmt: skip
    print(f"{'  noise floor (sim vs sim, seed 2)':<34}{'':>10}{'':>10}"
          f"{d['why']['tv_noise_floor']:>10.4f}")  # fmt: skip
    print(f"{'seconds per update (scenario s)':<34}{d['simulated']['seconds_per_update']:>10.5f}"
          f"{d['real']['seconds_per_update']:>10.5f}")  # fmt: skip
    w = d["why"]
    print(f"why (scenario seconds): PS latency {1000 * w['ps_latency']:.2f} ms, read latency "
          f"{1000 * w['read_latency']:.2f} ms, compute overrun "
          f"{1000 * w['compute_overrun']:.2f} ms, mean compute {1000 * w['mean_compute']:.1f} ms; "
          f"draws shorter than the round trip "
          f"{100 * w['draws_below_round_trip']:.1f}%")  # fmt: skip


if __name__ == "__main__":
    main()
