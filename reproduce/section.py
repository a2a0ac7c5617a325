"""What a report section is: the :class:`Section` itself, the :class:`Context` it runs in,
the :class:`SectionResult` it returns and the :class:`SectionOutcome` the report records.

The section functions (:mod:`dlsys.reproduce.sections`, :mod:`.training_sections`) and the
report engine (:mod:`dlsys.reproduce.report`) both build on this module, so neither imports
the other back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "SIZES",
    "Context",
    "Section",
    "SectionOutcome",
    "SectionResult",
    "markdown_table",
]

#: Report sizes: ``tiny`` (tests), ``quick`` (built-in data, short runs), ``full``.
SIZES = ("tiny", "quick", "full")


@dataclass(frozen=True)
class Context:
    """What a section needs: its output folder and how big to run.

    ``out`` is the section's own folder inside the staged report (write figures and data
    there; refer to them in Markdown by ``rel(path)``); ``size`` is one of :data:`SIZES`;
    ``data_root`` is where MNIST/FashionMNIST live for ``full`` runs (``None``: built-in data);
    ``seed`` seeds every random choice; ``quiet`` silences progress bars; ``previous`` holds
    the outcomes of the sections that ran before this one (the environment section reports
    their durations).
    """

    out: Path
    report_root: Path
    size: str = "quick"
    data_root: Path | None = None
    seed: int = 0
    quiet: bool = True
    previous: tuple[SectionOutcome, ...] = ()

    def rel(self, path: Path) -> str:
        """``path`` relative to the report's folder, as a Markdown link target."""
        return path.relative_to(self.report_root).as_posix()

    def pick(self, tiny: Any, quick: Any, full: Any) -> Any:
        """The value for this context's size."""
        return {"tiny": tiny, "quick": quick, "full": full}[self.size]


@dataclass
class SectionResult:
    """A section's contribution: Markdown (without its heading) and the numbers behind it."""

    markdown: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Section:
    """One report section: a short name for ``--only``, a title and the function that runs it."""

    name: str
    title: str
    run: Callable[[Context], SectionResult]


@dataclass
class SectionOutcome:
    """How a section went: its result, or the error that stopped it, and its duration (s)."""

    section: Section
    seconds: float
    result: SectionResult | None = None
    error: str | None = None
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        """True when the section ran without an error."""
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: name, title, ok, seconds, error and the section's data (or None)."""
        return {
            "name": self.section.name,
            "title": self.section.title,
            "ok": self.ok,
            "seconds": self.seconds,
            "error": self.error,
            "data": self.result.data if self.result else None,
        }


def markdown_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A GitHub-flavoured Markdown table: ``header`` then one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
