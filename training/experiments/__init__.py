"""The training experiments, one module each; every one returns an :class:`ExperimentResult`.

Every experiment function takes the shared settings (:class:`Common`: data set, model,
epochs, batch size, learning rate, seed, kernels, device, preset, checkpoints) plus its own
keyword arguments and reads in three parts: validate its arguments, train its runs through
:meth:`Context.run` (which calls :func:`dlsys.training.loop.train`), summarise. Into ``out``
(when given) it writes ``config.json``, ``metrics.json``, CSV tables and PNG plots (each with
its JSON data); ``result.summary`` holds the key numbers, ``result.plots`` the plot names.

Unset settings take the experiment's row of :data:`~defaults.DEFAULTS` for the preset:
``quick`` (minutes on 2 CPU cores on ``digits``) or ``homework`` (the homework sheets' epochs
and sizes, meant for MNIST / FashionMNIST). All runs of one experiment share the seed, so they
start from the same weights and see the same batch order (common random numbers), and differ
only in what the experiment varies.

Layout:

- ``context``: :class:`Common`, :class:`ExperimentResult`, :class:`Context`.
- ``defaults``: every quick / homework default, one commented table with units.
- ``rules``: the decision rules as pure functions (LR suggestion, LR-sweep divergence,
  flood-level choice, early-stopping point, batch-ramp milestones).
- ``plots``: one function per figure (data in, ``matplotlib.figure.Figure`` out).
- one module per experiment: ``lr_range_test`` (lr-range), ``cyclical_lr`` (clr),
  ``batch_size_ramp`` (batch-ramp), ``flood_level`` (flooding), ``batch_sizes``
  (batch-size), ``early_stop`` (early-stopping), ``momentum`` (momentum),
  ``out_of_distribution`` (ood), ``staleness_lr`` (staleness-lr) and ``error_runtime``
  (error-runtime), the two replay studies (``replay_runs``: what they share).
- ``registry``: :data:`EXPERIMENTS` (name -> function), :func:`run_experiment`,
  :func:`run_seeds`.

To add an experiment: write ``<module>.py`` here with a function ``f(common, out=None, *,
...) -> ExperimentResult`` built on :class:`Context`; add its defaults row to
``defaults.DEFAULTS`` (keyed by the experiment's name); add one line ``"name": f`` to
``registry.EXPERIMENTS``; map its own CLI flags in ``dlsys/cli/train.py`` (``_EXTRA``).
"""

from dlsys.training.experiments.batch_size_ramp import batch_ramp
from dlsys.training.experiments.batch_sizes import batch_size_sweep
from dlsys.training.experiments.context import Common, Context, ExperimentResult
from dlsys.training.experiments.cyclical_lr import CLR_POLICIES, clr
from dlsys.training.experiments.defaults import DEFAULTS, PRESETS
from dlsys.training.experiments.early_stop import early_stopping
from dlsys.training.experiments.flood_level import flooding
from dlsys.training.experiments.lr_range_test import lr_range
from dlsys.training.experiments.momentum import momentum_sweep
from dlsys.training.experiments.out_of_distribution import OOD_MODELS, ood
from dlsys.training.experiments.registry import EXPERIMENTS, run_experiment, run_seeds
from dlsys.training.experiments.rules import LR_RULE, suggest_lr

__all__ = [
    "CLR_POLICIES",
    "DEFAULTS",
    "EXPERIMENTS",
    "LR_RULE",
    "OOD_MODELS",
    "PRESETS",
    "Common",
    "Context",
    "ExperimentResult",
    "batch_ramp",
    "batch_size_sweep",
    "clr",
    "early_stopping",
    "flooding",
    "lr_range",
    "momentum_sweep",
    "ood",
    "run_experiment",
    "run_seeds",
    "suggest_lr",
]
