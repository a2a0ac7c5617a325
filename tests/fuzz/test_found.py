"""What the fuzz tests found, kept as fixed cases: each ended in an exception (exit 1) or a
hang before its fix, and must now be refused at once, exit 2, one line naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

HOMEWORK = str(
    Path(__file__).resolve().parents[2] / "examples/scenarios/homework_two_learners.toml"
)
REPLAY = ["replay", HOMEWORK, "--model", "mlp:8", "--limit", "64", "--quiet"]
BIASVAR = ["biasvar", "--degrees", "1-3", "--datasets", "5", "--points", "20", "--quiet"]

LOGNORMAL = """
simulation = { until_updates = 100 }
learner = [ { compute = { dist = "lognormal", mu = 0.0, sigma = 1000.0 } } ]
"""
# Pareto durations of at least 1e-300 s with an infinite mean: the estimate from the mean
# (zero gradients a second) lets the run start, and the growing-trace check stops it.
PARETO = """
simulation = { until_time = 10.0 }
learner = [ { compute = { dist = "pareto", alpha = 0.5, xm = 1e-300 } } ]
"""


@pytest.mark.parametrize(
    ("argv", "starts"),
    [
        # was OverflowError: variance**2 in the noise moments
        ([*BIASVAR, "--noise-variance", "1e300"], "--noise-variance: must be below 1.3e154"),
        # was torch RuntimeError: value cannot be converted to type float without overflow
        ([*REPLAY, "--weight-decay", "1e300"], "--weight-decay: must be <= 3.4e38"),
        ([*REPLAY, "--lr", "1e39"], "--lr: must be <= 3.4e38"),
        # was torch RuntimeError: DefaultCPUAllocator: can't allocate memory (3.1e15 bytes)
        (
            ["train", "early-stopping", "--limit", "64", "--model", "mlp:1000000000000"],
            "--model: 'mlp:1000000000000' with 795000000000010 parameters",
        ),
    ],
    ids=["biasvar-noise", "replay-weight-decay", "replay-lr", "train-mlp-width"],
)
def test_found_options(argv: list[str], starts: str, fuzz: Any) -> None:
    o = fuzz.run(argv)
    assert o.code == 2, o.err
    assert o.err.startswith(f"dlsys: error: {starts}"), o.err
    fuzz.check(o)


@pytest.mark.parametrize(
    ("text", "engine", "starts"),
    [
        # was OverflowError: math range error in LogNormal.mean
        (LOGNORMAL, "auto", "learner[0].compute.sigma: mu + sigma^2 / 2 must be <= 709.78"),
        # was a hang: millions of events in the first 1e-290 s
        (PARETO, "simpy", "simulation.until_time: a trace of about"),
        # was a hang: a window of 2**40 durations drawn 4096 at a time
        (PARETO, "auto", "simulation.until_time: the next 1099511627792 gradients"),
    ],
    ids=["lognormal-sigma", "pareto-tiny-minimum-simpy", "pareto-tiny-minimum-vector"],
)
def test_found_scenarios(text: str, engine: str, starts: str, fuzz: Any, tmp_path: Path) -> None:
    path = tmp_path / "found.toml"
    path.write_text(text)
    o = fuzz.run(["simulate", str(path), "--engine", engine, "--no-table"])
    assert o.code == 2, o.err
    assert o.err.startswith(f"dlsys: error: {starts}"), o.err
    fuzz.check(o)
