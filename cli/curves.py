"""``dlsys curves``: ROC, PR and PRG curves of AdaBoost and logistic regression on one data set."""

from __future__ import annotations

import argparse
from typing import Any

from dlsys.cli.common import add_command, add_json_flag, add_out_flag, print_json
from dlsys.common import output_dir


def run(args: argparse.Namespace) -> int:
    from dlsys.analytics.curves.study import run_curves_study, summary_dict

    with output_dir(args.out) as stage:
        study = run_curves_study(
            stage,
            dataset=args.dataset,
            models=args.models,
            seed=args.seed,
            test_size=args.test_size,
            positive=args.positive,
            data_home=args.data_home,
        )
    if args.json:
        print_json(summary_dict(study))
        return 0
    print(study.markdown(), end="")
    if args.out:
        print(f"\nwrote curves.png, curves.json, summary.json, summary.md to {args.out}")
    return 0


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "curves",
        help="ROC, PR and PRG curves and areas: AdaBoost vs logistic regression",
        description=(
            "Fit AdaBoost and logistic regression on a stratified train/test split of a binary "
            "data set and report AUROC, AUPR (average precision and Davis & Goadrich "
            "interpolation) and AUPRG (Flach & Kull 2015) on the test split, with one figure "
            "of ROC, PR and PRG panels (all-positive classifier marked)."
        ),
        example=(
            "dlsys curves\n"
            "dlsys curves --dataset breast-cancer --models adaboost,logreg --seed 1 "
            "--out results/curves\n"
            "dlsys curves --dataset openml:credit-g --json   # needs the set cached or a network"
        ),
    )
    parser.add_argument(
        "--dataset",
        default="breast-cancer",
        metavar="NAME",
        help="breast-cancer (built in) or openml:NAME / openml:ID (default: breast-cancer)",
    )
    parser.add_argument(
        "--models",
        default="adaboost,logreg",
        metavar="LIST",
        help="comma-separated models from adaboost, logreg (default: adaboost,logreg)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of split and models (default 0)")
    parser.add_argument(
        "--test-size",
        type=float,
        default=0.3,
        metavar="FRACTION",
        help="share of examples in the test split (default 0.3)",
    )
    parser.add_argument(
        "--positive",
        default=None,
        metavar="CLASS",
        help="class name to treat as positive (default: malignant / the minority class)",
    )
    parser.add_argument(
        "--data-home",
        default=None,
        metavar="DIR",
        help="scikit-learn data folder holding cached OpenML sets (default: ~/scikit_learn_data)",
    )
    add_out_flag(parser)
    add_json_flag(parser)
    parser.set_defaults(func=run)
