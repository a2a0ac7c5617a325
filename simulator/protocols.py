"""Protocols: one object per parameter-server protocol, the one definition of its rules.

A protocol object holds its parameter (``k``, ``s``, ``c`` or ``b``) and its validation, and
answers every question an engine -- the SimPy engine, the vector engine, or a real parameter
server -- asks about the protocol. ``Protocol("k-sync", k=2)`` builds the right object
(:class:`KSync`); ``KSync(k=2)`` is the same object.

The PS rule (engine-independent: plain lists, no SimPy types)
------------------------------------------------------------
The PS keeps a *queue*: a list of the gradients that have arrived and are neither used nor
dropped, in order of arrival (gradients that arrive at the same instant are ordered by
(read version, learner index) before they join it -- the tie rule of
:mod:`dlsys.simulator.engine`). A gradient is any object with the attributes ``learner``
(learner index, 0-based) and ``read_version`` (the PS version its weights were read at), for
example a :class:`Gradient` record. After every change (an arrival, a learner that crashed,
came back or finished, an update that finished applying), the PS calls::

    take = protocol.take(queue, version, live, n)

with ``version`` the PS version now, ``live`` the indices of the learners that are up and
still computing, ``n`` the number of learners in the scenario. ``take`` removes from
``queue`` what it uses or drops and returns None (nothing to do) or a :class:`Take`:

* ``take.dropped``: gradients discarded (too late for their round); their learners, if they
  wait (below), are woken to read fresh weights;
* ``take.update``: the gradients that form the next update (None: no update yet).

The PS applies the update (version + 1), then acts on ``protocol.on_update``:

* ``WAKE_BATCH``: wake the learners whose gradients formed the update;
* ``WAKE_ALL``: wake every waiting learner;
* ``CANCEL_ALL``: cancel every live learner's in-flight computation (it starts over on the
  new weights) and wake the waiting ones;
* ``NO_WAKE``: learners never wait for updates.

and calls ``take`` again, until it returns None or gives no update.

The learner rule
----------------
``protocol.after_push`` says what a learner does after pushing a gradient: ``WAIT`` (for the
PS to wake it, then read), ``CONTINUE`` (read again at once) or ``REUSE`` (compute another
gradient on the weights it holds; it reads again after the next update). A learner may
start a gradient only when ``protocol.may_start(clock, slowest)`` is true, where ``clock``
is its number of pushed gradients and ``slowest`` the smallest clock among the live learners
(``protocol.gated`` is True only for SSP, whose gate must be re-checked after arrivals and
membership changes).

Closed forms and engines
------------------------
``mean_staleness(n)`` and ``time_per_update(n, rate, shift)`` give the closed forms of
:mod:`dlsys.simulator.theory` (None where there is none); ``vector_path`` names how the
vector engine runs the protocol: ``"merge"`` (learners never wait: per-learner running
sums, merged), ``"rounds"`` (every live learner reads at each update: order statistics per
round), ``"chains"`` (k-batch-sync: the same, with a chain of gradients per learner and
round, as a learner computes on after its push until the update cancels it) or
``"events"`` (learners wait: a compiled event loop).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, TypeVar

from dlsys.common import check_int, unknown_name
from dlsys.simulator import theory
from dlsys.simulator.distributions import Time

#: What a learner does after a push (``Protocol.after_push``).
WAIT, CONTINUE, REUSE = "wait", "continue", "reuse"
#: What the PS does after an update (``Protocol.on_update``).
WAKE_BATCH, WAKE_ALL, CANCEL_ALL, NO_WAKE = "wake-batch", "wake-all", "cancel-all", "no-wake"


class Gradient(NamedTuple):
    """A gradient as it arrives at the PS (times in seconds)."""

    learner: int  # learner index, 0-based
    seq: int  # the learner's 1-based gradient number
    read_version: int  # PS version the weights were read at
    t_read: Time  # when the weights were read
    t_start: Time  # compute start
    t_done: Time  # compute end


G = TypeVar("G")


@dataclass(frozen=True)
class Take:
    """What :meth:`Protocol.take` decided: gradients dropped and the next update (or None)."""

    update: list[Any] | None
    dropped: list[Any]


#: Registered protocol classes by kind (filled by ``_register`` below, once, in this module).
_CLASSES: dict[str, type[Protocol]] = {}


@dataclass(frozen=True)
class Protocol:
    """How the parameter server turns gradients into updates (see docs/simulator.md).

    ``Protocol(kind, k=..., s=..., c=..., b=...)`` builds the object of ``kind``; ``k``:
    gradients per update for the k-* protocols (1 <= k <= n); ``s``: the SSP staleness
    bound in clocks (>= 0); ``c``: gradients per update for softsync (1 <= c <= n); ``b``:
    backup learners (0 <= b < n).
    """

    kind: str = ""
    k: int | None = None
    s: int | None = None
    c: int | None = None
    b: int | None = None

    #: The protocol's name, its parameter's name (None: none) and the parameter's minimum.
    KIND: ClassVar[str] = ""
    PARAM: ClassVar[str | None] = None
    LOW: ClassVar[int] = 1
    after_push: ClassVar[str] = WAIT
    on_update: ClassVar[str] = WAKE_BATCH
    gated: ClassVar[bool] = False
    #: True where the PS rule uses only gradients read at the current version (older ones
    #: are dropped when the PS sees them) and an update empties the queue (see ``take``).
    current_only: ClassVar[bool] = False
    vector_path: ClassVar[str] = "events"
    #: True where every live learner reads at each update, so a round's rows share their
    #: read time, versions, update time and status: the trace holds those columns as runs
    #: (:mod:`dlsys.simulator.columns`).
    round_trace: ClassVar[bool] = False
    #: True where, with exponential compute times, staleness is a mixture of geometrics.
    geometric_staleness: ClassVar[bool] = False

    def __new__(cls, kind: str = "", *args: Any, **kwargs: Any) -> Protocol:
        if cls is Protocol:
            name = kind or "async"
            if not isinstance(name, str) or name not in _CLASSES:
                raise unknown_name("protocol", str(name), _CLASSES)
            cls = _CLASSES[name]
        return object.__new__(cls)

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", self.KIND)
        elif self.kind != self.KIND:
            raise ValueError(
                f"protocol.kind: {type(self).__name__} is {self.KIND!r}, got {self.kind!r}"
            )
        want = self.PARAM
        for name in ("k", "s", "c", "b"):
            val = getattr(self, name)
            if name == want:
                if val is None:
                    raise ValueError(f"protocol.{name}: missing (protocol {self.kind!r} needs it)")
                check_int(f"protocol.{name}", val, minimum=self.LOW)
            elif val is not None:
                allowed = f"only {want!r}" if want else "no parameters"
                raise ValueError(
                    f"protocol.{name}: protocol {self.kind!r} takes {allowed}, got {name} = {val!r}"
                )

    @property
    def param(self) -> int | None:
        """The protocol's one parameter (k, s, c or b), or None."""
        return None if self.PARAM is None else getattr(self, self.PARAM)

    def check_n(self, n: int) -> None:
        """Raise if the parameter does not fit ``n`` learners."""
        p = self.param
        if self.PARAM in ("k", "c") and p is not None and p > n:
            raise ValueError(
                f"protocol.{self.PARAM}: must be <= the number of learners ({n}), got {p}"
            )

    def label(self) -> str:
        """``"k-sync(k=2)"`` style name."""
        return self.kind if self.PARAM is None else f"{self.kind}({self.PARAM}={self.param})"

    # -- the PS rule

    def take(self, queue: list[G], version: int, live: Collection[int], n: int) -> Take | None:
        """Remove from ``queue`` what the next step uses or drops (see the module docstring)."""
        raise NotImplementedError

    def batch_size(self, n: int) -> int | None:
        """Gradients per update with ``n`` learners (None: it varies, as sync's live set)."""
        return 1 if self.PARAM is None else self.param

    # -- the learner rule

    def may_start(self, clock: int, slowest: int | None) -> bool:
        """May a learner that has pushed ``clock`` gradients start another one?

        ``slowest``: the smallest clock among live learners (None if there are none).
        """
        return True

    # -- closed forms

    def mean_staleness(self, n: int) -> float | None:
        """Mean staleness in PS updates, ``n`` learners, no network (None: no closed form)."""
        return None

    def time_per_update(self, n: int, rate: float, shift: float = 0.0) -> float | None:
        """Expected seconds per update for ``n`` identical shift + Exp(rate) learners (Dutta et
        al. 2018), None where there is no closed form."""
        return None


