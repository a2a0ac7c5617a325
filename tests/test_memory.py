"""dlsys.common.memory: the one check that refuses a request the machine cannot hold."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from dlsys.common import check_memory, memory_limit
from dlsys.common import memory as mem


@pytest.mark.parametrize(
    ("nbytes", "text"),
    [
        (0, "0 bytes"),
        (999, "999 bytes"),
        (1000, "1.0 kB"),  # 1000 / 1000 = 1.0
        (41_000_000, "41 MB"),  # 41e6 / 1e6 = 41, two digits: no decimal
        (4_100_000_000_000, "4.1 TB"),  # 100e9 updates x 41 bytes = 4.1e12 bytes (the issue)
        (9_960_000_000, "10 GB"),  # 9.96 rounds to 10.0, printed as 10
        (2**30, "1.1 GB"),  # 1073741824 / 1e9 = 1.07
        (10**400, "more than 1000 YB"),  # float(10**400) would overflow
    ],
)
def test_format_bytes_decimal_units(nbytes: int, text: str) -> None:
    assert mem.format_bytes(nbytes) == text


@pytest.mark.parametrize(
    ("text", "nbytes"),
    [
        ("4096", 4096),
        ("2GB", 2_000_000_000),
        ("2 gb", 2_000_000_000),
        ("512MiB", 512 * 2**20),  # 536870912
        ("1.5e9", 1_500_000_000),
        ("0.5k", 500),
    ],
)
def test_parse_bytes(text: str, nbytes: int) -> None:
    assert mem.parse_bytes("DLSYS_MEMORY_LIMIT", text) == nbytes


@pytest.mark.parametrize("text", ["", "lots", "-1", "2 parsecs", "0", "0.1", "nan", "inf"])
def test_parse_bytes_refuses_naming_the_field(text: str) -> None:
    with pytest.raises(ValueError, match=r"^DLSYS_MEMORY_LIMIT: must be "):
        mem.parse_bytes("DLSYS_MEMORY_LIMIT", text)


def test_available_memory_is_below_physical_memory() -> None:
    avail = mem.available_memory()
    assert avail is not None and avail > 0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total = re.search(r"MemTotal:\s+(\d+) kB", meminfo.read_text())
        assert total is not None
        assert avail <= int(total.group(1)) * 1024


def test_fallback_without_proc_meminfo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where /proc/meminfo is missing (macOS, BSD), sysconf's free pages stand in."""
    monkeypatch.setattr(mem, "_meminfo_available", lambda: None)
    monkeypatch.setattr(mem, "_cgroup_headroom", lambda: None)
    monkeypatch.setattr(mem, "_address_space_headroom", lambda: None)
    import os

    expected = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    got = mem.available_memory()
    assert got is not None
    assert abs(got - expected) <= 0.05 * expected  # free pages move while the test runs


def test_smallest_bound_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mem, "_meminfo_available", lambda: 20 * 10**9)
    monkeypatch.setattr(mem, "_cgroup_headroom", lambda: 3 * 10**9)
    monkeypatch.setattr(mem, "_address_space_headroom", lambda: None)
    assert mem.available_memory() == 3 * 10**9
    monkeypatch.setattr(mem, "_cgroup_headroom", lambda: None)
    assert mem.available_memory() == 20 * 10**9
    monkeypatch.setattr(mem, "_meminfo_available", lambda: None)
    monkeypatch.setattr(mem, "_sysconf_available", lambda: None)
    assert mem.available_memory() is None


def test_ulimit_v_bounds_the_limit() -> None:
    """Under ``ulimit -v`` (RLIMIT_AS) of 4 GB the headroom is below 4 GB, whatever the RAM."""
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_AS, (4 * 10**9, resource.RLIM_INFINITY))\n"
        "from dlsys.common.memory import available_memory\n"
        "print(available_memory())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    avail = int(out.stdout)
    assert 0 < avail < 4 * 10**9


def test_environment_replaces_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLSYS_MEMORY_LIMIT", "1MB")
    assert memory_limit() == 10**6
    monkeypatch.setenv("DLSYS_MEMORY_LIMIT", "a lot")
    with pytest.raises(ValueError, match=r"^DLSYS_MEMORY_LIMIT: must be a size"):
        memory_limit()
    monkeypatch.setenv("DLSYS_MEMORY_LIMIT", "")  # empty: the machine's own figure
    monkeypatch.setattr(mem, "available_memory", lambda: 123_456)
    assert memory_limit() == 123_456


def test_check_memory_passes_what_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLSYS_MEMORY_LIMIT", "1MB")
    check_memory("count", 10**6, "use fewer")  # exactly the limit fits
    check_memory("count", 0, "use fewer")


def test_check_memory_names_field_size_limit_and_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLSYS_MEMORY_LIMIT", "2GB")
    with pytest.raises(ValueError) as info:
        check_memory(
            "simulation.until_updates",
            100_000_000_000 * 41,  # 1e11 updates x 41 bytes = 4.1e12 bytes
            "use --summary-only, a smaller until_updates, or until_time",
            what="a trace of 100000000000 updates at 41 bytes each",
        )
    assert str(info.value) == (
        "simulation.until_updates: a trace of 100000000000 updates at 41 bytes each would take "
        "about 4.1 TB, more than the 2.0 GB of memory available (DLSYS_MEMORY_LIMIT); use "
        "--summary-only, a smaller until_updates, or until_time"
    )


def test_check_memory_against_the_machine() -> None:
    """Without the variable, the limit is the machine's: a petabyte never fits, a byte does."""
    import os

    if os.environ.get("DLSYS_MEMORY_LIMIT"):
        pytest.skip("DLSYS_MEMORY_LIMIT is set in this environment")
    check_memory("x", 1, "nothing")
    with pytest.raises(ValueError, match=r"^x: this request would take about 1.0 PB, more than"):
        check_memory("x", 10**15, "nothing")


def _numpy_8pb() -> object:
    import numpy as np

    return np.empty(10**15)  # 10**15 float64 = 8e15 bytes: numpy's MemoryError


def _torch_4pb() -> object:
    import torch

    return torch.empty(10**15)  # 10**15 float32 = 4e15 bytes: torch's allocator RuntimeError


@pytest.mark.parametrize(
    ("alloc", "words"),
    [(_numpy_8pb, "Unable to allocate"), (_torch_4pb, "can't allocate memory")],
    ids=["numpy", "torch"],
)
def test_out_of_memory_is_one_line_naming_where(
    alloc: object, words: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An impossible allocation the size checks missed: one line, exit 1, where and what."""
    import dlsys.cli.info
    from dlsys.cli.main import main

    monkeypatch.setattr(dlsys.cli.info, "collect", alloc)
    assert main(["info"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("dlsys: error: out of memory in dlsys.cli.info.run (line ")
    assert words in err  # numpy's or torch's own words: what was being allocated


def test_memory_error_ends_the_process_at_once() -> None:
    """Run as the dlsys command, the process leaves by os._exit: no interpreter teardown
    (the atexit hook below never prints), so nothing the run built is freed object by object."""
    code = (
        "import atexit, sys\n"
        "import numpy as np\n"
        "import dlsys.cli.info\n"
        "atexit.register(lambda: print('teardown ran', file=sys.stderr))\n"
        "dlsys.cli.info.collect = lambda: np.empty(10**15)\n"
        "sys.argv = ['dlsys', 'info']\n"
        "from dlsys.cli.main import main\n"
        "sys.exit(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.startswith("dlsys: error: out of memory in dlsys.cli.info.run")
    assert out.stderr.count("\n") == 1 and "teardown ran" not in out.stderr
