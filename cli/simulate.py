"""``dlsys simulate``: run a parameter-server scenario (TOML) and report staleness."""

from __future__ import annotations

import argparse
from typing import Any

from dlsys.cli.common import add_command, add_json_flag, add_out_flag, print_json


def run(args: argparse.Namespace) -> int:
    from dlsys.common import output_dir
    from dlsys.simulator import load_scenario, simulate
    from dlsys.simulator.report import TABLE_ROWS, gradient_table, summary_text, write_outputs

    sc = load_scenario(args.file)
    for flag in ("until_updates", "until_time", "seed"):
        v = getattr(args, flag)
        if v is not None and (v < 0 or (v == 0 and flag != "seed") or v != v):
            allowed = ">= 0" if flag == "seed" else "> 0"
            raise ValueError(f"--{flag.replace('_', '-')}: must be {allowed}, got {v}")
    result = simulate(
        sc, seed=args.seed, until_updates=args.until_updates, until_time=args.until_time
    )
    with output_dir(args.out) as stage:
        if stage is not None:
            write_outputs(result, stage)
    if args.json:
        print_json({"updates": result.trace.records(), "summary": result.summary})
        return 0
    rows = len(result.trace)
    if args.table or (rows <= TABLE_ROWS and not args.no_table):
        print(gradient_table(result, limit=None if args.table else TABLE_ROWS))
        print()
    print(summary_text(result.summary))
    if args.out:
        print(f"wrote trace.csv, summary.json, timeline.png, staleness.png to {args.out}")
    return 0


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "simulate",
        help="simulate SGD on a parameter server (TOML scenario) and report staleness",
        example=(
            "dlsys simulate examples/scenarios/homework_two_learners.toml\n"
            "dlsys simulate examples/scenarios/async_exponential.toml --until-updates 5000 "
            "--out results/sim\n"
            "dlsys simulate examples/scenarios/k_sync.toml --seed 3 --json"
        ),
    )
    parser.add_argument("file", help="scenario TOML file (see examples/scenarios/)")
    parser.add_argument("--until-updates", type=int, metavar="N", help="stop after N PS updates")
    parser.add_argument(
        "--until-time", type=float, metavar="T", help="stop at simulated time T seconds"
    )
    parser.add_argument("--seed", type=int, metavar="S", help="override the scenario's seed")
    table = parser.add_mutually_exclusive_group()
    table.add_argument(
        "--table", action="store_true", help="always print the per-gradient table (all rows)"
    )
    table.add_argument("--no-table", action="store_true", help="never print the per-gradient table")
    add_json_flag(parser)
    add_out_flag(parser)
    parser.set_defaults(func=run)