def _register(cls: type[Protocol]) -> type[Protocol]:
    if cls.KIND in _CLASSES:
        raise ValueError(f"protocol {cls.KIND!r} registered twice")
    _CLASSES[cls.KIND] = cls
    return cls


def _first(queue: list[G], count: int) -> list[G]:
    batch = queue[:count]
    del queue[:count]
    return batch


@_register
class Async(Protocol):
    """Every gradient is an update at once; its learner waits for it, then reads."""

    KIND = "async"
    vector_path = "merge"
    geometric_staleness = True

    def take(self, queue: list[G], version: int, live: Collection[int], n: int) -> Take | None:
        return Take([queue.pop(0)], []) if queue else None

    def mean_staleness(self, n: int) -> float | None:
        return theory.async_mean_staleness(n)

    def time_per_update(self, n: int, rate: float, shift: float = 0.0) -> float | None:
        return theory.async_time(n, rate, shift)


@_register
class SSP(Async):
    """Async updates, but a learner more than ``s`` clocks ahead of the slowest live one waits
    (stale synchronous parallel, Ho et al. 2013)."""

    KIND = "ssp"
    PARAM = "s"
    LOW = 0
    gated = True
    vector_path = "events"
    geometric_staleness = False

    def batch_size(self, n: int) -> int | None:
        return 1

    def may_start(self, clock: int, slowest: int | None) -> bool:
        return slowest is None or clock - slowest <= self.s  # type: ignore[operator]

    def mean_staleness(self, n: int) -> float | None:
        return None

    def time_per_update(self, n: int, rate: float, shift: float = 0.0) -> float | None:
        return None


