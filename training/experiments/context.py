"""What every experiment shares: its settings (:class:`Common`), its result
(:class:`ExperimentResult`) and the run context (:class:`Context`) that loads the data, trains
runs through :func:`dlsys.training.loop.train`, and writes CSV tables, figures,
``config.json`` and ``metrics.json`` under ``out``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dlsys.common.errors import check_int, check_positive, unknown_name
from dlsys.common.io import atomic_write_text, to_jsonable, write_json
from dlsys.common.plotting import save_figure
from dlsys.training.data import load_dataset
from dlsys.training.experiments.defaults import PRESETS, TRAIN_FIELDS, default
from dlsys.training.loop import TrainConfig, TrainResult, train
from dlsys.training.models import KERNELS

__all__ = ["Common", "Context", "ExperimentResult"]


@dataclass
class Common:
    """Settings shared by every experiment; ``None`` means "the experiment's default".

    ``epochs`` (passes over the training split), ``batch_size`` (samples), ``lr`` (per update),
    ``memory_budget_mb`` (MiB of activations per micro-batch), ``limit`` (keep at most this
    many training and test images, for quick checks), ``threads`` (torch intra-op threads).
    ``checkpoint_dir`` receives one checkpoint per run, written every epoch; with ``resume``
    existing checkpoints are continued.
    """

    dataset: str = "digits"
    model: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    momentum: float | None = None
    optimizer: str | None = None
    seed: int = 0
    kernels: str = "dlsys"
    device: str = "auto"
    preset: str = "quick"
    memory_budget_mb: float = 512.0
    limit: int | None = None
    threads: int | None = None
    checkpoint_dir: str | Path | None = None
    resume: bool = False
    quiet: bool = True

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise unknown_name("preset", self.preset, PRESETS)
        if self.kernels not in KERNELS:
            raise unknown_name("kernels", self.kernels, KERNELS)
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"--device: must be auto, cpu or cuda[:N], got {self.device!r}")
        for name in ("epochs", "batch_size", "threads"):
            v = getattr(self, name)
            if v is not None:
                check_int(f"--{name.replace('_', '-')}", v, minimum=1)
        if self.lr is not None:
            check_positive("--lr", self.lr)
        check_positive("--memory-budget-mb", self.memory_budget_mb)

    def resolved_device(self) -> str:
        """``auto`` -> ``cuda`` when a CUDA device is present, else ``cpu``."""
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {self.device}: no CUDA device is available; use cpu")
        return self.device

    def record(self) -> dict[str, Any]:
        """The settings that shape results (for config.json and checkpoint comparison)."""
        d = dataclasses.asdict(self)
        for k in ("checkpoint_dir", "resume", "quiet", "threads", "device"):
            d.pop(k)
        return to_jsonable(d)


@dataclass
class ExperimentResult:
    """What an experiment returns: ``summary`` holds its key numbers (JSON-ready), ``plots``
    and ``files`` the names it wrote under ``out`` (empty when ``out`` was None), ``runs`` one
    :meth:`TrainResult.summary` (without per-update steps) per training run."""

    experiment: str
    summary: dict[str, Any]
    config: dict[str, Any]
    data: dict[str, Any]
    runs: dict[str, Any] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what ``metrics.json`` holds)."""
        return to_jsonable(dataclasses.asdict(self))


