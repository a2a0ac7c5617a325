"""Scenarios: the learners, network, parameter server, protocol, learning-rate rule and faults.

A :class:`Scenario` is a frozen dataclass; build one in Python or load it from TOML with
:func:`load_scenario`. Every check happens here, at the boundary, and every error names the
field as it is written in the file (``learner[2].compute.rate: must be > 0, got -1``;
``learner[i]`` counts ``[[learner]]`` tables from 0). Times are in seconds, sizes in bytes,
bandwidths in bytes per second. Deterministic times are kept exact (see
:func:`dlsys.simulator.distributions.exact`).

TOML layout::

    [simulation]          seed, protocol, until_updates, until_time, lr
    [ps]                  service_time
    [network]             pull_latency, push_latency, bandwidth, message_bytes (defaults)
    [[learner]]           name, count, compute, max_gradients, start_delay, speed,
                          pull_latency, push_latency, bandwidth, message_bytes
    [[fault]]             kind = "crash" (learner, at, restart_after)
                          kind = "slowdown" (learner, start, end, factor)
                          kind = "ps-pause" (start, end)
    [model]               name, input, batch, device: compute = { dist = "model", speed, cv }
                          (simulator/model_compute.py)
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import Any

from dlsys.common import check_int, check_positive, unknown_name
from dlsys.simulator.distributions import Distribution, Time, exact
from dlsys.simulator.limits import check_learner_count
from dlsys.simulator.model_compute import ModelSpec, model_spec, parse_compute
from dlsys.simulator.protocols import PROTOCOLS, Protocol

#: Learning-rate rules and their parameters.
LR_RULES: dict[str, tuple[str, ...]] = {
    "constant": ("alpha",),
    "inverse-staleness": ("alpha",),
    "inverse-power": ("alpha", "a"),
}


@dataclass(frozen=True)
class LRRule:
    """Learning rate recorded per applied gradient, from its staleness tau.

    ``constant``: alpha; ``inverse-staleness``: alpha / max(tau, 1) (Zhang et al. 2016,
    staleness 0 treated as 1); ``inverse-power``: alpha / (1 + tau) ** a.
    """

    rule: str = "constant"
    alpha: float = 0.01
    a: float = 1.0

    def __post_init__(self) -> None:
        if self.rule not in LR_RULES:
            raise unknown_name("lr rule", self.rule, LR_RULES)
        object.__setattr__(self, "alpha", check_positive("lr.alpha", self.alpha))
        object.__setattr__(self, "a", check_positive("lr.a", self.a, allow_zero=True))

    def rates(self, staleness: Any) -> Any:
        """Learning rates for an array of staleness values (negative entries give NaN)."""
        import numpy as np

        tau = np.asarray(staleness)
        if tau.dtype.kind not in "iuf":
            tau = tau.astype(np.float64)
        if self.rule == "constant":  # (integer staleness compares as is: no float copy)
            out = np.full(tau.shape, self.alpha, dtype=np.float64)
        elif self.rule == "inverse-staleness":
            out = self.alpha / np.maximum(tau, 1.0)
        else:
            out = self.alpha / (1.0 + np.maximum(tau, 0.0)) ** self.a
        neg = tau < 0
        if neg.any():
            out[neg] = np.nan
        return out


@dataclass(frozen=True)
class Learner:
    """One learner: compute-time distribution and network, in seconds and bytes.

    ``speed`` divides every compute duration (2 = twice as fast). ``max_gradients`` stops
    the learner after that many pushed gradients. Pull and push each take ``latency +
    message_bytes / bandwidth`` seconds (``bandwidth`` in bytes/s; None = infinite).
    """

    name: str
    compute: Distribution
    max_gradients: int | None = None
    start_delay: Time = 0
    speed: Time = 1
    pull_latency: Time = 0
    push_latency: Time = 0
    bandwidth: Time | None = None
    message_bytes: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name: must be a non-empty string, got {self.name!r}")
        if not isinstance(self.compute, Distribution):
            raise TypeError(f"compute: must be a Distribution, got {self.compute!r}")
        if self.max_gradients is not None:
            check_int("max_gradients", self.max_gradients, minimum=1)
        ex = {
            "start_delay": exact("start_delay", self.start_delay, allow_zero=True),
            "speed": exact("speed", self.speed),
            "pull_latency": exact("pull_latency", self.pull_latency, allow_zero=True),
            "push_latency": exact("push_latency", self.push_latency, allow_zero=True),
        }
        if self.bandwidth is not None:
            ex["bandwidth"] = exact("bandwidth", self.bandwidth)
        for k, v in ex.items():
            object.__setattr__(self, k, v)
        check_int("message_bytes", self.message_bytes, minimum=0)

    # NOTE: pull_time, push_time and budget are read per learner by every engine, summary
    # and check: computed once (the fields are frozen; the cache sits in the instance's
    # __dict__, outside the dataclass fields, eq and hash).

    def _transfer(self, latency: Time) -> Time:
        t: Time = latency
        if self.message_bytes:
            if self.bandwidth is None:
                return t
            t = Fraction(t) + Fraction(self.message_bytes) / Fraction(self.bandwidth)
            t = int(t) if t.denominator == 1 else t
        return t

    @cached_property
    def pull_time(self) -> Time:
        """Seconds to pull the weights: pull_latency + message_bytes / bandwidth."""
        return self._transfer(self.pull_latency)

    @cached_property
    def push_time(self) -> Time:
        """Seconds to push a gradient: push_latency + message_bytes / bandwidth."""
        return self._transfer(self.push_latency)

    @cached_property
    def budget(self) -> int | None:
        """Most gradients this learner can push (None: unbounded)."""
        lim = [x for x in (self.max_gradients, self.compute.length) if x is not None]
        return min(lim) if lim else None


@dataclass(frozen=True)
class Crash:
    """Learner ``learner`` crashes at ``at`` seconds; its in-flight gradient is lost.

    With ``restart_after`` it comes back that many seconds later and pulls fresh weights.
    """

    learner: str
    at: Time
    restart_after: Time | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", exact("at", self.at, allow_zero=True))
        if self.restart_after is not None:
            object.__setattr__(
                self, "restart_after", exact("restart_after", self.restart_after, allow_zero=True)
            )


@dataclass(frozen=True)
class Slowdown:
    """``learner``'s compute (all learners if None) runs ``factor`` times slower in [start, end)."""

    start: Time
    end: Time
    factor: Time
    learner: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", exact("start", self.start, allow_zero=True))
        object.__setattr__(self, "end", exact("end", self.end))
        object.__setattr__(self, "factor", exact("factor", self.factor))
        if self.end <= self.start:
            raise ValueError(f"end: must be > start ({float(self.start)}), got {float(self.end)}")


