"""RayExecutor: concurrent.futures semantics on Ray tasks."""

from __future__ import annotations

import concurrent.futures
import os
from pathlib import Path

import numpy as np
import pytest

from dlsys.distributed.cluster import RaySession
from dlsys.distributed.executor import RayExecutor

K_SYNC = str(Path(__file__).resolve().parents[2] / "examples" / "scenarios" / "k_sync.toml")


def _square(x: int) -> int:
    return x * x


def _pid(_: int) -> int:
    return os.getpid()


def _fail(x: int) -> int:
    raise ValueError(f"bad value {x}")


def test_map_and_submit_run_as_ray_tasks(ray_local: RaySession) -> None:
    with RayExecutor(cpus_per_task=0.5) as ex:
        assert list(ex.map(_square, range(6))) == [0, 1, 4, 9, 16, 25]
        fut = ex.submit(_square, 7)
        assert isinstance(fut, concurrent.futures.Future) and fut.result(timeout=60) == 49
        pids = set(ex.map(_pid, range(4)))
    assert os.getpid() not in pids  # ran in Ray's worker processes, not here
    import ray

    assert ray.is_initialized()  # the session's instance was reused, not stopped


def test_errors_come_back_through_the_future(ray_local: RaySession) -> None:
    with RayExecutor(cpus_per_task=0.5) as ex:
        fut = ex.submit(_fail, 3)
        with pytest.raises(Exception, match="bad value 3"):
            fut.result(timeout=60)


def test_no_work_after_shutdown(ray_local: RaySession) -> None:
    ex = RayExecutor()
    ex.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(_square, 1)


def test_cpus_per_task_must_be_positive(ray_local: RaySession) -> None:
    with pytest.raises(ValueError, match="cpus_per_task: must be > 0"):
        RayExecutor(cpus_per_task=0)


def test_sweep_on_ray_equals_the_local_sweep(ray_local: RaySession) -> None:
    # Replication r uses the r-th child seed at every grid point whatever runs it, so the
    # Ray executor gives the very rows of the in-process sweep.
    from dlsys.simulator import sweep

    # The simulator compiles its numba functions in every fresh Ray worker (seconds each,
    # tens of seconds for several at once on 2 cores while the cache is cold, as in a fresh
    # clone): the SimPy engine compiles fewer, and tasks of both CPUs run in one worker, which
    # compiles once and fills the cache for later ones. The executor is what is tested here.
    grid = {"simulation.protocol.k": [1, 2]}
    path = K_SYNC
    local = sweep(path, grid, replications=3, processes=1, engine="simpy")
    with RayExecutor(cpus_per_task=2.0) as ex:
        remote = sweep(path, grid, replications=3, executor=ex, engine="simpy")
    assert remote.rows == local.rows


def test_simulate_sweep_ray_flag(ray_local: RaySession, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from dlsys.cli.main import main

    args = ["simulate", "sweep", K_SYNC, "--engine", "simpy", "--grid"]
    assert main([*args, "simulation.protocol.k=1,2", "--replications", "2", "--ray", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["simulation.protocol.k"] for r in doc["rows"]] == [1, 2]
    bad = [*args, "simulation.protocol.k=1", "--ray", "--processes", "2"]
    assert main(bad) == 2
    assert "--processes: not with --ray" in capsys.readouterr().err


def _without_timings(d: object) -> object:
    """``d`` without its wall-clock measurements (keys naming a time) and output paths."""
    if isinstance(d, dict):
        return {k: _without_timings(v) for k, v in d.items() if "time" not in k and k != "out"}
    if isinstance(d, list):
        return [_without_timings(v) for v in d]
    return d


def test_train_seeds_on_ray_equal_the_local_run(
    ray_local: RaySession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Each seed runs as a Ray task writing into a temporary folder there; its files come
    # back. With one torch thread on both sides, every number and file equals the in-process
    # run's except the wall-clock timings.
    import json

    from dlsys.cli.main import main

    args = ["train", "early-stopping", "--epochs", "1", "--limit", "200", "--seeds", "0,1"]
    args += ["--threads", "1", "--json"]
    assert main([*args, "--out", str(tmp_path / "local")]) == 0
    local = json.loads(capsys.readouterr().out)
    assert main([*args, "--ray", "--out", str(tmp_path / "ray")]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert remote["seeds"] == [0, 1] and len(remote["per_seed"]) == 2
    assert _without_timings(remote) == _without_timings(local)
    for seed in (0, 1):
        names = sorted(p.name for p in (tmp_path / "ray" / f"seed-{seed}").iterdir())
        want = sorted(p.name for p in (tmp_path / "local" / f"seed-{seed}").iterdir())
        assert names == want and "metrics.json" in names
        for name in ("config.json", "early_stopping.png"):
            a = (tmp_path / "ray" / f"seed-{seed}" / name).read_bytes()
            assert a == (tmp_path / "local" / f"seed-{seed}" / name).read_bytes(), name
        steps = [
            np.genfromtxt(tmp_path / side / f"seed-{seed}" / "run_steps.csv", delimiter=",",
                          names=True)
            for side in ("ray", "local")
        ]  # fmt: skip
        cols = [c for c in steps[0].dtype.names if c != "time"]
        assert len(steps[0]) > 0 and cols
        for c in cols:
            assert np.array_equal(steps[0][c], steps[1][c]), c
    assert main(["train", "early-stopping", "--ray"]) == 2
    assert "--ray: only with --seeds" in capsys.readouterr().err
    assert main(["train", "early-stopping", "--seeds", "0", "--ray", "--resume"]) == 2
    assert "--resume: not with --ray" in capsys.readouterr().err
