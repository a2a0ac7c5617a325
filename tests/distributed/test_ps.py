"""The real parameter server: protocols, trace, replay agreement, faults, checkpoints, Ctrl-C.

Every run here is a real Ray run on the session's local instance (conftest.py) with a few
learners and short compute times, so the whole file stays within seconds of start-up per run.
"""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dlsys.distributed.cluster import RaySession
from dlsys.distributed.run import MAX_LEARNERS, PSResult, run_ps
from dlsys.simulator import Crash, Exponential, Fixed, Learner, Protocol, Scenario
from dlsys.simulator.engine import learner_streams
from dlsys.training.data import load_dataset
from dlsys.training.replay import ReplayConfig, initial_model, load_schedule, replay

CFG = ReplayConfig(model="mlp:32", per_learner_batch=8, lr=0.05, seed=3)


def _cpus(actors: int) -> float:
    """Ray CPUs for a run of ``actors`` learner actors: 0.5 for the PS and 0.375 per learner,
    the same share in every run, so the module's pool can hand the same actors to all."""
    return 0.5 + 0.375 * actors


def _scenario(n: int, protocol: Protocol, rate: float = 40.0, **kw: Any) -> Scenario:
    learners = tuple(Learner(f"w-{i}", Exponential(rate=rate)) for i in range(n))
    return Scenario(learners=learners, protocol=protocol, seed=5, **{"until_updates": 10, **kw})


def _rows(res: PSResult) -> dict[str, np.ndarray]:
    t = res.result.trace
    return {k: t[k] for k in ("learner", "seq", "read_version", "version", "status")} | {
        k: t[k] for k in ("t_read", "t_start", "t_done", "t_apply", "staleness")
    }


def _check_trace(res: PSResult, updates: int) -> dict[str, np.ndarray]:
    """Invariants of any trace: versions 0..updates-1 each applied, one row per gradient."""
    r = _rows(res)
    ok = r["status"] == 0
    assert res.summary["updates"] == updates
    assert sorted(set(r["version"][ok].tolist())) == list(range(updates))
    pairs = list(zip(r["learner"].tolist(), r["seq"].tolist(), strict=True))
    assert len(pairs) == len(set(pairs)), "a gradient appears twice"
    assert (r["staleness"][ok] >= 0).all()
    assert (r["t_read"][ok] <= r["t_start"][ok]).all()
    assert (r["t_start"][ok] <= r["t_done"][ok]).all()
    assert (r["t_done"][ok] <= r["t_apply"][ok]).all()
    return r


@pytest.fixture(scope="module")
def pool(ray_local: RaySession) -> Any:
    """Actors kept between this module's runs (each learner starts once, not once per run)."""
    from dlsys.distributed.pool import ActorPool

    p = ActorPool()
    yield p
    p.close()


