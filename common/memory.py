"""Refuse an impossible request at once: the memory a user's number implies, against the machine.

A careful tool (SQLite, ``numpy.empty`` with an impossible shape, PyTorch's allocator) says
"this would need 4.1 TB" before it starts, instead of running until the operating system
kills it. Every place where a number from a user sizes an allocation (learner ``count``, a
simulator trace of ``until_updates`` rows, a sweep's grid, a data set) estimates the bytes
the request implies and calls :func:`check_memory` first, which compares the estimate with
:func:`memory_limit` and raises one ``ValueError`` that names the field, the implied size,
the limit and what to do instead::

    simulation.until_updates: a trace of 100000000000 updates at 41 bytes each would take
    about 4.1 TB, more than the 21 GB of memory available; use --summary-only, a smaller
    until_updates, or until_time

The limit is the memory the operating system says can be allocated now without swapping
(:func:`available_memory`: Linux's ``MemAvailable``, bounded by a cgroup memory limit and by
``ulimit -v``; elsewhere the free physical pages or Windows' available physical memory).
The environment variable ``DLSYS_MEMORY_LIMIT`` (bytes, or a size such as ``2GB`` or
``512MiB``) replaces it, for a user who shares a machine and for tests. Sizes are printed in
decimal units (1 kB = 1000 bytes, as ``ls --si`` and disk makers count them).
"""

from __future__ import annotations

import os
import re
import sys
from fractions import Fraction
from pathlib import Path

#: Environment variable that replaces the measured limit (bytes or a size such as ``2GB``).
LIMIT_ENV = "DLSYS_MEMORY_LIMIT"

