"""The wheel holds only dlsys/ files, and the CPU-only build (no CUDA) works.

Builds a real wheel with ``-DDLSYS_CUDA=OFF`` in a private build folder (so the editable
install's build is untouched), then checks its file list and loads its compiled module.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cpu_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "CMAKE_ARGS": "-DDLSYS_CUDA=OFF"}
    cmd = [
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "--config-settings", f"build-dir={out / 'build'}",
        "-w", str(out), str(REPO),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    (wheel,) = out.glob("dlsys-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_has_only_dlsys_files(cpu_wheel: Path) -> None:
    names = zipfile.ZipFile(cpu_wheel).namelist()
    outside = [n for n in names if not n.startswith(("dlsys/", "dlsys-"))]
    assert outside == []
    dist_info = {n.split("/")[0] for n in names if n.startswith("dlsys-")}
    assert len(dist_info) == 1 and dist_info.pop().endswith(".dist-info")
    # every area pyproject maps into the wheel (distributed included), read from the map itself
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["scikit-build"][
        "wheel"
    ]["packages"]
    assert "dlsys/distributed" in packages
    for target in packages:
        assert f"{target}/__init__.py" in names
    assert any(n.startswith("dlsys/kernels/_C.") and n.endswith(".so") for n in names)
    assert not any("/csrc/" in n for n in names)


@pytest.mark.slow
def test_cpu_only_build_imports_and_reports_no_cuda(cpu_wheel: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(cpu_wheel) as zf:
        (so_name,) = [
            n for n in zf.namelist() if n.startswith("dlsys/kernels/_C.") and n.endswith(".so")
        ]
        so = Path(zf.extract(so_name, tmp_path))
    import torch  # noqa: F401  (torch's OpenMP runtime first, as dlsys.kernels does)

    spec = importlib.util.spec_from_file_location("_C", so)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    info = module.build_info()
    assert info["cuda_compiled"] is False
    assert info["cuda_runtime_version"] == 0
    devices, error = module.cuda_devices()
    assert devices == [] and "not compiled" in error
