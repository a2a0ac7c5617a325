"""dlsys.training: the classic training experiments on dlsys's kernels.

- :mod:`dlsys.training.data`: MNIST/FashionMNIST IDX files, the built-in ``digits`` stand-in
  and ``synthetic`` sets, seeded splits, device-resident batches, out-of-distribution sets.
- :mod:`dlsys.training.models`: MLP, the flooding CNN, the 7x7 CNNs, the small Inception.
- :mod:`dlsys.training.config`: :class:`TrainConfig` (what determines a run) and
  :class:`TrainResult`.
- :mod:`dlsys.training.loop`: :func:`train` with schedulers, batch-size schedules, early
  stopping (:class:`~dlsys.training.loop.EarlyStopping`), micro-batching and the flooding rule.
- :mod:`dlsys.training.checkpoint`: the checkpoint save/restore pair behind ``--resume``.
- :mod:`dlsys.training.experiments`: the experiments, one module each, with one defaults
  table and the decision rules as pure functions (see its docstring to add one).
"""

from dlsys.training.data import Splits, load_dataset
from dlsys.training.loop import TrainConfig, TrainResult, train
from dlsys.training.models import build_model

__all__ = ["Splits", "TrainConfig", "TrainResult", "build_model", "load_dataset", "train"]
