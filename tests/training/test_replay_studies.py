"""The staleness studies: grids, rows, and the readings' verdicts on hand-made numbers."""

from __future__ import annotations

import pytest

from dlsys.training import load_dataset
from dlsys.training.replay import ReplayConfig
from dlsys.training.replay.studies import (
    error_runtime,
    error_runtime_reading,
    softsync_grid,
    staleness_lr,
    staleness_reading,
)

BASE = ReplayConfig(model="mlp:8", per_learner_batch=4, lr=0.1, kernels="torch")


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", seed=0)


def test_softsync_grid():
    # c = round(lambda / n): 16 / 4 = 4; for 30 learners 30 / 4 = 7.5 -> 8, 30 / 8 = 3.75 -> 4.
    assert softsync_grid(16) == [(1, 16), (2, 8), (4, 4), (8, 2), (16, 1)]
    assert softsync_grid(30) == [(1, 30), (2, 15), (4, 8), (8, 4), (16, 2), (30, 1)]
    assert softsync_grid(1) == [(1, 1)]


def test_staleness_lr_rows(data):
    # 4 learners, 480 training images, mu = 4: 0.5 epoch is 60 gradients per run.
    rows, runs, single = staleness_lr(data, BASE, learners=4, epochs=0.5)
    assert [(r["n"], r["c"], r["rule"]) for r in rows] == [
        (n, c, rule)
        for n, c in [(1, 4), (2, 2), (4, 1)]
        for rule in ("constant", "inverse-staleness")
    ]
    assert single["gradients"] == 60 and single["mean_staleness"] == 0.0
    for r in rows:
        assert r["gradients"] == 60 and r["updates"] == 60 // r["c"]
        assert 0.0 <= r["test_accuracy"] <= 1.0
    # Both rules replay the same schedule: the same staleness.
    by_n = {}
    for r in rows:
        by_n.setdefault(r["n"], set()).add(r["mean_staleness"])
    assert all(len(v) == 1 for v in by_n.values())
    assert len(runs) == 1 + len(rows) and runs[0].name == "single"


def _row(n, rule, stale, err):
    return {"n": n, "rule": rule, "mean_staleness": stale, "test_error": err}


def test_staleness_reading_verdicts():
    single = {"test_error": 10.0}
    rows = [
        _row(1, "constant", 0.9, 10.0), _row(1, "inverse-staleness", 0.9, 10.5),
        _row(16, "constant", 15.0, 90.0), _row(16, "inverse-staleness", 15.0, 4.0),
    ]  # fmt: skip
    r = staleness_reading(rows, single)
    # 15 / 16 = 0.94 is within 25 % of n; 90 > 10 + 5 fails; 10.5 and 4.0 are <= 10 + 5.
    assert r["staleness_close_to_n"] and r["constant_large_n_fails"]
    assert r["inverse_staleness_near_single"]
    # Staleness 11 at n = 16 (11 / 16 = 0.69, both rules replay one schedule); 16 > 10 + 5.
    rows[2:] = [_row(16, "constant", 11.0, 90.0), _row(16, "inverse-staleness", 11.0, 16.0)]
    r = staleness_reading(rows, single)
    assert not r["staleness_close_to_n"] and not r["inverse_staleness_near_single"]
    assert "unlike the paper" in r["lines"][2]


def test_error_runtime_rows(data):
    rows, runs = error_runtime(data, BASE, learners=4, ks=(2,), k_async=2, sim_time=20.0,
                               target_error=100.0, evals=4)  # fmt: skip
    assert [r["protocol"] for r in rows] == ["sync", "k-sync(k=2)", "k-async(k=2)", "async"]
    # A 100 % target is met by the first evaluation, before any update (t = 0).
    assert all(r["time_to_target"] == 0.0 for r in rows)
    assert all(run.evals[-1]["t"] <= 20.0 for run in runs)
    rows, _ = error_runtime(data, BASE, learners=4, ks=(2,), k_async=2, sim_time=5.0,
                            target_error=1e-9, evals=2)  # fmt: skip
    assert all(r["time_to_target"] is None for r in rows)


def test_error_runtime_with_model_derived_times(data):
    # Fixed 0.5 s steps from the cost model (cv = 0): sync rounds take exactly 0.5 s, so the
    # run over [0, 10) s applies updates at 0.5, 1.0, ..., 9.5 s: 19 of them (t = 10 is out).
    from dlsys.simulator.model_compute import ModelTime

    rows, _ = error_runtime(data, BASE, learners=4, ks=(2,), k_async=2, sim_time=10.0,
                            dist=ModelTime(0.5), evals=2)  # fmt: skip
    assert rows[0]["protocol"] == "sync" and rows[0]["updates"] == 19


def test_error_runtime_reading():
    rows = [
        {"protocol": "sync", "time_to_target": 30.0, "test_error": 3.0},
        {"protocol": "async", "time_to_target": 10.0, "test_error": 5.0},
        {"protocol": "k-sync(k=2)", "time_to_target": None, "test_error": 3.0},
    ]
    r = error_runtime_reading(rows, 8.0)
    assert r["first_to_target"] == "async"
    assert r["lowest_final_error"] == ["sync", "k-sync(k=2)"]
    assert r["lines"][0] == "first to 8 % test error: async at 10 simulated s"


def test_experiments_through_the_cli(tmp_path, capsys):
    import json

    from dlsys.cli.main import main

    quick = ["--dataset", "synthetic", "--model", "mlp:8", "--kernels", "torch", "--quiet"]
    out = tmp_path / "s"
    argv = ["train", "staleness-lr", "--learners", "4", "--epochs", "1", *quick]
    assert main([*argv, "--out", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = doc["summary"]["rows"]
    # n = 1, 2, 4 with both rules; 480 / 4 = 120 gradients each.
    assert [(r["n"], r["rule"]) for r in rows] == [
        (n, rule) for n in (1, 2, 4) for rule in ("constant", "inverse-staleness")
    ]
    assert {"n", "rule", "mean_staleness", "test_accuracy"} <= set(rows[0])
    assert (out / "staleness_lr.png").is_file() and (out / "staleness_lr.csv").is_file()
    assert (out / "checkpoints" / "n4-inverse-staleness.pt").is_file()
    # --resume finds every replay finished and reports the same rows.
    assert main([*argv, "--out", str(out), "--json", "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["rows"] == rows

    argv = ["train", "error-runtime", "--learners", "4", "--target-error", "100", *quick]
    assert main([*argv, "--out", str(tmp_path / "e"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["summary"]["rows"]
    assert [r["protocol"] for r in rows] == [
        "sync", "k-sync(k=2)", "k-sync(k=4)", "k-async(k=4)", "async",
    ]  # fmt: skip
    assert all(r["time_to_target"] == 0.0 and 0 <= r["test_accuracy"] <= 1 for r in rows)
    assert (tmp_path / "e" / "k-sync-k-2_evals.csv").is_file()
    assert main(["train", "error-runtime", "--learners", "0", *quick]) == 2
    assert "--learners: must be >= 1, got 0" in capsys.readouterr().err