_UNITS = ("bytes", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_SUFFIX = {
    "": 1,
    "B": 1,
    "K": 10**3,
    "KB": 10**3,
    "M": 10**6,
    "MB": 10**6,
    "G": 10**9,
    "GB": 10**9,
    "T": 10**12,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
# cgroup limits at or above this many bytes mean "no limit" (v1 writes 2**63 - page size).
_NO_LIMIT = 2**60


def format_bytes(nbytes: float) -> str:
    """``nbytes`` in decimal units with two or three significant digits: ``"4.1 TB"``.

    >>> format_bytes(4_100_000_000_000), format_bytes(999), format_bytes(41_000_000)
    ('4.1 TB', '999 bytes', '41 MB')
    """
    if nbytes >= 999.5 * 1000.0 ** (len(_UNITS) - 1):
        return f"more than 1000 {_UNITS[-1]}"  # float() of a larger int would overflow
    v = float(nbytes)
    i = 0
    while abs(v) >= 999.5 and i < len(_UNITS) - 1:
        v /= 1000.0
        i += 1
    if i == 0:
        return f"{round(v)} bytes"
    return f"{v:.1f} {_UNITS[i]}" if abs(v) < 9.95 else f"{v:.0f} {_UNITS[i]}"


def parse_bytes(field: str, text: str) -> int:
    """Parse ``"2GB"``, ``"512MiB"``, ``"1.5e9"`` or ``"4096"`` as a whole number of bytes >= 1.

    Raises ``ValueError`` naming ``field`` for anything else.
    """
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?(?:[eE][0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).upper() if m else ""
    if m is None or unit not in _SUFFIX:
        raise ValueError(
            f"{field}: must be a size in bytes such as 4096, 2GB or 512MiB, got {text!r}"
        )
    n = int(Fraction(m.group(1)) * _SUFFIX[unit])
    if n < 1:
        raise ValueError(f"{field}: must be at least 1 byte, got {text!r}")
    return n


def _meminfo_available() -> int | None:
    try:
        text = Path("/proc/meminfo").read_text(encoding="ascii")
    except OSError:
        return None
    m = re.search(r"^MemAvailable:\s+(\d+) kB", text, re.MULTILINE)
    return int(m.group(1)) * 1024 if m else None


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_headroom() -> int | None:
    """Bytes left under a cgroup memory limit (v2 ``memory.max``, v1 ``limit_in_bytes``)."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        limit = _read_int(limit_file)  # v2 writes "max" when unlimited: not a number
        if limit is not None and limit < _NO_LIMIT:
            used = _read_int(usage_file) or 0
            return max(limit - used, 0)
    return None


def _address_space_headroom() -> int | None:
    """Bytes left under ``ulimit -v`` (RLIMIT_AS), or None without one."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        pages = int(Path("/proc/self/statm").read_text(encoding="ascii").split()[0])
        used = pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        used = 0
    return max(int(soft) - used, 0)


def _windows_available() -> int | None:  # pragma: no cover - exercised on Windows only
    if sys.platform != "win32":  # also tells mypy that windll exists below
        return None
    import ctypes

    class _Status(ctypes.Structure):
        _fields_ = [
            ("dwLength", ctypes.c_ulong),
            ("dwMemoryLoad", ctypes.c_ulong),
            ("ullTotalPhys", ctypes.c_ulonglong),
            ("ullAvailPhys", ctypes.c_ulonglong),
            ("ullTotalPageFile", ctypes.c_ulonglong),
            ("ullAvailPageFile", ctypes.c_ulonglong),
            ("ullTotalVirtual", ctypes.c_ulonglong),
            ("ullAvailVirtual", ctypes.c_ulonglong),
            ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
        ]

    status = _Status()
    status.dwLength = ctypes.sizeof(_Status)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
        return None
    return int(status.ullAvailPhys)


def _sysconf_available() -> int | None:
    """Free physical pages times the page size (POSIX systems without /proc/meminfo)."""
    for name in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            pages = os.sysconf(name)
            size = os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            continue
        if pages > 0 and size > 0:
            return int(pages) * int(size)
    return None


def available_memory() -> int | None:
    """Bytes this process can allocate now without swapping, or None if the OS does not say.

    Linux: ``MemAvailable`` from ``/proc/meminfo`` (free memory plus the page cache and
    slabs the kernel can reclaim), bounded by the headroom under a cgroup memory limit and
    under ``ulimit -v``. Windows: the available physical memory. Other POSIX systems: free
    physical pages times the page size (``sysconf``; all physical memory if that is missing).
    """
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        base = _windows_available()
    else:
        base = _meminfo_available()
        if base is None:
            base = _sysconf_available()
    bounds = [b for b in (base, _cgroup_headroom(), _address_space_headroom()) if b is not None]
    return min(bounds) if bounds else None


def memory_limit() -> int | None:
    """The most bytes one request may imply: ``DLSYS_MEMORY_LIMIT`` if set, else
    :func:`available_memory` (None: unknown, and then nothing is refused)."""
    text = os.environ.get(LIMIT_ENV)
    if text is not None and text.strip():
        return parse_bytes(LIMIT_ENV, text)
    return available_memory()


def check_memory(field: str, nbytes: int | float, advice: str, *, what: str | None = None) -> None:
    """Raise ``ValueError`` if a request of ``nbytes`` bytes cannot fit in :func:`memory_limit`.

    ``field`` is the argument or field whose value implies the size (as the user wrote it:
    ``learner[0].count``, ``--datasets``); ``what`` says what would be allocated and how
    the estimate was made (``"1000000000 learners at about 2.0 kB each"``); ``advice`` says
    what to do instead (``"use --summary-only, a smaller until_updates, or until_time"``).
    Call it before allocating, with an estimate of the bytes the request needs (the
    per-item bytes written beside the call).

    >>> check_memory("--datasets", 10**15, "use fewer data sets", what="the predictions")
    Traceback (most recent call last):
    ...
    ValueError: --datasets: the predictions would take about 1.0 PB, more than the 21 GB of
    memory available; use fewer data sets
    """
    limit = memory_limit()
    if limit is None or nbytes <= limit:
        return
    size = format_bytes(nbytes)
    about = "" if size.startswith("more") else "about "
    raise ValueError(
        f"{field}: {what or 'this request'} would take {about}{size}, more than "
        f"the {format_bytes(limit)} of memory available{_source()}; {advice}"
    )


def _source() -> str:
    return f" ({LIMIT_ENV})" if os.environ.get(LIMIT_ENV, "").strip() else ""