@dataclass(frozen=True)
class PSPause:
    """The parameter server starts no update in [start, end) seconds; arrivals queue."""

    start: Time
    end: Time

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", exact("start", self.start, allow_zero=True))
        object.__setattr__(self, "end", exact("end", self.end))
        if self.end <= self.start:
            raise ValueError(f"end: must be > start ({float(self.start)}), got {float(self.end)}")


Fault = Crash | Slowdown | PSPause


@dataclass(frozen=True)
class Scenario:
    """A complete simulation setup. Build in Python or with :func:`load_scenario`.

    ``until_updates`` (PS updates) and ``until_time`` (seconds; the run covers [0, until_time))
    stop the run, as do learners that run out of gradients. ``service_time``: seconds the
    PS spends on each update (FIFO when busy).
    """

    learners: tuple[Learner, ...]
    protocol: Protocol = field(default_factory=Protocol)
    seed: int = 0
    until_updates: int | None = None
    until_time: Time | None = None
    service_time: Time = 0
    lr: LRRule = field(default_factory=LRRule)
    faults: tuple[Fault, ...] = ()
    name: str = "scenario"
    model: ModelSpec | None = None  # the [model] table (simulator/model_compute.py)

    def __post_init__(self) -> None:
        learners = tuple(self.learners)
        object.__setattr__(self, "learners", learners)
        object.__setattr__(self, "faults", tuple(self.faults))
        if not learners:
            raise ValueError("learner: no learners; add at least one [[learner]] table")
        for i, lrn in enumerate(learners):
            if not isinstance(lrn, Learner):
                raise TypeError(f"learners[{i}]: must be a Learner, got {lrn!r}")
        names = [lrn.name for lrn in learners]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"learner.name: duplicate learner names {dup}")
        if not isinstance(self.protocol, Protocol):
            raise TypeError(f"protocol: must be a Protocol, got {self.protocol!r}")
        self.protocol.check_n(len(learners))
        _check_seed(self.seed)
        if self.until_updates is not None:
            check_int("until_updates", self.until_updates, minimum=1)
        if self.until_time is not None:
            object.__setattr__(self, "until_time", exact("until_time", self.until_time))
        object.__setattr__(
            self, "service_time", exact("service_time", self.service_time, allow_zero=True)
        )
        if self.until_updates is None and self.until_time is None:
            open_ended = [lrn.name for lrn in learners if lrn.budget is None]
            if open_ended:
                raise ValueError(
                    "until_updates/until_time: neither is set and learner "
                    f"{open_ended[0]!r} has no max_gradients, so nothing would stop the run; "
                    "set [simulation] until_updates or until_time"
                )
        self._check_faults(names)

    def _check_faults(self, names: list[str]) -> None:
        crashes: dict[str, list[Crash]] = {}
        slow: dict[str | None, list[Slowdown]] = {}
        pauses: list[PSPause] = []
        for i, f in enumerate(self.faults):
            where = f"fault[{i}]"
            if isinstance(f, Crash | Slowdown) and f.learner is not None and f.learner not in names:
                raise ValueError(f"{where}.learner: {unknown_name('learner', f.learner, names)}")
            if isinstance(f, Crash):
                crashes.setdefault(f.learner, []).append(f)
            elif isinstance(f, Slowdown):
                slow.setdefault(f.learner, []).append(f)
            elif isinstance(f, PSPause):
                pauses.append(f)
            else:
                raise TypeError(f"{where}: must be a Crash, Slowdown or PSPause, got {f!r}")
        for who, cs in crashes.items():
            cs.sort(key=lambda c: c.at)
            for a, b in itertools.pairwise(cs):
                if a.restart_after is None or a.at + a.restart_after > b.at:
                    raise ValueError(
                        f"fault: learner {who!r} crashes at {float(b.at)} while still down from "
                        f"its crash at {float(a.at)}"
                    )
        for target, ss in slow.items():
            ss.sort(key=lambda s: s.start)
            for s1, s2 in itertools.pairwise(ss):
                if s2.start < s1.end:
                    raise ValueError(
                        f"fault: slowdown windows of {target or 'all learners'} overlap: "
                        f"[{float(s1.start)}, {float(s1.end)}) and "
                        f"[{float(s2.start)}, {float(s2.end)})"
                    )
        if None in slow and any(k is not None for k in slow):
            raise ValueError(
                "fault: slowdowns for all learners and for one learner cannot be mixed"
            )
        pauses.sort(key=lambda p: p.start)
        for p1, p2 in itertools.pairwise(pauses):
            if p2.start < p1.end:
                raise ValueError("fault: ps-pause windows overlap")

    @property
    def n(self) -> int:
        """Number of learners."""
        return len(self.learners)

    def replace(self, **changes: Any) -> Scenario:
        """A copy with fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _check_seed(seed: Any) -> None:
    check_int("seed", seed, minimum=0)


# ----------------------------------------------------------------------------- parsing


_TOP_KEYS = ("simulation", "ps", "network", "learner", "fault", "model")
_SIM_KEYS = ("seed", "protocol", "until_updates", "until_time", "lr", "name")
_PS_KEYS = ("service_time",)
_NET_KEYS = ("pull_latency", "push_latency", "bandwidth", "message_bytes")
_LEARNER_KEYS = ("name", "count", "compute", "max_gradients", "start_delay", "speed", *_NET_KEYS)
_FAULT_KEYS = {
    "crash": ("learner", "at", "restart_after"),
    "slowdown": ("learner", "start", "end", "factor"),
    "ps-pause": ("start", "end"),
}


def _table(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise TypeError(f"{where}: must be a table, got {obj!r}")
    return obj


def _keys(table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for k in table:
        if k not in allowed:
            raise ValueError(f"{where}: {unknown_name('key', k, allowed)}")


def _wrap(where: str, fn: Any, *args: Any, **kw: Any) -> Any:
    """Call ``fn``; prefix the field path ``where`` to a ValueError/TypeError it raises."""
    try:
        return fn(*args, **kw)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{where}.{exc}") from None


def _protocol(value: Any) -> Protocol:
    where = "simulation.protocol"
    if isinstance(value, str):
        if value not in PROTOCOLS:
            raise ValueError(f"{where}: {unknown_name('protocol', value, PROTOCOLS)}")
        if PROTOCOLS[value] is not None:
            raise ValueError(
                f"{where}: protocol {value!r} needs a parameter: "
                f'{{ kind = "{value}", {PROTOCOLS[value]} = ... }}'
            )
        return Protocol(value)
    t = _table(value, where)
    if "kind" not in t:
        raise ValueError(f"{where}.kind: missing (one of {', '.join(PROTOCOLS)})")
    kind = t["kind"]
    if not isinstance(kind, str) or kind not in PROTOCOLS:
        raise ValueError(f"{where}.kind: {unknown_name('protocol', str(kind), PROTOCOLS)}")
    want = PROTOCOLS[kind]
    _keys(t, ("kind",) + ((want,) if want else ()), f"{where} ({kind})")
    try:
        return Protocol(kind, **{k: v for k, v in t.items() if k != "kind"})
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"simulation.{exc}") from None


def _learners(
    entries: Any, net: dict[str, Any], base_dir: Any, model: ModelSpec | None
) -> tuple[list[Learner], dict[str, list[str]]]:
    """The ``[[learner]]`` tables as learners (a ``count`` of c makes c of them), and the
    names each table's learners got."""
    if not isinstance(entries, list):
        raise TypeError("learner: must be an array of tables ([[learner]]), got a single value")
    if not entries:
        raise ValueError("learner: no learners; add at least one [[learner]] table")
    learners: list[Learner] = []
    groups: dict[str, list[str]] = {}
    for i, raw in enumerate(entries):
        where = f"learner[{i}]"
        t = _table(raw, where)
        _keys(t, _LEARNER_KEYS, where)
        lname = t.get("name", f"L{i + 1}")
        if not isinstance(lname, str) or not lname:
            raise ValueError(f"{where}.name: must be a non-empty string, got {lname!r}")
        count = check_int(f"{where}.count", t.get("count", 1), minimum=1)
        check_learner_count(f"{where}.count", count, len(learners) + count)
        if "compute" not in t:
            raise ValueError(
                f'{where}.compute: missing (e.g. {{ dist = "exponential", rate = 1.0 }})'
            )
        dist = parse_compute(t["compute"], f"{where}.compute", base_dir, model)
        kw: dict[str, Any] = {k: net[k] for k in _NET_KEYS if k in net}
        kw.update(
            {k: t[k] for k in (*_NET_KEYS, "max_gradients", "start_delay", "speed") if k in t}
        )
        names = [lname] if count == 1 else [f"{lname}-{j}" for j in range(count)]
        groups[lname] = names
        for nm in names:
            learners.append(_wrap(where, Learner, name=nm, compute=dist, **kw))
    return learners, groups


