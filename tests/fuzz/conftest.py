"""Shared pieces of the fuzz tests: run ``dlsys`` in-process under a time limit, judge the end.

Every fuzz case must end in one of two ways, within :data:`CASE_SECONDS`:

- a clean refusal: exit code 2 and exactly one line ``dlsys: error: <field>: ...`` on
  stderr (no traceback, no exception class name);
- a normal run: exit code 0.

Anything else (exit 1 with ``SomeError: ...``, an exception escaping ``main``, a hang) fails
the case. The cases run with ``DLSYS_MEMORY_LIMIT`` at :data:`FUZZ_MEMORY_LIMIT`, so that
a "huge" value is refused by the size checks at once instead of starting a long run.
Hypothesis settings: few examples, no deadline (the alarm below bounds each case instead:
timing on a shared 2-core machine is noisy), derandomized so ``make test`` sees the same
cases every time, no example database written into the tree (the ``dlsys-fuzz`` profile).
The ``fuzz`` fixture gives :meth:`Fuzz.run` and :meth:`Fuzz.check`.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings

#: Seconds one case may take before it counts as a hang.
CASE_SECONDS = 20
#: Memory limit for the fuzz cases (bytes, as DLSYS_MEMORY_LIMIT reads it).
FUZZ_MEMORY_LIMIT = "256MB"

# Tests use it as @settings(parent=settings.get_profile("dlsys-fuzz"), max_examples=N).
settings.register_profile(
    "dlsys-fuzz",
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=False,
)


class Hang(BaseException):
    """Raised by the alarm when a case runs past :data:`CASE_SECONDS` (a BaseException, so
    that no ``except Exception`` on the way swallows it)."""


@contextlib.contextmanager
def time_limit(seconds: int = CASE_SECONDS) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread if the block runs longer than ``seconds``."""

    def _alarm(_sig: int, _frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Outcome:
    """Exit code, stdout and stderr of one in-process ``dlsys`` run."""

    argv: list[str]
    code: int
    out: str
    err: str


def run_dlsys(argv: Sequence[str], seconds: int = CASE_SECONDS) -> Outcome:
    """Run ``dlsys ARGV`` in this process (``main(argv)``) under the time limit, with
    ``DLSYS_MEMORY_LIMIT`` at :data:`FUZZ_MEMORY_LIMIT`, in a scratch working folder
    (relative paths in ``argv`` would not resolve: pass absolute ones)."""
    from dlsys.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    args = [str(a) for a in argv]
    saved = os.environ.get("DLSYS_MEMORY_LIMIT")
    os.environ["DLSYS_MEMORY_LIMIT"] = FUZZ_MEMORY_LIMIT
    cwd = os.getcwd()
    scratch = tempfile.mkdtemp(prefix="dlsys-fuzz-")
    os.chdir(scratch)  # commands that write results/ by default write them here
    try:
        with time_limit(seconds), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(args)
    finally:
        os.chdir(cwd)
        shutil.rmtree(scratch, ignore_errors=True)
        if saved is None:
            del os.environ["DLSYS_MEMORY_LIMIT"]
        else:
            os.environ["DLSYS_MEMORY_LIMIT"] = saved
    return Outcome(args, code, out.getvalue(), err.getvalue())


# "dlsys: error: <field>: <message>": the field is a name, a path like learner[2].compute.rate,
# an option like --datasets, a file path, or a few words ("scenario file 'x' not found").
_REFUSAL = re.compile(r"^dlsys: error: \S[^\n]*\n$")
_EXCEPTION_NAME = re.compile(r"^dlsys: error: [A-Z][A-Za-z]*(Error|Exception|Warning)\b")


def assert_clean(o: Outcome, *names: str) -> None:
    """The case ended in a normal run or a clean one-line refusal naming one of ``names``.

    ``names`` are the fields (or files) the input changed; the refusal must mention at least
    one of them when any are given.
    """
    where = f"dlsys {' '.join(o.argv)}\nexit {o.code}\nstderr: {o.err!r}"
    if o.code == 0:
        return
    assert o.code == 2, f"neither a normal run nor a refusal:\n{where}"
    assert _REFUSAL.match(o.err), f"a refusal must be one line 'dlsys: error: ...':\n{where}"
    assert not _EXCEPTION_NAME.match(o.err), f"a refusal must not be a bare exception:\n{where}"
    assert "Traceback" not in o.err, where
    if names:
        assert any(n in o.err for n in names), f"the refusal names none of {names}:\n{where}"


class Fuzz:
    """What the fuzz tests share (a session fixture, so hypothesis may call it per case)."""

    run = staticmethod(run_dlsys)
    check = staticmethod(assert_clean)
    CASE_SECONDS = CASE_SECONDS


@pytest.fixture(scope="session")
def fuzz() -> Fuzz:
    """:func:`run_dlsys` and :func:`assert_clean` for the fuzz tests."""
    return Fuzz()
