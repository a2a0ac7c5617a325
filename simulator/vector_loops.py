"""Compiled loops of the vector engine (rounds and gated protocols); see vector.py."""

from __future__ import annotations

import numpy as np

from dlsys.simulator.core import RawRun
from dlsys.simulator.scenario import Scenario


def unsupported(scenario: Scenario) -> str | None:
    """Why the compiled loops cannot run ``scenario`` exactly (None: they can)."""
    return f"protocol {scenario.protocol.kind!r} has no vector path yet; it needs engine='simpy'"


def run(scenario: Scenario, rngs: list[np.random.Generator], reason: str) -> RawRun:
    """Run ``scenario`` with the compiled loops."""
    raise NotImplementedError(reason)
