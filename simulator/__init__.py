"""Parameter-server SGD: heterogeneous learners, protocols, faults, exact staleness.

Two engines give byte-identical runs: the SimPy engine (the readable reference) and the
vector engine (running sums and compiled loops), chosen by ``simulate(..., engine=...)``;
each protocol is one object of :mod:`dlsys.simulator.protocols`.

Build a :class:`Scenario` in Python or load one from TOML with :func:`load_scenario`, then
:func:`simulate` it::

    from dlsys.simulator import load_scenario, simulate
    result = simulate(load_scenario("examples/scenarios/homework_two_learners.toml"))
    result.trace["staleness"]      # numpy array, one entry per gradient
    result.summary["staleness"]    # mean, p50, p95, p99, max

:func:`sweep` runs a scenario over a parameter grid and seeds in parallel processes;
:mod:`dlsys.simulator.theory` holds the closed forms; :mod:`dlsys.simulator.studies` the
ready-made studies (homework table, 8-learner staleness, protocol comparison).
"""

from dlsys.simulator.distributions import (
    DISTRIBUTIONS,
    Exponential,
    Fixed,
    LogNormal,
    Normal,
    Pareto,
    ShiftedExponential,
    Times,
    Uniform,
)
from dlsys.simulator.distributions import (
    Trace as TraceDurations,
)
from dlsys.simulator.protocols import PROTOCOLS, Gradient, Protocol, Take
from dlsys.simulator.scenario import (
    Crash,
    Learner,
    LRRule,
    PSPause,
    Scenario,
    Slowdown,
    load_scenario,
    scenario_from_dict,
)
from dlsys.simulator.sweep import SweepResult, sweep
from dlsys.simulator.trace import Result, Trace, simulate

__all__ = [
    "DISTRIBUTIONS",
    "PROTOCOLS",
    "Crash",
    "Exponential",
    "Fixed",
    "Gradient",
    "LRRule",
    "Learner",
    "LogNormal",
    "Normal",
    "PSPause",
    "Pareto",
    "Protocol",
    "Result",
    "Scenario",
    "ShiftedExponential",
    "Slowdown",
    "SweepResult",
    "Take",
    "Times",
    "Trace",
    "TraceDurations",
    "Uniform",
    "load_scenario",
    "scenario_from_dict",
    "simulate",
    "sweep",
]
