"""A ``concurrent.futures.Executor`` that runs each call as a Ray task, locally or on a cluster.

Code written against ``Executor`` (``dlsys.simulator.sweep(..., executor=...)``, repeated
training runs) moves from a local process pool to a Ray cluster by swapping the executor::

    from dlsys.distributed.executor import RayExecutor
    from dlsys.simulator import sweep

    with RayExecutor() as ex:                     # local instance on 127.0.0.1
        table = sweep("examples/scenarios/k_sync.toml", {"simulation.protocol.k": [1, 2, 4]},
                      replications=10, executor=ex)
    with RayExecutor("10.0.0.5:6379") as ex:      # a cluster started with `ray start --head`
        ...

Each ``submit(fn, *args)`` becomes one Ray task taking ``cpus_per_task`` CPUs; its future is
Ray's own (``ObjectRef.future()``), so ``map``, ``as_completed`` and ``wait`` work as with
any executor and an exception raised by ``fn`` is raised by ``future.result()``. ``fn`` and its
arguments travel by cloudpickle. On ``shutdown`` the executor waits for its tasks (or cancels
the pending ones with ``cancel_futures``) and stops the Ray instance if it started it.
"""

from __future__ import annotations

import concurrent.futures
import sys
import threading
from collections.abc import Callable
from typing import Any

from dlsys.common import check_positive
from dlsys.distributed.cluster import connect, disconnect, import_ray


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return fn(*args, **kwargs)


class RayExecutor(concurrent.futures.Executor):
    """Run callables as Ray tasks (see the module docstring).

    ``address``: a Ray cluster's ``HOST:PORT`` (None: a local instance on 127.0.0.1 with
    ``num_cpus`` CPUs, or the instance this process is already connected to);
    ``cpus_per_task``: CPUs each task asks for (> 0; fractions allowed).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        cpus_per_task: float = 1.0,
    ) -> None:
        cpus = check_positive("cpus_per_task", cpus_per_task)
        ray = sys.modules.get("ray")
        already = ray is not None and ray.is_initialized()
        self._session = connect(address, num_cpus=num_cpus)
        self._owned = not already
        self._ray = import_ray(loopback=self._session.local)
        self._task = self._ray.remote(num_cpus=cpus, max_retries=0)(_call)
        self._refs: dict[concurrent.futures.Future[Any], Any] = {}
        self._lock = threading.Lock()
        self._closed = False

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        """Run ``fn(*args, **kwargs)`` as a Ray task; return its future."""
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            ref = self._task.remote(fn, args, kwargs)
            fut: concurrent.futures.Future[Any] = ref.future()
            self._refs[fut] = ref
            fut.add_done_callback(self._forget)
            return fut

    def _forget(self, fut: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._refs.pop(fut, None)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new work; cancel pending tasks if asked; wait for the rest if ``wait``;
        stop the local Ray instance this executor started."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = dict(self._refs)
        if cancel_futures:
            for ref in pending.values():
                self._ray.cancel(ref)
        if wait:
            concurrent.futures.wait(list(pending))
        if self._owned:
            disconnect(self._session)


__all__ = ["RayExecutor"]
