"""``dlsys ps run`` and ``dlsys ps compare`` end to end, and their bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlsys.cli.main import main
from dlsys.distributed.cluster import RaySession
from dlsys.training.replay import read_trace_csv

SCENARIO = """
[simulation]
seed = 2
protocol = "async"
until_updates = 20

[[learner]]
name = "w"
count = 3
compute = { dist = "exponential", rate = 20.0 }
"""


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    p = tmp_path / "small.toml"
    p.write_text(SCENARIO, encoding="utf-8")
    return p


def test_ps_run_json_and_files(
    ray_local: RaySession, scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["ps", "run", str(scenario), "--model", "mlp:32", "--per-learner-batch", "8"]
    code = main([*args, "--time-scale", "0.5", "--json", "--out", str(out)])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    s = doc["summary"]
    assert s["updates"] == 20 and s["learners"] == 3 and s["engine"]["name"] == "ray"
    assert s["time_scale"] == 0.5
    assert 0 <= s["staleness"]["mean"] <= s["staleness"]["max"]
    assert s["time_per_update"] > 0
    assert 0.0 <= doc["test_accuracy"] <= 1.0
    for name in ("trace.csv", "summary.json", "ps.json", "timeline.png", "staleness.png"):
        assert (out / name).is_file(), name
    # The trace is the simulator's schema: the replay reads it unchanged.
    sched = read_trace_csv(out / "trace.csv")
    assert sched.updates == 20


def test_ps_compare_reports_both_sides(
    ray_local: RaySession, scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    args = ["ps", "compare", str(scenario), "--model", "mlp:32", "--updates", "30"]
    assert main([*args, "--json", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["simulated"]["updates"] == doc["real"]["updates"] == 30
    assert 0.0 <= doc["tv_distance"] <= 1.0
    assert [r["learner"] for r in doc["real"]["per_learner"]] == ["w-0", "w-1", "w-2"]
    assert doc["why"]["ps_latency"] >= 0
    assert 0.0 <= doc["why"]["draws_below_round_trip"] <= 1.0
    # The noise floor is two simulations' distance: seed 2 (the scenario's) against seed 3.
    from dlsys.distributed.compare import tv_distance
    from dlsys.simulator import load_scenario, simulate

    sims = [simulate(load_scenario(scenario).replace(seed=s, until_updates=30)) for s in (2, 3)]
    want = tv_distance(*[r.trace["staleness"][r.trace["status"] == 0] for r in sims])
    assert doc["why"]["tv_noise_floor"] == want
    assert (out / "comparison.png").is_file() and (out / "comparison.json").is_file()


TOO_MANY = SCENARIO.replace("count = 3", "count = 65")


@pytest.mark.parametrize(
    ("extra", "text", "message"),
    [
        (["--time-scale", "0"], SCENARIO, "--time-scale: must be > 0, got 0.0"),
        (["--time-scale", "-1"], SCENARIO, "--time-scale: must be > 0, got -1.0"),
        (["--model", "mlpp"], SCENARIO, "unknown model 'mlpp'"),
        (["--dataset", "mnist"], SCENARIO, "--dataset mnist: needs a folder"),
        ([], TOO_MANY, "learner: the scenario has 65 learners"),
        (["--resume"], SCENARIO, "--resume: no checkpoint"),
        (["--updates", "0"], SCENARIO, "--updates: must be >= 1, got 0"),
        (["--address", "nowhere"], SCENARIO, "--address: expected HOST:PORT"),
    ],
)
def test_bad_input_exit_2_and_nothing_written(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    text: str,
    message: str,
) -> None:
    sc = tmp_path / "s.toml"
    sc.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["ps", "run", str(sc), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dlsys: error: ") and message in err and "\n" not in err
    assert not out.exists() or not any(p for p in out.rglob("*") if p.is_file())