def test_async_run_replays_to_the_same_weights(pool: Any) -> None:
    # 4 learners: the pool then holds the standby the crash test needs.
    sc = _scenario(4, Protocol("async"), until_updates=24)
    res = run_ps(sc, CFG, pool=pool, cpus=_cpus(4))
    r = _check_trace(res, 24)
    assert res.summary["stop_reason"] == "until_updates"
    assert res.summary["time_scale"] == 1.0
    # Each learner waits out its drawn compute times, the simulator's own stream for learner i
    # (SeedSequence(5).spawn(4)[i]), in order. A cycle counts from the scenario's read time
    # (the previous compute end, push time 0), so gradient j ended at least the sum of the
    # first j draws after the start, however long the PS took to answer.
    for i, rng in enumerate(learner_streams(5, 4)):
        draws = np.cumsum(Exponential(rate=40.0).sampler(rng)())
        mine = np.flatnonzero(r["learner"] == i)
        assert mine.size
        for k in mine:
            seq = int(r["seq"][k])
            assert r["t_done"][k] >= draws[seq - 1] - 1e-6
    # Async: one gradient per update, and the learner reads the version its update made.
    assert np.array_equal(np.sort(r["version"]), np.arange(24))
    # Replaying the real trace (dlsys.training.replay: same model init, sample streams and
    # optimizer) reproduces the PS's final weights exactly.
    data = load_dataset("digits", seed=CFG.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the learners and the PS compute (float sums in one order)
    try:
        rep = replay(load_schedule(res.result), CFG, data)
    finally:
        torch.set_num_threads(threads)
    assert rep.updates == 24 and rep.model is not None
    final = rep.model.params  # the replay's weights after its last update, by name
    names = [n for n, _ in initial_model(CFG, data).named_parameters()]
    want = torch.cat([final[n].detach().reshape(-1) for n in names])
    got = torch.from_numpy(np.array(res.weights))
    start = torch.cat([p.detach().reshape(-1) for p in initial_model(CFG, data).parameters()])
    assert not torch.equal(got, start)  # training moved the weights
    assert torch.equal(got, want), f"max difference {float((got - want).abs().max())}"
    assert res.test_accuracy == pytest.approx(rep.test_accuracy)


# (protocol, gradients per update with 3 learners, staleness always 0)
PROTOCOL_CASES = [
    (Protocol("async"), 1, False),
    (Protocol("ssp", s=1), 1, False),
    (Protocol("sync"), 3, True),
    (Protocol("k-sync", k=2), 2, True),
    (Protocol("k-batch-sync", k=2), 2, True),
    (Protocol("k-async", k=2), 2, False),
    (Protocol("k-batch-async", k=2), 2, False),
    (Protocol("softsync", c=2), 2, False),
    (Protocol("backup", b=1), 2, True),
]


@pytest.mark.parametrize(("proto", "per_update", "fresh"), PROTOCOL_CASES, ids=lambda c: str(c))
def test_every_protocol_forms_its_updates(
    pool: Any, proto: Protocol, per_update: int, fresh: bool
) -> None:
    res = run_ps(_scenario(3, proto, until_updates=8), CFG, pool=pool, cpus=_cpus(3))
    r = _check_trace(res, 8)
    ok = r["status"] == 0
    counts = np.bincount(r["version"][ok], minlength=8)
    assert counts.tolist() == [per_update] * 8
    if fresh:  # these protocols only apply gradients computed on the current weights
        assert (r["staleness"][ok] == 0).all()
    if proto.kind in ("k-sync", "k-batch-sync"):
        assert res.summary["gradients_cancelled"] >= 1  # the slowest learner's, every update
    if proto.kind == "k-async":  # k distinct learners per update
        for v in range(8):
            assert len(set(r["learner"][ok & (r["version"] == v)].tolist())) == 2


def test_arrivals_found_together_after_a_cancelling_update_are_not_applied(pool: Any) -> None:
    # Fixed, equal compute times: the three learners' gradients end together and one ray.wait
    # returns them at once. The first two form the k-batch-sync update (k = 2), which cancels
    # the third, still unprocessed: it must appear once, as cancelled (it was written a second
    # time, as applied or dropped, before the fix).
    learners = tuple(Learner(f"w-{i}", Fixed(0.05)) for i in range(3))
    sc = Scenario(learners=learners, protocol=Protocol("k-batch-sync", k=2), until_updates=6)
    res = run_ps(sc, CFG, pool=pool, cpus=_cpus(3))
    r = _check_trace(res, 6)
    assert np.bincount(r["version"][r["status"] == 0], minlength=6).tolist() == [2] * 6


def test_crash_restart_then_resume_from_the_checkpoint(pool: Any, tmp_path: Path) -> None:
    crash = Crash("w-0", at=0.15, restart_after=0.1)
    sc = _scenario(3, Protocol("async"), rate=20.0, until_updates=30, faults=(crash,))
    ck = tmp_path / "ps.ckpt"
    res = run_ps(sc, CFG, checkpoint=ck, checkpoint_every=10, pool=pool, cpus=_cpus(4))
    r = _check_trace(res, 30)
    lost = np.flatnonzero(r["status"] == 1)
    assert r["learner"][lost].tolist() == [0]
    assert r["t_done"][lost[0]] == pytest.approx(0.15, abs=0.05)
    after = (r["learner"] == 0) & (r["seq"] > r["seq"][lost[0]])
    assert after.any() and (r["t_read"][after] >= 0.25 - 1e-3).all()
    assert ck.is_file()
    # Resume from the checkpoint of update 20 and run to 40: every version once, every
    # gradient number once; the gradients in flight at the checkpoint are recorded as lost.
    res2 = run_ps(
        sc, CFG, updates=40, checkpoint=ck, checkpoint_every=10, resume=True, pool=pool,
        cpus=_cpus(4),
    )  # fmt: skip
    r2 = _check_trace(res2, 40)
    assert r2["t_apply"][r2["version"] == 20].min() > r["t_apply"][r["version"] == 19].max()
    assert res2.summary["gradients_lost"] >= 1


def test_killed_learner_is_lost_and_ctrl_c_returns_the_run_so_far(pool: Any) -> None:
    sc = _scenario(3, Protocol("sync"), rate=20.0, until_updates=100_000)
    seen: dict[str, Any] = {}

    def monitor(ps: Any, updates: int) -> None:
        import ray

        if "killed" not in seen and updates >= 3:
            pid = ray.get(ps.learner_pids.remote())[1]
            os.kill(pid, signal.SIGKILL)
            seen["killed"] = updates
        elif "killed" in seen and updates >= seen["killed"] + 5:
            raise KeyboardInterrupt

    res = run_ps(sc, CFG, monitor=monitor, pool=pool, cpus=_cpus(3))
    assert res.summary["stop_reason"] == "interrupted"
    r = _rows(res)
    ok = r["status"] == 0
    (lost,) = np.flatnonzero(r["status"] == 1)
    assert r["learner"][lost] == 1
    # The sync barrier counts the live learners: updates go on with w-0 and w-2 only.
    late = ok & (r["t_apply"] > r["t_done"][lost])
    assert late.any() and set(r["learner"][late].tolist()) == {0, 2}
    assert np.isfinite(res.result.trace["t_apply"][ok]).all()


def test_bad_input_fails_before_ray_starts_anything() -> None:
    sc = _scenario(2, Protocol("async"))
    with pytest.raises(ValueError, match=r"--time-scale: must be > 0, got 0"):
        run_ps(sc, CFG, time_scale=0)
    with pytest.raises(ValueError, match="unknown model 'mlpp'"):
        run_ps(sc, ReplayConfig(model="mlpp"))
    with pytest.raises(ValueError, match="unknown dataset 'digitz'"):
        run_ps(sc, CFG, dataset="digitz")
    big = Scenario(
        learners=tuple(Learner(f"w-{i}", Fixed(1)) for i in range(MAX_LEARNERS + 1)),
        until_updates=1,
    )
    with pytest.raises(ValueError, match=rf"learner: the scenario has {MAX_LEARNERS + 1} learn"):
        run_ps(big, CFG)
    assert math.isfinite(1.0)


def test_learners_count_their_cycles_from_the_scenarios_event_time() -> None:
    # ParameterServer.clock is the anchor of every learner's deadline: the scenario's time of
    # the event being handled (an arrival's drawn compute end plus push time), never later
    # than the wall clock, and the wall clock outside events.
    import time

    from dlsys.distributed.server import ParameterServer

    # Without __init__ (it sets this process's torch threads to 1, as an actor does).
    ps = ParameterServer.__new__(ParameterServer)
    ps.t0 = time.time() - 10.0  # the run started 10 s ago
    ps.event_time = None
    assert 10.0 <= ps.clock() < 11.0
    ps.event_time = 3.25  # an arrival due at 3.25 s, handled at about 10 s
    assert ps.clock() == 3.25
    ps.event_time = 99.0  # later than now: the wall clock bounds it
    assert 10.0 <= ps.clock() < 11.0
