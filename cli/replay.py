"""``dlsys replay SOURCE``: replay a parameter-server schedule on a real model.

SOURCE is a scenario ``.toml`` (simulated first) or a ``trace.csv`` written by
``dlsys simulate --out``. Result files go to ``--out DIR`` through a staging folder; the
checkpoint for ``--resume`` goes to ``DIR/checkpoints/replay.pt`` (written atomically at
every evaluation).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dlsys.cli.common import (
    add_command,
    add_json_flag,
    add_out_flag,
    add_quiet_flag,
    flag_names,
    print_json,
)


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"--device: must be auto, cpu or cuda[:N], got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device is available; use cpu")
    return name


def add_training_flags(p: argparse.ArgumentParser) -> None:
    """The model, data and PS optimizer flags that `dlsys replay` and `dlsys ps` share."""
    from dlsys.training.models import KERNELS
    from dlsys.training.replay import LR_RULES

    p.add_argument(
        "--model", default="mlp:128", help="mlp[:W,..] | cnn | cnn7 | cnn7-3 | inception"
    )
    p.add_argument(
        "--dataset", default="digits", help="digits | synthetic | mnist:DIR | fashion-mnist:DIR"
    )
    p.add_argument(
        "--per-learner-batch", type=int, default=16, metavar="B", help="samples per gradient"
    )
    p.add_argument("--lr", type=float, default=0.05, metavar="A", help="alpha, per update")
    p.add_argument(
        "--lr-rule",
        default="constant",
        metavar="R",
        help=" | ".join(LR_RULES) + " (per gradient, from its staleness; default constant)",
    )
    p.add_argument(
        "--lr-power", type=float, default=1.0, metavar="a", help="inverse-power: alpha/(1+tau)^a"
    )
    p.add_argument("--momentum", type=float, default=0.0, help="PS SGD momentum (default 0)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="PS L2 weight decay")
    p.add_argument("--kernels", default="dlsys", help=" | ".join(KERNELS) + " (default dlsys)")


def replay_config(args: argparse.Namespace, seed: int, **extra: Any) -> Any:
    """The ``ReplayConfig`` of :func:`add_training_flags`' flags, ``seed`` and ``extra``; its
    bad-input messages name the flag (``--per-learner-batch``), not the field."""
    import dataclasses

    from dlsys.training.replay import ReplayConfig

    names = [f.name for f in dataclasses.fields(ReplayConfig)]
    with flag_names({name: "--" + name.replace("_", "-") for name in names}):
        return ReplayConfig(
            model=args.model,
            per_learner_batch=args.per_learner_batch,
            lr=args.lr,
            lr_rule=args.lr_rule,
            lr_power=args.lr_power,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            seed=seed,
            kernels=args.kernels,
            **extra,
        )


def run(args: argparse.Namespace) -> int:
    import torch

    from dlsys.common.errors import check_int
    from dlsys.common.io import output_dir
    from dlsys.training.data import load_dataset
    from dlsys.training.replay import load_schedule, replay
    from dlsys.training.replay.output import summary_text, write_outputs

    config = replay_config(
        args, args.seed, eval_every=args.eval_every, history_every=args.history_every
    )
    if args.threads is not None:
        torch.set_num_threads(check_int("--threads", args.threads, minimum=1))
    if args.resume and args.out is None:
        raise ValueError("--resume: needs --out DIR (the checkpoint is DIR/checkpoints/replay.pt)")
    ckpt = Path(args.out) / "checkpoints" / "replay.pt" if args.out else None
    if args.resume and ckpt is not None and not ckpt.is_file():
        raise FileNotFoundError(
            f"--resume: no checkpoint {str(ckpt)!r}; run without --resume first (same --out)"
        )
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out: {args.out!r} exists and is not a directory")
    schedule = load_schedule(args.source, until_updates=args.until_updates)
    data = load_dataset(args.dataset, seed=args.seed, device=_device(args.device), limit=args.limit)
    result = replay(
        schedule, config, data, checkpoint=ckpt, resume=args.resume, quiet=args.quiet or args.json
    )
    files: list[str] = []
    with output_dir(args.out) as stage:
        if stage is not None:
            files = write_outputs(result, stage)
    if args.json:
        print_json({**result.summary(), "out": args.out, "files": files})
        return 0
    print(summary_text(result))
    if args.out:
        print(f"wrote {', '.join(files)} to {args.out}")
    return 0


def register(subparsers: Any) -> None:

    p = add_command(
        subparsers,
        "replay",
        help="replay a parameter-server schedule (scenario or trace.csv) on a real model",
        description=(
            "Replay a parameter-server schedule on a real model: every gradient is computed\n"
            "on the weights of its read version, on its learner's own seeded mini-batches,\n"
            "and applied in PS version order (averaged within an update). Reports training\n"
            "loss per update and validation/test accuracy against updates and simulated time."
        ),
        example=(
            "dlsys replay examples/scenarios/softsync.toml --until-updates 500 --model mlp:128 "
            "--per-learner-batch 4 --lr 0.05 --lr-rule inverse-staleness\n"
            "dlsys replay results/sim/trace.csv --dataset digits --eval-every 50 --out results/rp\n"
            "dlsys replay examples/scenarios/k_sync.toml --until-updates 300 --json"
        ),
    )
    p.add_argument("source", metavar="SOURCE", help="scenario .toml or trace .csv")
    add_training_flags(p)
    p.add_argument("--seed", type=int, default=0, help="init, split and sample streams")
    p.add_argument("--eval-every", type=int, default=100, metavar="K", help="updates per eval")
    p.add_argument(
        "--history-every", type=int, default=1, metavar="K", help="keep every K-th update record"
    )
    p.add_argument("--until-updates", type=int, metavar="N", help="replay only the first N updates")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--limit", type=int, help="keep at most this many training and test images")
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/replay.pt")
    add_out_flag(p)
    add_json_flag(p)
    add_quiet_flag(p)
    p.set_defaults(func=run)
