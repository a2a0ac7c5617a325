"""Checkpoints of the parameter server: weights, optimizer, version, trace so far, learners.

:func:`save` writes the PS state at an update boundary atomically (a temporary file and a
rename, :func:`dlsys.common.atomic_write_bytes`): the weights after update ``version - 1``,
the optimizer's momentum buffers, the trace rows so far, the mean training loss per update,
the elapsed wall time, and per learner its gradient count (``seq``), pushed count and how
many compute durations it has drawn. Gradients that are in flight or queued at the PS at
that moment cannot survive a restart of the run, so the checkpoint's copy of the trace
records them as ``lost`` at the checkpoint time; a resumed run therefore has every gradient
number and every version exactly once: no duplicated or missing version.

:func:`restore` puts that state into a fresh :class:`~dlsys.distributed.server.ParameterServer`
before it starts: versions continue from the saved one, the clock from the saved elapsed
time, and each learner's compute-time stream from the draw after its last one.
Everything is stored as tensors and plain values, so :func:`load` reads it with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from dlsys.common import atomic_write_bytes
from dlsys.simulator.engine import COLUMNS, LOST
from dlsys.simulator.protocols import Gradient

#: Version tag stored in every checkpoint.
FORMAT = "dlsys.distributed.checkpoint/1"


def save(ps: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``ps``'s state (a :class:`ParameterServer` between updates) to ``path``."""
    import torch

    cols = {k: list(a) for k, a in ps.cols.items()}
    now = ps.now()
    lost = [
        Gradient(s.idx, s.seq, s.read_version, s.t_read, math.nan, now)
        for s in ps.slots
        if s.ref is not None
    ]
    lost += list(ps.queue)
    for g in lost:
        for k, v in (
            ("learner", g.learner),
            ("seq", g.seq),
            ("read_version", g.read_version),
            ("version", -1),
            ("t_read", float(g.t_read)),
            ("t_start", float(g.t_start)),
            ("t_done", float(g.t_done)),
            ("t_apply", math.nan),
            ("status", LOST),
        ):
            cols[k].append(v)
    state = {
        "format": FORMAT,
        "fingerprint": ps.spec.fingerprint,
        "version": ps.version,
        "updates": ps.updates,
        "elapsed": now,
        "weights": ps.flat.clone(),
        "optimizer": ps.opt.state_dict(),
        "columns": {
            k: torch.from_numpy(np.asarray(v, dtype=np.dtype(ps.cols[k].typecode)))
            for k, v in cols.items()
        },
        "losses": list(ps.losses),
        "learners": [
            {
                "seq": s.seq,
                "pushed": s.pushed,
                "consumed": s.consumed,
                "finished": s.finished,
            }
            for s in ps.slots
        ],
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load(path: str | os.PathLike[str], fingerprint: dict[str, Any]) -> dict[str, Any]:
    """Read a checkpoint; raise ValueError if it is not one or was made by another run.

    ``fingerprint``: this run's (scenario, model, data, optimizer, time scale); every entry
    that differs is named in the error.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint {str(p)!r}; run without --resume first")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"--resume: {str(p)!r} is not a readable checkpoint ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"--resume: {str(p)!r} is not a dlsys parameter-server checkpoint")
    saved = state.get("fingerprint", {})
    diff = [
        f"{k} (checkpoint {saved.get(k)!r}, now {v!r})"
        for k, v in fingerprint.items()
        if saved.get(k) != v
    ]
    if diff:
        raise ValueError(f"--resume: the checkpoint is of another run: {'; '.join(diff)}")
    return state


def restore(ps: Any, state: dict[str, Any]) -> None:
    """Put ``state`` (from :func:`load`) into a fresh, not yet started ``ps``."""
    from array import array

    ps.version = int(state["version"])
    ps.updates = int(state["updates"])
    ps.offset = float(state["elapsed"])
    ps.flat.copy_(state["weights"])
    ps.opt.load_state_dict(state["optimizer"])
    ps.cols = {k: array(code, state["columns"][k].numpy().tolist()) for k, code in COLUMNS.items()}
    ps.losses = list(state["losses"])
    for s, d in zip(ps.slots, state["learners"], strict=True):
        s.seq = int(d["seq"])
        s.pushed = int(d["pushed"])
        s.finished = bool(d["finished"])
        for _ in range(int(d["consumed"])):
            s.next_duration()
        s.consumed = int(d["consumed"])


__all__ = ["FORMAT", "load", "restore", "save"]
