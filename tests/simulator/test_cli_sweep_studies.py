"""`dlsys simulate`, the sweep helper and the studies for the reproduce report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dlsys.cli.main import main
from dlsys.simulator import simulate, sweep
from dlsys.simulator.studies import homework_study, protocol_study, staleness_study

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"
HOMEWORK = str(EXAMPLES / "homework_two_learners.toml")


def test_cli_homework_table(capsys):
    assert main(["simulate", HOMEWORK]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("g[")]
    # columns: gradient, learner, read v, applied v, staleness, t_read, t_done, t_apply, status
    assert [(r[0], r[4]) for r in rows] == [
        ("g[L1,1]", "0"),
        ("g[L1,2]", "0"),
        ("g[L1,3]", "1"),
        ("g[L1,4]", "0"),
        ("g[L2,1]", "2"),
        ("g[L2,2]", "2"),
    ]
    assert "staleness: mean 0.8333, p50 0, p95 2, p99 2, max 2" in out  # (0+0+1+0+2+2)/6


def test_cli_json_is_one_document(capsys):
    assert main(["simulate", HOMEWORK, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"updates", "summary"}
    need = {"learner", "seq", "read_version", "version", "staleness", "t_read", "t_apply"}
    assert all(need <= set(u) for u in doc["updates"])
    by = sorted((u["learner"], u["seq"], u["staleness"]) for u in doc["updates"])
    assert [s for _, _, s in by] == [0, 0, 1, 0, 2, 2]
    assert doc["summary"]["updates"] == 6


def test_cli_out_files_and_overrides(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "simulate",
        str(EXAMPLES / "async_exponential.toml"),
        "--until-updates",
        "400",
        "--seed",
        "3",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "g[" not in text  # 400 rows: no per-gradient table by default
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "staleness.json",
        "staleness.png",
        "summary.json",
        "timeline.json",
        "timeline.png",
        "trace.csv",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["updates"] == 400 and summary["seed"] == 3
    assert (out / "trace.csv").read_text().count("\n") == 401  # header + 400 rows
    hist = json.loads((out / "staleness.json").read_text())
    assert hist["theory"] is not None and len(hist["theory"]) == len(hist["observed"])
    # same seed again: every file byte-identical
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(args) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first


def test_cli_until_time(capsys):
    assert main(["simulate", HOMEWORK, "--until-time", "3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    # the run covers [0, 3): updates at 1, 2, 2.5 only
    assert [u["t_apply"] for u in doc["updates"]] == [1.0, 2.0, 2.5]
    assert doc["summary"]["stop_reason"] == "until_time"


def test_sweep_grid_replications_and_confidence_intervals():
    grid = {"simulation.protocol.k": [1, 2], "simulation.until_updates": [150]}
    res = sweep(
        EXAMPLES / "k_sync.toml",
        grid,
        replications=3,
        seed=1,
        metrics=("time_per_update",),
        processes=2,
    )
    assert [r["simulation.protocol.k"] for r in res.rows] == [1, 2]
    for row, vals in zip(res.rows, res.values, strict=True):
        xs = vals["time_per_update"]
        assert row["time_per_update"] == pytest.approx(np.mean(xs))
        assert (
            row["time_per_update.ci_low"] < row["time_per_update"] < row["time_per_update.ci_high"]
        )
    # Replication r uses SeedSequence(seed).spawn(R)[r]: the same numbers in this process.
    from dlsys.simulator import load_scenario
    from dlsys.simulator.sweep import _set  # noqa: F401  (documented dotted-path setter)

    sc = load_scenario(EXAMPLES / "k_sync.toml").replace(until_updates=150)
    ss = np.random.SeedSequence(1).spawn(3)
    direct = [simulate(sc, seed=s).summary["time_per_update"] for s in ss]
    assert res.values[1]["time_per_update"] == direct
    # k = 1 waits for the fastest of 4 (H4 - H3 = 1/4 s), k = 2 for the second (7/12 s)
    assert res.rows[0]["time_per_update"] < res.rows[1]["time_per_update"]
    assert "time_per_update" in res.to_text()


def test_sweep_bad_input():
    with pytest.raises(ValueError, match="replications: must be >= 1, got 0"):
        sweep(EXAMPLES / "k_sync.toml", {}, replications=0)
    with pytest.raises(ValueError, match="metrics: unknown summary entry 'stalenes'"):
        sweep(EXAMPLES / "k_sync.toml", {}, replications=1, metrics=("stalenes.mean",), processes=1)


def test_homework_study(tmp_path):
    res = homework_study(tmp_path)
    assert res["staleness"] == [0, 0, 1, 0, 2, 2]
    assert {p.name for p in tmp_path.iterdir()} >= {"table.md", "timeline.png", "timeline.json"}


def test_staleness_study_small():
    res = staleness_study(None, n=8, updates=4000)
    assert res["mean_theory"] == 7.0
    h = res["histogram"]
    assert sum(h["observed"]) == pytest.approx(1.0)
    # Total variation between the observed histogram and the pmf over ~40 occupied bins with
    # 4000 samples is O(sqrt(bins / N)) ~ 0.1; a wrong model (e.g. one geometric with mean 7)
    # is off by ~0.1-0.2, so 0.08 separates them at this size.
    assert res["total_variation"] < 0.08


def test_protocol_study_small(tmp_path):
    res = protocol_study(tmp_path, n=4, updates=300)
    kinds = [r["protocol"] for r in res["rows"]]
    assert kinds == ["sync", "k-sync(k=3)", "async", "k-batch-async(k=2)", "ssp(s=2)"]
    sync = res["rows"][0]
    assert sync["mean_staleness"] == 0 and sync["gradients_per_update"] == 4
    assert (tmp_path / "protocols.md").read_text().startswith("| protocol |")


def test_homework_output_matches_the_saved_file(capsys):
    # examples/scenarios/homework_two_learners.out is the saved `dlsys simulate` output;
    # regenerate it with: dlsys simulate examples/scenarios/homework_two_learners.toml > ...
    assert main(["simulate", HOMEWORK]) == 0
    saved = (EXAMPLES / "homework_two_learners.out").read_text()
    assert capsys.readouterr().out == saved


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.stem)
def test_every_example_runs(path, capsys):
    args = ["simulate", str(path), "--json"]
    if "until_updates" in path.read_text():
        args += ["--until-updates", "60"]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"]["updates"] > 0
