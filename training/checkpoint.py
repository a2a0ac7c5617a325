"""Checkpoints of a training run: one save/load pair, written atomically, read safely.

A checkpoint is a dict of tensors and plain Python values tagged :data:`CHECKPOINT_FORMAT`;
it loads with ``torch.load(weights_only=True)`` (no pickled code). It holds the run's config
(compared on resume: :func:`config_differences`), the model, optimizer and scheduler state,
the RNG states (batch order, torch's global RNG for dropout, CUDA's) and the loop's own
progress (epoch, early-stopping state, metrics so far) as the loop hands it over.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlsys.common.io import atomic_write_bytes

__all__ = [
    "CHECKPOINT_FORMAT",
    "config_differences",
    "load_checkpoint",
    "restore_checkpoint",
    "save_checkpoint",
]

#: Version tag stored in every checkpoint.
CHECKPOINT_FORMAT = "dlsys.training.checkpoint/1"

Scheduler = torch.optim.lr_scheduler.LRScheduler


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def config_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``"key: checkpoint=X, now=Y"`` for every (nested) key whose value differs."""
    a, b = _flatten(saved), _flatten(now)
    diffs = []
    for k in sorted(set(a) | set(b)):
        if a.get(k, "<absent>") != b.get(k, "<absent>"):
            diffs.append(f"{k}: checkpoint={a.get(k, '<absent>')!r}, now={b.get(k, '<absent>')!r}")
    return diffs


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``; ``ValueError`` if unusable."""
    p = Path(path)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"--resume: cannot read checkpoint {str(p)!r} ({exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"--resume: {str(p)!r} is not a {CHECKPOINT_FORMAT} checkpoint")
    return ckpt


def save_checkpoint(
    path: Path,
    config: dict[str, Any],
    progress: dict[str, Any],
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: Scheduler | None,
    gen: torch.Generator,
) -> None:
    """Write a :data:`CHECKPOINT_FORMAT` checkpoint to ``path`` atomically: ``config`` (JSON
    values), the loop's ``progress`` (plain values and tensors), the model, optimizer and
    scheduler state and the RNG states (batch order ``gen``, torch's global RNG, CUDA's)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": config,
        "epoch": progress["epoch"],
        "done": progress["done"],
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict() if sched is not None else None,
        "rng": {
            "torch": torch.get_rng_state(),
            "batches": gen.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        **{k: v for k, v in progress.items() if k not in ("epoch", "done")},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def restore_checkpoint(
    path: Path,
    config: dict[str, Any],
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: Scheduler | None,
    gen: torch.Generator,
) -> dict[str, Any]:
    """The counterpart of :func:`save_checkpoint`: load ``path`` into the model, optimizer,
    scheduler and RNGs and return the checkpoint (its progress entries for the loop).
    ``ValueError`` if it was written with a config other than ``config`` (the keys that
    differ are listed)."""
    ckpt = load_checkpoint(path)
    diffs = config_differences(ckpt["config"], config)
    if diffs:
        raise ValueError(
            f"--resume: checkpoint {str(path)!r} was written with a different config: "
            + "; ".join(diffs)
        )
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    if sched is not None:
        sched.load_state_dict(ckpt["scheduler"])
    gen.set_state(ckpt["rng"]["batches"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    if torch.cuda.is_available() and ckpt["rng"].get("cuda"):
        torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
    return ckpt