def _faults(raw_faults: Any, all_names: list[str], groups: dict[str, list[str]]) -> list[Fault]:
    """The ``[[fault]]`` tables as faults (a fault naming a learner group hits each one)."""
    faults: list[Fault] = []
    if not isinstance(raw_faults, list):
        raise TypeError("fault: must be an array of tables ([[fault]])")
    for i, raw in enumerate(raw_faults):
        where = f"fault[{i}]"
        t = _table(raw, where)
        kind = t.get("kind")
        if not isinstance(kind, str) or kind not in _FAULT_KEYS:
            raise ValueError(f"{where}.kind: {unknown_name('fault kind', str(kind), _FAULT_KEYS)}")
        _keys(t, ("kind", *_FAULT_KEYS[kind]), f"{where} ({kind})")
        args = {k: v for k, v in t.items() if k != "kind"}
        who = args.pop("learner", None)
        targets: list[str | None]
        if who is None:
            if kind == "crash":
                raise ValueError(f"{where}.learner: missing (which learner crashes)")
            targets = [None]
        elif who in all_names:
            targets = [who]
        elif who in groups:
            targets = list(groups[who])
        else:
            raise ValueError(f"{where}.learner: {unknown_name('learner', str(who), all_names)}")
        for k in ("at", "start", "end", "factor") if kind != "ps-pause" else ("start", "end"):
            if k in _FAULT_KEYS[kind] and k not in args:
                raise ValueError(f"{where}.{k}: missing")
        for tgt in targets:
            if kind == "crash":
                faults.append(_wrap(where, Crash, learner=tgt, **args))
            elif kind == "slowdown":
                faults.append(_wrap(where, Slowdown, learner=tgt, **args))
            else:
                faults.append(_wrap(where, PSPause, **args))
    return faults


