"""Error messages that name the field, the bad value and what is allowed.

Every area validates its input at the boundary and raises ``ValueError`` (bad value),
``TypeError`` (bad type) or ``FileNotFoundError`` (missing file). The CLI turns these three
into one line ``dlsys: error: ...`` and exit code 2.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any

import numpy as np


def nearest(name: str, choices: Iterable[str], n: int = 1) -> list[str]:
    """Return up to ``n`` entries of ``choices`` closest to ``name`` (possibly none)."""
    pool = list(choices)
    lowered = {c.lower(): c for c in pool}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[h] for h in hits]


def unknown_name(what: str, name: str, choices: Iterable[str]) -> ValueError:
    """Build the ``ValueError`` for an unknown name, suggesting the nearest valid one.

    >>> str(unknown_name("protocol", "asnyc", ["async", "sync"]))
    "unknown protocol 'asnyc'; did you mean 'async'? (valid: async, sync)"
    """
    pool = sorted(choices)
    hint = nearest(name, pool)
    msg = f"unknown {what} {name!r}"
    if hint:
        msg += f"; did you mean {hint[0]!r}?"
    msg += f" (valid: {', '.join(pool)})"
    return ValueError(msg)


def check_finite(field: str, value: Any) -> float:
    """Return ``value`` as a float, or raise naming ``field`` if it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{field}: must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{field}: must be finite, got {value!r}")
    return v


def check_positive(field: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float if finite and > 0 (>= 0 with ``allow_zero``), else raise."""
    v = check_finite(field, value)
    if allow_zero and v < 0:
        raise ValueError(f"{field}: must be >= 0, got {value!r}")
    if not allow_zero and v <= 0:
        raise ValueError(f"{field}: must be > 0, got {value!r}")
    return v


def check_int(
    field: str, value: Any, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Return ``value`` as an ``int`` if it is an integer in ``[minimum, maximum]``, else raise.

    ``bool`` is refused (``True`` is not a count); numpy integers are accepted. The one
    wording for every integer field: ``"<field>: must be an integer, got 'x'"`` (``TypeError``)
    and ``"<field>: must be >= 1, got 0"`` (``ValueError``).

    >>> check_int("batch_size", 0, minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: batch_size: must be >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{field}: must be an integer, got {value!r}")
    v = int(value)
    if minimum is not None and maximum is not None and not minimum <= v <= maximum:
        raise ValueError(f"{field}: must be in [{minimum}, {maximum}], got {v}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{field}: must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{field}: must be <= {maximum}, got {v}")
    return v


def check_choice(field: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise naming the nearest valid one.

    >>> check_choice("rule", "constnat", ["constant", "inverse"])
    Traceback (most recent call last):
    ...
    ValueError: rule: unknown value 'constnat'; did you mean 'constant'? (valid: constant, inverse)
    """
    pool = list(choices)
    if not isinstance(value, str):
        raise TypeError(f"{field}: must be one of {', '.join(sorted(pool))}, got {value!r}")
    if value not in pool:
        raise ValueError(f"{field}: {unknown_name('value', value, pool)}")
    return value
