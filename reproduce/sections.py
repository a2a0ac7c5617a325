"""The sections of the ``dlsys reproduce`` report, in report order.

Each section calls the public Python API of one area (never its internals), writes its
figures and data into ``ctx.out`` and returns Markdown whose every number comes from the run.
Imports of the areas happen inside the sections, so a broken area fails its own section only.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from dlsys.reproduce.report import Context, Section, SectionResult, markdown_table


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def environment(ctx: Context) -> SectionResult:
    """Machine, threads, versions, compiled backends, data used and each section's duration."""
    from dlsys.cli.info import collect

    info = collect()
    b = info["backends"]
    mem = _memory_gib()
    datasets = sorted(
        {
            str(o.result.data["dataset"])
            for o in ctx.previous
            if o.result is not None and "dataset" in o.result.data
        }
    )
    stand_in = [d for d in datasets if not d.startswith(("mnist", "fashion-mnist"))]
    rows = [
        ("machine", f"{platform.machine()}, {_cpu_model()}"),
        ("cores", info["cpu_count"]),
        ("memory", f"{mem:.1f} GiB" if mem is not None else "unknown"),
        ("threads", f"torch {info['threads']['torch']}, dlsys OpenMP {info['threads']['openmp']}"),
        ("python", info["python"]),
        ("dlsys", info["dlsys"]),
        ("torch", info["torch"]),
        ("numpy / simpy", f"{info['numpy']} / {info['simpy']}"),
        ("C++ kernels", b["cxx_compiler"]),
        (
            "CUDA kernels",
            f"compiled ({b['cuda_compiler']}, sm {b['cuda_architectures']})"
            if b["cuda_compiled"]
            else "not compiled",
        ),
        (
            "CUDA devices",
            ", ".join(d["name"] for d in b["cuda_devices"]) or f"none ({b['cuda_error']})",
        ),
        ("run size", ctx.size),
        ("data", ", ".join(datasets) if datasets else "no training data used"),
    ]
    md = [markdown_table(rows, ["", ""]), ""]
    if stand_in:
        md += [
            f"> **Stand-in data:** the training results above ran on {', '.join(stand_in)}, "
            "built-in data that replaces MNIST/FashionMNIST (scikit-learn's 8x8 digits resized "
            "to 28x28, or generated data). Their accuracies are not the homework's MNIST "
            "figures; run `dlsys reproduce --full --data ROOT` with the IDX files for those.",
            "",
        ]
    durations = [
        (o.section.name, f"{o.seconds:.1f}", "ok" if o.ok else "failed") for o in ctx.previous
    ]
    if durations:
        md += [
            "Duration of each section:",
            "",
            markdown_table(durations, ["section", "seconds", "status"]),
        ]
    data = {
        "info": info,
        "datasets": datasets,
        "stand_in_data": stand_in,
        "durations_s": {o.section.name: o.seconds for o in ctx.previous},
    }
    return SectionResult("\n".join(md), data)


SECTIONS: tuple[Section, ...] = (Section("environment", "Environment", environment),)
