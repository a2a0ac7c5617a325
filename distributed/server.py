"""The parameter server: one Ray actor that runs the scenario with real learner actors.

:class:`ParameterServer` is the body of the ``ParameterServer`` Ray actor. It owns the
weights (one flat float32 vector), the optimizer, the version counter, the trace, and the
learner actors, and runs an event loop over the learners' in-flight gradients
(``ray.wait``) and the scenario's timed events (start delays, crashes and restarts, PS
pauses, PS service ends, ``until_time``):

* **The PS rule is the simulator's protocol object** (:mod:`dlsys.simulator.protocols`):
  arrivals join ``queue`` as :class:`~dlsys.simulator.protocols.Gradient` records, and after
  every change the PS asks ``protocol.take(queue, version, live, n)`` which gradients form
  the next update and which are dropped, then acts on ``protocol.on_update`` (wake the
  batch, wake all, cancel all). The learner rule (``after_push``: wait, continue or reuse;
  the SSP gate ``may_start``) comes from the same object. Nothing here restates a rule.
* **Updates** are formed by :class:`dlsys.training.replay.PSOptimizer` (per-gradient rates,
  averaging, SGD), the replay's one definition, so replaying this trace gives these weights.
* **Order** follows the simulator's tie rule where the real system leaves a choice: the
  gradients found ready by one ``ray.wait`` join the queue in order of (arrival time, read
  version, learner); updates are applied before waiting learners read, and a learner that
  continues or is woken reads after the updates its arrival caused.
* **Compute times** are the scenario's, drawn from the simulator's own per-learner streams
  (:func:`dlsys.simulator.engine.learner_streams`, the same draw order), so on the same seed
  the real run and the simulation see the same durations. A learner counts a duration from
  the scenario's time of the event that made it read (:meth:`ParameterServer.clock`), so
  the PS's own latency is spent inside the drawn time instead of lengthening every cycle.
* **Faults**: a crash kills the learner actor (its in-flight gradient is recorded as lost);
  a restart brings up a new actor (started at the crash, so its start-up overlaps the down
  time) and hands it work at the restart time. A learner that dies unexpectedly is noticed
  when its gradient fails: the gradient is recorded as lost and the learner is replaced
  after ``replace_killed`` seconds if that is set, else the run goes on without it.
* **Checkpoints** (:mod:`dlsys.distributed.checkpoint`) are written atomically every
  ``checkpoint_every`` updates.

Times in the trace are wall-clock seconds since the start (learners report their own
``t_start`` / ``t_done``); scenario times (delays, faults, durations) are multiplied by
``time_scale``.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
import warnings
from typing import Any

import numpy as np

from dlsys.distributed.cluster import INLINE_BYTES
from dlsys.distributed.learner import Job
from dlsys.distributed.state import (
    COMPUTING,
    DONE,
    DOWN,
    GATED,
    IDLE,
    WAITING,
    RunSpec,
    Slot,
)
from dlsys.simulator.core import append_row, new_columns
from dlsys.simulator.engine import APPLIED, CANCELLED, DROPPED, LOST, learner_streams
from dlsys.simulator.protocols import (
    CANCEL_ALL,
    CONTINUE,
    REUSE,
    WAIT,
    WAKE_ALL,
    WAKE_BATCH,
    Gradient,
)
from dlsys.simulator.scenario import Crash, PSPause, Slowdown

#: Seconds between checks of the stop flag while nothing happens.
POLL_S = 0.05
#: Seconds the learner actors may take to start (a process importing torch, each).
START_TIMEOUT_S = 300.0


class ParameterServer:
    """The PS actor's body (see the module docstring); :meth:`run` returns the raw run."""

    def __init__(self) -> None:
        import ray
        import torch

        torch.set_num_threads(1)
        # Gradients are read in place from Ray's object store (read-only arrays) and never
        # written: torch's warning about non-writable arrays does not apply.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        self.ray = ray
        self._stop = threading.Event()
        self.slots: list[Slot] = []
        self.updates = 0

    def _setup(self, spec: RunSpec) -> None:
        import torch

        from dlsys.distributed.learner import actor_class
        from dlsys.training.replay import PSOptimizer

        ray = self.ray
        self.spec = spec
        sc = spec.scenario
        self.sc = sc
        self.proto = sc.protocol
        self.scale = float(spec.time_scale)
        self.actor = actor_class(ray, spec.learner_cpus)
        self.opt = PSOptimizer(**spec.optimizer)
        self.flat = torch.from_numpy(np.array(spec.initial, dtype=np.float32))
        self.params = self._views(self.flat)
        self.version = 0
        self.updates = 0
        self.queue: list[Gradient] = []
        self.grads: dict[tuple[int, int], tuple[np.ndarray, float]] = {}
        self.cols = new_columns()
        self.losses: list[float] = []
        self.owner: dict[Any, int] = {}
        self.timers: list[tuple[float, int, str, Any]] = []
        self.to_read: list[Slot] = []
        self.paused = False
        self.busy = False
        self.stop_reason: str | None = None
        self._stop.clear()
        self._wref: tuple[int, Any] = (-1, None)
        self._order = itertools.count()
        self.t0 = 0.0
        self.offset = 0.0
        self.event_time: float | None = None
        rngs = learner_streams(sc.seed, sc.n)
        self.slots = [
            Slot(i, spec.streams[i], lrn.compute.sampler(rngs[i], lrn.speed), lrn.budget)  # type: ignore[arg-type]
            for i, lrn in enumerate(sc.learners)
        ]
        for s, h in zip(self.slots, spec.learners, strict=True):
            s.handle = h
        self.standby = list(spec.standby)
        self.dead: set[int] = set()
        by_name = {lrn.name: i for i, lrn in enumerate(sc.learners)}
        for f in sc.faults:
            if isinstance(f, Slowdown):
                targets = self.slots if f.learner is None else [self.slots[by_name[f.learner]]]
                for s in targets:
                    s.windows.append((float(f.start), float(f.end), float(f.factor)))
        for s in self.slots:
            s.windows.sort()
        self.by_name = by_name

    # -- helpers

    def _views(self, flat: Any) -> list[Any]:
        out, off = [], 0
        for shape in self.spec.shapes:
            k = int(np.prod(shape))
            out.append(flat[off : off + k].view(shape))
            off += k
        return out

    def now(self) -> float:
        """Seconds since the start of the run (wall clock, resumed runs continue the count)."""
        return time.time() - self.t0

    def clock(self) -> float:
        """When the event being handled happened by the scenario (seconds since the start):
        an arrival's compute end (``Pushed.t_due``) plus the scenario's push time, a timer's
        due time; the wall clock outside events. Never later than the wall clock. Learners
        count their drawn compute time from it, so the PS's own latency (the gradient's
        return, the update, the next call) does not lengthen their cycles."""
        now = self.now()
        return now if self.event_time is None else min(self.event_time, now)

    def _timer(self, at: float, kind: str, payload: Any = None) -> None:
        heapq.heappush(self.timers, (at, next(self._order), kind, payload))

    def _weights_ref(self) -> Any:
        """This version's weights as handed to learners: a copy travelling inside the call's
        message when small enough (a local instance passes up to ``INLINE_BYTES`` inline),
        else one object-store copy shared by every reader of the version."""
        if self._wref[0] != self.version:
            w = self.flat.numpy()
            self._wref = (self.version, w.copy() if w.nbytes <= INLINE_BYTES else self.ray.put(w))
        return self._wref[1]

    def _live(self) -> list[int]:
        return [s.idx for s in self.slots if s.alive and not s.finished]

    def _row(self, g: Gradient, status: int, version: int, t_apply: float) -> None:
        if self.stop_reason is None:
            append_row(self.cols, g, status, version, t_apply)

    def _inflight_row(self, s: Slot, status: int, t: float) -> None:
        lrn = self.sc.learners[s.idx]
        start = s.t_issue + float(lrn.pull_time) * self.scale
        self._row(Gradient(s.idx, s.seq, s.read_version, s.t_read, start, t), status, -1, math.nan)

    # -- learners

    def _standby(self) -> Any:
        """A learner actor to replace a crashed one: a standby the driver started ahead (so
        the restart happens when the scenario says), else a new one (up when it is up)."""
        if self.standby:
            return self.standby.pop()
        return self.actor.remote(self.spec.setup, self.spec.train)

    def _may_start(self, s: Slot) -> bool:
        if not self.proto.gated:
            return True
        clocks = [x.pushed for x in self.slots if x.alive and not x.finished]
        return self.proto.may_start(s.pushed, min(clocks) if clocks else None)

    def _finish(self, s: Slot) -> None:
        s.finished = True
        s.state = DONE
        self._membership_changed()

    def _start(self, s: Slot) -> None:
        """Start ``s``'s next gradient: read the weights (unless reusing) and compute."""
        if not s.alive or s.finished or s.state == COMPUTING or self.stop_reason:
            return
        if s.budget is not None and s.pushed >= s.budget:
            self._finish(s)
            return
        if not self._may_start(s):
            s.state = GATED
            return
        d = s.next_duration()
        if d is None:
            self._finish(s)
            return
        s.seq += 1
        now = self.now()
        if not s.reuse:
            s.read_version = self.version
            s.t_read = now
            s.weights = self._weights_ref()
        anchor = self.clock()  # the scenario's read time (or reuse start)
        lrn = self.sc.learners[s.idx]
        ref = s.handle.compute.remote(
            s.weights,
            Job(
                s.idx,
                s.stream,
                s.seq,
                d,
                anchor,
                0.0 if s.reuse else float(lrn.pull_time) * self.scale,
                float(lrn.push_time) * self.scale,
                s.windows,
                self.t0,
                self.scale,
            ),
        )
        s.ref = ref
        s.t_issue = now
        s.state = COMPUTING
        self.owner[ref] = s.idx

    def _wake(self, s: Slot) -> None:
        if s.alive and s.state in (WAITING, GATED, IDLE):
            self.to_read.append(s)

    def _regate(self) -> None:
        if self.proto.gated:
            for s in self.slots:
                if s.state == GATED:
                    self.to_read.append(s)

    def _membership_changed(self) -> None:
        self._regate()

    def _start_pending(self) -> None:
        while self.to_read and self.stop_reason is None:
            pending, self.to_read = self.to_read, []
            for s in pending:
                if s.state != COMPUTING:
                    self._start(s)

    def _abandon(self, s: Slot) -> None:
        """Forget ``s``'s in-flight call (cancelled, or its actor is being killed)."""
        if s.ref is not None:
            self.owner.pop(s.ref, None)
            ref, s.ref = s.ref, None
            if s.alive:
                self.ray.cancel(ref)

    def _died(self, s: Slot, why: str) -> None:
        """``s`` is down (crash fault or killed from outside): its in-flight gradient is lost."""
        now = self.now()
        if s.state == COMPUTING:
            self._inflight_row(s, LOST, now)
        s.alive = False
        self._abandon(s)
        s.state = DOWN
        s.reuse = False
        self.dead.add(id(s.handle))
        self._membership_changed()

    def _crash(self, f: Crash) -> None:
        s = self.slots[self.by_name[f.learner]]
        if s.finished or not s.alive:
            return
        self._died(s, "crash")
        self.ray.kill(s.handle, no_restart=True)
        if f.restart_after is not None:
            s.spare = self._standby()
            self._timer(self.clock() + float(f.restart_after) * self.scale, "restart", s.idx)

    def _restart(self, idx: int) -> None:
        s = self.slots[idx]
        s.handle, s.spare = s.spare, None
        s.alive = True
        s.reuse = False
        s.state = IDLE
        self._membership_changed()
        if self.proto.after_push == WAIT and any(g.learner == idx for g in self.queue):
            s.state = WAITING  # its gradient pushed before the crash is still queued
        else:
            self.to_read.append(s)

    # -- arrivals and updates

    def _arrivals(self, refs: list[Any]) -> None:
        ray = self.ray
        got = []
        mine = [r for r in refs if r in self.owner]
        try:
            values = ray.get(mine)  # one call for all; a failed one is fetched alone below
        except ray.exceptions.RayError:
            values = [None] * len(mine)
        for ref, value in zip(mine, values, strict=True):
            idx = self.owner.pop(ref)
            s = self.slots[idx]
            s.ref = None
            try:
                p = value if value is not None else ray.get(ref)
            except ray.exceptions.TaskCancelledError:
                continue
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
                self._died(s, "killed")
                if self.spec.replace_killed is not None:
                    s.spare = self._standby()
                    self._timer(self.now() + self.spec.replace_killed, "restart", idx)
                continue
            got.append((s, p))
        # One arrival at a time, in order of compute end: each may form an update, and the
        # learners it wakes read before the next arrival is applied, as in the simulator
        # (arrivals found together by one ray.wait did not arrive at the same instant).
        got.sort(key=lambda sp: (sp[1].t_due, sp[0].read_version, sp[0].idx))
        for s, p in got:
            if self.stop_reason is not None:
                return
            # The scenario's arrival time: the compute end (as drawn, or the real compute's end
            # if later; not the sleep's late wake-up) plus the push time.
            self.event_time = p.t_due + float(self.sc.learners[s.idx].push_time) * self.scale
            if s.state != COMPUTING or s.seq != p.seq:
                # An update formed from an earlier arrival of this batch cancelled it (its row
                # is written and the learner has moved on), as the simulator cancels a gradient
                # still in flight at the update: it never joins the queue.
                continue
            g = Gradient(s.idx, p.seq, s.read_version, s.t_read, p.t_start, p.t_done)
            self.grads[(s.idx, p.seq)] = (p.grad, p.loss)
            self.queue.append(g)
            s.pushed += 1
            s.state = WAITING
            if s.budget is not None and s.pushed >= s.budget:
                self._finish(s)
            elif self.proto.after_push == CONTINUE:
                self.to_read.append(s)
            elif self.proto.after_push == REUSE:
                s.reuse = True
                self._start(s)
            self._regate()
            self._flush()
            self._start_pending()
        self.event_time = None

    def _flush(self) -> None:
        while not (self.paused or self.busy or self.stop_reason):
            take = self.proto.take(self.queue, self.version, self._live(), self.sc.n)
            if take is None:
                return
            for g in take.dropped:
                self.grads.pop((g.learner, g.seq), None)
                self._row(g, DROPPED, -1, math.nan)
                self._wake(self.slots[g.learner])
            if take.update is None:
                continue
            service = float(self.sc.service_time) * self.scale
            if service > 0:
                self.busy = True
                self._timer(self.clock() + service, "served", take.update)
                return
            self._apply(take.update)

    def _apply(self, batch: list[Gradient]) -> None:
        import torch

        v = self.version
        grads, losses = [], []
        for g in batch:
            arr, loss = self.grads.pop((g.learner, g.seq))
            # In place from the object store: the optimizer only reads a gradient.
            grads.append(self._views(torch.from_numpy(arr)))
            losses.append(loss)
        stale = [v - g.read_version for g in batch]
        combined = self.opt.combine(grads, stale)
        self.opt.step(self.params, combined, in_place=True)
        t = self.now()
        for g in batch:
            self._row(g, APPLIED, v, t)
        self.version = v + 1
        self.updates += 1
        self.losses.append(float(np.mean(losses)))
        if self.spec.updates is not None and self.updates >= self.spec.updates:
            self.stop_reason = "until_updates"
            return
        every = self.spec.checkpoint_every
        if self.spec.checkpoint and every and self.updates % every == 0:
            from dlsys.distributed.checkpoint import save

            save(self, self.spec.checkpoint)
        self._after_update(batch)

    def _after_update(self, batch: list[Gradient]) -> None:
        on = self.proto.on_update
        if on == CANCEL_ALL:
            now = self.now()
            for s in self.slots:
                s.reuse = False
                if not s.alive or s.finished:
                    continue
                if s.state == COMPUTING:
                    self._inflight_row(s, CANCELLED, now)
                    self._abandon(s)
                    s.state = IDLE
                    self.to_read.append(s)
                else:
                    self._wake(s)
        elif on == WAKE_ALL:
            for s in self.slots:
                self._wake(s)
        elif on == WAKE_BATCH:
            for g in batch:
                self._wake(self.slots[g.learner])

    # -- timers and the loop

    def _fire(self, kind: str, payload: Any) -> None:
        if kind == "start":
            self.to_read.append(self.slots[payload])
        elif kind == "crash":
            self._crash(payload)
        elif kind == "restart":
            self._restart(payload)
        elif kind == "pause":
            self.paused = True
        elif kind == "resume":
            self.paused = False
        elif kind == "served":
            self.busy = False
            self._apply(payload)
        elif kind == "until_time":
            self.stop_reason = "until_time"

    def _begin(self) -> None:
        ray = self.ray
        spec, sc = self.spec, self.sc
        handles = (*spec.learners, *spec.standby)
        try:
            ray.get([h.ready.remote() for h in handles], timeout=START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise RuntimeError(
                f"{len(handles)} learner actors of {spec.learner_cpus:.3g} CPUs each did not all "
                f"start within {START_TIMEOUT_S:g} s (the cluster has "
                f"{ray.cluster_resources().get('CPU', 0):g} CPUs, "
                f"{ray.available_resources().get('CPU', 0):g} free)"
            ) from None
        if spec.resume is not None:
            from dlsys.distributed.checkpoint import restore

            restore(self, spec.resume)
        self.t0 = time.time() - self.offset
        first = self.offset
        for s in self.slots:
            if s.finished:
                continue
            delay = float(sc.learners[s.idx].start_delay) * self.scale
            if delay > first:
                self._timer(delay, "start", s.idx)
            else:
                self.to_read.append(s)
        for f in sc.faults:
            if isinstance(f, Crash) and float(f.at) * self.scale >= first:
                self._timer(float(f.at) * self.scale, "crash", f)
            elif isinstance(f, PSPause) and float(f.end) * self.scale > first:
                self._timer(max(first, float(f.start) * self.scale), "pause")
                self._timer(float(f.end) * self.scale, "resume")
        if sc.until_time is not None:
            self._timer(float(sc.until_time) * self.scale, "until_time")

    def run(self, spec: RunSpec) -> dict[str, Any]:
        """Run ``spec``'s scenario to its end (or :meth:`stop`); return columns and end state."""
        ray = self.ray
        self._setup(spec)
        self._begin()
        self._start_pending()
        while self.stop_reason is None:
            if self._stop.is_set():
                self.stop_reason = "interrupted"
                break
            now = self.now()
            while self.timers and self.timers[0][0] <= now and self.stop_reason is None:
                at, _, kind, payload = heapq.heappop(self.timers)
                self.event_time = at  # one event at a time, as the simulator handles them
                self._fire(kind, payload)
                self._flush()
                self._start_pending()
            self.event_time = None
            self._flush()
            self._start_pending()
            if self.stop_reason is not None:
                break
            refs = list(self.owner)
            if not refs and not self.timers and not self.busy:
                done = all(s.finished or (not s.alive) for s in self.slots)
                self.stop_reason = "learners finished" if done else "stalled"
                break
            wait = POLL_S
            if self.timers:
                wait = min(wait, max(0.0, self.timers[0][0] - self.now()))
            if not refs:
                time.sleep(wait)
                continue
            # Everything ready now (one call when the PS is busy), else block for the next.
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            if not ready:
                ready, _ = ray.wait(refs, num_returns=1, timeout=wait)
            self._arrivals(ready)
        return self._result()

    def _result(self) -> dict[str, Any]:
        t_end = self.now()
        inflight = np.full(self.sc.n, np.nan)
        for s in self.slots:
            if s.alive and s.state == COMPUTING:
                inflight[s.idx] = s.t_issue + float(self.sc.learners[s.idx].pull_time) * self.scale
        cols = {k: np.asarray(a, dtype=np.dtype(a.typecode)) for k, a in self.cols.items()}
        return {
            "columns": cols,
            "updates": self.updates,
            "t_end": t_end,
            "stop_reason": self.stop_reason,
            "inflight_start": inflight,
            "weights": self.flat.numpy().copy(),
            "losses": list(self.losses),
        }

    def stop(self) -> None:
        """Ask :meth:`run` to stop at its next step (it returns the run so far)."""
        self._stop.set()

    def progress(self) -> int:
        """Updates applied so far."""
        return self.updates

    def learner_pids(self) -> list[int | None]:
        """Process ids of the live learner actors (None for a learner that is down)."""
        out: list[int | None] = []
        for s in self.slots:
            out.append(self.ray.get(s.handle.pid.remote()) if s.alive else None)
        return out

    def release(self) -> list[bool]:
        """End the run's learners: cancel their work, kill the actors this PS started, and
        say for each actor the driver handed in (``learners`` then ``standby``) whether it is
        alive and idle, so the driver may keep it (:class:`dlsys.distributed.pool.ActorPool`)."""
        for ref in list(self.owner):
            self.ray.cancel(ref)
        self.owner = {}
        given = {id(h) for h in (*self.spec.learners, *self.spec.standby)}
        for s in self.slots:
            for h in (s.handle, s.spare):
                if h is not None and id(h) not in given:
                    self.ray.kill(h, no_restart=True)
        return [id(h) not in self.dead for h in (*self.spec.learners, *self.spec.standby)]


def actor_class(ray: Any, num_cpus: float) -> Any:
    """The ``ParameterServer`` Ray actor class (two threads: :meth:`ParameterServer.run` and
    :meth:`ParameterServer.stop` / :meth:`ParameterServer.progress`); one actor may serve
    several runs, one after the other."""
    return ray.remote(num_cpus=num_cpus, max_concurrency=2, max_restarts=0)(ParameterServer)


__all__ = ["POLL_S", "ParameterServer", "RunSpec", "actor_class"]
