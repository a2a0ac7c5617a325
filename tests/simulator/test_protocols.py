"""Every protocol, run from its example scenario, checked against its definition."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dlsys.simulator import (
    Exponential,
    Fixed,
    Learner,
    Protocol,
    Scenario,
    load_scenario,
    simulate,
)
from dlsys.simulator.engine import APPLIED, CANCELLED, DROPPED

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"


def run(name: str, updates: int = 600, **kw):
    return simulate(load_scenario(EXAMPLES / name), until_updates=updates, **kw)


def per_update(res) -> dict[int, list[int]]:
    """PS version -> row indices of the gradients applied to it."""
    tr = res.trace
    out: dict[int, list[int]] = {}
    for j in np.flatnonzero(tr["status"] == APPLIED).tolist():
        out.setdefault(int(tr["version"][j]), []).append(j)
    return out


def test_every_protocol_has_an_example():
    from dlsys.simulator import PROTOCOLS

    kinds = {load_scenario(p).protocol.kind for p in EXAMPLES.glob("*.toml")}
    assert set(PROTOCOLS) <= kinds


def test_async_one_gradient_per_update_and_reads_own_update():
    res = run("async_exponential.toml")
    tr = res.trace
    assert tr["version"].tolist() == list(range(600))
    # Each learner's next gradient reads the version right after its previous update.
    for i in range(8):
        rows = np.flatnonzero(tr["learner"] == i)
        assert np.all(tr["read_version"][rows[1:]] == tr["version"][rows[:-1]] + 1)


def test_sync_barrier_over_all_learners():
    res = run("sync.toml", 200)
    tr = res.trace
    groups = per_update(res)
    assert len(groups) == 200
    for v, rows in groups.items():
        assert sorted(tr["learner"][rows].tolist()) == [0, 1, 2, 3]  # every learner once
        assert set(tr["read_version"][rows].tolist()) == {v}  # staleness 0
        # the update happens when the slowest gradient arrives
        assert np.all(tr["t_apply"][rows] == tr["t_done"][rows].max())
    assert res.summary["staleness"]["max"] == 0


def test_k_sync_first_k_of_n_and_the_rest_cancelled():
    res = run("k_sync.toml", 200)  # k = 2 of n = 4
    tr = res.trace
    for v, rows in per_update(res).items():
        assert len(rows) == 2 and len(set(tr["learner"][rows].tolist())) == 2
        assert set(tr["read_version"][rows].tolist()) == {v}
    # n - k = 2 cancelled per update, except the last update (the run stops there).
    assert res.summary["gradients_cancelled"] == 2 * 199
    cancelled = tr["status"] == CANCELLED
    # A cancelled gradient stops at the update that made it useless.
    applied_times = set(tr["t_apply"][tr["status"] == APPLIED].tolist())
    assert set(tr["t_done"][cancelled].tolist()) <= applied_times


def test_k_batch_sync_first_k_minibatches_from_any_learners():
    res = run("k_batch_sync.toml", 300)  # k = 3, n = 4
    tr = res.trace
    repeat = 0
    for v, rows in per_update(res).items():
        assert len(rows) == 3
        assert set(tr["read_version"][rows].tolist()) == {v}
        repeat += len(rows) - len(set(tr["learner"][rows].tolist()))
    # Learners keep computing on the same weights, so some updates hold two mini-batches
    # of one learner (P(a given update has a repeat) is large for n = 4, k = 3).
    assert repeat > 0
    assert res.summary["staleness"]["max"] == 0


def test_k_async_k_distinct_learners_and_stragglers_keep_computing():
    res = run("k_async.toml", 400)  # k = 2, n = 4
    tr = res.trace
    for _v, rows in per_update(res).items():
        assert len(rows) == 2 and len(set(tr["learner"][rows].tolist())) == 2
    assert res.summary["gradients_cancelled"] == 0 and res.summary["gradients_dropped"] == 0
    # Stragglers are not cancelled: their gradients arrive stale.
    assert res.summary["staleness"]["max"] >= 1


def test_k_batch_async_k_gradients_and_pull_after_each_push():
    res = run("k_batch_async.toml", 400)  # k = 2, n = 4
    tr = res.trace
    for _v, rows in per_update(res).items():
        assert len(rows) == 2
    # After each push a learner reads at once: its next read time is its previous t_done.
    for i in range(4):
        rows = np.flatnonzero(tr["learner"] == i)
        order = rows[np.argsort(tr["seq"][rows])]
        assert np.all(tr["t_read"][order[1:]] == tr["t_done"][order[:-1]])


def test_softsync_c_gradients_per_update_and_staleness_aware_lr():
    res = run("softsync.toml", 400)  # c = 4, n = 8, lr alpha / max(staleness, 1), alpha 0.1
    tr = res.trace
    assert all(len(r) == 4 for r in per_update(res).values())
    st = tr["staleness"]
    expect = 0.1 / np.maximum(st, 1)
    assert np.array_equal(tr["lr"], expect)
    assert tr["lr"][st == 0][0] == 0.1  # staleness 0 is treated as 1


def test_ssp_fastest_waits_when_more_than_s_ahead():
    # 3 fast learners (rate 4/s) and one slow (1/s), s = 2: a learner that has pushed c
    # gradients may start its next one only if c - min(pushed by others) <= s.
    res = run("ssp.toml", 800)
    tr = res.trace
    s = 2
    arrive = tr["t_arrive"]
    for j in range(len(tr)):
        c = int(tr["seq"][j]) - 1  # gradients this learner pushed before this one
        t = tr["t_read"][j]
        pushed = [int(np.count_nonzero((tr["learner"] == o) & (arrive <= t))) for o in range(4)]
        assert c - min(pushed) <= s, (j, c, pushed)
    # The bound binds: the fast learners are held back to ~the slow one's pace.
    counts = Counter(tr["learner"].tolist())
    assert max(counts.values()) - min(counts.values()) <= s + 1


def test_ssp_with_a_loose_bound_is_async():
    base = load_scenario(EXAMPLES / "ssp.toml").replace(until_updates=300)
    a = simulate(base.replace(protocol=Protocol("ssp", s=10**9)))
    b = simulate(base.replace(protocol=Protocol("async")))
    assert a.trace.csv_text() == b.trace.csv_text()


def test_backup_first_n_current_gradients_rest_dropped():
    res = run("backup.toml", 300)  # n = 5, b = 1 -> N = 4
    tr = res.trace
    for v, rows in per_update(res).items():
        assert len(rows) == 4 and len(set(tr["learner"][rows].tolist())) == 4
        assert set(tr["read_version"][rows].tolist()) == {v}
    dropped = tr["status"] == DROPPED
    assert np.count_nonzero(dropped) > 0
    assert res.summary["gradients_cancelled"] == 0  # backup workers are not interrupted


def test_k_out_of_range_rejected():
    ls = tuple(Learner(f"w{i}", Exponential(1.0)) for i in range(3))
    with pytest.raises(
        ValueError, match=r"protocol\.k: must be <= the number of learners \(3\), got 4"
    ):
        Scenario(learners=ls, protocol=Protocol("k-sync", k=4), until_updates=5)


def test_service_time_queues_updates_fifo():
    # Two learners finish together at t = 1; service 0.25 s per update: applied at 1.25, 1.5.
    sc = Scenario(
        learners=(Learner("A", Fixed(1), max_gradients=1), Learner("B", Fixed(1), max_gradients=1)),
        service_time=0.25,
    )
    res = simulate(sc)
    assert res.trace["t_apply"].tolist() == [1.25, 1.5]
    assert res.trace["learner_name"].tolist() == ["A", "B"]
    # B waited 0.25 s for A's update: mean wait (0 + 0.25) / 2
    assert res.summary["ps"]["queue_wait_mean"] == 0.125
