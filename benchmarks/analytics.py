"""Benchmark: cost of VGG19 with dlsys.analytics against torchinfo and FlopCounterMode.

Claim (issue 4): tracing VGG19 (an nn.Module with real CPU parameters) on the meta device
takes under 20 ms warm, at least 30x less than ``torchinfo.summary`` (which runs the model
on real tensors), allocates no activation memory, and gives the same MACs as PyTorch's
FlopCounterMode (run here on a meta copy of the model).

Method: one process, the three contenders interleaved for ``--repeats`` rounds after one
warm-up each; the median wall time is reported with the thread count and load average.
Memory: the process's peak RSS is read before and after warm dlsys runs (batch 1 and batch
1000, which come before torchinfo so its real activations cannot hide ours).
Run: ``python benchmarks/analytics.py``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections.abc import Callable

import torch

from dlsys.analytics import cost, zoo


def _time(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    args = ap.parse_args()

    import torchinfo
    from torch.utils.flop_counter import FlopCounterMode

    net = zoo.get("vgg19")
    torch.manual_seed(0)
    model = net.to_module().eval()  # real float32 parameters on the CPU (575 MB)
    with torch.device("meta"):
        meta_model = net.to_module().eval()
    shape = (3, 224, 224)

    def ours() -> int:
        return cost(model, shape).totals["macs"]

    def builder() -> int:
        return cost("vgg19").totals["macs"]

    def info() -> int:
        stats = torchinfo.summary(model, input_size=(1, *shape), verbose=0)
        return int(stats.total_mult_adds)

    def flop_counter() -> int:
        counter = FlopCounterMode(display=False)
        with counter:
            meta_model(torch.empty(1, *shape, device="meta"))
        return counter.get_total_flops() // 2

    ours()  # warm-up (the first call imports torch.func machinery: ~70 MiB of code)
    builder()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(20):
        ours()
    big = cost(model, shape, batch=1000).totals["activations"]  # 66 GB if it were real
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    info()  # warm-ups
    flop_counter()

    contenders = {
        "dlsys cost(nn.Module) [meta trace]": ours,
        "dlsys cost('vgg19') [builder]": builder,
        "torchinfo.summary [real tensors]": info,
        "FlopCounterMode [meta tensors]": flop_counter,
    }
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(args.repeats):
        for name, fn in contenders.items():
            times[name].append(_time(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["dlsys cost(nn.Module) [meta trace]"]

    macs = ours()
    print("VGG19 at 1x3x224x224, median of", args.repeats, "interleaved runs")
    print(f"{'contender':<38} {'ms':>10} {'x dlsys trace':>14}")
    for name in contenders:
        print(f"{name:<38} {1e3 * med[name]:>10.2f} {med[name] / base:>14.2f}")
    print(f"MACs: dlsys {macs:,}; FlopCounterMode/2 {flop_counter():,}; "
          f"torchinfo mult-adds {info():,} (includes bias adds)")  # fmt: skip
    print(f"peak RSS growth over 20 warm traces at batch 1 and one at batch 1000: "
          f"{(rss1 - rss0) / 1024:.1f} MiB (real activations would be "
          f"{4 * 16_542_184 / 2**20:.1f} MiB at batch 1, "
          f"{4 * big / 2**30:.1f} GiB at 1000)")  # fmt: skip
    target_ok = base < 0.020 and med["torchinfo.summary [real tensors]"] / base >= 30
    print(
        f"target (< 20 ms warm, >= 30x faster than torchinfo): {'met' if target_ok else 'MISSED'}"
    )
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
