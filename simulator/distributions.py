"""Compute-time distributions of a learner: how long one gradient takes, in seconds.

Each distribution is a small frozen dataclass with a ``sampler(rng)`` that returns a function
giving the next block of durations (so the engine draws in vectorised blocks instead of one
numpy call per gradient), its ``mean`` in seconds where finite, and ``exact``: whether its
durations are deterministic. Deterministic durations (``fixed``, ``times``, ``trace``) are
held as :class:`fractions.Fraction` values read from their decimal text, so ``0.1 + 0.2``
style drift can never reorder two events that should coincide.

Parsing from a scenario table is done by :func:`parse_distribution`, which names the field of
every bad value (``learner[2].compute.rate: must be > 0, got -1``).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dlsys.common import check_finite, check_positive, unknown_name

#: A duration: a Fraction (deterministic, exact), an int, or a float (drawn at random).
Time = Fraction | int | float

#: The block sizes the engine draws at once: start small (short runs draw little), then grow.
FIRST_BLOCK = 16
MAX_BLOCK = 4096


def exact(field_name: str, value: Any, *, allow_zero: bool = False) -> Fraction | int:
    """``value`` (seconds) as an exact number: the decimal it was written as, not its binary float.

    ``0.1`` becomes ``Fraction(1, 10)``; whole numbers become ``int`` (cheaper to add).
    Raises naming ``field_name`` if it is not finite and > 0 (>= 0 with ``allow_zero``).
    """
    if isinstance(value, Fraction):
        if value < 0 or (value == 0 and not allow_zero):
            raise ValueError(f"{field_name}: must be {'>=' if allow_zero else '>'} 0, got {value}")
        f = value
    else:
        check_positive(field_name, value, allow_zero=allow_zero)
        f = Fraction(repr(value))
    return int(f) if f.denominator == 1 else f


def _positive_text(field_name: str, text: str) -> Fraction | int:
    """A duration written as text in a trace file, exactly."""
    try:
        f = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{field_name}: not a number: {text.strip()!r}") from None
    if f <= 0:
        raise ValueError(f"{field_name}: durations must be > 0 seconds, got {text.strip()}")
    return int(f) if f.denominator == 1 else f


Sampler = Callable[[], Sequence[Time]]


@dataclass(frozen=True)
class Distribution:
    """Base class: a distribution of compute durations in seconds."""

    kind = "?"
    exact = False

    @property
    def mean(self) -> float:
        """Expected duration in seconds (``inf`` where the mean does not exist)."""
        raise NotImplementedError

    @property
    def length(self) -> int | None:
        """How many durations it can give (``None``: unlimited)."""
        return None

    def sampler(self, rng: np.random.Generator, speed: Fraction | int = 1) -> Sampler:
        """A function returning the next block of durations divided by ``speed``.

        Blocks grow from :data:`FIRST_BLOCK` to :data:`MAX_BLOCK`; an empty block means the
        distribution is exhausted.
        """
        blocks = self.block_sampler(rng, speed)
        return lambda: blocks().tolist()

    def block_sampler(
        self, rng: np.random.Generator, speed: Fraction | int = 1
    ) -> Callable[[], np.ndarray]:
        """Like :meth:`sampler` for a random distribution, but each block is a float64 array.

        The blocks (sizes and values) are exactly those of :meth:`sampler`: the vector engine
        draws with this and the SimPy engine with that, from the same stream.
        """
        state = {"size": FIRST_BLOCK}
        scale = 1.0 / float(speed)

        def draw() -> np.ndarray:
            n = state["size"]
            state["size"] = min(2 * n, MAX_BLOCK)
            out = self._draw(rng, n)
            if scale != 1.0:
                out = out * scale
            return out

        return draw

    def joined_sampler(
        self, rng: np.random.Generator, speed: Fraction | int = 1
    ) -> Callable[[int], np.ndarray]:
        """A function ``draw(m)`` returning the next values of the sequence
        :meth:`block_sampler`'s blocks make, at least ``m`` of them (m >= 1), as one float64
        array: the same values, in the same order, whatever the cut.

        Where :attr:`joinable` the cut does not matter to the stream, so ``draw(m)`` is one
        numpy call of exactly ``m`` values (the vector engine draws once per learner per
        window, and no more than it uses); otherwise it draws whole blocks one by one.
        """
        if not self.joinable:
            blocks = self.block_sampler(rng, speed)

            def draw_each(m: int) -> np.ndarray:
                parts, have = [], 0
                while have < m:
                    parts.append(blocks())
                    have += len(parts[-1])
                return parts[0] if len(parts) == 1 else np.concatenate(parts)

            return draw_each
        scale = 1.0 / float(speed)

        def draw_joined(m: int) -> np.ndarray:
            out = self._draw(rng, m)
            if scale != 1.0:
                out = out * scale
            return out

        return draw_joined

    #: True where one draw of a + b values gives the values of a draw of a followed by a
    #: draw of b (numpy draws them value by value and keeps no state between calls; no
    #: redraws): then :meth:`joined_sampler` may cut the sequence anywhere.
    joinable = False

    def _draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The parameters as a plain dict (for summaries)."""
        out: dict[str, Any] = {"dist": self.kind}
        for k, v in self.__dict__.items():
            if k == "values" and len(v) > 8:
                out["n_values"] = len(v)
            elif isinstance(v, Fraction):
                out[k] = float(v)
            elif isinstance(v, tuple):
                out[k] = [float(x) for x in v]
            else:
                out[k] = v
        return out


