"""``dlsys simulate``: run a parameter-server scenario (TOML) and report staleness."""

from __future__ import annotations

import argparse
from typing import Any

from dlsys.cli.common import add_command, add_json_flag, add_out_flag, print_json


def run(args: argparse.Namespace) -> int:
    from dlsys.common import check_choice, output_dir
    from dlsys.simulator import load_scenario, simulate
    from dlsys.simulator.engine import ENGINES
    from dlsys.simulator.report import TABLE_ROWS, gradient_table, summary_text, write_outputs

    if args.file == "sweep":
        return run_sweep(args)
    for flag in ("grid", "replications", "processes", "ray", "file2"):
        if getattr(args, flag) not in (None, []):
            name = "FILE" if flag == "file2" else f"--{flag}"
            raise ValueError(f"{name}: only for 'dlsys simulate sweep FILE ...'")
    check_choice("--engine", args.engine, ENGINES)
    if args.summary_only:
        for flag in ("table", "out"):
            if getattr(args, flag):
                raise ValueError(
                    f"--summary-only: --{flag} needs the per-gradient trace; drop one of them"
                )
    sc = load_scenario(args.file)
    for flag in ("until_updates", "until_time", "seed"):
        v = getattr(args, flag)
        if v is not None and (v < 0 or (v == 0 and flag != "seed") or v != v):
            allowed = ">= 0" if flag == "seed" else "> 0"
            raise ValueError(f"--{flag.replace('_', '-')}: must be {allowed}, got {v}")
    result = simulate(
        sc,
        seed=args.seed,
        until_updates=args.until_updates,
        until_time=args.until_time,
        engine=args.engine,
        trace=not args.summary_only,
    )
    with output_dir(args.out) as stage:
        if stage is not None:
            write_outputs(result, stage)
    if args.json:
        if args.summary_only:
            print_json({"summary": result.summary})
        else:
            print_json({"updates": result.trace.records(), "summary": result.summary})
        return 0
    rows = 0 if args.summary_only else len(result.trace)
    if args.table or (0 < rows <= TABLE_ROWS and not args.no_table):
        print(gradient_table(result, limit=None if args.table else TABLE_ROWS))
        print()
    print(summary_text(result.summary))
    if args.out:
        print(f"wrote trace.csv, summary.json, timeline.png, staleness.png to {args.out}")
    return 0


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["KEY=V1,V2", ...]`` -> ``{KEY: [V1, V2]}``; each value read as a TOML value (``2``,
    ``0.5``, ``true``), else kept as text (``async``)."""
    import tomllib

    grid: dict[str, list[Any]] = {}
    for item in items:
        key, eq, values = item.partition("=")
        if not eq or not key.strip() or not values.strip():
            raise ValueError(f"--grid: expected KEY=V1,V2,..., got {item!r}")
        out: list[Any] = []
        for text in values.split(","):
            text = text.strip()
            try:
                out.append(tomllib.loads(f"v = {text}")["v"])
            except tomllib.TOMLDecodeError:
                out.append(text)
        if key.strip() in grid:
            raise ValueError(f"--grid: {key.strip()!r} given twice")
        grid[key.strip()] = out
    return grid


def sweep_executor(args: argparse.Namespace) -> Any:
    """The executor the sweep runs on: None means the default local process pool
    (``--processes``); ``--ray [ADDRESS]`` runs the replications as Ray tasks on a local
    instance (127.0.0.1) or the cluster at ADDRESS."""
    if args.ray is None:
        return None
    if args.processes is not None:
        raise ValueError("--processes: not with --ray (Ray places the tasks on its CPUs)")
    from dlsys.distributed.executor import RayExecutor

    return RayExecutor(None if args.ray == "local" else args.ray)


def run_sweep(args: argparse.Namespace) -> int:
    """``dlsys simulate sweep FILE --grid KEY=V1,V2 ... --replications R``."""
    from dlsys.common import check_choice, check_int, output_dir, write_json
    from dlsys.simulator import sweep
    from dlsys.simulator.engine import ENGINES

    if args.file2 is None:
        raise ValueError("FILE: missing (dlsys simulate sweep FILE --grid KEY=V1,V2 ...)")
    for flag in ("until_updates", "until_time", "seed", "table", "no_table", "summary_only"):
        if getattr(args, flag) not in (None, False):
            raise ValueError(f"--{flag.replace('_', '-')}: not a sweep option")
    check_choice("--engine", args.engine, ENGINES)
    reps = check_int("--replications", args.replications or 10, minimum=1)
    procs = None if args.processes is None else check_int("--processes", args.processes, minimum=1)
    grid = parse_grid(args.grid or [])
    executor = sweep_executor(args)
    try:
        result = sweep(
            args.file2,
            grid,
            replications=reps,
            processes=procs,
            quiet=args.json,
            executor=executor,
            engine=args.engine,
        )
    finally:
        if executor is not None:
            executor.shutdown()
    doc = {
        "params": result.params,
        "metrics": result.metrics,
        "confidence": result.confidence,
        "rows": result.rows,
    }
    with output_dir(args.out) as stage:
        if stage is not None:
            write_json(stage / "sweep.json", doc)
    if args.json:
        print_json(doc)
    else:
        print(result.to_text())
        if args.out:
            print(f"wrote sweep.json to {args.out}")
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
            "dlsys simulate examples/scenarios/k_sync.toml --seed 3 --json\n"
            "dlsys simulate examples/scenarios/async_exponential.toml "
            "--until-updates 100000000 --summary-only\n"
            "dlsys simulate sweep examples/scenarios/k_sync.toml "
            "--grid simulation.protocol.k=1,2,4 --replications 5"
        ),
    )
    parser.add_argument(
        "file", help="scenario TOML file (see examples/scenarios/), or 'sweep' then the file"
    )
    parser.add_argument("file2", nargs="?", metavar="FILE", help="(sweep) the scenario file")
    parser.add_argument(
        "--engine",
        default="auto",
        metavar="ENGINE",
        help="auto (default: vector where it is exact, else simpy), simpy or vector",
    )
    parser.add_argument(
        "--summary-only",
        action="store_true",
        help="keep no per-gradient trace: the same summary in memory that does not grow "
        "with the updates",
    )
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
    sw = parser.add_argument_group("sweep (dlsys simulate sweep FILE ...)")
    sw.add_argument(
        "--grid",
        action="append",
        metavar="KEY=V1,V2",
        help="a grid axis: dotted scenario key and its values (repeat for more axes)",
    )
    sw.add_argument("--replications", type=int, metavar="R", help="runs per grid point (10)")
    sw.add_argument("--processes", type=int, metavar="P", help="local worker processes")
    sw.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run the replications as Ray tasks: a local instance, or the cluster at ADDRESS",
    )
    add_json_flag(parser)
    add_out_flag(parser)
    parser.set_defaults(func=run)
