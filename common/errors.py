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
