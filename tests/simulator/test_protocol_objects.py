"""The protocol objects on their own: the PS rule driven by hand with plain records, as a
real parameter server drives it (no SimPy), the learner rule, construction and pickling."""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest

from dlsys.simulator import PROTOCOLS, Gradient, Protocol
from dlsys.simulator.protocols import (
    CANCEL_ALL,
    CONTINUE,
    NO_WAKE,
    REUSE,
    SSP,
    WAIT,
    WAKE_ALL,
    WAKE_BATCH,
    KSync,
)


def g(learner: int, read_version: int = 0, seq: int = 1) -> Gradient:
    return Gradient(learner, seq, read_version, 0, 0, 1)


def test_protocol_builds_its_class_and_round_trips():
    p = Protocol("k-sync", k=2)
    assert type(p) is KSync and p == KSync(k=2) and p.label() == "k-sync(k=2)"
    assert type(Protocol()).__name__ == "Async"  # the default protocol
    assert pickle.loads(pickle.dumps(p)) == p
    assert replace(p, k=3) == Protocol("k-sync", k=3)
    assert set(PROTOCOLS) == {
        "async", "sync", "k-sync", "k-batch-sync", "k-async", "k-batch-async",
        "softsync", "ssp", "backup",
    }  # fmt: skip


def test_bad_protocols_name_the_field():
    with pytest.raises(ValueError, match="unknown protocol 'ksync'; did you mean 'k-sync'"):
        Protocol("ksync", k=2)
    with pytest.raises(ValueError, match=r"protocol.k: missing"):
        Protocol("k-sync")
    with pytest.raises(TypeError, match=r"protocol.k: must be an integer, got 1.5"):
        Protocol("k-async", k=1.5)
    with pytest.raises(ValueError, match=r"protocol.s: must be >= 0, got -1"):
        SSP(s=-1)
    with pytest.raises(ValueError, match=r"protocol.k: protocol 'async' takes no parameters"):
        Protocol("async", k=2)
    with pytest.raises(ValueError, match=r"protocol.b: must be < the number of learners \(3\)"):
        Protocol("backup", b=3).check_n(3)
    with pytest.raises(ValueError, match=r"protocol.kind: KSync is 'k-sync', got 'sync'"):
        KSync("sync", k=1)


def test_async_takes_one_gradient_in_arrival_order():
    q = [g(2), g(0)]
    t = Protocol("async").take(q, 0, {0, 1, 2}, 3)
    assert t is not None and t.update == [g(2)] and t.dropped == [] and q == [g(0)]
    assert Protocol("async").take([], 0, {0}, 1) is None


def test_batched_protocols_wait_for_k_gradients_from_anyone():
    p = Protocol("k-batch-async", k=2)
    q = [g(1, seq=1)]
    assert p.take(q, 0, {0, 1}, 2) is None and len(q) == 1
    q.append(g(1, seq=2))
    t = p.take(q, 0, {0, 1}, 2)
    assert t is not None and t.update == [g(1, seq=1), g(1, seq=2)] and q == []
    assert p.after_push == CONTINUE and p.on_update == NO_WAKE
    assert Protocol("softsync", c=2).after_push == CONTINUE


def test_k_async_needs_k_distinct_learners_and_keeps_the_rest():
    p = Protocol("k-async", k=2)
    q = [g(0, seq=1), g(0, seq=2), g(1)]
    t = p.take(q, 0, {0, 1, 2}, 3)
    assert t is not None and t.update == [g(0, seq=1), g(1)] and q == [g(0, seq=2)]
    assert p.take(q, 1, {0, 1, 2}, 3) is None


def test_sync_waits_for_every_live_learner():
    p = Protocol("sync")
    q = [g(0), g(2)]
    assert p.take(q, 0, {0, 1, 2}, 3) is None
    t = p.take(q, 0, {0, 2}, 3)  # learner 1 crashed: the barrier shrinks
    assert t is not None and t.update == [g(0), g(2)] and q == []
    assert p.on_update == WAKE_ALL and p.after_push == WAIT


def test_round_protocols_drop_stale_then_extra_gradients():
    # k-sync, k = 2, PS at version 3: the version-2 gradient is dropped at once, even though
    # no update forms yet; then the first two current ones form the update, the third is
    # dropped.
    p = Protocol("k-sync", k=2)
    q = [g(0, 2), g(1, 3)]
    t = p.take(q, 3, {0, 1, 2}, 3)
    assert t is not None and t.update is None and t.dropped == [g(0, 2)] and q == [g(1, 3)]
    q += [g(2, 3), g(0, 3)]
    t = p.take(q, 3, {0, 1, 2}, 3)
    assert t is not None and t.update == [g(1, 3), g(2, 3)] and t.dropped == [g(0, 3)]
    assert p.on_update == CANCEL_ALL
    assert Protocol("k-batch-sync", k=2).after_push == REUSE
    # backup with b = 1 of 3 learners needs n - b = 2 current gradients.
    b = Protocol("backup", b=1)
    q = [g(0, 0), g(1, 0)]
    t = b.take(q, 0, {0, 1, 2}, 3)
    assert t is not None and t.update == [g(0, 0), g(1, 0)] and b.on_update == WAKE_BATCH


def test_ssp_gate():
    p = Protocol("ssp", s=2)
    assert p.gated and not Protocol("async").gated
    assert p.may_start(5, 3) and not p.may_start(6, 3)  # 6 - 3 = 3 > s = 2
    assert p.may_start(6, None)  # no live learner to wait for
    assert Protocol("async").may_start(100, 0)


def _one(kind: str) -> Protocol:
    param = PROTOCOLS[kind]
    return Protocol(kind, **({param: 1} if param else {}))


@pytest.mark.parametrize("kind", list(PROTOCOLS))
def test_current_only_says_what_take_does_with_an_old_gradient(kind):
    # The event loop drops gradients read at an older version where the protocol object
    # says ``current_only``: that flag must be what ``take`` itself does. A gradient read
    # at version 0 reaches a PS at version 1 (two live learners, one gradient per update).
    proto = _one(kind)
    old = Gradient(learner=0, seq=1, read_version=0, t_read=0, t_start=0, t_done=1)
    queue = [old]
    take = proto.take(queue, version=1, live={0}, n=2)
    dropped = take is not None and old in take.dropped
    assert dropped == proto.current_only


@pytest.mark.parametrize("kind", list(PROTOCOLS))
def test_every_protocol_has_a_vector_path(kind):
    assert _one(kind).vector_path in ("merge", "rounds", "chains", "events")
