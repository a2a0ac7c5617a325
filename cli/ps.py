"""``dlsys ps run`` / ``dlsys ps compare``: a scenario on the real parameter server (Ray).

``run`` writes, through a staging folder, ``trace.csv``, ``summary.json``, ``timeline.png`` and
``staleness.png`` (as ``dlsys simulate`` does) and ``ps.json`` (summary, final test accuracy);
the checkpoint for ``--resume`` is ``DIR/checkpoints/ps.pt``, written atomically every
``--checkpoint-every`` updates. Ctrl-C stops the actors and writes the run so far (exit 130).
``compare`` runs the simulator and the real PS on the same scenario and seed and reports them
side by side (``comparison.json``, ``comparison.png``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dlsys.cli.common import add_command, add_json_flag, add_out_flag, add_quiet_flag, print_json
from dlsys.cli.replay import add_training_flags, replay_config

_EXAMPLE_FILE = "examples/scenarios/async_exponential.toml"


def _prepare(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """The scenario (seed applied), the replay config and run_ps's keyword arguments."""
    from dlsys.common import check_int
    from dlsys.distributed.cluster import import_ray
    from dlsys.simulator import load_scenario

    import_ray(loopback=args.address is None)  # one line on how to install Ray if it is missing
    sc = load_scenario(args.file)
    if args.seed is not None:
        sc = sc.replace(seed=check_int("--seed", args.seed, minimum=0))
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise ValueError(f"--out: {args.out!r} exists and is not a directory")
    ckpt = out / "checkpoints" / "ps.pt" if out is not None else None
    if getattr(args, "checkpoint_every", 0) and ckpt is None:
        raise ValueError("--checkpoint-every: needs --out DIR (the checkpoint goes into it)")
    if getattr(args, "resume", False) and ckpt is None:
        raise ValueError("--resume: needs --out DIR (the checkpoint is DIR/checkpoints/ps.pt)")
    kwargs = {
        "dataset": args.dataset,
        "limit": args.limit,
        "updates": args.updates,
        "time_scale": args.time_scale,
        "address": args.address,
    }
    if hasattr(args, "checkpoint_every"):
        kwargs.update(
            checkpoint=ckpt if args.checkpoint_every or args.resume else None,
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
            replace_killed=args.replace_killed,
        )
    return sc, replay_config(args, sc.seed), kwargs


def run(args: argparse.Namespace) -> int:
    from dlsys.common import output_dir, write_json
    from dlsys.distributed import run_ps
    from dlsys.simulator.report import summary_text, write_outputs

    sc, config, kwargs = _prepare(args)
    res = run_ps(sc, config, **kwargs)
    doc = res.to_json()
    with output_dir(args.out) as stage:
        if stage is not None:
            write_outputs(res.result, stage)
            write_json(stage / "ps.json", doc)
    interrupted = res.summary["stop_reason"] == "interrupted"
    if args.json:
        print_json(doc)
    else:
        print(summary_text(res.summary))
        print(f"test accuracy of the final weights: {res.test_accuracy:.4f}")
        if args.out:
            files = "trace.csv, summary.json, ps.json, timeline.png, staleness.png"
            print(f"wrote {files} to {args.out}")
    if interrupted:
        print("dlsys: interrupted: the run so far is written", file=sys.stderr)
        return 130
    return 0


def compare_cmd(args: argparse.Namespace) -> int:
    from dlsys.common import output_dir, write_json
    from dlsys.distributed.compare import compare, plot_comparison

    sc, config, kwargs = _prepare(args)
    comp = compare(sc, config, **kwargs)
    doc = comp.to_json()
    with output_dir(args.out) as stage:
        if stage is not None:
            write_json(stage / "comparison.json", doc)
            plot_comparison(comp, stage / "comparison.png")
    if args.json:
        print_json(doc)
    else:
        print(comp.text())
        if args.out:
            print(f"wrote comparison.json, comparison.png to {args.out}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="scenario TOML file (see examples/scenarios/)")
    add_training_flags(p)
    p.add_argument("--limit", type=int, metavar="N", help="use only the first N training images")
    p.add_argument(
        "--updates", type=int, metavar="N", help="stop after N PS updates (default: the scenario's)"
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        metavar="S",
        help="wall seconds per scenario second (compute times, delays, faults; default 1)",
    )
    p.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="join this Ray cluster (default: a local instance on 127.0.0.1)",
    )
    p.add_argument("--seed", type=int, metavar="S", help="override the scenario's seed")
    add_json_flag(p)
    add_out_flag(p)
    add_quiet_flag(p)


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "ps",
        help="run a scenario on a real parameter server (Ray actors); compare with the simulator",
        example=(
            f"dlsys ps run {_EXAMPLE_FILE} --model mlp:64 --updates 500 --time-scale 0.05\n"
            f"dlsys ps compare {_EXAMPLE_FILE} --updates 2000 --time-scale 0.05 --json"
        ),
    )
    sub = parser.add_subparsers(dest="ps_command", metavar="ACTION")

    def usage(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=usage)
    p = add_command(
        sub,
        "run",
        help="run a scenario on the real PS; write trace.csv, summary, test accuracy, plots",
        example=(
            f"dlsys ps run {_EXAMPLE_FILE} --model mlp:64 --updates 500 --time-scale 0.05 "
            "--out results/ps\n"
            f"dlsys ps run {_EXAMPLE_FILE} --updates 200 --address 10.0.0.5:6379 --json"
        ),
    )
    _common(p)
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        metavar="K",
        help="checkpoint the PS every K updates into DIR/checkpoints/ps.pt (needs --out)",
    )
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoints/ps.pt")
    p.add_argument(
        "--replace-killed",
        type=float,
        metavar="SECONDS",
        help="replace a learner killed from outside after SECONDS (default: go on without it)",
    )
    p.set_defaults(func=run)
    c = add_command(
        sub,
        "compare",
        help="simulate and run on the real PS with the same seed; staleness side by side",
        example=f"dlsys ps compare {_EXAMPLE_FILE} --updates 2000 --time-scale 0.05 --out cmp",
    )
    _common(c)
    c.set_defaults(func=compare_cmd)
