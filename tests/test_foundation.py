"""The package layout, the compiled module's self-description and the CLI conventions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dlsys.kernels
from dlsys.cli.main import main

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m dlsys.cli ARGS`` in a fresh process (cwd defaults to a temp dir)."""
    return subprocess.run(
        [sys.executable, "-m", "dlsys.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning"},
    )


def test_backends_reports_the_build() -> None:
    b = dlsys.kernels.backends()
    assert b["cpu"] is True
    assert b["openmp_threads"] >= 1
    assert isinstance(b["cuda_compiled"], bool)
    # Available means compiled and a device seen; without a device there must be a reason.
    assert b["cuda_available"] == (b["cuda_compiled"] and len(b["cuda_devices"]) > 0)
    if not b["cuda_devices"]:
        assert b["cuda_error"]
    if b["cuda_compiled"]:
        assert b["cuda_architectures"] == "80,90"
        assert b["cuda_runtime_version"] >= 11000
    else:
        assert b["cuda_runtime_version"] == 0


def test_backends_agrees_with_the_machine() -> None:
    import shutil

    import torch

    b = dlsys.kernels.backends()
    if shutil.which("nvcc") and "-DDLSYS_CUDA=OFF" not in os.environ.get("CMAKE_ARGS", ""):
        # The build found nvcc, so the CUDA sources must have been compiled in.
        assert b["cuda_compiled"]
    if not torch.cuda.is_available():
        assert b["cuda_devices"] == []


def test_omp_threads_can_be_set_and_rejects_zero() -> None:
    from dlsys.kernels import _C

    before = _C.omp_max_threads()
    try:
        _C.omp_set_threads(1)
        assert _C.omp_max_threads() == 1
    finally:
        _C.omp_set_threads(before)
    with pytest.raises(ValueError, match="threads: must be >= 1, got 0"):
        _C.omp_set_threads(0)


def test_import_from_any_directory(tmp_path: Path) -> None:
    code = "import dlsys.kernels, dlsys.cli; print(dlsys.kernels.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().endswith(os.path.join("kernels", "__init__.py"))


def test_info_json_is_one_document(tmp_path: Path) -> None:
    proc = run_cli("info", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    import numpy
    import simpy
    import torch

    assert doc["torch"] == torch.__version__
    assert doc["simpy"] == simpy.__version__
    assert doc["numpy"] == numpy.__version__
    assert doc["backends"] == dlsys.kernels.backends()
    assert doc["threads"]["torch"] >= 1


def test_info_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "C++ kernels" in out and "CUDA kernels" in out and "torch" in out


def test_help_shows_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--help"]) == 0
    assert "example:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [
        ["no-such-command"],
        ["info", "--no-such-flag"],
    ],
)
def test_usage_error_is_one_line_exit_2(args: list[str], tmp_path: Path) -> None:
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dlsys: error: ")
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def _raise(exc: BaseException):  # type: ignore[no-untyped-def]
    def handler(args: object) -> int:
        raise exc

    return handler


def test_bad_input_exit_2_and_runtime_failure_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import dlsys.cli.info as info

    monkeypatch.setattr(info, "run", _raise(ValueError("learner[2].compute.rate: must be > 0")))
    assert main(["info"]) == 2
    err = capsys.readouterr().err
    assert err == "dlsys: error: learner[2].compute.rate: must be > 0\n"

    monkeypatch.setattr(info, "run", _raise(RuntimeError("disk on fire\nsecond line")))
    assert main(["info"]) == 1
    err = capsys.readouterr().err
    assert err == "dlsys: error: RuntimeError: disk on fire second line\n"

    monkeypatch.setattr(info, "run", _raise(RuntimeError("boom")))
    assert main(["--debug", "info"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).with_name("dlsys")
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert proc.stdout.strip() == dlsys.cli.common.dlsys_version()  # type: ignore[attr-defined]
