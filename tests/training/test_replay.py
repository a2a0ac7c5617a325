"""Replay of parameter-server schedules: the three exactness tests, memory, sources, resume."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dlsys.simulator import Fixed, Learner, Protocol, Scenario, simulate
from dlsys.training import TrainConfig, load_dataset, train
from dlsys.training.replay import (
    PSOptimizer,
    ReplayConfig,
    Replayer,
    SampleStreams,
    initial_model,
    load_schedule,
    read_trace_csv,
    replay,
)

ROOT = Path(__file__).resolve().parents[2]
HOMEWORK = ROOT / "examples" / "scenarios" / "homework_two_learners.toml"


@pytest.fixture(scope="module")
def data():
    # synthetic: 600 images, 480 train after the 8:2 split (a multiple of 16), 200 test.
    return load_dataset("synthetic", seed=3)


def scenario(n: int, protocol: Protocol, updates: int, times: list[int] | None = None) -> Scenario:
    times = times or [1] * n
    learners = [Learner(f"w-{i}", Fixed(times[i])) for i in range(n)]
    return Scenario(tuple(learners), protocol=protocol, until_updates=updates)


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach() for p in model.parameters()]


# ----------------------------------------------------------------------------- exactness


@pytest.mark.parametrize(
    ("model", "kernels", "updates"), [("mlp:32", "torch", 60), ("cnn", "dlsys", 4)]
)
def test_one_learner_replays_bit_for_bit_as_train(data, model: str, kernels: str, updates: int):
    # (a) One learner, staleness 0 throughout: the replay must be dlsys.training's own run
    # (same initial weights, same batches, same SGD arithmetic), to the bit. 480 / 16 = 30
    # batches per epoch, so 60 updates are two of train's epochs.
    hp = dict(model=model, lr=0.05, momentum=0.9, weight_decay=1e-3, seed=3, kernels=kernels)
    ref = train(
        TrainConfig(**hp, epochs=2, batch_size=16, max_updates=updates, track_test=False), data
    )
    sched = load_schedule(simulate(scenario(1, Protocol("async"), updates)))
    assert sched.staleness.max() == 0 and sched.updates == updates
    got = replay(sched, ReplayConfig(**hp, per_learner_batch=16, eval_every=1000), data)
    assert [h["train_loss"] for h in got.history] == [s["loss"] for s in ref.steps]
    assert ref.model is not None and got.model is not None
    for a, b in zip(weights(ref.model), got.model.params.values(), strict=True):
        assert torch.equal(a, b)
    assert got.max_weight_versions == 1


def test_sync_n_learners_equals_one_learner_with_n_times_the_batch(data):
    # (b) sync: each update averages n gradients of mu samples, all read at the current
    # version; that is one gradient of the mean loss over the n * mu samples.
    n, mu, updates = 4, 8, 12
    cfg = ReplayConfig(
        model="mlp:16", per_learner_batch=mu, lr=0.2, momentum=0.5, seed=1, kernels="torch"
    )
    sched = load_schedule(simulate(scenario(n, Protocol("sync"), updates, [1, 2, 3, 5])))
    assert sched.updates == updates and len(sched) == n * updates
    got = replay(sched, cfg, data)
    # The reference: plain torch SGD on the concatenated samples of the same streams.
    model = initial_model(cfg, data)
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.5)
    streams = SampleStreams(int(data.train_x.shape[0]), mu, cfg.seed)
    for v in range(updates):
        idx = torch.cat([streams.indices(i, v + 1) for i in range(n)])
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
        loss.backward()
        opt.step()
    assert got.model is not None
    for a, b in zip(weights(model), got.model.params.values(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert got.max_weight_versions == 1


def _homework_replay(rule: str) -> list[list[float]]:
    # (c) The homework trace on w in R^2 (no bias), loss 0.5 * (w.x - y)^2, so the gradient
    # of one sample is (w.x - y) * x. Update v applies g[L1,1], g[L1,2], g[L2,1], g[L1,3],
    # g[L1,4], g[L2,2] in that order, read at versions 0, 1, 0, 2, 4, 3 (staleness 0, 0, 2,
    # 1, 0, 2).
    sched = load_schedule(HOMEWORK)
    assert sched.learners == ("L1", "L2")
    assert sched.staleness.tolist() == [0, 0, 2, 1, 0, 2]
    e1, e2, both = (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)
    samples = {
        ("L1", 1): (e1, 2.0),
        ("L1", 2): (e2, 4.0),
        ("L1", 3): (e1, 2.0),
        ("L1", 4): (e2, 4.0),
        ("L2", 1): (both, 6.0),
        ("L2", 2): (both, 6.0),
    }

    def batch(learner: int, seq: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = samples[(sched.learners[learner], seq)]
        return torch.tensor([x], dtype=torch.float64), torch.tensor([y], dtype=torch.float64)

    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.zero_()

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((out[:, 0] - y) ** 2).mean()

    rep = Replayer(sched, model, loss_fn, batch, PSOptimizer(0.5, rule))
    out = []
    while not rep.done:
        rep.step()
        out.append(rep.params()["weight"][0].tolist())
    assert rep.max_versions == 2  # e.g. W0 (read by g[L2,1]) beside W1 after update 0
    return out


def test_homework_trace_by_hand_constant_rate():
    # alpha = 0.5, W0 = (0, 0):
    # U0: g[L1,1] at W0: (0 - 2) e1 = (-2, 0)             -> W1 = (1, 0)
    # U1: g[L1,2] at W1: (0 - 4) e2 = (0, -4)             -> W2 = (1, 2)
    # U2: g[L2,1] at W0: (0 - 6)(1, 1) = (-6, -6)         -> W3 = (1 + 3, 2 + 3) = (4, 5)
    # U3: g[L1,3] at W2: (1 - 2) e1 = (-1, 0)             -> W4 = (4.5, 5)
    # U4: g[L1,4] at W4: (5 - 4) e2 = (0, 1)              -> W5 = (4.5, 4.5)
    # U5: g[L2,2] at W3: (4 + 5 - 6)(1, 1) = (3, 3)       -> W6 = (3, 3)
    assert _homework_replay("constant") == [
        [1.0, 0.0], [1.0, 2.0], [4.0, 5.0], [4.5, 5.0], [4.5, 4.5], [3.0, 3.0],
    ]  # fmt: skip


def test_homework_trace_by_hand_inverse_staleness():
    # alpha / max(tau, 1) = 0.5, 0.5, 0.25, 0.5, 0.5, 0.25 for tau = 0, 0, 2, 1, 0, 2:
    # U0, U1 as above                                      -> W1 = (1, 0), W2 = (1, 2)
    # U2: 0.25 * (-6, -6)                                  -> W3 = (2.5, 3.5)
    # U3: g[L1,3] at W2 = (-1, 0), 0.5                     -> W4 = (3, 3.5)
    # U4: g[L1,4] at W4: (3.5 - 4) e2 = (0, -0.5), 0.5     -> W5 = (3, 3.75)
    # U5: g[L2,2] at W3: (2.5 + 3.5 - 6)(1, 1) = (0, 0)    -> W6 = (3, 3.75)
    assert _homework_replay("inverse-staleness") == [
        [1.0, 0.0], [1.0, 2.0], [2.5, 3.5], [3.0, 3.5], [3.0, 3.75], [3.0, 3.75],
    ]  # fmt: skip


def test_rates_and_averaging_of_one_update():
    # Two gradients g1 = (2, 4) at staleness 1 and g2 = (6, 8) at staleness 3; alpha = 0.6.
    # inverse-power with a = 1: 0.6 / 2 = 0.3 and 0.6 / 4 = 0.15, i.e. 0.5 and 0.25 of alpha:
    # G = (0.5 * (2, 4) + 0.25 * (6, 8)) / 2 = ((1 + 1.5) / 2, (2 + 2) / 2) = (1.25, 2).
    opt = PSOptimizer(0.6, "inverse-power", power=1.0)
    assert opt.rates([1, 3]).tolist() == pytest.approx([0.3, 0.15])
    g1, g2 = [torch.tensor([2.0, 4.0])], [torch.tensor([6.0, 8.0])]
    (G,) = opt.combine([g1, g2], [1, 3])
    assert G.tolist() == pytest.approx([1.25, 2.0])
    # One gradient at rate alpha is passed through untouched (same tensor).
    assert PSOptimizer(0.6).combine([g1], [5])[0] is g1[0]


# ----------------------------------------------------------------------------- memory


def test_async_holds_at_most_learners_plus_one_versions(data):
    # 8 learners with compute times 1..8 s: every in-flight gradient pins its read version.
    sc = scenario(8, Protocol("async"), 200, [1, 2, 3, 4, 5, 6, 7, 8])
    sched = load_schedule(simulate(sc))
    cfg = ReplayConfig(model="mlp:8", per_learner_batch=4, lr=0.05, kernels="torch")
    got = replay(sched, cfg, data)
    assert 2 <= got.max_weight_versions <= 8 + 1
    assert got.max_weight_versions == _max_live_versions(sched)


def _max_live_versions(sched) -> int:
    # Independent count: after update v, version r is live if r == v + 1 or some gradient
    # applied later than v reads it.
    best = 1
    for v in range(sched.updates):
        later = set(sched.read_version[sched.version > v].tolist())
        best = max(best, len({r for r in later if r <= v} | {v + 1}))
    return best


def test_lost_and_cancelled_gradients_are_not_applied_but_use_their_batch(data):
    # k-sync(k=2) of 4 learners: two of the four gradients of each round are cancelled
    # (the run stops at update 10 with the last round's two still computing: 9 * 2 = 18).
    sched = load_schedule(simulate(scenario(4, Protocol("k-sync", k=2), 10, [1, 2, 3, 4])))
    assert len(sched) == 20 and sched.not_applied["cancelled"] == 18
    # Learners 0 and 1 always win; their r-th gradient is their r-th batch. Learners 2 and 3
    # never land one, and the replay applies exactly the 20 applied gradients.
    assert sched.seq[sched.learner == 0].tolist() == list(range(1, 11))
    assert set(sched.learner.tolist()) == {0, 1}
    got = replay(sched, ReplayConfig(model="mlp:8", per_learner_batch=4, kernels="torch"), data)
    assert got.gradients_applied == 20 and got.updates == 10


def test_streams_are_per_learner_and_protocol_independent():
    s1, s2 = SampleStreams(100, 8, seed=5), SampleStreams(100, 8, seed=5)
    # Drawn in different orders (as two protocols would), the batches are the same.
    a = [s1.indices(i, j).tolist() for i in range(3) for j in range(1, 30)]
    b = {(i, j): s2.indices(i, j).tolist() for j in reversed(range(1, 30)) for i in range(3)}
    assert a == [b[(i, j)] for i in range(3) for j in range(1, 30)]
    # 100 // 8 = 12 full batches per epoch: the first 12 of an epoch are distinct samples.
    first = torch.cat([s1.indices(0, j) for j in range(1, 13)])
    assert len(set(first.tolist())) == 96
    assert s1.indices(0, 1).tolist() != s1.indices(1, 1).tolist()


# ----------------------------------------------------------------------------- sources


def test_trace_csv_replays_as_the_result_it_came_from(data, tmp_path):
    res = simulate(ROOT / "examples" / "scenarios" / "softsync.toml", until_updates=15)
    path = tmp_path / "trace.csv"
    path.write_text(res.trace.csv_text())
    a, b = load_schedule(res), load_schedule(path)
    assert a.fingerprint() == b.fingerprint()
    assert a.learners == tuple(f"worker-{i}" for i in range(8))
    cfg = ReplayConfig(model="mlp:8", per_learner_batch=4, kernels="torch", eval_every=5)
    ra, rb = replay(a, cfg, data), replay(b, cfg, data)
    assert ra.summary(wall_clock=False)["history"] == rb.summary(wall_clock=False)["history"]
    # Mean staleness of softsync(c=4) in the trace: what the replay reports.
    assert ra.mean_staleness == pytest.approx(float(res.trace["staleness"][:60].mean()))


def test_natural_learner_order(tmp_path):
    rows = ["learner,seq,read_version,version,t_apply,status"]
    rows += ["w-10,1,0,0,1.0,applied", "w-2,1,0,1,2.0,applied", "w-9,1,-1,-1,,lost"]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    s = read_trace_csv(tmp_path / "t.csv")
    assert s.learners == ("w-2", "w-9", "w-10")
    assert s.learner.tolist() == [2, 0] and s.not_applied == {
        "lost": 1, "cancelled": 0, "dropped": 0,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["learner,seq,version,t_apply,status"], "missing column 'read_version'"),
        (["A,1,0,0,1.0,applied", "A,2,1,2,2.0,applied"], "no gradient applied at version 1"),
        (["A,1,0,1,1.0,applied"], "applied versions start at 1"),
        (["A,1,0,0,1.0,applied", "A,1,0,1,2.0,applied"], "appears twice"),
        (["A,1,1,0,1.0,applied"], "read_version must be in [0, version]"),
        (["A,1,0,0,1.0,done"], "status must be one of"),
        (["A,x,0,0,1.0,applied"], "seq must be an integer"),
        (["A,1,0,0,,applied"], "t_apply missing"),
        # seq 10**12 would draw 10**12 mini-batches before its gradient (a hang); 2 rows here
        (["A,1,0,0,1.0,applied", "A,1000000000000,0,1,2.0,applied"], "larger than the trace's 2"),
        (["A,1,-1,-1,,lost"], "no applied gradients"),
    ],
)
def test_bad_traces_name_the_problem(tmp_path, rows: list[str], message: str):
    head = (
        [] if rows[0].startswith("learner") else ["learner,seq,read_version,version,t_apply,status"]
    )
    (tmp_path / "t.csv").write_text("\n".join(head + rows) + "\n")
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_trace_csv(tmp_path / "t.csv")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"per_learner_batch": 0}, "per_learner_batch: must be >= 1"),
        ({"lr_rule": "inverse-stalness"}, "did you mean 'inverse-staleness'"),
        ({"lr": -1.0}, "lr: must be > 0"),
        ({"momentum": 1.0}, r"momentum: must be in \[0, 1\)"),
        ({"eval_every": 0}, "eval_every: must be >= 1"),
    ],
)
def test_bad_config(kw, message):
    with pytest.raises(ValueError, match=message):
        ReplayConfig(**kw)


def test_batch_larger_than_training_set(data):
    sched = load_schedule(HOMEWORK)
    with pytest.raises(
        ValueError, match=r"per_learner_batch: must be <= the training set size \(480\)"
    ):
        replay(sched, ReplayConfig(per_learner_batch=481, kernels="torch"), data)


# ----------------------------------------------------------------------------- resume


def test_resume_equals_an_uninterrupted_run(data, tmp_path):
    sched = load_schedule(ROOT / "examples" / "scenarios" / "softsync.toml", until_updates=20)
    cfg = ReplayConfig(
        model="mlp:16", per_learner_batch=4, lr=0.1, momentum=0.9, kernels="torch", eval_every=5
    )
    full = replay(sched, cfg, data)
    ck = tmp_path / "replay.pt"
    part = replay(sched, cfg, data, checkpoint=ck, on_update=lambda r: r.version == 6)
    assert part.updates == 7
    rest = replay(sched, cfg, data, checkpoint=ck, resume=True)
    assert rest.summary(wall_clock=False) == full.summary(wall_clock=False)
    assert full.model is not None and rest.model is not None
    for a, b in zip(full.model.params.values(), rest.model.params.values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"different replay: replay\.lr"):
        replay(
            sched, ReplayConfig(**{**cfg.to_dict(), "lr": 0.2}), data, checkpoint=ck, resume=True
        )


def test_exact_times_survive_as_floats():
    # Fractions in the simulator become the float t_apply the plots use.
    sc = scenario(1, Protocol("async"), 3, [Fraction(1, 3)])  # type: ignore[list-item]
    sched = load_schedule(simulate(sc))
    assert sched.t_apply.tolist() == [1 / 3, 2 / 3, 1.0]
    assert np.all(np.diff(sched.t_apply) > 0)


def test_history_every_and_divergence(data):
    sched = load_schedule(simulate(scenario(2, Protocol("async"), 23, [1, 2])))
    cfg = ReplayConfig(model="mlp:8", per_learner_batch=4, kernels="torch", history_every=5)
    got = replay(sched, cfg, data)
    # Records of updates 5, 10, 15, 20 (version 4, 9, 14, 19) and the last one (version 22).
    assert [h["version"] for h in got.history] == [4, 9, 14, 19, 22]
    assert [e["update"] for e in got.evals] == [0, 23] and not got.diverged
    # An absurd rate blows the loss up to inf or NaN: the replay stops there and says so.
    bad = replay(sched, cfg.replace(lr=1e30, history_every=1), data)
    assert bad.diverged and bad.updates < 23
    assert bad.history[-1]["version"] == bad.updates - 1
    assert not np.isfinite(bad.history[-1]["train_loss"])
    assert bad.evals[-1]["update"] == bad.updates
