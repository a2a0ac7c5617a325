"""``run_ps``: a scenario on the real parameter server, from the driver's side.

The driver checks everything it can before Ray starts (scenario, ``time_scale``, model, data
set, batch size, checkpoint), connects (:func:`dlsys.distributed.cluster.connect`), starts
one ``ParameterServer`` actor, which starts the ``Learner`` actors, and waits for it. Ctrl-C
asks the PS to stop and returns the run so far (``stop_reason == "interrupted"``); the actors
are killed and a local Ray instance is shut down on every way out.

The result is a :class:`dlsys.simulator.Result` built from the real trace with the
simulator's own trace and summary code, so ``write_outputs``, ``dlsys replay`` and the
plots read it unchanged, plus the final weights' test accuracy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlsys.common import check_int, check_positive
from dlsys.distributed.pool import ActorPool
from dlsys.simulator import Crash, LRRule, Result, Scenario, load_scenario
from dlsys.simulator.engine import RawRun
from dlsys.simulator.trace import Trace, summarize

#: Most learners a run may have (each is a process holding the model and the data set).
MAX_LEARNERS = 64
#: CPUs the PS actor asks for, at most (learners share the rest, fractionally).
PS_CPUS = 0.5
#: Seconds the driver waits for a stopped PS to hand back the run so far.
STOP_TIMEOUT_S = 60.0


@dataclass
class PSResult:
    """A real parameter-server run.

    ``result``: the trace and summary as a :class:`dlsys.simulator.Result` (times in wall
    seconds; ``summary["time_scale"]`` wall seconds per scenario second);
    ``test_accuracy`` (fraction) and ``test_loss`` (nats) of the final weights;
    ``train_losses``: mean mini-batch loss (nats) of each update; ``seconds``: wall time of
    the whole call including start-up; ``weights``: the final flat float32 weights.
    """

    result: Result
    test_accuracy: float
    test_loss: float
    train_losses: list[float]
    seconds: float
    weights: np.ndarray = field(repr=False)

    @property
    def summary(self) -> dict[str, Any]:
        """The run summary (as ``dlsys simulate``'s, plus the real run's fields)."""
        return self.result.summary

    def to_json(self) -> dict[str, Any]:
        """The JSON document of ``dlsys ps run --json``."""
        return {
            "summary": self.summary,
            "test_accuracy": self.test_accuracy,
            "test_loss": self.test_loss,
            "final_train_loss": self.train_losses[-1] if self.train_losses else None,
            "seconds": self.seconds,
        }


def check_runnable(scenario: Scenario) -> None:
    """Raise ValueError naming the part of ``scenario`` the real PS cannot carry out."""
    if scenario.n > MAX_LEARNERS:
        raise ValueError(
            f"learner: the scenario has {scenario.n} learners; the real parameter server runs "
            f"one process per learner and takes at most {MAX_LEARNERS} (simulate larger ones)"
        )
    if scenario.until_updates is None and scenario.until_time is None:
        raise ValueError("--updates: needed (the scenario sets no until_updates/until_time)")


def _stream_indices(names: list[str]) -> list[int]:
    # The replay's rule: a learner's sample stream is its name's rank in natural order.
    from dlsys.training.replay.schedule import stream_ranks

    return [int(r) for r in stream_ranks(names)]


def run_ps(
    scenario: Scenario | str | os.PathLike[str],
    config: Any = None,
    *,
    dataset: str = "digits",
    limit: int | None = None,
    updates: int | None = None,
    time_scale: float = 1.0,
    address: str | None = None,
    num_cpus: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    replace_killed: float | None = None,
    monitor: Callable[[Any, int], None] | None = None,
    pool: ActorPool | None = None,
    cpus: float | None = None,
) -> PSResult:
    """Run ``scenario`` on a real parameter server on Ray; return a :class:`PSResult`.

    ``config``: a :class:`dlsys.training.replay.ReplayConfig` (model, per-learner batch, LR,
    LR rule, momentum, seed, kernels; default ``ReplayConfig()``); ``dataset`` / ``limit``
    as ``load_dataset``; ``updates``: stop after this many PS updates (default: the
    scenario's rule); ``time_scale``: wall seconds per scenario second (> 0); ``address``:
    join that Ray cluster (default: a local instance on 127.0.0.1 with ``num_cpus``);
    ``checkpoint``: file written every ``checkpoint_every`` updates, continued with
    ``resume``; ``replace_killed``: seconds after which a learner killed from outside is
    replaced (None: the run goes on without it); ``monitor(ps, updates)``: called about
    twice a second while the run goes on; ``pool``: keep the actors for later runs
    (:class:`~dlsys.distributed.pool.ActorPool`; default: kill them at the end); ``cpus``:
    the Ray CPUs the run's actors share (default: all of the cluster's).
    """
    import torch

    from dlsys.training.data import load_dataset
    from dlsys.training.replay import ReplayConfig, initial_model

    t_call = time.perf_counter()
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(Path(scenario))
    cfg = ReplayConfig() if config is None else config
    if not isinstance(cfg, ReplayConfig):
        raise TypeError(f"config: must be a ReplayConfig, got {type(cfg).__name__}")
    scale = check_positive("--time-scale", time_scale)
    if updates is not None:
        sc = sc.replace(until_updates=check_int("--updates", updates, minimum=1))
    check_runnable(sc)
    every = check_int("--checkpoint-every", checkpoint_every, minimum=0)
    if replace_killed is not None:
        check_positive("replace_killed", replace_killed, allow_zero=True)
    if cpus is not None:
        check_positive("cpus", cpus)
    data = load_dataset(dataset, seed=cfg.seed, limit=limit)
    n_train = int(data.train_x.shape[0])
    if cfg.per_learner_batch > n_train:
        raise ValueError(
            f"--per-learner-batch: must be <= the training set size ({n_train}), "
            f"got {cfg.per_learner_batch}"
        )
    model = initial_model(cfg, data)
    params = [p for p in model.parameters() if p.requires_grad]
    initial = torch.cat([p.detach().reshape(-1) for p in params]).numpy().copy()
    fingerprint = {
        "scenario": sc.name,
        "learners": sc.n,
        "protocol": sc.protocol.label(),
        "seed": sc.seed,
        "dataset": dataset,
        "limit": limit,
        "time_scale": scale,
        **{f"replay.{k}": v for k, v in cfg.to_dict().items()},
    }
    state = None
    if resume:
        if checkpoint is None:
            raise ValueError("--resume: needs a checkpoint file (--out DIR keeps one)")
        from dlsys.distributed.checkpoint import load

        state = load(checkpoint, fingerprint)
    out = _drive(
        sc, cfg, data, scale, initial, [tuple(p.shape) for p in params],
        address, num_cpus, checkpoint, every, state, replace_killed, fingerprint, monitor, pool,
        cpus,
    )  # fmt: skip
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(torch.from_numpy(np.array(out["weights"])), params)
    from dlsys.training.loop import evaluate

    test_loss, test_acc = evaluate(model, data.test_x, data.test_y)
    result = _result(sc, cfg, scale, out)
    return PSResult(
        result, test_acc, test_loss, out["losses"], time.perf_counter() - t_call, out["weights"]
    )


def _drive(
    sc: Scenario,
    cfg: Any,
    data: Any,
    scale: float,
    initial: np.ndarray,
    shapes: list[tuple[int, ...]],
    address: str | None,
    num_cpus: int | None,
    checkpoint: Any,
    every: int,
    state: dict[str, Any] | None,
    replace_killed: float | None,
    fingerprint: dict[str, Any],
    monitor: Callable[[Any, int], None] | None,
    pool: ActorPool | None,
    cpus: float | None,
) -> dict[str, Any]:
    from dlsys.distributed import learner, server
    from dlsys.distributed.cluster import import_ray, ray_session

    with ray_session(address, num_cpus=num_cpus) as session:
        ray = import_ray(loopback=session.local)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # Learners and the standbys for the scenario's restarts share the CPUs the PS leaves.
        restarts = sum(isinstance(f, Crash) and f.restart_after is not None for f in sc.faults)
        total = session.cpus if cpus is None else cpus
        ps_cpus = PS_CPUS if total >= 1.0 else total / 4
        learner_cpus = min(1.0, max(total - ps_cpus, 0.01) / (sc.n + restarts))
        setup = learner.LearnerSetup(
            cfg.model,
            data.input_shape,
            data.num_classes,
            cfg.kernels,
            cfg.per_learner_batch,
            cfg.seed,
        )
        train = ray.put((data.train_x.numpy(), data.train_y.numpy()))
        here = ray.get_runtime_context().get_node_id()
        own = pool if pool is not None else ActorPool()
        ps_key = ("ParameterServer", ps_cpus, here)
        lrn_key = ("Learner", setup, data.name, tuple(sorted(data.sizes.items())), learner_cpus)
        lrn_cls = learner.actor_class(ray, learner_cpus)
        ps_cls = server.actor_class(ray, ps_cpus).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)
        )
        (ps,) = own.take(ray, ps_key, 1, ps_cls.remote)
        handles = own.take(ray, lrn_key, sc.n + restarts, lambda: lrn_cls.remote(setup, train))
        spec = server.RunSpec(
            scenario=sc,
            setup=setup,
            optimizer={
                "lr": cfg.lr,
                "rule": cfg.lr_rule,
                "power": cfg.lr_power,
                "momentum": cfg.momentum,
                "weight_decay": cfg.weight_decay,
            },
            initial=initial,
            shapes=shapes,
            streams=_stream_indices([lrn.name for lrn in sc.learners]),
            updates=sc.until_updates,
            time_scale=scale,
            learner_cpus=learner_cpus,
            learners=handles[: sc.n],
            standby=handles[sc.n :],
            train=train,
            checkpoint=None if checkpoint is None else str(Path(checkpoint).resolve()),
            checkpoint_every=every,
            resume=state,
            replace_killed=replace_killed,
            fingerprint=fingerprint,
        )
        keep: list[bool] = []
        try:
            ref = ps.run.remote(spec)
            try:
                while not ray.wait([ref], timeout=0.5)[0]:
                    if monitor is not None:
                        monitor(ps, ray.get(ps.progress.remote()))
                out: dict[str, Any] = ray.get(ref)
            except KeyboardInterrupt:
                ps.stop.remote()
                out = ray.get(ref, timeout=STOP_TIMEOUT_S)
            keep = ray.get(ps.release.remote(), timeout=30)
            return out
        finally:
            for h, k in zip(handles, keep or [False] * len(handles), strict=True):
                if k and pool is not None:
                    pool.give_back(lrn_key, [h])
                else:
                    ray.kill(h, no_restart=True)
            if keep and pool is not None:
                pool.give_back(ps_key, [ps])
            else:
                ray.kill(ps, no_restart=True)


def _result(sc: Scenario, cfg: Any, scale: float, out: dict[str, Any]) -> Result:
    """The run as a simulator :class:`Result` (trace, summary) in wall seconds."""
    raw = RawRun(
        columns=out["columns"],
        updates=out["updates"],
        t_end=out["t_end"],
        stop_reason=out["stop_reason"],
        inflight_start=out["inflight_start"],
        engine="ray",
        engine_reason="the real parameter server on Ray (dlsys.distributed)",
    )
    push = np.array([float(lrn.push_time) * scale for lrn in sc.learners])
    names = [lrn.name for lrn in sc.learners]
    rule = LRRule(cfg.lr_rule, alpha=cfg.lr, a=cfg.lr_power)  # the rule the PS applied
    trace = Trace(raw.columns, names, push, rule)
    summary = summarize(sc, raw, trace)
    summary["time_scale"] = scale
    return Result(sc, sc.seed, trace, summary, raw)


__all__ = ["MAX_LEARNERS", "PSResult", "check_runnable", "run_ps"]
