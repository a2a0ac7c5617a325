"""Replay a parameter-server schedule on a real model.

The simulator (or a real parameter server) says which weight version every gradient was
computed on and which update applied it; replaying that schedule on a model gives the
training curve the parameter server would have produced, against simulated time::

    from dlsys.training import load_dataset
    from dlsys.training.replay import ReplayConfig, load_schedule, replay

    sched = load_schedule("examples/scenarios/softsync.toml", until_updates=200)
    data = load_dataset("digits")
    result = replay(sched, ReplayConfig(model="mlp:128", per_learner_batch=4, lr=0.05), data)
    result.test_accuracy, result.mean_staleness, result.max_weight_versions

- :mod:`~dlsys.training.replay.schedule`: :class:`Schedule`, :func:`load_schedule` (a
  simulator result, a scenario, or a ``trace.csv``).
- :mod:`~dlsys.training.replay.streams`: each learner's seeded mini-batch stream.
- :mod:`~dlsys.training.replay.optimizer`: :class:`PSOptimizer`, the parameter server's
  per-gradient learning-rate rule, averaging and SGD (one definition, also for a real PS).
- :mod:`~dlsys.training.replay.engine`: :class:`Replayer`, the update loop over held weight
  versions, for any model and loss.
- :mod:`~dlsys.training.replay.run`: :func:`replay` on dlsys.training's models and data.
- :mod:`~dlsys.training.replay.output`: metrics.json, CSVs and plots.
"""

from dlsys.training.replay.engine import BoundModel, Replayer, UpdateRecord
from dlsys.training.replay.optimizer import LR_RULES, PSOptimizer, gradient_rates
from dlsys.training.replay.run import ReplayConfig, ReplayResult, initial_model, replay
from dlsys.training.replay.schedule import Schedule, load_schedule, read_trace_csv
from dlsys.training.replay.streams import SampleStreams, learner_seed

__all__ = [
    "LR_RULES",
    "BoundModel",
    "PSOptimizer",
    "ReplayConfig",
    "ReplayResult",
    "Replayer",
    "SampleStreams",
    "Schedule",
    "UpdateRecord",
    "gradient_rates",
    "initial_model",
    "learner_seed",
    "load_schedule",
    "read_trace_csv",
    "replay",
]
