"""Fuzz the options of every command: each case is a quick valid command line with one to
three options replaced by hostile values (negative, zero, NaN, inf, huge, empty, text where
a number goes, malformed lists). It must end in a normal run or a one-line exit 2 naming the
option (or the field it feeds), within the time limit (see conftest.py).

Options that size memory (data sets, points, batch sizes, learners) get huge values, which
the size checks must refuse at once under the fuzz memory limit; options that only size
time (epochs, updates to replay) get small ones, since a long valid run is not an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"
HOMEWORK = str(EXAMPLES / "homework_two_learners.toml")

BAD = ["", " ", "abc", "-", "1,,2", "0x10", "--", "1e", "\u00e9"]
INT_SMALL = ["-1", "0", "1", "2", "3", "1.5", "nan", "-0", "007", *BAD]
INT_HUGE = [*INT_SMALL, "1000000000", "1000000000000", "99999999999999999999", "-99999999999"]
FLOAT = ["-1", "0", "0.5", "1", "1e300", "-1e-300", "1e-300", "nan", "inf", "-inf", *BAD]
FRACTION = ["0", "1", "0.5", "0.99", "1.5", "-0.1", "nan", "inf", "1e-300", *BAD]
SEED = ["-1", "0", "7", "1000000000000", "99999999999999999999", "1.5", "nan", *BAD]


@dataclass
class Command:
    """A quick valid command line and the value pools of the options to fuzz."""

    argv: list[str]
    options: dict[str, list[str]]
    examples: int
    names: dict[str, list[str]] = field(default_factory=dict)  # other words a refusal may use


COMMANDS: dict[str, Command] = {
    "simulate": Command(
        ["simulate", HOMEWORK, "--no-table"],
        {
            "--until-updates": INT_HUGE,
            "--until-time": FLOAT,
            "--seed": SEED,
            "--engine": ["auto", "simpy", "vector", "numba", "", "SIMPY"],
            "--summary-only": [],
        },
        25,
        {"--until-updates": ["until_updates"], "--until-time": ["until_time"]},
    ),
    "simulate-sweep": Command(
        [
            *("simulate", "sweep", HOMEWORK, "--grid", "simulation.seed=1,2"),
            *("--replications", "2", "--processes", "1"),
        ],
        {
            "--grid": [
                "simulation.seed=1,2",
                "simulation.seed=",
                "simulation.seed=-1",
                "simulation.nope=1",
                "learner.*.compute.rate=1,2",
                "simulation.seed=" + ",".join(map(str, range(100))),
                "=1",
                "simulation.protocol=sync,async",
                *BAD,
            ],
            "--replications": INT_HUGE,
            "--processes": ["1", "0", "-1", "1000000", *BAD],
        },
        15,
        {
            "--grid": ["grid", "simulation", "learner"],
            "--replications": ["replications", "grid"],
        },
    ),
    "biasvar": Command(
        ["biasvar", "--degrees", "1-3", "--datasets", "5", "--points", "20", "--quiet"],
        {
            "--degrees": ["1", "0", "-1", "1-3", "3-1", "1-100", "1,2,2", "1-", "a-b", *BAD],
            "--datasets": INT_HUGE,
            "--points": INT_HUGE,
            "--noise-variance": FLOAT,
            "--ridge": FLOAT,
            "--scheme": ["fixed-x", "fixed-test", "fixed", ""],
            "--seed": SEED,
        },
        25,
        {
            "--datasets": ["n_datasets", "n_points"],
            "--points": ["n_points", "n_datasets", "degree", "test_fraction"],
            "--noise-variance": ["noise"],
            "--ridge": ["alpha"],
            "--degrees": ["degree"],
        },
    ),
    "cost": Command(
        ["cost", "conv", "--input", "6,4", "--kernel", "2", "--stride", "2"],
        {
            "--input": ["6,4", "3,8,8", "0,4", "-1,4", "1000000000,1000000000", "4", *BAD],
            "--kernel": ["1", "2,2", "0", "-1", "100", "1000000000000", *BAD],
            "--stride": ["1", "2", "0", "-2", "1000000000000", *BAD],
            "--padding": ["0", "1", "-1", "1000000000000", *BAD],
            "--dilation": ["1", "2", "0", "-1", *BAD],
            "--batch": INT_HUGE,
            "--channels": INT_HUGE,
            "--filters": INT_HUGE,
        },
        30,
    ),
    "cost-model": Command(
        ["cost", "vgg19", "--memory"],
        {
            "--batch": INT_HUGE,
            "--dtype": ["float32", "float16", "bfloat16", "int8", "float", "complex", *BAD],
            "--device": ["a100", "h100", "cpu", "tpu", *BAD],
            "--optimizer": ["sgd", "adam", "lamb"],
            "--input": ["3,224,224", "3,32,32", "0,1,1", "3,1000000,1000000", *BAD],
            "--format": ["text", "md", "csv", "json", "xml"],
        },
        20,
    ),
    "curves": Command(
        ["curves", "--models", "logreg"],
        {
            "--models": ["logreg", "adaboost", "logreg,logreg", "svm", ",", *BAD],
            "--test-size": FRACTION,
            "--seed": SEED,
            "--positive": ["malignant", "benign", "cat", *BAD],
            "--dataset": ["breast-cancer", "iris", "openml:", "openml:-1", *BAD],
        },
        15,
        {"--models": ["model"], "--test-size": ["test_size", "test"]},
    ),
    "train": Command(
        ["train", "early-stopping", "--limit", "64", "--epochs", "1", "--model", "mlp:8"],
        {
            "--epochs": INT_SMALL,
            "--batch-size": INT_HUGE,
            "--lr": FLOAT,
            "--momentum": FLOAT,
            "--seed": SEED,
            "--seeds": ["0", "0,1", "0,0", "-1", "1,a", *BAD],
            "--threads": ["1", "0", "-1", "100000", *BAD],
            "--limit": INT_HUGE,
            "--model": ["mlp:8", "mlp:0", "mlp:-1", "mlp:", "mlp:1000000000000", "cnn7", "vit"],
            "--dataset": ["digits", "synthetic", "mnist:/nonexistent", "cifar", *BAD],
            "--patience": INT_SMALL,
            "--memory-budget-mb": INT_HUGE,
            "--preset": ["quick", "homework", "huge", *BAD],
            "--device": ["cpu", "auto", "cuda:99", "tpu", *BAD],
        },
        20,
        {"--model": ["model", "mlp"], "--dataset": ["dataset", "mnist"]},
    ),
    "replay": Command(
        ["replay", HOMEWORK, "--model", "mlp:8", "--limit", "64", "--quiet"],
        {
            "--per-learner-batch": INT_HUGE,
            "--lr": FLOAT,
            "--lr-rule": ["constant", "inverse-staleness", "inverse-power", "linear", *BAD],
            "--lr-power": FLOAT,
            "--momentum": FLOAT,
            "--weight-decay": FLOAT,
            "--eval-every": INT_SMALL,
            "--history-every": INT_SMALL,
            "--until-updates": INT_SMALL,
            "--seed": SEED,
            "--limit": INT_HUGE,
            "--model": ["mlp:8", "mlp:0", "mlp:1000000000000", "cnn", "vit"],
        },
        20,
        {"--model": ["model", "mlp"], "--per-learner-batch": ["batch"]},
    ),
}


@st.composite
def command_line(draw: st.DrawFn, name: str) -> tuple[list[str], list[str]]:
    """(argv, words a refusal may name)."""
    cmd = COMMANDS[name]
    argv = list(cmd.argv)
    names: list[str] = []
    picked = draw(st.lists(st.sampled_from(sorted(cmd.options)), min_size=1, max_size=3))
    for opt in dict.fromkeys(picked):
        pool = cmd.options[opt]
        if opt in argv:
            i = argv.index(opt)
            del argv[i : i + 2]
        if pool:
            argv += [opt, draw(st.sampled_from(pool))]
        else:
            argv.append(opt)
        names += [opt, opt.lstrip("-").replace("-", "_"), *cmd.names.get(opt, [])]
    return argv, names


def _case(name: str, fuzz: Any) -> Any:
    @settings(parent=settings.get_profile("dlsys-fuzz"), max_examples=COMMANDS[name].examples)
    @given(case=command_line(name))
    def run(case: tuple[list[str], list[str]]) -> None:
        argv, names = case
        o = fuzz.run(argv)
        fuzz.check(o, *names, "usage")

    return run


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_options_end_cleanly(name: str, fuzz: Any) -> None:
    _case(name, fuzz)()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_base_command_runs(name: str, fuzz: Any) -> None:
    """The unfuzzed command line runs normally: the fuzz starts from a valid one."""
    o = fuzz.run(COMMANDS[name].argv)
    assert o.code == 0, o.err
