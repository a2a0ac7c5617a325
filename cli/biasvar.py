"""``dlsys biasvar``: the bias-variance study of polynomials on y = x + sin(1.5x) + noise."""

from __future__ import annotations

import argparse
from typing import Any

from dlsys.cli.common import (
    add_command,
    add_json_flag,
    add_out_flag,
    add_quiet_flag,
    flag_names,
    print_json,
)
from dlsys.common import output_dir

# The study's argument names (as its checks print them) and the flags that set them.
_FLAGS = {
    "n_datasets": "--datasets",
    "n_points": "--points",
    "noise variance": "--noise-variance",
    "ridge alpha": "--ridge",
    "degrees": "--degrees",
    "degree": "--degrees",
    "scheme": "--scheme",
    "seed": "--seed",
}


def run(args: argparse.Namespace) -> int:
    from dlsys.analytics.biasvar.study import run_biasvar_study, summary_dict

    with flag_names(_FLAGS), output_dir(args.out) as stage:
        study = run_biasvar_study(
            stage,
            degrees=args.degrees,
            n_datasets=args.datasets,
            n_points=args.points,
            noise_variance=args.noise_variance,
            ridge_alpha=args.ridge,
            scheme=args.scheme,
            seed=args.seed,
            quiet=args.quiet or args.json,
        )
    if args.json:
        print_json(summary_dict(study))
        return 0
    print(study.markdown(), end="")
    bad = [d for d, r in zip(study.degrees, study.rows, strict=True) if not r.identity_holds()]
    if bad:
        print(f"\nnote: |residual| > 3 standard errors at degree(s) {bad} (expected now and then)")
    if args.out:
        print(
            "\nwrote tradeoff.png, fits.png (each with its .json), summary.json, summary.md, "
            f"degrees.csv to {args.out}"
        )
    return 0


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "biasvar",
        help="bias-variance decomposition of polynomial fits (squared bias, variance, noise)",
        description=(
            "Draw many data sets from y = x + sin(1.5x) + N(0, noise variance) on [0, 10], fit "
            "least-squares polynomials of each degree, and report squared bias, variance, noise "
            "and test MSE with the check MSE = bias^2 + variance + noise (residual and its "
            "standard error), the best degree, and the order-10 polynomial with and without L2."
        ),
        example=(
            "dlsys biasvar\n"
            "dlsys biasvar --degrees 1-15 --datasets 100 --ridge 0.01 --seed 0 "
            "--out results/biasvar\n"
            "dlsys biasvar --scheme fixed-test --degrees 1,3,10 --json"
        ),
    )
    parser.add_argument(
        "--degrees",
        default="1-15",
        metavar="LIST",
        help="polynomial degrees: a range 1-15, a list 1,3,10 or both (default 1-15)",
    )
    parser.add_argument(
        "--datasets", type=int, default=100, metavar="N", help="data sets drawn (default 100)"
    )
    parser.add_argument(
        "--points",
        type=int,
        default=50,
        metavar="N",
        help="points per data set, split 80/20 into train/test (default 50)",
    )
    parser.add_argument(
        "--noise-variance",
        type=float,
        default=0.3,
        metavar="VAR",
        help="variance of the Gaussian noise on y (default 0.3)",
    )
    parser.add_argument(
        "--ridge",
        type=float,
        default=0.01,
        metavar="ALPHA",
        help="L2 penalty of the regularised order-10 polynomial (default 0.01)",
    )
    parser.add_argument(
        "--scheme",
        default="fixed-x",
        choices=("fixed-x", "fixed-test"),
        help="fixed-x: same x, fresh noise per data set; fixed-test: one test set drawn "
        "first, independent training sets (default fixed-x)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw (default 0)")
    add_out_flag(parser)
    add_json_flag(parser)
    add_quiet_flag(parser)
    parser.set_defaults(func=run)
