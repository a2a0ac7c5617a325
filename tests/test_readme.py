"""The README's examples run: every ``$ dlsys ...`` line of its ``console`` blocks and every
``python`` block, in a scratch folder that sees the repository's ``examples/``."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)
COMMANDS = [
    line[2:].strip()
    for lang, body in BLOCKS
    if lang == "console"
    for line in body.splitlines()
    if line.startswith("$ ")
]
PYTHON = [body for lang, body in BLOCKS if lang == "python"]


def test_readme_has_examples_for_every_area() -> None:
    for verb in ("simulate", "cost", "biasvar", "curves", "train", "reproduce", "info"):
        assert any(c.split()[1] == verb for c in COMMANDS), verb
    assert len(PYTHON) >= 3
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README):
        assert (REPO / image).is_file(), f"README shows {image}, which is not committed"


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    (tmp_path / "examples").symlink_to(REPO / "examples")
    return tmp_path


def _env() -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command(command: str, scratch: Path) -> None:
    args = shlex.split(command)
    assert args[0] == "dlsys"
    proc = subprocess.run(
        args, cwd=scratch, env=_env(), capture_output=True, text=True, check=False, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    if "--json" in args:
        import json

        json.loads(proc.stdout)


@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_readme_python(index: int, scratch: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PYTHON[index]],
        cwd=scratch,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
