"""The learners' random streams, made for all learners at once.

``SeedSequence(seed).spawn(n)`` then ``default_rng(child)`` costs a few microseconds of
Python per learner twice over (the child's entropy mixing, then its ``generate_state``).
The children differ only in the last word of their entropy (their index), so both steps
run here as a handful of numpy operations on all children together: numpy's
``SeedSequence`` algorithm (``mix_entropy``, ``generate_state``; O'Neill's seed_seq_fe
hash, in uint32 arithmetic that wraps) with its constants. :func:`spawn_states` equals
numpy's per-child result word for word (tests/simulator/test_streams.py compares them for
integer, large, sequence and spawned seeds and other pool sizes); each ``PCG64`` is then
seeded by numpy itself from those words.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.random import bit_generator as _bg
from numpy.random.bit_generator import ISeedSequence

#: numpy's own conversion of an entropy or spawn key to uint32 words (private: without it,
#: :func:`fast_streams` seeds learner by learner as numpy does).
_coerce_to_uint32_array: Any = getattr(_bg, "_coerce_to_uint32_array", None)

# numpy/random/bit_generator.pyx (SeedSequence): the hash constants.
_INIT_A = 0x43B0D7E5
_MULT_A = 0x931E8875
_INIT_B = 0x8B51F9DD
_MULT_B = 0x58F38DED
_MIX_MULT_L = 0xCA01F9DD
_MIX_MULT_R = 0x4973F715
_XSHIFT = 16
_M32 = 0xFFFFFFFF


class _HashConst:
    """The running hash constant of ``mix_entropy`` (the same for every child)."""

    def __init__(self) -> None:
        self.value = _INIT_A

    def hashmix(self, v: np.ndarray) -> np.ndarray:
        v = v ^ np.uint32(self.value)
        self.value = (self.value * _MULT_A) & _M32
        v = v * np.uint32(self.value)
        return v ^ (v >> np.uint32(_XSHIFT))


def _mix(x: Any, y: Any) -> Any:
    r = np.uint32(_MIX_MULT_L) * x - np.uint32(_MIX_MULT_R) * y
    return r ^ (r >> np.uint32(_XSHIFT))


def spawn_states(ss: np.random.SeedSequence, n: int, n_words64: int = 4) -> np.ndarray:
    """``(n, n_words64)`` uint64: row ``i`` is ``generate_state(n_words64, np.uint64)`` of
    the ``i``-th child of ``SeedSequence(ss.entropy, spawn_key=ss.spawn_key,
    pool_size=ss.pool_size).spawn(n)`` (a fresh copy of ``ss``: its spawn counter at 0)."""
    if n == 0:
        return np.zeros((0, n_words64), dtype=np.uint64)
    if n > 1 << 32:
        raise ValueError(f"n: at most 2**32 streams, got {n}")
    pool_size = ss.pool_size
    # The children's assembled entropy (numpy's SeedSequence.get_assembled_entropy, a
    # cdef method): the entropy words, zero-padded to the pool size (a child has a spawn
    # key), then the spawn key's words; child i's last word is its index i.
    run = _coerce_to_uint32_array(ss.entropy)
    if len(run) < pool_size:
        run = np.concatenate([run, np.zeros(pool_size - len(run), dtype=np.uint32)])
    ent0 = np.concatenate([run, _coerce_to_uint32_array((*ss.spawn_key, 0))])
    ent = [np.full(n, w, dtype=np.uint32) for w in ent0]
    ent[-1] = np.arange(n, dtype=np.uint32)
    with np.errstate(over="ignore"):
        h = _HashConst()
        zero = np.zeros(n, dtype=np.uint32)
        mixer = [h.hashmix(ent[i] if i < len(ent) else zero) for i in range(pool_size)]
        for i_src in range(pool_size):
            for i_dst in range(pool_size):
                if i_src != i_dst:
                    mixer[i_dst] = _mix(mixer[i_dst], h.hashmix(mixer[i_src]))
        for i_src in range(pool_size, len(ent)):
            for i_dst in range(pool_size):
                mixer[i_dst] = _mix(mixer[i_dst], h.hashmix(ent[i_src]))
        child0 = np.random.SeedSequence(
            ss.entropy, spawn_key=(*ss.spawn_key, 0), pool_size=pool_size
        )
        if [int(m[0]) for m in mixer] != [int(w) for w in child0.pool]:
            raise RuntimeError("numpy's SeedSequence mixing differs from streams.py's")
        # generate_state: 2 * n_words64 uint32 words, then viewed as uint64.
        out = np.empty((n, 2 * n_words64), dtype=np.uint32)
        hc = _INIT_B
        for i in range(2 * n_words64):
            v = mixer[i % pool_size] ^ np.uint32(hc)
            hc = (hc * _MULT_B) & _M32
            v = v * np.uint32(hc)
            out[:, i] = v ^ (v >> np.uint32(_XSHIFT))
    return out.view(np.uint64)


class _Words(ISeedSequence):
    """A child seed sequence whose 4 uint64 words for ``PCG64`` are already known; any
    other request goes to the real child (made only then)."""

    def __init__(self, words: np.ndarray, parent: np.random.SeedSequence, i: int) -> None:
        self.words = words
        self.parent = parent
        self.i = i

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> np.ndarray:
        if n_words == len(self.words) and np.dtype(dtype) == np.uint64:
            return self.words.copy()
        ss = self.parent
        child = np.random.SeedSequence(
            ss.entropy, spawn_key=(*ss.spawn_key, self.i), pool_size=ss.pool_size
        )
        return child.generate_state(n_words, dtype)


def fast_streams(ss: np.random.SeedSequence, n: int) -> list[np.random.Generator]:
    """``[default_rng(c) for c in fresh.spawn(n)]`` for a fresh copy of ``ss``: the same
    generators (the same PCG64 states), seeded from :func:`spawn_states`. Each call checks
    child 0's mixing and state words against numpy's own; if a numpy release computes
    them otherwise, or lacks the private helper, the streams come from numpy's own path."""
    fresh = np.random.SeedSequence(ss.entropy, spawn_key=ss.spawn_key, pool_size=ss.pool_size)
    if _coerce_to_uint32_array is None or n == 0:
        return [np.random.default_rng(c) for c in fresh.spawn(n)]
    try:
        words = spawn_states(ss, n)
    except RuntimeError:  # a numpy whose SeedSequence mixes otherwise: numpy's own path
        return [np.random.default_rng(c) for c in fresh.spawn(n)]
    child0 = np.random.SeedSequence(
        ss.entropy, spawn_key=(*ss.spawn_key, 0), pool_size=ss.pool_size
    )
    if not np.array_equal(words[0], child0.generate_state(words.shape[1], np.uint64)):
        return [np.random.default_rng(c) for c in fresh.spawn(n)]
    seeds: list[Any] = [_Words(words[i], ss, i) for i in range(n)]  # (PCG64 takes them)
    return [np.random.Generator(np.random.PCG64(s)) for s in seeds]
