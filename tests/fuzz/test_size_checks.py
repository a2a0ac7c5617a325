"""The size checks at each allocation point, through the Python API, against a small
``DLSYS_MEMORY_LIMIT``: each estimate is checked against hand arithmetic or against what the
code then really holds, and a request just over the limit is refused naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dlsys.analytics.biasvar.decomposition import draw_datasets
from dlsys.simulator import load_scenario
from dlsys.simulator.limits import LEARNER_BYTES, ROW_BYTES, check_run, expected_rows
from dlsys.simulator.scenario import scenario_from_dict
from dlsys.training.models import build_model
from dlsys.training.replay.schedule import load_schedule

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"


def _limit(monkeypatch: pytest.MonkeyPatch, nbytes: int) -> None:
    monkeypatch.setenv("DLSYS_MEMORY_LIMIT", str(nbytes))


def _learners(count: int, **sim: object) -> dict[str, object]:
    return {
        "simulation": {"until_updates": 10, **sim},
        "learner": [
            {"name": "a", "count": count, "compute": {"dist": "exponential", "rate": 1.0}},
            {"name": "b", "count": count, "compute": {"dist": "exponential", "rate": 2.0}},
        ],
    }


def test_learner_count_and_total(monkeypatch: pytest.MonkeyPatch) -> None:
    # 100 learners x 4096 bytes = 409600 bytes: one table fits under 500 kB, two do not.
    _limit(monkeypatch, 500_000)
    with pytest.raises(ValueError, match=r"^learner: 200 learners in all at 4.1 kB each"):
        scenario_from_dict(_learners(100))
    with pytest.raises(ValueError, match=r"^learner\[0\]\.count: 200 learners at 4.1 kB"):
        scenario_from_dict(_learners(200))
    assert scenario_from_dict(_learners(50)).n == 100  # 100 x 4096 = 409600 <= 500000


def test_rows_per_protocol() -> None:
    """until_updates x rows per update: 1 for async, n for sync (4 learners: 4 rows each)."""
    sync = load_scenario(EXAMPLES / "sync.toml").replace(until_updates=1000)
    assert expected_rows(sync) == (4000.0, "until_updates")
    asyn = load_scenario(EXAMPLES / "async_exponential.toml").replace(until_updates=1000)
    assert expected_rows(asyn) == (1000.0, "until_updates")


def test_until_time_rows_from_the_gradient_rate() -> None:
    # 4 learners at rate 2/s and 4 at rate 1/s: 12 gradients a second, x 100 s + 8 in flight.
    sc = load_scenario(EXAMPLES / "async_exponential.toml").replace(
        until_updates=None, until_time=100
    )
    assert expected_rows(sc) == (1208.0, "until_time")


def test_homework_budget_bounds_the_rows() -> None:
    # No until_*: L1 has 4 durations and L2 has 2, so 6 rows at most.
    assert expected_rows(load_scenario(EXAMPLES / "homework_two_learners.toml")) == (
        6.0,
        "learner.max_gradients",
    )


def test_run_check_just_over_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    sc = load_scenario(EXAMPLES / "async_exponential.toml").replace(until_updates=1000)
    need = 8 * LEARNER_BYTES + 1000 * ROW_BYTES  # 32768 + 336000 = 368768 bytes
    _limit(monkeypatch, need)
    check_run(sc)
    _limit(monkeypatch, need - 1)
    with pytest.raises(ValueError, match=r"^simulation\.until_updates: a trace of about 1000"):
        check_run(sc)
    with pytest.raises(ValueError, match=r"use a smaller until_updates or until_time$"):
        check_run(sc, trace=False)


def test_biasvar_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    # 50 points: 40 train, 10 test; 400 + 8 x (80 + 10) + 32 x 10 = 1440 bytes a data set,
    # 1000 sets = 1440000 bytes, plus 16 x 50 = 800 for the grid: 1440800 bytes.
    _limit(monkeypatch, 1_440_800)
    draw_datasets(lambda x: x, 0.1, n_datasets=1000, n_points=50)
    _limit(monkeypatch, 1_440_799)
    with pytest.raises(ValueError, match=r"^n_datasets: 1000 data sets of 50 points at 1.4 kB"):
        draw_datasets(lambda x: x, 0.1, n_datasets=1000, n_points=50)


def test_mlp_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    # mlp:100 on 1x28x28, 10 classes: (784 + 1) x 100 + (100 + 1) x 10 = 79510 parameters,
    # the count torch gives; x 16 bytes = 1272160 bytes.
    model = build_model("mlp:100")
    assert sum(p.numel() for p in model.parameters()) == 79510
    _limit(monkeypatch, 1_272_159)
    with pytest.raises(ValueError, match=r"^--model: 'mlp:100' with 79510 parameters"):
        build_model("mlp:100")


@pytest.mark.parametrize(
    ("name", "held"),
    [("homework_two_learners", 2), ("async_exponential", 8), ("ssp", 4), ("sync", 1)],
)
def test_replay_versions_held_match_the_replay(name: str, held: int) -> None:
    """The estimate before the run equals what the replay engine then holds at most."""
    from dlsys.training.replay.engine import Replayer
    from dlsys.training.replay.optimizer import PSOptimizer

    sched = load_schedule(EXAMPLES / f"{name}.toml", until_updates=60)
    assert sched.versions_held() == held
    model = torch.nn.Linear(3, 2)
    x, y = torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)
    rp = Replayer(
        sched, model, torch.nn.functional.cross_entropy, lambda i, s: (x, y), PSOptimizer(0.1)
    )
    while not rp.done:
        rp.step()
    assert rp.max_versions == held


def test_replay_versions_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from dlsys.training.replay.engine import Replayer
    from dlsys.training.replay.optimizer import PSOptimizer

    sched = load_schedule(EXAMPLES / "async_exponential.toml", until_updates=60)
    model = torch.nn.Linear(100, 10)  # 1010 float32 parameters = 4040 bytes a version
    x, y = torch.zeros(4, 100), torch.zeros(4, dtype=torch.long)
    _limit(monkeypatch, 8 * 4040 - 1)
    with pytest.raises(ValueError, match=r"^source: 8 weight versions held at once \(4.0 kB"):
        Replayer(
            sched, model, torch.nn.functional.cross_entropy, lambda i, s: (x, y), PSOptimizer(0.1)
        )


def test_sweep_grid_x_replications(monkeypatch: pytest.MonkeyPatch) -> None:
    from dlsys.simulator.limits import SWEEP_POINT_BYTES, SWEEP_RUN_BYTES, check_sweep

    # 3 points x 1000 replications: 3 x 8192 + 3000 x 1024 = 24576 + 3072000 = 3096576 bytes.
    assert 3 * SWEEP_POINT_BYTES + 3000 * SWEEP_RUN_BYTES == 3_096_576
    _limit(monkeypatch, 3_096_576)
    check_sweep(3, 1000)
    _limit(monkeypatch, 3_096_575)
    with pytest.raises(ValueError, match=r"^grid x replications: 3 grid points x 1000 "):
        check_sweep(3, 1000)