def scenario_from_dict(
    data: Mapping[str, Any],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    name: str = "scenario",
) -> Scenario:
    """Build a :class:`Scenario` from the TOML structure (a dict); errors name the field.

    ``base_dir``: folder that relative trace paths are read from.
    """
    data = _table(dict(data), "scenario")
    _keys(data, _TOP_KEYS, "scenario")
    sim = _table(data.get("simulation", {}), "simulation")
    _keys(sim, _SIM_KEYS, "simulation")
    ps = _table(data.get("ps", {}), "ps")
    _keys(ps, _PS_KEYS, "ps")
    net = _table(data.get("network", {}), "network")
    _keys(net, _NET_KEYS, "network")
    for k in ("pull_latency", "push_latency"):
        if k in net:
            check_positive(f"network.{k}", net[k], allow_zero=True)
    if "bandwidth" in net:
        check_positive("network.bandwidth", net["bandwidth"])
    if "message_bytes" in net:
        check_int("network.message_bytes", net["message_bytes"], minimum=0)
    model = model_spec(data["model"]) if "model" in data else None
    if model is not None and "message_bytes" not in net:
        net = {**net, "message_bytes": model.message_bytes}

    protocol = _protocol(sim.get("protocol", "async"))
    lr = LRRule()
    if "lr" in sim:
        lt = _table(sim["lr"], "simulation.lr")
        _keys(lt, ("rule", *sorted({k for ks in LR_RULES.values() for k in ks})), "simulation.lr")
        rule = lt.get("rule", "constant")
        if not isinstance(rule, str) or rule not in LR_RULES:
            raise ValueError(f"simulation.lr.rule: {unknown_name('lr rule', str(rule), LR_RULES)}")
        _keys(lt, ("rule", *LR_RULES[rule]), f"simulation.lr ({rule})")
        lr = _wrap("simulation", LRRule, **lt)

    learners, groups = _learners(data.get("learner", []), net, base_dir, model)
    faults = _faults(data.get("fault", []), [lrn.name for lrn in learners], groups)

    seed = sim.get("seed", 0)
    _wrap("simulation", _check_seed, seed)
    until_updates = sim.get("until_updates")
    if until_updates is not None:
        check_int("simulation.until_updates", until_updates, minimum=1)
    until_time = sim.get("until_time")
    if until_time is not None:
        check_positive("simulation.until_time", until_time)
    service = ps.get("service_time", 0)
    check_positive("ps.service_time", service, allow_zero=True)
    nm = sim.get("name", name)
    if not isinstance(nm, str):
        raise TypeError(f"simulation.name: must be a string, got {nm!r}")
    try:
        return Scenario(
            learners=tuple(learners),
            protocol=protocol,
            seed=seed,
            until_updates=until_updates,
            until_time=until_time,
            service_time=service,
            lr=lr,
            faults=tuple(faults),
            name=nm,
            model=model,
        )
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        if msg.startswith(("protocol.", "until_")):
            msg = "simulation." + msg
        raise type(exc)(msg) from None


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read a scenario TOML file (see the module docstring for its layout).

    Raises ``FileNotFoundError`` if it is missing and ``ValueError`` naming the file, line
    and column for malformed TOML, or naming the field for a bad value.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"scenario file {str(p)!r} not found")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{p}: malformed TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{p}: not UTF-8 text: {exc}") from None
    return scenario_from_dict(data, base_dir=p.parent, name=p.stem)
