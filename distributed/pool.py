"""Actors kept between runs: a PS and learners that are already up need no start-up.

Starting a ``Learner`` actor costs a process that imports torch and builds the model (seconds
on a small machine); a driver that runs many short runs (tests, benchmarks, ``dlsys ps
compare`` repetitions) hands an :class:`ActorPool` to every :func:`~dlsys.distributed.run_ps`
call and pays it once. A learner is reused only by a run with the same
:class:`~dlsys.distributed.learner.LearnerSetup`, data set and CPU share; a learner that
died, crashed or was replaced during a run is not kept. :meth:`ActorPool.close` kills every
kept actor (their fractional CPUs go back to Ray). Without a pool, a run kills its actors
at its end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ActorPool:
    """Idle ``ParameterServer`` and ``Learner`` actors of one Ray cluster, by their key."""

    def __init__(self) -> None:
        self._gcs: str | None = None
        self._idle: dict[tuple[Any, ...], list[Any]] = {}

    def _same_cluster(self, ray: Any) -> None:
        gcs = ray.get_runtime_context().gcs_address
        if gcs != self._gcs:  # actors of an earlier Ray instance are gone with it
            self._idle.clear()
            self._gcs = gcs

    def take(self, ray: Any, key: tuple[Any, ...], n: int, make: Callable[[], Any]) -> list[Any]:
        """``n`` actors for ``key``: idle ones first, then new ones from ``make()``.

        Idle actors of the same kind (``key[0]``) but another key are killed first, so the
        CPUs they hold go to the new ones.
        """
        self._same_cluster(ray)
        for other in [k for k in self._idle if k != key and k[0] == key[0]]:
            for a in self._idle.pop(other):
                ray.kill(a, no_restart=True)
        idle = self._idle.setdefault(key, [])
        got = [idle.pop() for _ in range(min(n, len(idle)))]
        return got + [make() for _ in range(n - len(got))]

    def give_back(self, key: tuple[Any, ...], actors: list[Any]) -> None:
        """Keep ``actors`` (alive and idle) for a later run with ``key``."""
        self._idle.setdefault(key, []).extend(actors)

    def __len__(self) -> int:
        return sum(len(v) for v in self._idle.values())

    def close(self) -> None:
        """Kill every kept actor."""
        import sys

        ray = sys.modules.get("ray")
        actors = [a for v in self._idle.values() for a in v]
        self._idle.clear()
        if ray is None or not ray.is_initialized():
            return
        for a in actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # already gone (its Ray instance was restarted)
                pass


__all__ = ["ActorPool"]