@dataclass(frozen=True)
class Fixed(Distribution):
    """Every gradient takes ``value`` seconds."""

    value: Time
    kind = "fixed"
    exact = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", exact("value", self.value))

    @property
    def mean(self) -> float:
        return float(self.value)

    def sampler(self, rng: np.random.Generator, speed: Fraction | int = 1) -> Sampler:
        d = _div(self.value, speed)
        block = [d] * MAX_BLOCK
        return lambda: block


@dataclass(frozen=True)
class Times(Distribution):
    """Explicit completion times in seconds, as in the homework: ``values = [1, 2, 3, 4]``.

    They are the times at which an unblocked learner starting at 0 with no communication
    finishes its gradients; the engine uses their successive differences ``t1 - 0, t2 - t1,
    ...`` as durations, so start delays, waits and network time shift later completions. The
    learner stops after the last one.
    """

    values: tuple[Time, ...]
    kind = "times"
    exact = True

    def __post_init__(self) -> None:
        vals = tuple(exact(f"values[{i}]", v) for i, v in enumerate(self.values))
        if not vals:
            raise ValueError("values: must list at least one completion time, got []")
        for i in range(1, len(vals)):
            if vals[i] <= vals[i - 1]:
                raise ValueError(
                    f"values[{i}]: times must be strictly increasing, got "
                    f"{float(vals[i - 1])!r} then {float(vals[i])!r}"
                )
        object.__setattr__(self, "values", vals)

    @property
    def mean(self) -> float:
        return float(self.values[-1]) / len(self.values)

    @property
    def length(self) -> int | None:
        return len(self.values)

    def sampler(self, rng: np.random.Generator, speed: Fraction | int = 1) -> Sampler:
        prev: Time = 0
        durs = []
        for v in self.values:
            durs.append(_div(v - prev, speed))
            prev = v
        blocks = [durs, []]
        return lambda: blocks.pop(0) if blocks else []


@dataclass(frozen=True)
class Trace(Distribution):
    """Durations in seconds read from one column of a CSV file, used in order.

    ``repeat`` cycles through them; otherwise the learner stops after the last one.
    """

    values: tuple[Time, ...]
    path: str = ""
    repeat: bool = False
    kind = "trace"
    exact = True

    def __post_init__(self) -> None:
        vals = tuple(exact(f"values[{i}]", v) for i, v in enumerate(self.values))
        if not vals:
            raise ValueError(f"trace {self.path!r}: no durations")
        object.__setattr__(self, "values", vals)

    @property
    def mean(self) -> float:
        return float(sum(self.values, Fraction(0))) / len(self.values)

    @property
    def length(self) -> int | None:
        return None if self.repeat else len(self.values)

    def sampler(self, rng: np.random.Generator, speed: Fraction | int = 1) -> Sampler:
        durs = [_div(v, speed) for v in self.values]
        if self.repeat:
            return lambda: durs
        blocks = [durs, []]
        return lambda: blocks.pop(0) if blocks else []

    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike[str],
        *,
        column: str | int = 0,
        repeat: bool = False,
        field_name: str = "path",
    ) -> Trace:
        """Read durations (seconds, > 0) from ``column`` (header name or 0-based index) of a CSV.

        A first row that is not numeric is taken as a header. Raises ``FileNotFoundError``
        for a missing file and ``ValueError`` (with file, line and column) for an empty file
        or a value that is not a positive number.
        """
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{field_name}: trace file {str(p)!r} not found")
        with open(p, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
        if not rows:
            raise ValueError(f"{field_name}: trace file {str(p)!r} is empty")
        header: list[str] | None = None
        try:
            Fraction(rows[0][0].strip())
        except (ValueError, ZeroDivisionError):
            header = [c.strip() for c in rows[0]]
            rows = rows[1:]
        if isinstance(column, str):
            if header is None or column not in header:
                raise unknown_name(f"column of {str(p)!r}", column, header or [])
            col = header.index(column)
        else:
            col = column
        if not rows:
            raise ValueError(f"{field_name}: trace file {str(p)!r} has a header but no durations")
        vals = []
        first_line = 2 if header is not None else 1
        for i, r in enumerate(rows):
            where = f"{field_name}: {p.name} line {first_line + i}"
            if col >= len(r):
                raise ValueError(f"{where}: no column {col}")
            vals.append(_positive_text(where, r[col]))
        return cls(values=tuple(vals), path=str(p), repeat=repeat)


def _div(value: Time, speed: Fraction | int) -> Time:
    """``value / speed`` exactly (an int where the result is whole)."""
    if speed == 1:
        return value
    r = Fraction(value) / speed
    return int(r) if r.denominator == 1 else r


@dataclass(frozen=True)
class Exponential(Distribution):
    """Exponential durations with ``rate`` per second (mean 1 / rate seconds)."""

    rate: float
    kind = "exponential"
    joinable = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", check_positive("rate", self.rate))

    @property
    def mean(self) -> float:
        return 1.0 / self.rate

    def _draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.exponential(1.0 / self.rate, n)


@dataclass(frozen=True)
class ShiftedExponential(Distribution):
    """``shift`` seconds plus an exponential with ``rate`` per second (Dutta et al. 2018)."""

    shift: float
    rate: float
    kind = "shifted-exponential"
    joinable = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "shift", check_positive("shift", self.shift, allow_zero=True))
        object.__setattr__(self, "rate", check_positive("rate", self.rate))

    @property
    def mean(self) -> float:
        return self.shift + 1.0 / self.rate

    def _draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.shift + rng.exponential(1.0 / self.rate, n)