@_register
class KBatchAsync(Protocol):
    """An update from every ``k`` gradients, whoever sent them; learners never wait."""

    KIND = "k-batch-async"
    PARAM = "k"
    after_push = CONTINUE
    on_update = NO_WAKE
    vector_path = "merge"

    def take(self, queue: list[G], version: int, live: Collection[int], n: int) -> Take | None:
        k = self.param
        assert k is not None
        return Take(_first(queue, k), []) if len(queue) >= k else None

    def mean_staleness(self, n: int) -> float | None:
        return theory.batched_mean_staleness(n, self.param or 1)

    def time_per_update(self, n: int, rate: float, shift: float = 0.0) -> float | None:
        return theory.k_batch_async_time(n, self.param or 1, rate, shift)


@_register
class SoftSync(KBatchAsync):
    """An update from every ``c`` gradients (Zhang et al. 2016); learners never wait."""

    KIND = "softsync"
    PARAM = "c"

    def time_per_update(self, n: int, rate: float, shift: float = 0.0) -> float | None:
        return None


@_register
class KAsync(Protocol):
    """An update from the first ``k`` gradients of ``k`` distinct learners; those learners
    read again, the others keep computing."""

    KIND = "k-async"
    PARAM = "k"

    def take(self, queue: list[G], version: int, live: Collection[int], n: int) -> Take | None:
        seen: set[int] = set()
        picked: list[int] = []
        for j, g in enumerate(queue):
            who = g.learner  # type: ignore[attr-defined]
            if who not in seen:
                seen.add(who)
                picked.append(j)
                if len(picked) == self.k:
                    batch = [queue[j] for j in picked]
                    for j2 in reversed(picked):
                        del queue[j2]
                    return Take(batch, [])
        return None


