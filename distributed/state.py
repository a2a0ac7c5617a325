"""What a parameter-server run is made of: its :class:`RunSpec` and each learner's :class:`Slot`.

Kept apart from :mod:`dlsys.distributed.server` (the event loop) so that both stay small;
:mod:`dlsys.distributed.checkpoint` saves and restores the slots' counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlsys.simulator.scenario import Scenario

# Learner slot states.
IDLE, GATED, WAITING, COMPUTING, DOWN, DONE = range(6)


@dataclass
class RunSpec:
    """Everything the PS needs besides the Ray handles (all picklable).

    ``setup``: the learners' :class:`~dlsys.distributed.learner.LearnerSetup`; ``optimizer``
    keyword arguments of :class:`dlsys.training.replay.PSOptimizer`; ``updates``: stop after
    this many (None: the scenario's rule); ``streams``: each learner's sample-stream index;
    ``learners``: one ``Learner`` actor handle per learner; ``standby``: actors started
    ahead for the scenario's restarts; ``learner_cpus``: CPUs of any further actors the PS
    starts (restarts beyond the standbys, ``replace_killed``); ``train``: the object-store
    reference of the training set ``(images, labels)``; ``checkpoint``: file or None.
    """

    scenario: Scenario
    setup: Any
    optimizer: dict[str, Any]
    initial: np.ndarray
    shapes: list[tuple[int, ...]]
    streams: list[int]
    updates: int | None
    time_scale: float
    learner_cpus: float
    learners: list[Any] = field(default_factory=list)
    standby: list[Any] = field(default_factory=list)
    train: Any = None
    checkpoint: str | None = None
    checkpoint_every: int = 0
    resume: dict[str, Any] | None = None
    replace_killed: float | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)


class Slot:
    """Run-time state of one learner at the PS (its actor, counters, draws, in-flight call)."""

    def __init__(self, idx: int, stream: int, draw: Any, budget: int | None) -> None:
        self.idx = idx
        self.stream = stream
        self.draw = draw
        self.buf: list[float] = []
        self.k = 0
        self.consumed = 0
        self.budget = budget
        self.handle: Any = None
        self.spare: Any = None
        self.alive = True
        self.finished = False
        self.state = IDLE
        self.seq = 0
        self.pushed = 0
        self.reuse = False
        self.read_version = -1
        self.t_read = 0.0
        self.t_issue = 0.0
        self.weights: Any = None
        self.ref: Any = None
        self.windows: list[tuple[float, float, float]] = []

    def next_duration(self) -> float | None:
        if self.k == len(self.buf):
            self.buf = [float(d) for d in self.draw()]
            self.k = 0
            if not self.buf:
                return None
        d = self.buf[self.k]
        self.k += 1
        self.consumed += 1
        return d


__all__ = ["COMPUTING", "DONE", "DOWN", "GATED", "IDLE", "WAITING", "RunSpec", "Slot"]
