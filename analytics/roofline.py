"""Roofline estimate of a model's forward and backward time on a device.

Each row of a cost report takes max(work / peak FLOP/s, bytes / bandwidth) seconds
(Williams, Waterman & Patterson 2009), where work = 2 x MACs + bias adds + elementwise
operations (the hardware does all of it, whatever the report's convention) and bytes =
(activations read + activations written + parameters read) x bytes per element. The model's
time is the sum over rows. The backward pass prices each row's exact backward
multiply-accumulates (:meth:`CostReport.backward_macs`: one forward's worth per operand that
gets a gradient, so none for the input gradient of the first layer): work = 2 x backward
MACs + bias and elementwise work, bytes = the forward's bytes once per operand that gets a
gradient (NB: an approximation of the traffic); rows no gradient flows through cost
nothing. Real kernels reach a fraction of peak, so these are lower bounds.

Presets (dense peak, from the vendors' data sheets) are in :data:`DEVICES`; ``"cpu"``
measures this machine once (a float32 matmul for FLOP/s, a large copy for bandwidth).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

from dlsys.analytics.report import CostReport, dtype_bytes
from dlsys.common.errors import check_positive, unknown_name


@dataclass(frozen=True)
class Device:
    """A device for the roofline: ``peak_flops`` (FLOP/s per dtype) and ``bandwidth`` (bytes/s)."""

    name: str
    peak_flops: dict[str, float]
    bandwidth: float

    def flops_for(self, dtype: str) -> float:
        """Peak FLOP/s at ``dtype`` (``ValueError`` naming the dtypes the device lists)."""
        if dtype not in self.peak_flops:
            raise unknown_name(f"dtype for device {self.name!r}", dtype, self.peak_flops)
        return self.peak_flops[dtype]


#: Vendor data-sheet numbers (dense, no sparsity): FLOP/s per dtype and memory bytes/s.
DEVICES: dict[str, Device] = {
    "v100": Device("NVIDIA V100 SXM2 32GB", {"float32": 15.7e12, "float16": 125e12}, 900e9),
    "a100": Device(
        "NVIDIA A100 SXM4 80GB",
        {"float32": 19.5e12, "tf32": 156e12, "float16": 312e12, "bfloat16": 312e12},
        2039e9,
    ),
    "h100": Device(
        "NVIDIA H100 SXM5 80GB",
        {"float32": 67e12, "tf32": 494.5e12, "float16": 989.5e12, "bfloat16": 989.5e12},
        3350e9,
    ),
}


@functools.cache
def this_cpu() -> Device:
    """Measure this machine: float32 matmul FLOP/s and copy bandwidth (best of 5 runs)."""
    import torch

    n = 512
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    flops = 2 * n**3 / best
    x = torch.empty(16 * 2**20)  # 64 MiB
    y = torch.empty_like(x)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        y.copy_(x)
        best = min(best, time.perf_counter() - t)
    bandwidth = 2 * x.numel() * 4 / best  # read + write
    return Device(
        f"this CPU ({torch.get_num_threads()} threads, measured)",
        {"float32": flops},
        bandwidth,
    )


def get_device(name: str) -> Device:
    """A preset by name (``a100``, ``h100``, ``v100``, ``cpu``)."""
    if name == "cpu":
        return this_cpu()
    try:
        return DEVICES[name]
    except KeyError:
        raise unknown_name("device", str(name), [*DEVICES, "cpu"]) from None


@dataclass(frozen=True)
class RooflineEstimate:
    """Estimated seconds for one forward and one backward pass, and what bounds them."""

    device: str
    dtype: str
    batch: int
    forward_s: float
    backward_s: float
    compute_bound_rows: int
    memory_bound_rows: int

    @property
    def step_s(self) -> float:
        """Forward + backward, seconds (one training step without the optimizer)."""
        return self.forward_s + self.backward_s


def roofline(
    report: CostReport,
    device: str | Device = "a100",
    dtype: str = "float32",
    *,
    peak_flops: float | None = None,
    bandwidth: float | None = None,
) -> RooflineEstimate:
    """Roofline forward/backward time of ``report`` on ``device`` at ``dtype``.

    ``peak_flops`` (FLOP/s) and ``bandwidth`` (bytes/s) override the device's numbers.
    """
    dev = device if isinstance(device, Device) else get_device(device)
    nb = dtype_bytes(dtype) if dtype in ("float64", "float32", "float16", "bfloat16") else 4
    peak = (
        check_positive("peak_flops", peak_flops) if peak_flops is not None else dev.flops_for(dtype)
    )
    bw = check_positive("bandwidth", bandwidth) if bandwidth is not None else dev.bandwidth
    fwd = bwd = 0.0
    compute = memory = 0
    for row, parts, bmacs in zip(
        report.layers, report.grad_inputs(), report.backward_macs(), strict=True
    ):
        if row.type == "input":
            continue
        work = 2 * row.macs + row.bias_adds + row.elementwise
        moved = (row.reads + row.activations + row.params) * nb
        tc, tm = work / peak, moved / bw
        if work == 0 and moved == 0:
            continue
        if tc >= tm:
            compute += 1
        else:
            memory += 1
        fwd += max(tc, tm)
        if parts:
            bwork = 2 * bmacs + row.bias_adds + row.elementwise
            bwd += max(bwork / peak, parts * moved / bw)
    return RooflineEstimate(
        device=dev.name,
        dtype=dtype,
        batch=report.batch,
        forward_s=fwd,
        backward_s=bwd,
        compute_bound_rows=compute,
        memory_bound_rows=memory,
    )
