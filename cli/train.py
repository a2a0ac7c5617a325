"""``dlsys train EXPERIMENT``: the training experiments of dlsys.training.experiments.

Result files go to ``--out DIR`` (default ``results/<experiment>``) through a staging folder,
so a failed run leaves nothing half-written; per-run checkpoints go to ``DIR/checkpoints``
(each written atomically every epoch) so that ``--resume`` can continue an interrupted run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dlsys.cli.common import add_command, add_json_flag, add_out_flag, add_quiet_flag, print_json
from dlsys.common.errors import unknown_name
from dlsys.common.io import output_dir

# Experiment-specific flags: argparse dest -> keyword of the experiment function.
_EXTRA: dict[str, dict[str, str]] = {
    "lr-range": {
        "lo": "lo",
        "hi": "hi",
        "num_lrs": "num",
        "mode": "mode",
        "sweep_steps": "sweep_steps",
    },
    "clr": {
        "lr_min": "lr_min",
        "lr_max": "lr_max",
        "policies": "policies",
        "step_epochs": "step_epochs",
    },
    "batch-ramp": {"ramp_start": "start", "ramp_max": "max_batch", "ramp_every": "every"},
    "flooding": {"b_grid": "b_grid", "no_cnn": "compare_cnn"},
    "batch-size": {"batch_sizes": "batch_sizes", "patience": "patience"},
    "early-stopping": {"patience": "patience"},
    "momentum": {"momenta": "momenta"},
    "ood": {"shift": "shift"},
    "staleness-lr": {"learners": "learners"},
    "error-runtime": {"learners": "learners", "target_error": "target_error"},
}


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _extra_kwargs(experiment: str, args: argparse.Namespace) -> dict[str, Any]:
    used = _EXTRA[experiment]
    kwargs: dict[str, Any] = {}
    for exp, flags in _EXTRA.items():
        for dest, kw in flags.items():
            value = getattr(args, dest)
            if value is None or value is False:
                continue
            if dest not in used:
                owners = sorted(e for e, f in _EXTRA.items() if dest in f)
                raise ValueError(
                    f"--{dest.replace('_', '-')}: not used by experiment {experiment!r} "
                    f"(it belongs to {', '.join(owners)})"
                )
            if exp != experiment:
                continue
            kwargs[kw] = (not value) if dest == "no_cnn" else value
    return kwargs


def _has_checkpoints(folder: Path) -> bool:
    return folder.is_dir() and any(folder.rglob("*.pt"))


def _print_text(result: dict[str, Any], out: Path) -> None:
    summary = result.get("summary") or {}
    if "mean" in result:  # --seeds
        print(f"{result['experiment']}: seeds {result['seeds']} (mean ± sample std)")
        for k, mean in result["mean"].items():
            print(f"  {k}: {mean:.6g} ± {result['std'][k]:.3g}")
    else:
        print(f"{result['experiment']}: {summary.get('data')}")
        if summary.get("note"):
            print(f"  NOTE: {summary['note']}")
        for k, v in summary.items():
            if k in ("data", "note", "stand_in"):
                continue
            text = str(v)
            print(f"  {k}: {text if len(text) <= 160 else text[:157] + '...'}")
    print(f"wrote {out}/ (metrics.json, config.json, CSVs, PNG plots)")


def _run_seeds(
    args: argparse.Namespace, common: Any, stage: Path, kwargs: dict[str, Any]
) -> dict[str, Any]:
    """``--seeds``, one after the other here or (``--ray [ADDRESS]``) as Ray tasks."""
    from dlsys.training.experiments import run_seeds

    if args.ray is None:
        return run_seeds(args.experiment, common, args.seeds, stage, **kwargs)
    from dlsys.distributed.executor import RayExecutor

    executor = RayExecutor(None if args.ray == "local" else args.ray)
    try:
        return run_seeds(args.experiment, common, args.seeds, stage, executor=executor, **kwargs)
    finally:
        executor.shutdown(cancel_futures=True)


def run(args: argparse.Namespace) -> int:
    from dlsys.training.experiments import EXPERIMENTS, Common, run_experiment

    if args.experiment not in EXPERIMENTS:
        raise unknown_name("experiment", args.experiment, EXPERIMENTS)
    kwargs = _extra_kwargs(args.experiment, args)
    if args.seeds is not None and args.seed is not None:
        raise ValueError("--seed and --seeds: give one of them")
    if args.seeds is not None and not args.seeds:
        raise ValueError("--seeds: give at least one seed, e.g. 0,1,2")
    for s in args.seeds or [args.seed or 0]:
        if s < 0:
            raise ValueError(f"--seed: must be >= 0, got {s}")
    if args.ray is not None and args.seeds is None:
        raise ValueError("--ray: only with --seeds (it runs the seeds as Ray tasks)")
    if args.ray is not None and args.resume:
        raise ValueError("--resume: not with --ray (the seeds' Ray tasks keep no checkpoints)")
    out = Path(args.out or f"results/{args.experiment}")
    ckdir = out / "checkpoints"
    if args.resume and not _has_checkpoints(ckdir):
        raise FileNotFoundError(
            f"--resume: no checkpoint under {str(ckdir)!r}; run without --resume first "
            "(with the same --out)"
        )
    common = Common(
        dataset=args.dataset,
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        optimizer=args.optimizer,
        seed=args.seed or 0,
        kernels=args.kernels,
        device=args.device,
        preset=args.preset,
        memory_budget_mb=args.memory_budget_mb,
        limit=args.limit,
        threads=args.threads,
        checkpoint_dir=ckdir,
        resume=args.resume,
        quiet=args.quiet or args.json,
    )
    with output_dir(out) as stage:
        assert stage is not None
        if args.seeds is not None:
            result = _run_seeds(args, common, stage, kwargs)
        else:
            res = run_experiment(args.experiment, common, stage, **kwargs)
            result = {
                "experiment": res.experiment,
                "out": str(out),
                "summary": res.summary,
                "plots": res.plots,
                "files": res.files,
                "config": res.config,
            }
    result["out"] = str(out)
    if args.json:
        print_json(result)
    else:
        _print_text(result, out)
    return 0


def register(subparsers: Any) -> None:
    from dlsys.training.experiments import EXPERIMENTS, PRESETS

    p = add_command(
        subparsers,
        "train",
        help="training experiments: " + ", ".join(EXPERIMENTS),
        description=(
            "Run a training experiment and write metrics.json, config.json, CSVs and PNG plots.\n"
            "Experiments: " + ", ".join(EXPERIMENTS) + ".\n"
            "Defaults are quick (minutes on 2 cores on the built-in 'digits' stand-in);\n"
            "--preset homework uses the problem sets' epochs and sizes (for MNIST data)."
        ),
        example=(
            "dlsys train lr-range --out results/lr\n"
            "dlsys train flooding --dataset mnist:~/data --preset homework --kernels dlsys\n"
            "dlsys train batch-size --seeds 0,1,2 --json\n"
            "dlsys train momentum --seeds 0,1,2,3 --threads 1 --ray 10.0.0.5:6379\n"
            "dlsys train clr --out results/clr --resume"
        ),
    )
    p.add_argument("experiment", metavar="EXPERIMENT", help=", ".join(EXPERIMENTS))
    g = p.add_argument_group("common")
    g.add_argument(
        "--dataset",
        default="digits",
        help="digits | synthetic | mnist:DIR | fashion-mnist:DIR (default: digits)",
    )
    g.add_argument(
        "--model", help="mlp[:W1,W2,..] | cnn | cnn7 | cnn7-3 | inception (default: per experiment)"
    )
    g.add_argument("--epochs", type=int, help="epochs per run (default: per experiment and preset)")
    g.add_argument("--batch-size", type=int, help="samples per update")
    g.add_argument("--lr", type=float, help="learning rate per update")
    g.add_argument("--momentum", type=float, help="SGD momentum")
    g.add_argument(
        "--optimizer", choices=("sgd", "adam"), help="optimizer (default: per experiment)"
    )
    g.add_argument(
        "--seed", type=int, help="seed for split, initialisation and batch order (default 0)"
    )
    g.add_argument(
        "--seeds", type=_ints, help="comma-separated seeds: repeat and report mean and spread"
    )
    g.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="with --seeds: run the seeds as Ray tasks on a local instance (127.0.0.1) or the "
        "cluster at ADDRESS",
    )
    g.add_argument("--threads", type=int, help="torch intra-op threads")
    g.add_argument(
        "--kernels",
        default="dlsys",
        help="dlsys | torch: convolutions and flooding loss (default: dlsys)",
    )
    g.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")
    g.add_argument("--preset", default="quick", help=" | ".join(PRESETS) + " (default: quick)")
    g.add_argument(
        "--memory-budget-mb",
        type=float,
        default=512.0,
        help="MiB of activations per micro-batch; larger batches are accumulated (default 512)",
    )
    g.add_argument("--limit", type=int, help="keep at most this many training and test images")
    g.add_argument(
        "--resume", action="store_true", help="continue from the checkpoints in OUT/checkpoints"
    )
    add_out_flag(p)  # default: results/EXPERIMENT (set in run)
    add_json_flag(p)
    add_quiet_flag(p)
    e = p.add_argument_group("experiment-specific")
    e.add_argument("--lo", type=float, help="lr-range: lowest LR (default 1e-9)")
    e.add_argument("--hi", type=float, help="lr-range: highest LR (default 10)")
    e.add_argument("--num-lrs", type=int, help="lr-range: number of LRs in the grid (default 10)")
    e.add_argument("--mode", help="lr-range: both | grid | sweep (default both)")
    e.add_argument("--sweep-steps", type=int, help="lr-range: updates in the fast sweep")
    e.add_argument("--lr-min", type=float, help="clr: lower LR (default: from a fast LR sweep)")
    e.add_argument("--lr-max", type=float, help="clr: upper LR (default: from a fast LR sweep)")
    e.add_argument("--policies", type=_names, help="clr: triangular,triangular2,exp_range")
    e.add_argument("--step-epochs", type=float, help="clr: half-cycle length in epochs")
    e.add_argument("--ramp-start", type=int, help="batch-ramp: first batch size (default 32)")
    e.add_argument("--ramp-max", type=int, help="batch-ramp: last batch size (default 8192)")
    e.add_argument("--ramp-every", type=int, help="batch-ramp: updates between doublings")
    e.add_argument("--b-grid", type=_floats, help="flooding: flood levels, e.g. 0,0.05,0.1")
    e.add_argument("--no-cnn", action="store_true", help="flooding: skip the CNN comparison")
    e.add_argument("--batch-sizes", type=_ints, help="batch-size: e.g. 1,5,50,500,5000")
    e.add_argument("--patience", type=int, help="batch-size, early-stopping: epochs (default 3)")
    e.add_argument("--momenta", type=_floats, help="momentum: e.g. 0.1,0.3,0.5,0.7,0.9")
    e.add_argument("--shift", type=int, help="ood: pixels to shift the test images up (default 4)")
    e.add_argument(
        "--learners", type=int, help="staleness-lr, error-runtime: learners (quick 16 / 8)"
    )
    e.add_argument(
        "--target-error", type=float, help="error-runtime: test error in percent (default 10)"
    )
    p.set_defaults(func=run)
