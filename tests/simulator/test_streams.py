"""simulator.streams: the learners' streams seeded for all learners at once equal numpy's
``[default_rng(c) for c in SeedSequence(...).spawn(n)]`` (the reference), word for word."""

from __future__ import annotations

import numpy as np
import pytest

from dlsys.simulator.core import learner_streams
from dlsys.simulator.streams import fast_streams, spawn_states

SEEDS = [
    np.random.SeedSequence(0),
    np.random.SeedSequence(7),
    np.random.SeedSequence(2**100 + 3),  # entropy of 4 words
    np.random.SeedSequence(2**200 + 1),  # 7 words: more than the pool
    np.random.SeedSequence([1, 2, 3, 4, 5, 6, 7]),
    np.random.SeedSequence(5).spawn(3)[2],  # a sweep's replication seed (spawn key (2,))
    np.random.SeedSequence(9, pool_size=8),
    np.random.SeedSequence(12345, spawn_key=(1, 2**40, 3)),
]


def _reference(ss: np.random.SeedSequence, n: int) -> list[np.random.SeedSequence]:
    fresh = np.random.SeedSequence(ss.entropy, spawn_key=ss.spawn_key, pool_size=ss.pool_size)
    return fresh.spawn(n)


@pytest.mark.parametrize("ss", SEEDS, ids=range(len(SEEDS)))
def test_states_equal_numpy_children(ss: np.random.SeedSequence) -> None:
    n = 257
    ref = np.array([c.generate_state(4, np.uint64) for c in _reference(ss, n)])
    assert np.array_equal(spawn_states(ss, n), ref)
    got = fast_streams(ss, n)
    want = [np.random.default_rng(c) for c in _reference(ss, n)]
    assert [g.bit_generator.state for g in got] == [w.bit_generator.state for w in want]
    # and the draws themselves
    assert np.array_equal(got[200].exponential(2.0, 5), want[200].exponential(2.0, 5))


def test_learner_streams_repeat_and_other_state_sizes() -> None:
    ss = np.random.SeedSequence(3)
    a, b = learner_streams(ss, 4), learner_streams(ss, 4)
    assert [g.random() for g in a] == [g.random() for g in b]  # a fresh copy each call
    assert learner_streams(11, 0) == []
    # a request other than PCG64's 4 uint64 words goes to the real child
    child = fast_streams(ss, 3)[2].bit_generator.seed_seq
    assert np.array_equal(child.generate_state(3), _reference(ss, 3)[2].generate_state(3))


@pytest.mark.parametrize("fault", ["mixing", "words"])
def test_a_numpy_that_seeds_otherwise_falls_back_to_numpys_own_path(
    monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    # As if a numpy release changed SeedSequence: the mixing check raises, or the state words
    # come out different; the streams must still be numpy's own.
    import dlsys.simulator.streams as streams

    def wrong(ss: np.random.SeedSequence, n: int) -> np.ndarray:
        if fault == "mixing":
            raise RuntimeError("numpy's SeedSequence mixing differs from streams.py's")
        return np.arange(4 * n, dtype=np.uint64).reshape(n, 4)

    monkeypatch.setattr(streams, "spawn_states", wrong)
    ss = np.random.SeedSequence(4)
    got = streams.fast_streams(ss, 5)
    want = [np.random.default_rng(c) for c in _reference(ss, 5)]
    assert [g.bit_generator.state for g in got] == [w.bit_generator.state for w in want]