class Context:
    """One experiment's state: its data, where files and checkpoints go, what was written.

    Made once the experiment's arguments are validated (it loads the data set); then
    :meth:`run` per training run, :meth:`csv` / :meth:`figure` per output, :meth:`finish`.
    """

    def __init__(self, name: str, common: Common, out: str | Path | None, params: dict[str, Any]):
        self.name = name
        self.common = common
        self.out = Path(out) if out is not None else None
        self.params = params
        self.plots: list[str] = []
        self.files: list[str] = []
        self.runs: dict[str, Any] = {}
        if common.threads is not None:
            torch.set_num_threads(common.threads)
        self.data = load_dataset(
            common.dataset, seed=common.seed, device=common.resolved_device(), limit=common.limit
        )

    def default(self, key: str, given: Any = None) -> Any:
        """``given``, else this experiment's default of ``key`` for the preset."""
        return default(self.name, key, self.common.preset, given)

    def train_fields(self, **overrides: Any) -> dict[str, Any]:
        """:class:`TrainConfig` fields: each of ``TRAIN_FIELDS`` from ``Common`` if set, else
        ``overrides``, else the defaults table (left out when none has it); plus the seed,
        kernels and memory budget."""
        c = self.common
        out: dict[str, Any] = {}
        for key in TRAIN_FIELDS:
            v = getattr(c, key)
            if v is None:
                v = overrides[key] if key in overrides else self.default(key)
            if v is not None:
                out[key] = v
        out.update(seed=c.seed, kernels=c.kernels, memory_budget_mb=c.memory_budget_mb)
        return out

    def updates_per_epoch(self, batch_size: int) -> int:
        """Updates in one pass over the training split at ``batch_size`` samples."""
        return math.ceil(self.data.sizes["train"] / batch_size)

    def config(self) -> dict[str, Any]:
        """What ``config.json`` holds: the experiment, ``Common.record()`` and its params."""
        return {"experiment": self.name, "common": self.common.record(), "params": self.params}

    def run(self, run: str, cfg: TrainConfig, *, resumable: bool = True, **kw: Any) -> TrainResult:
        """Train run ``run`` (its checkpoint is ``<checkpoint_dir>/<run>.pt`` unless
        ``resumable`` is False); keep its summary and write its per-epoch and per-update CSV.
        ``kw`` goes to :func:`dlsys.training.loop.train` (``on_step``)."""
        ckpt = None
        if resumable and self.common.checkpoint_dir is not None:
            ckpt = Path(self.common.checkpoint_dir) / f"{run}.pt"
        res = train(
            cfg,
            self.data,
            checkpoint=ckpt,
            resume=self.common.resume,
            context={"experiment": self.name, "run": run, "params": to_jsonable(self.params)},
            quiet=self.common.quiet,
            desc=f"{self.name} {run}",
            **kw,
        )
        s = res.summary()
        s.pop("steps")
        self.runs[run] = s
        if self.out is not None:
            self.csv(f"{run}_epochs.csv", res.history)
            self.csv(f"{run}_steps.csv", res.steps)
        return res

    def csv(self, name: str, rows: Sequence[dict[str, Any]]) -> None:
        """Write ``rows`` as ``out/name`` (columns in first-seen order; NaN/inf/None empty)."""
        if self.out is None:
            return
        buf = io.StringIO()
        if rows:
            cols = list(dict.fromkeys(k for r in rows for k in r))
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(cols)
            for r in rows:
                w.writerow([_cell(r.get(c)) for c in cols])
        atomic_write_text(self.out / name, buf.getvalue())
        self.files.append(name)

    def figure(self, name: str, fig: Any, data: Any) -> None:
        """Save ``fig`` as ``out/name.png`` with ``data`` as ``out/name.json``; a stand-in
        data set is named in the title."""
        if self.out is None:
            return
        title = fig.axes[0].get_title() if fig.axes else ""
        if self.data.stand_in:
            fig.suptitle(f"{title}\n[{self.data.name}: stand-in data, not MNIST]", fontsize=9)
            if fig.axes:
                fig.axes[0].set_title("")
        save_figure(fig, self.out / f"{name}.png", data=data)
        self.plots.append(f"{name}.png")
        self.files += [f"{name}.png", f"{name}.json"]

    def finish(self, summary: dict[str, Any]) -> ExperimentResult:
        """The :class:`ExperimentResult`; writes ``config.json`` and ``metrics.json``."""
        data = self.data.describe()
        summary = {"data": data["name"], "stand_in": data["stand_in"], **summary}
        if data["stand_in"]:
            summary["note"] = data["note"]
        res = ExperimentResult(
            experiment=self.name,
            summary=to_jsonable(summary),
            config=to_jsonable(self.config()),
            data=data,
            runs=self.runs,
            plots=list(self.plots),
            files=[],
        )
        if self.out is not None:
            write_json(self.out / "config.json", res.config)
            res.files = sorted({*self.files, "config.json", "metrics.json"})
            write_json(self.out / "metrics.json", res.to_dict())
        return res


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ""
    return str(v)
