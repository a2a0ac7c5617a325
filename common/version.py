"""The installed dlsys version (one definition for ``dlsys --version``, ``dlsys info`` and
the report's environment section)."""

from __future__ import annotations

__all__ = ["dlsys_version"]


def dlsys_version() -> str:
    """The installed dlsys version (``"0+unknown"`` when running from an uninstalled tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dlsys")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        return "0+unknown"