@dataclass(frozen=True)
class Uniform(Distribution):
    """Uniform durations on [low, high) seconds, 0 <= low < high."""

    low: float
    high: float
    kind = "uniform"

    def __post_init__(self) -> None:
        lo = check_positive("low", self.low, allow_zero=True)
        hi = check_positive("high", self.high)
        if hi <= lo:
            raise ValueError(f"high: must be > low ({self.low!r}), got {self.high!r}")
        object.__setattr__(self, "low", lo)
        object.__setattr__(self, "high", hi)

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2

    @property
    def joinable(self) -> bool:  # type: ignore[override]
        """Joinable unless ``low == 0`` (a draw of exactly 0 is redrawn)."""
        return self.low > 0

    def _draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        out = rng.uniform(self.low, self.high, n)
        # A draw of exactly 0 (low == 0) would be a zero-time gradient; redraw those.
        while self.low == 0.0 and not out.all():
            bad = out == 0.0
            out[bad] = rng.uniform(self.low, self.high, int(bad.sum()))
        return out


@dataclass(frozen=True)
class Normal(Distribution):
    """Normal(mu, std) seconds truncated at 0 (draws <= 0 are redrawn); TOML keys mean, std.

    ``mu`` and ``std`` are the mean and standard deviation before truncation; ``mean`` is the
    mean after it.
    """

    mu: float
    std: float
    kind = "normal"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mu", check_finite("mean", self.mu))
        object.__setattr__(self, "std", check_positive("std", self.std))
        if self.mu / self.std < -5:
            raise ValueError(
                f"mean: {self.mu!r} is more than 5 std below 0; the truncated normal would "
                "almost never be drawn (use a mean > -5 * std)"
            )

    @property
    def mean(self) -> float:
        # Mean of a normal truncated to (0, inf): mu + sigma * phi(a) / (1 - Phi(a)), a = -mu/sigma.
        a = -self.mu / self.std
        phi = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
        tail = 0.5 * math.erfc(a / math.sqrt(2))
        return self.mu + self.std * phi / tail

    def _draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        out = rng.normal(self.mu, self.std, n)
        bad = out <= 0
        while bad.any():
            out[bad] = rng.normal(self.mu, self.std, int(bad.sum()))
            bad = out <= 0
        return out

    def describe(self) -> dict[str, Any]:
        return {"dist": "normal", "mean": self.mu, "std": self.std}


_LOG_FLOAT_MAX = math.log(np.finfo(np.float64).max)


