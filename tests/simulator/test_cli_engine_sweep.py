"""The simulate command's --engine and --summary-only flags, and `dlsys simulate sweep`."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dlsys.cli.main import main
from dlsys.cli.simulate import parse_grid
from dlsys.simulator import sweep

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"
ASYNC = str(EXAMPLES / "async_exponential.toml")
KSYNC = str(EXAMPLES / "k_sync.toml")


def run_json(capsys, *argv: str) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_summary_only_prints_the_full_runs_summary(capsys):
    full = run_json(capsys, "simulate", ASYNC, "--until-updates", "2000", "--json")
    lean = run_json(
        capsys, "simulate", ASYNC, "--until-updates", "2000", "--json", "--summary-only"
    )
    assert set(lean) == {"summary"}
    assert lean["summary"] == full["summary"]
    assert full["summary"]["engine"]["name"] == "vector"
    simpy = run_json(
        capsys, "simulate", ASYNC, "--until-updates", "2000", "--json", "--engine", "simpy"
    )
    assert simpy["updates"] == full["updates"]
    assert simpy["summary"]["engine"]["name"] == "simpy"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--engine", "vectr"], "--engine: unknown value 'vectr'; did you mean 'vector'?"),
        (["--summary-only", "--table"], "--summary-only: --table needs the per-gradient trace"),
        (["--summary-only", "--out", "x"], "--summary-only: --out needs the per-gradient trace"),
        (["--grid", "a=1,2"], "--grid: only for 'dlsys simulate sweep FILE ...'"),
    ],
)
def test_bad_flags_one_line_exit_2(capsys, tmp_path, argv, message):
    assert main(["simulate", ASYNC, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dlsys: error: ") and message in err and err.count("\n") == 1


def test_forced_vector_engine_on_faults_names_the_feature(capsys):
    assert main(["simulate", str(EXAMPLES / "faults_and_network.toml"), "--engine", "vector"]) == 2
    assert "crash faults need engine='simpy'" in capsys.readouterr().err


def test_parse_grid_reads_toml_values():
    grid = parse_grid(["simulation.protocol.k=1,2", "learner.*.compute.rate=0.5,2", "x=a,true"])
    assert grid == {
        "simulation.protocol.k": [1, 2],
        "learner.*.compute.rate": [0.5, 2],
        "x": ["a", True],
    }
    with pytest.raises(ValueError, match=r"--grid: expected KEY=V1,V2,\.\.\., got 'k'"):
        parse_grid(["k"])


def test_sweep_command_json_and_out(capsys, tmp_path):
    doc = run_json(
        capsys,
        "simulate", "sweep", KSYNC,
        "--grid", "simulation.protocol.k=1,2",
        "--replications", "2",
        "--processes", "1",
        "--json",
        "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert doc["params"] == ["simulation.protocol.k"]
    assert [r["simulation.protocol.k"] for r in doc["rows"]] == [1, 2]
    assert all(r["replications"] == 2 for r in doc["rows"])
    assert json.loads((tmp_path / "o" / "sweep.json").read_text()) == doc
    assert main(["simulate", "sweep", "--grid", "a=1"]) == 2
    assert "FILE: missing" in capsys.readouterr().err


def test_sweep_accepts_any_executor():
    # A thread pool instead of the default process pool: the same table (common random
    # numbers: replication r uses the same child seed at every point, whoever runs it).
    kw = {"replications": 2, "metrics": ("staleness.mean", "updates")}
    grid = {"simulation.protocol.k": [1, 3]}
    local = sweep(KSYNC, grid, processes=1, **kw)
    with ThreadPoolExecutor(2) as pool:
        threaded = sweep(KSYNC, grid, executor=pool, **kw)
    assert threaded.rows == local.rows