@_register
class Sync(Protocol):
    """An update when every live learner has sent its gradient; then everyone reads."""

    KIND = "sync"
    on_update = WAKE_ALL
    vector_path = "rounds"
    round_trace = True

    def batch_size(self, n: int) -> int | None:
        return None

    def take(self, queue: list[G], version: int, live: Collection[int], n: int) -> Take | None:
        if not queue:
            return None
        have = {g.learner for g in queue}  # type: ignore[attr-defined]
        if all(i in have for i in live):
            batch = list(queue)
            queue.clear()
            return Take(batch, [])
        return None

    def mean_staleness(self, n: int) -> float | None:
        return 0.0

    def time_per_update(self, n: int, rate: float, shift: float = 0.0) -> float | None:
        return theory.sync_time(n, rate, shift)


class _Rounds(Protocol):
    """Protocols that use only gradients computed on the current version: older ones are
    dropped as they are seen, and the gradients beyond the ``need``-th of a round too."""

    current_only = True

    def need(self, n: int) -> int:
        """Gradients per update with ``n`` learners."""
        return self.param or 1

    def take(self, queue: list[G], version: int, live: Collection[int], n: int) -> Take | None:
        if not queue:
            return None
        dropped = [g for g in queue if g.read_version != version]  # type: ignore[attr-defined]
        if dropped:
            queue[:] = [g for g in queue if g.read_version == version]  # type: ignore[attr-defined]
        need = self.need(n)
        if len(queue) < need:
            return Take(None, dropped) if dropped else None
        batch = queue[:need]
        dropped.extend(queue[need:])
        queue.clear()
        return Take(batch, dropped)


@_register
class KSync(_Rounds):
    """An update from the first ``k`` of n learners; the others' computations are cancelled
    and everyone reads the new weights (Dutta et al. 2018)."""

    KIND = "k-sync"
    PARAM = "k"
    on_update = CANCEL_ALL
    vector_path = "rounds"
    round_trace = True  # (and k-batch-sync: its chains read at each update too)

    def mean_staleness(self, n: int) -> float | None:
        return 0.0

    def time_per_update(self, n: int, rate: float, shift: float = 0.0) -> float | None:
        return theory.k_sync_time(n, self.param or 1, rate, shift)


@_register
class KBatchSync(KSync):
    """An update from the first ``k`` mini-batches from any learners: a learner that pushed
    computes another gradient on the same weights; then all are cancelled and read."""

    KIND = "k-batch-sync"
    after_push = REUSE
    vector_path = "chains"  # a pushed learner computes on: a chain per learner a round

    def time_per_update(self, n: int, rate: float, shift: float = 0.0) -> float | None:
        if shift:
            return None  # no closed form for shifted-exponential times
        return theory.k_batch_sync_time(n, self.param or 1, rate)


@_register
class Backup(_Rounds):
    """Sync with ``b`` backup learners: the first n - b current gradients form the update,
    the late ones are dropped (Chen et al. 2016)."""

    KIND = "backup"
    PARAM = "b"
    LOW = 0
    vector_path = "events"  # stragglers run on into the next round: the event loop

    def need(self, n: int) -> int:
        return n - (self.param or 0)

    def batch_size(self, n: int) -> int | None:
        return self.need(n)

    def check_n(self, n: int) -> None:
        b = self.param
        if b is not None and b >= n:
            raise ValueError(
                f"protocol.b: must be < the number of learners ({n}) so that at least one "
                f"gradient is used, got {b}"
            )


#: Protocol kinds (in the order the docs list them) and the parameter each one takes.
PROTOCOLS: dict[str, str | None] = {
    k: _CLASSES[k].PARAM
    for k in (
        "async",
        "sync",
        "k-sync",
        "k-batch-sync",
        "k-async",
        "k-batch-async",
        "softsync",
        "ssp",
        "backup",
    )
}
assert set(PROTOCOLS) == set(_CLASSES)

__all__ = [
    "CANCEL_ALL",
    "CONTINUE",
    "NO_WAKE",
    "PROTOCOLS",
    "REUSE",
    "SSP",
    "WAIT",
    "WAKE_ALL",
    "WAKE_BATCH",
    "Async",
    "Backup",
    "Gradient",
    "KAsync",
    "KBatchAsync",
    "KBatchSync",
    "KSync",
    "Protocol",
    "SoftSync",
    "Sync",
    "Take",
]
