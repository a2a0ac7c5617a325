"""Progress bars: tqdm on a terminal, silent when stdout is not a TTY or ``quiet`` is set."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(
    iterable: Iterable[T], *, total: int | None = None, desc: str = "", quiet: bool = False
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar unless ``quiet`` or stdout is not a terminal."""
    disable = quiet or not sys.stdout.isatty()
    bar: Any = tqdm(iterable, total=total, desc=desc, disable=disable, leave=False)
    yield from bar
