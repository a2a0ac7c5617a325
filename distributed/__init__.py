"""dlsys.distributed: a real parameter server on Ray, held against the simulator.

Optional extra: ``pip install 'dlsys[ray]'``. Everything runs on a local Ray instance bound to
127.0.0.1 by default, or on a cluster joined with ``address="HOST:PORT"``::

    from dlsys.distributed import compare, run_ps
    from dlsys.training.replay import ReplayConfig

    res = run_ps("examples/scenarios/async_exponential.toml", ReplayConfig(model="mlp:64"),
                 updates=500, time_scale=0.05)
    res.summary["staleness"], res.test_accuracy
    comp = compare("examples/scenarios/async_exponential.toml", updates=2000, time_scale=0.05)
    comp.tv_distance

- :mod:`~dlsys.distributed.cluster`: start / join / stop Ray (loopback only by default).
- :mod:`~dlsys.distributed.server`: the ``ParameterServer`` actor (protocol objects of the
  simulator, optimizer of the replay); :mod:`~dlsys.distributed.learner`: the ``Learner``
  actor.
- :mod:`~dlsys.distributed.run`: :func:`run_ps` (the driver); :mod:`~dlsys.distributed.pool`:
  actors kept between runs; :mod:`~dlsys.distributed.checkpoint`: PS checkpoints.
- :mod:`~dlsys.distributed.compare`: simulator against real PS.
- :mod:`~dlsys.distributed.executor`: a ``concurrent.futures.Executor`` running work as Ray
  tasks (simulator sweeps on a cluster).
"""

from dlsys.distributed.cluster import INSTALL_HINT, RaySession, connect, disconnect, ray_session
from dlsys.distributed.compare import Comparison, compare, tv_distance
from dlsys.distributed.pool import ActorPool
from dlsys.distributed.run import PSResult, run_ps

__all__ = [
    "INSTALL_HINT",
    "ActorPool",
    "Comparison",
    "PSResult",
    "RaySession",
    "compare",
    "connect",
    "disconnect",
    "ray_session",
    "run_ps",
    "tv_distance",
]