@dataclass(frozen=True)
class LogNormal(Distribution):
    """exp(Normal(mu, sigma)) seconds: ``mu`` and ``sigma`` are of the underlying normal."""

    mu: float
    sigma: float
    kind = "lognormal"
    joinable = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "mu", check_finite("mu", self.mu))
        object.__setattr__(self, "sigma", check_positive("sigma", self.sigma))
        # The mean exp(mu + sigma^2 / 2) must be a float: log(largest float) = 709.78.
        if self.mu + self.sigma * self.sigma / 2 > _LOG_FLOAT_MAX:
            raise ValueError(
                f"sigma: mu + sigma^2 / 2 must be <= {_LOG_FLOAT_MAX:.2f} so that the mean "
                f"exp(mu + sigma^2 / 2) is a finite number of seconds, got mu = {self.mu!r}, "
                f"sigma = {self.sigma!r}"
            )

    @property
    def mean(self) -> float:
        return math.exp(self.mu + self.sigma**2 / 2)

    def _draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.lognormal(self.mu, self.sigma, n)


@dataclass(frozen=True)
class Pareto(Distribution):
    """Pareto durations: minimum ``xm`` seconds, tail index ``alpha`` (P(X > x) = (xm/x)^alpha)."""

    alpha: float
    xm: float
    kind = "pareto"
    joinable = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", check_positive("alpha", self.alpha))
        object.__setattr__(self, "xm", check_positive("xm", self.xm))

    @property
    def mean(self) -> float:
        return math.inf if self.alpha <= 1 else self.alpha * self.xm / (self.alpha - 1)

    def _draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        # numpy's pareto is the Lomax (Pareto II) form; 1 + it is the classic Pareto on [1, inf).
        return self.xm * (1.0 + rng.pareto(self.alpha, n))


#: The distribution kinds, their classes and their TOML keys (besides ``dist``).
DISTRIBUTIONS: dict[str, tuple[type[Distribution], tuple[str, ...]]] = {
    "fixed": (Fixed, ("value",)),
    "times": (Times, ("values",)),
    "trace": (Trace, ("path", "column", "repeat")),
    "exponential": (Exponential, ("rate",)),
    "shifted-exponential": (ShiftedExponential, ("shift", "rate")),
    "uniform": (Uniform, ("low", "high")),
    "normal": (Normal, ("mean", "std")),
    "lognormal": (LogNormal, ("mu", "sigma")),
    "pareto": (Pareto, ("alpha", "xm")),
}


def parse_distribution(
    table: Any, field_name: str, base_dir: str | os.PathLike[str] | None = None
) -> Distribution:
    """Build a distribution from a scenario table such as ``{dist = "exponential", rate = 2.0}``.

    Every error names the field, e.g. ``learner[2].compute.rate: must be > 0, got -1``.
    ``trace`` paths are relative to ``base_dir`` (the scenario file's folder).
    """
    if isinstance(table, Distribution):
        return table
    if not isinstance(table, dict):
        raise TypeError(
            f'{field_name}: must be a table like {{ dist = "exponential", rate = 1.0 }}, '
            f"got {table!r}"
        )
    if "dist" not in table:
        raise ValueError(f"{field_name}.dist: missing (one of {', '.join(DISTRIBUTIONS)})")
    kind = table["dist"]
    if not isinstance(kind, str) or kind not in DISTRIBUTIONS:
        raise ValueError(
            f"{field_name}.dist: {unknown_name('distribution', str(kind), DISTRIBUTIONS)}"
        )
    cls, keys = DISTRIBUTIONS[kind]
    for k in table:
        if k != "dist" and k not in keys:
            raise ValueError(f"{field_name}: {unknown_name(f'key for dist {kind!r}', k, keys)}")
    required = {"trace": ("path",)}.get(kind, keys)
    for k in required:
        if k not in table:
            raise ValueError(f"{field_name}.{k}: missing (dist {kind!r} needs {', '.join(keys)})")
    if kind == "trace":
        path = table["path"]
        if not isinstance(path, str):
            raise TypeError(f"{field_name}.path: must be a string, got {path!r}")
        p = Path(path)
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        column = table.get("column", 0)
        if isinstance(column, bool) or not isinstance(column, int | str):
            raise TypeError(
                f"{field_name}.column: must be a name or a 0-based index, got {column!r}"
            )
        if isinstance(column, int) and column < 0:
            raise ValueError(f"{field_name}.column: must be >= 0, got {column}")
        repeat = table.get("repeat", False)
        if not isinstance(repeat, bool):
            raise TypeError(f"{field_name}.repeat: must be true or false, got {repeat!r}")
        return Trace.from_csv(p, column=column, repeat=repeat, field_name=f"{field_name}.path")
    if kind == "times":
        vals = table["values"]
        if not isinstance(vals, list):
            raise TypeError(f"{field_name}.values: must be a list of times, got {vals!r}")
        args: list[Any] = [tuple(vals)]
    else:
        args = [table[k] for k in keys]
    try:
        return cls(*args)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{field_name}.{exc}") from None
