"""What the compiled module ``dlsys.kernels._C`` was built with and can use now."""

from __future__ import annotations

from typing import Any

import torch  # noqa: F401  (torch first: it ships its own OpenMP runtime)

from dlsys.kernels import _C


def backends() -> dict[str, Any]:
    """Describe the compiled backends.

    Returns a dict with ``cpu`` (always True: the C++ kernels), ``openmp_threads`` (threads an
    OpenMP region of ``_C`` uses now), ``cuda_compiled`` (CUDA sources compiled in),
    ``cuda_available`` (compiled and at least one device visible), ``cuda_devices`` (list of
    ``{index, name, capability, total_memory_bytes, multiprocessors}``), ``cuda_error`` (why no
    device is visible, or ``None``), ``cuda_architectures`` (e.g. ``"80,90"``),
    ``cuda_runtime_version`` (e.g. 13000; 0 without CUDA) and the compilers used.
    """
    info = dict(_C.build_info())
    devices, error = _C.cuda_devices()
    return {
        "cpu": True,
        "openmp_threads": int(_C.omp_max_threads()),
        "cuda_compiled": bool(info["cuda_compiled"]),
        "cuda_available": bool(info["cuda_compiled"]) and len(devices) > 0,
        "cuda_devices": [dict(d, capability=list(d["capability"])) for d in devices],
        "cuda_error": error or None,
        "cuda_architectures": info["cuda_architectures"],
        "cuda_runtime_version": int(info["cuda_runtime_version"]),
        "cxx_compiler": info["cxx_compiler"],
        "cuda_compiler": info["cuda_compiler"],
    }


def describe_backends(b: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """Human-readable ``(label, text)`` rows for the C++ kernels, the CUDA kernels and the CUDA
    devices, from :func:`backends` (called when ``b`` is None); used by ``dlsys info`` and the
    report's environment section."""
    b = backends() if b is None else b
    devices = ", ".join(f"{d['index']}: {d['name']}" for d in b["cuda_devices"])
    if not devices:
        devices = f"none ({b['cuda_error']})" if b["cuda_error"] else "none"
    cuda = (
        f"compiled ({b['cuda_compiler']}, sm {b['cuda_architectures']})"
        if b["cuda_compiled"]
        else "not compiled"
    )
    return [
        ("C++ kernels", f"yes ({b['cxx_compiler']})"),
        ("CUDA kernels", cuda),
        ("CUDA devices", devices),
    ]
