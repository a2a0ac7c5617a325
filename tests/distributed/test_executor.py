"""RayExecutor: concurrent.futures semantics on Ray tasks."""

from __future__ import annotations

import concurrent.futures
import os

import pytest

from dlsys.distributed.cluster import RaySession
from dlsys.distributed.executor import RayExecutor


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
