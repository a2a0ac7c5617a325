"""The learner: a real gradient on its own mini-batch, then the rest of its drawn compute time.

A :class:`Learner` is the body of the ``Learner`` Ray actor (so a process list shows
``ray::Learner``). :meth:`Learner.compute` is one gradient, timed as the scenario says:

1. wait until ``anchor + pull`` (``anchor``: when the scenario says the learner read the
   weights, by the PS's clock -- the compute end of the gradient whose update woke it plus
   the scenario's push time, see :meth:`dlsys.distributed.server.ParameterServer.clock`;
   ``pull``: the scenario's pull time; both in wall seconds): the compute start the scenario
   says; note the actual start ``t_start`` (later when the PS's update, the weights'
   transfer and Ray's scheduling took longer);
2. compute the gradient of the mean loss on learner ``i``'s ``seq``-th mini-batch at the
   weights it was handed, exactly as :class:`dlsys.training.replay.Replayer` does (same
   model, loss, sample stream and arithmetic, so replaying the real run's trace reproduces
   its weights bit for bit);
3. wait until that scenario start plus the drawn duration times ``time_scale`` (stretched by
   the scenario's slow-down windows), but never less than the real compute took; note
   ``t_done``. The real system's latencies the scenario does not have (the gradient's return
   to the PS, the update, the weights' transfer, Ray's scheduling) thus count inside the
   drawn compute time, as the simulator's zero-latency learners read and start at once; a
   learner's cycle is its drawn time unless latency and real compute together exceed it.
   They show in the trace as ``t_apply - t_done`` and ``t_start - t_read``;
4. wait ``push`` seconds and return the flat float32 gradient with its times.

Times are wall-clock seconds since the run's start ``t0`` (``time.time()`` of the PS), so
learners on other machines of a cluster share the clock to NTP accuracy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np


@dataclass(frozen=True)
class LearnerSetup:
    """What every learner of a run is built from (the model, data and seeds of the replay).

    ``model`` / ``kernels``: as ``dlsys train``; ``input_shape`` ``(C, H, W)`` and
    ``num_classes`` of the data set; ``batch``: samples per gradient; ``seed``: the sample
    streams' seed. A learner built from a setup can serve any run with the same setup
    (``dlsys.distributed.pool`` keeps such learners between runs).
    """

    model: str
    input_shape: tuple[int, int, int]
    num_classes: int
    kernels: str
    batch: int
    seed: int


class Job(NamedTuple):
    """One gradient a learner is asked for (sent as one argument: one serialisation per call).

    ``learner``: learner index; ``stream`` / ``seq``: its sample stream and 1-based gradient
    number; ``duration``: the drawn compute time in scenario seconds; ``anchor``: when the
    scenario says the learner read the weights (seconds since ``t0``, never after the PS
    handed them out); ``pull`` / ``push``: wall seconds; ``windows``: slow-down windows
    ``(begin, end, factor)`` in scenario seconds; ``t0``: the run's start (``time.time()``),
    all times are seconds since then; ``scale``: wall seconds per scenario second.
    """

    learner: int
    stream: int
    seq: int
    duration: float
    anchor: float
    pull: float
    push: float
    windows: Sequence[tuple[float, float, float]]
    t0: float
    scale: float


@dataclass
class Pushed:
    """What a learner returns: its gradient (flat float32) and when it was computed.

    ``t_start`` / ``t_done``: seconds since the run's start; ``t_due``: when the compute
    ended by the scenario (the drawn end, or the real compute's end if that was later; the
    sleep's wake-up, ``t_done``, may be later still); ``loss``: the mini-batch's mean loss
    (nats) at the weights it was handed.
    """

    learner: int
    seq: int
    grad: np.ndarray
    loss: float
    t_start: float
    t_done: float
    t_due: float


class Learner:
    """One learner process: the training set, the model structure and its sample stream.

    ``train``: the training images and labels as numpy arrays (handed over through Ray's
    object store, read in place, never written).
    """

    def __init__(self, setup: LearnerSetup, train: tuple[np.ndarray, np.ndarray]) -> None:
        import warnings

        import torch

        from dlsys.training.models import build_model, flooding_loss
        from dlsys.training.replay.streams import SampleStreams

        torch.set_num_threads(1)
        self.setup = setup
        with warnings.catch_warnings():
            # Object-store arrays are read-only; these tensors are only ever read.
            warnings.simplefilter("ignore", UserWarning)
            self.train_x = torch.from_numpy(train[0])
            self.train_y = torch.from_numpy(train[1])
        self.model = build_model(setup.model, setup.input_shape, setup.num_classes, setup.kernels)
        self.model.train()
        self.loss_fn = flooding_loss(0.0, setup.kernels)
        self.names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        self.shapes = [p.shape for n, p in self.model.named_parameters() if p.requires_grad]
        self.size = sum(int(np.prod(s)) for s in self.shapes)
        self.flat = torch.zeros(self.size, dtype=torch.float32)
        n_train = int(self.train_x.shape[0])
        self.streams = SampleStreams(n_train, setup.batch, setup.seed)

    def ready(self) -> int:
        """The number of parameters (elements); answers once the learner is built."""
        return self.size

    def gradient(self, weights: np.ndarray, stream: int, seq: int) -> tuple[np.ndarray, float]:
        """The flat gradient (float32) and mean loss of sample stream ``stream``'s ``seq``-th
        mini-batch at ``weights``."""
        import torch
        from torch.func import functional_call

        np.copyto(self.flat.numpy(), weights)
        leaves = []
        off = 0
        for shape in self.shapes:
            k = int(np.prod(shape))
            leaves.append(self.flat[off : off + k].view(shape).detach().requires_grad_(True))
            off += k
        idx = self.streams.indices(stream, seq)
        x = self.train_x.index_select(0, idx)
        y = self.train_y.index_select(0, idx)
        out = functional_call(self.model, dict(zip(self.names, leaves, strict=True)), (x,))
        loss = self.loss_fn(out, y)
        grads = torch.autograd.grad(loss, leaves)
        flat = torch.cat([g.reshape(-1) for g in grads]).numpy()
        return flat, float(loss.detach())

    async def compute(self, weights: np.ndarray, job: Job) -> Pushed:
        """The gradient ``job`` asks for at ``weights``, timed as the module docstring says."""
        learner, stream, seq, duration, anchor, pull, push, windows, t0, scale = job
        begin = anchor + pull  # the compute start the scenario says
        wait = begin - (time.time() - t0)
        if wait > 0:
            await asyncio.sleep(wait)
        t_start = time.time() - t0
        grad, loss = self.gradient(weights, stream, seq)
        if windows:
            from dlsys.simulator.engine import finish_time

            end = float(finish_time(begin / scale, duration, list(windows))) * scale
        else:
            end = begin + duration * scale
        due = max(end, time.time() - t0)
        rest = due - (time.time() - t0)
        if rest > 0:
            await asyncio.sleep(rest)
        t_done = time.time() - t0
        if push > 0:
            await asyncio.sleep(push)
        return Pushed(learner, seq, grad, loss, t_start, t_done, due)

    def pid(self) -> int:
        """The learner's process id (to kill it from outside in tests)."""
        import os

        return os.getpid()


def actor_class(ray: Any, num_cpus: float) -> Any:
    """The ``Learner`` Ray actor class taking ``num_cpus`` CPUs (fractional allowed)."""
    return ray.remote(num_cpus=num_cpus, max_restarts=0)(Learner)


__all__ = ["Job", "Learner", "LearnerSetup", "Pushed", "actor_class"]
