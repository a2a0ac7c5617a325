"""Learners' compute time from the cost model: the [model] table and dist = "model"."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlsys.analytics import cost
from dlsys.analytics.roofline import roofline
from dlsys.cli.main import main
from dlsys.simulator import scenario_from_dict, simulate
from dlsys.simulator.model_compute import ModelTime

MODEL = {"name": "cnn", "input": [1, 28, 28], "batch": 16, "device": "a100"}


def sc(model=MODEL, compute=None, **extra):
    d = {
        "simulation": {"protocol": "sync", "until_updates": 5},
        "learner": [{"name": "w", "count": 4, "compute": compute or {"dist": "model"}}],
        **extra,
    }
    if model is not None:
        d["model"] = model
    return scenario_from_dict(d)


def test_step_time_is_the_rooflines_forward_plus_backward():
    s = sc()
    est = roofline(cost("cnn", input_shape=(1, 28, 28), batch=16), "a100")
    assert s.model is not None
    assert s.model.step_seconds == est.forward_s + est.backward_s
    # cnn (the 7x7 CNN): 3,200 + 77,450 = 80,650 parameters, 4 bytes each = 322,600 bytes.
    assert s.model.params == 80_650 and s.model.message_bytes == 322_600
    assert all(lrn.message_bytes == 322_600 for lrn in s.learners)
    # An explicit network.message_bytes wins over the model's.
    s2 = sc(network={"message_bytes": 8})
    assert all(lrn.message_bytes == 8 for lrn in s2.learners)


def test_fixed_model_time_sets_the_sync_round():
    # cv = 0: every step is exactly `step`; sync with pull and push of 322,600 bytes at
    # 1e9 B/s each (322.6 us) gives rounds of step + 2 * 322.6e-6 seconds.
    s = sc(network={"bandwidth": 1e9})
    res = simulate(s)
    step = s.model.step_seconds  # type: ignore[union-attr]
    t = res.trace["t_apply"]
    assert np.diff(np.unique(t)) == pytest.approx(step + 2 * 322.6e-6, rel=1e-9)
    assert res.summary["model"]["step_seconds"] == step
    assert res.summary["model"]["message_bytes"] == 322_600


def test_noise_has_mean_step_and_the_given_cv():
    # Lognormal noise of mean 1 and coefficient of variation 0.2, speed 2 halves the step.
    d = ModelTime(0.5, speed=2.0, cv=0.2)
    draw = d.block_sampler(np.random.default_rng(0))
    x = np.concatenate([draw() for _ in range(32)])  # blocks of 16, 32, ..., 4096
    assert len(x) > 100_000
    assert d.mean == 0.25
    assert x.mean() == pytest.approx(0.25, rel=0.02)
    assert x.std() / x.mean() == pytest.approx(0.2, rel=0.05)
    assert ModelTime(0.5, cv=0.0).block_sampler(np.random.default_rng(0))().tolist()[:3] == [
        0.5, 0.5, 0.5,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"model": {**MODEL, "name": "cnnn"}}, "model.name: unknown model 'cnnn'; did you mean"),
        (
            {"model": {**MODEL, "name": "mnist_cnn", "input": [3, 32, 32]}},
            "model.input: layer 'fc': expects 1568 input features, got 2048",
        ),
        ({"model": {**MODEL, "device": "a10"}}, "model.device: unknown device 'a10'"),
        ({"model": {**MODEL, "batch": 0}}, "model.batch: must be >= 1"),
        ({"model": {**MODEL, "gpu": 1}}, "model: unknown key 'gpu'"),
        ({"model": None}, 'learner[0].compute.dist: "model" needs a [model] table'),
        ({"compute": {"dist": "model", "speed": 0}}, "learner[0].compute.speed: must be > 0"),
        ({"compute": {"dist": "model", "cv": -0.1}}, "learner[0].compute.cv: must be >= 0"),
        ({"compute": {"dist": "model", "rate": 1}}, "unknown key for dist 'model' 'rate'"),
    ],
)
def test_bad_model_tables(kw, message):
    with pytest.raises(ValueError) as err:
        sc(**kw)
    assert message in str(err.value)


def test_cli(tmp_path, capsys):
    f = tmp_path / "m.toml"
    f.write_text(
        "[simulation]\nuntil_updates = 20\n"
        '[model]\nname = "cnn"\ninput = [1, 28, 28]\nbatch = 16\ndevice = "h100"\n'
        '[[learner]]\nname = "w"\ncount = 8\ncompute = { dist = "model", speed = 1.0, cv = 0.2 }\n'
    )
    assert main(["simulate", str(f), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["model"]["message_bytes"] == 322_600 and summary["model"]["step_seconds"] > 0
    f.write_text(f.read_text().replace('"h100"', '"tpu"'))
    assert main(["simulate", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dlsys: error: model.device: unknown device 'tpu'")


def test_device_overrides_make_the_step_reproducible():
    # peak_flops and memory_bandwidth replace the preset's numbers, as roofline()'s overrides.
    s = sc({**MODEL, "device": "cpu", "peak_flops": 1e12, "memory_bandwidth": 1e11})
    est = roofline(
        cost("cnn", input_shape=(1, 28, 28), batch=16), "a100", peak_flops=1e12, bandwidth=1e11
    )
    assert s.model is not None and s.model.step_seconds == est.forward_s + est.backward_s
    with pytest.raises(ValueError, match=r"model\.peak_flops: must be > 0"):
        sc({**MODEL, "peak_flops": 0})
