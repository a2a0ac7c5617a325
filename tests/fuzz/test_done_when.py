"""Issue 16's three cases, as a new user types them: each is refused at once, exit code 2,
one line naming the field and the implied size (the machine's own memory is the limit).

The sizes are far above any machine's memory (terabytes), so the tests hold everywhere:
- ``count = 1000000000``: 10**9 learners x 4096 bytes = 4.1e12 bytes, "4.1 TB";
- ``until_updates = 100000000000`` with 4 async learners (one trace row per update):
  10**11 rows x 336 bytes + 4 x 4096 = 3.36e13 bytes, "34 TB";
- ``dlsys biasvar --datasets 1000000000`` (50 points: 40 train, 10 test): per data set
  400 + 8 x (2 x 40 + 10) + 4 x 8 x 10 = 1440 bytes, x 10**9 = 1.44e12 bytes, "1.4 TB".

The subprocess timeout is a hang guard, not a timing claim (times are in the report).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HANG_GUARD_S = 60

COUNT = """
[simulation]
until_updates = 10

[[learner]]
count = 1000000000
compute = { dist = "exponential", rate = 1.0 }
"""

UPDATES = """
[simulation]
until_updates = 100000000000

[[learner]]
count = 4
compute = { dist = "exponential", rate = 1.0 }
"""


def _dlsys(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DLSYS_MEMORY_LIMIT"}
    return subprocess.run(
        [sys.executable, "-m", "dlsys.cli", *argv],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        env=env,
    )


def _refused(out: subprocess.CompletedProcess[str], field: str, size: str) -> None:
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith(f"dlsys: error: {field}: "), out.stderr
    assert f"would take about {size}, more than the " in out.stderr
    assert "of memory available" in out.stderr


@pytest.mark.parametrize(
    ("text", "field", "size"),
    [
        (COUNT, "learner[0].count", "4.1 TB"),
        (UPDATES, "simulation.until_updates", "34 TB"),
    ],
    ids=["count", "until_updates"],
)
def test_scenario_sizes_refused(text: str, field: str, size: str, tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text(text)
    out = _dlsys("simulate", str(path))
    _refused(out, field, size)
    if field.endswith("until_updates"):
        assert "--summary-only, a smaller until_updates, or until_time" in out.stderr


def test_biasvar_datasets_refused() -> None:
    out = _dlsys("biasvar", "--datasets", "1000000000")
    _refused(out, "--datasets", "1.4 TB")  # the flag, not the API name n_datasets
