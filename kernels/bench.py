"""Benchmark dlsys's kernels against PyTorch in one process, interleaved.

``python benchmarks/kernels.py`` (or :func:`main`) prints one table; :func:`run` returns the
rows for ``dlsys reproduce``. Each repetition runs torch and then dlsys on the same inputs,
so a change in machine load hits both; the table shows medians over the repetitions, the
thread count and the load average before and after.

Napkin math behind the rates:

* conv FLOPs (FLOP = 2 x MAC): forward ``2 * N * K * OH * OW * (C/groups) * R * S``; the
  backward is one such product per gradient computed (grad input, grad weight), so 2x the
  forward, or 1x for a first layer that skips grad input. GFLOP/s = FLOPs / time.
* cross-entropy bytes: the forward must read the logits once (N*C*4 B for float32); the
  backward reads them again and writes the gradient (2*N*C*4 B). GB/s = those bytes / time
  (targets, 8 B per row, are left out).

Ratios are dlsys time / torch time: below 1 means dlsys is faster.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlsys.kernels.conv import conv2d
from dlsys.kernels.conv_relu_pool import conv2d_relu_pool
from dlsys.kernels.flood_ce import flooding_cross_entropy
from dlsys.kernels.modules import Conv2d, ConvReLUPool, FloodingLoss

__all__ = [
    "BLOCK_CASES",
    "CE_CASES",
    "CONV_CASES",
    "Row",
    "flooding_cnn",
    "format_table",
    "main",
    "run",
]

#: (name, N, C, H, K, kernel, padding, grad_input, target ratio dlsys/torch for fwd+bwd)
CONV_CASES: list[tuple[str, int, int, int, int, int, int, bool, float]] = [
    ("conv layer 1 (N=128 1->16 28x28 5x5 p2)", 128, 1, 28, 16, 5, 2, False, 0.5),
    ("conv layer 2 (N=128 16->32 14x14 5x5 p2)", 128, 16, 14, 32, 5, 2, True, 1.1),
    ("inception 3x3 (N=64 160->96 13x13 3x3 p1)", 64, 160, 13, 96, 3, 1, True, 1.5),
]
#: The fused conv -> ReLU -> max-pool 2 blocks of the flooding CNN against torch's three ops;
#: fields as CONV_CASES.
BLOCK_CASES: list[tuple[str, int, int, int, int, int, int, bool, float]] = [
    ("fused block 1 (conv layer 1 + relu + pool 2)", 128, 1, 28, 16, 5, 2, False, 0.7),
    ("fused block 2 (conv layer 2 + relu + pool 2)", 128, 16, 14, 32, 5, 2, True, 0.7),
]
#: Target ratio of the flooding CNN's training step (batch 128), dlsys / torch.
TRAIN_STEP_TARGET = 0.8
#: (N, C, target ratio dlsys/torch for fwd+bwd): 1/1.5, 1/2 and 1.3.
CE_CASES: list[tuple[int, int, float]] = [(8192, 1000, 1 / 1.5), (65536, 10, 0.5), (128, 10, 1.3)]
FLOOD_B = 0.1  # flood level used in the benchmarks, nats


@dataclass
class Row:
    """One benchmark line: times in milliseconds (medians), rates in GFLOP/s or GB/s."""

    name: str
    torch_fwd_ms: float
    dlsys_fwd_ms: float
    torch_bwd_ms: float
    dlsys_bwd_ms: float
    torch_total_ms: float
    dlsys_total_ms: float
    unit: str  # "GFLOP/s" or "GB/s"
    torch_rate: float  # of fwd+bwd
    dlsys_rate: float
    target: float  # the bound on dlsys_total / torch_total

    @property
    def ratio(self) -> float:
        """dlsys fwd+bwd time / torch fwd+bwd time."""
        return self.dlsys_total_ms / self.torch_total_ms

    @property
    def met(self) -> bool:
        """Whether the ratio is within the target."""
        return self.ratio <= self.target


def _time_pair(
    make: Callable[[str], tuple[Callable[[], Any], Callable[[Any], Any]]], reps: int, warmup: int
) -> dict[str, tuple[float, float, float]]:
    """Median (fwd, bwd, total) seconds for 'torch' and 'dlsys', interleaved per repetition.

    Each side's forward output is released inside its own backward's timed region. Before,
    rebinding ``out`` in the other side's forward freed it there, so each side was charged
    for freeing the other's outputs (conv layer 1: torch's 6.4 MB output and oneDNN's buffer,
    unmapped during dlsys's timed forward; docs/kernels.md).
    """
    fns = {side: make(side) for side in ("torch", "dlsys")}
    samples: dict[str, list[tuple[float, float, float]]] = {"torch": [], "dlsys": []}
    for i in range(warmup + reps):
        for side, (fwd, bwd) in fns.items():
            t0 = time.perf_counter()
            out = fwd()
            t1 = time.perf_counter()
            bwd(out)
            del out  # freed here, on this side's clock
            t2 = time.perf_counter()
            if i >= warmup:
                samples[side].append((t1 - t0, t2 - t1, t2 - t0))
    return {
        side: tuple(statistics.median(s[j] for s in v) for j in range(3))  # type: ignore[misc]
        for side, v in samples.items()
    }


def _row(
    name: str, t: dict[str, tuple[float, float, float]], unit: str, work: float, target: float
) -> Row:
    """A Row from medians in seconds; ``work`` is FLOPs or bytes of one fwd+bwd."""
    ms = {side: [1e3 * v for v in t[side]] for side in ("torch", "dlsys")}
    return Row(
        name,
        ms["torch"][0],
        ms["dlsys"][0],
        ms["torch"][1],
        ms["dlsys"][1],
        ms["torch"][2],
        ms["dlsys"][2],
        unit,
        work / t["torch"][2] / 1e9,
        work / t["dlsys"][2] / 1e9,
        target,
    )


def _conv_row(case: tuple[Any, ...], reps: int, warmup: int) -> Row:
    name, n, c, h, k, r, pad, grad_input, target = case
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, h, generator=gen).requires_grad_(grad_input)
    w = (torch.randn(k, c, r, r, generator=gen) * 0.1).requires_grad_()
    b = torch.zeros(k).requires_grad_()
    gy = torch.randn(n, k, h, h, generator=gen)
    inputs = [x, w, b] if grad_input else [w, b]

    def make(side: str) -> tuple[Callable[[], Any], Callable[[Any], Any]]:
        fn = F.conv2d if side == "torch" else conv2d
        return (lambda: fn(x, w, b, 1, pad)), (lambda y: torch.autograd.grad(y, inputs, gy))

    t = _time_pair(make, reps, warmup)
    flops_fwd = 2 * n * k * h * h * c * r * r  # stride 1 and 'same'-size padding: OH = H
    flops = flops_fwd * (3 if grad_input else 2)
    return _row(name, t, "GFLOP/s", flops, target)


def _block_row(case: tuple[Any, ...], reps: int, warmup: int) -> Row:
    name, n, c, h, k, r, pad, grad_input, target = case
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, h, generator=gen).requires_grad_(grad_input)
    w = (torch.randn(k, c, r, r, generator=gen) * 0.1).requires_grad_()
    b = torch.zeros(k).requires_grad_()
    gy = torch.randn(n, k, h // 2, h // 2, generator=gen)
    inputs = [x, w, b] if grad_input else [w, b]

    def make(side: str) -> tuple[Callable[[], Any], Callable[[Any], Any]]:
        if side == "torch":
            fwd = lambda: F.max_pool2d(F.relu(F.conv2d(x, w, b, 1, pad)), 2)  # noqa: E731
        else:
            fwd = lambda: conv2d_relu_pool(x, w, b, 1, pad, pool=2)  # noqa: E731
        return fwd, (lambda y: torch.autograd.grad(y, inputs, gy))

    t = _time_pair(make, reps, warmup)
    flops_fwd = 2 * n * k * h * h * c * r * r  # the conv's FLOPs only (as the conv rows)
    return _row(name, t, "GFLOP/s", flops_fwd * (3 if grad_input else 2), target)


def _ce_row(case: tuple[int, int, float], reps: int, warmup: int) -> Row:
    n, c, target = case
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, c, generator=gen).requires_grad_()
    t = torch.randint(0, c, (n,), generator=gen)

    def make(side: str) -> tuple[Callable[[], Any], Callable[[Any], Any]]:
        if side == "torch":
            fwd = lambda: (F.cross_entropy(x, t) - FLOOD_B).abs() + FLOOD_B  # noqa: E731
        else:
            fwd = lambda: flooding_cross_entropy(x, t, FLOOD_B)  # noqa: E731
        return fwd, (lambda loss: torch.autograd.grad(loss, x))

    tm = _time_pair(make, reps, warmup)
    nbytes = 3 * n * c * 4  # read x forward, read x + write grad backward
    return _row(f"flooding CE ({n}, {c})", tm, "GB/s", nbytes, target)


def flooding_cnn(conv: type[nn.Conv2d], fused: bool = False) -> nn.Sequential:
    """The training experiments' CNN for 1x28x28 input: conv 16 5x5 p2, ReLU, max-pool 2,
    conv 32 5x5 p2, ReLU, max-pool 2, linear 32*7*7 -> 10; with ``fused`` each conv, ReLU
    and max-pool is one :class:`ConvReLUPool` (the same parameters and initial weights)."""
    if fused:
        return nn.Sequential(
            ConvReLUPool(1, 16, 5, padding=2), ConvReLUPool(16, 32, 5, padding=2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
        )  # fmt: skip
    return nn.Sequential(
        conv(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        conv(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    )  # fmt: skip


def _torch_flood(z: Tensor, y: Tensor) -> Tensor:
    """The torch peer of the flooding loss."""
    return (F.cross_entropy(z, y) - FLOOD_B).abs() + FLOOD_B


def _train_row(reps: int, warmup: int, batch: int = 128) -> Row:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(batch, 1, 28, 28, generator=gen)
    t = torch.randint(0, 10, (batch,), generator=gen)

    def make(side: str) -> tuple[Callable[[], Any], Callable[[Any], Any]]:
        torch.manual_seed(3)  # same initial weights on both sides
        model = flooding_cnn(nn.Conv2d) if side == "torch" else flooding_cnn(Conv2d, fused=True)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        crit: Callable[[Tensor, Tensor], Tensor] = (
            _torch_flood if side == "torch" else FloodingLoss(FLOOD_B)
        )

        def fwd() -> Tensor:
            opt.zero_grad(set_to_none=True)
            return crit(model(x), t)

        def bwd(loss: Tensor) -> None:
            loss.backward()
            opt.step()

        return fwd, bwd

    tm = _time_pair(make, reps, warmup)
    # conv1 fwd 2*128*16*784*25 + conv2 fwd 2*128*32*196*400 (+ linear, small); x3 for a step
    # less conv1's grad input: only conv FLOPs are counted.
    flops = 2 * batch * 16 * 784 * 25 * 2 + 2 * batch * 32 * 196 * 400 * 3
    name = f"train step flooding CNN (batch {batch})"
    return _row(name, tm, "GFLOP/s", flops, TRAIN_STEP_TARGET)


def run(quick: bool = False, threads: int = 2) -> dict[str, Any]:
    """Run every benchmark; returns ``{"rows": [...], "threads", "loadavg_before",
    "loadavg_after", "machine", "torch"}`` with rows as dicts (times in ms)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    load_before = os.getloadavg()
    reps, warmup = (5, 1) if quick else (21, 3)
    rows: list[Row] = []
    try:
        for case in CONV_CASES:
            rows.append(_conv_row(case, reps, warmup))
        for case in BLOCK_CASES:
            rows.append(_block_row(case, reps, warmup))
        for ce in CE_CASES:
            n_reps = reps * (20 if ce[0] * ce[1] < 10_000 else 1)  # tiny case: more samples
            rows.append(_ce_row(ce, n_reps, warmup * 5))
        rows.append(_train_row(reps, warmup))
    finally:
        torch.set_num_threads(saved)
    return {
        "rows": [dict(asdict(r), ratio=r.ratio, met=r.met) for r in rows],
        "threads": threads,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "reps": reps,
    }


def format_table(result: dict[str, Any]) -> str:
    """The benchmark result as a fixed-width text table (ms, medians)."""
    head = (
        f"{'benchmark':44} {'fwd ms torch/dlsys':>19} {'bwd ms torch/dlsys':>19} "
        f"{'fwd+bwd ms torch/dlsys':>23} {'ratio':>6} {'target':>7} {'rate torch/dlsys':>22}"
    )
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        target = r["target"]
        tgt = "-" if target != target else f"<={target:.2f}"  # NaN: no target
        flag = "" if target != target else (" ok" if r["met"] else " MISS")
        lines.append(
            f"{r['name']:44} {r['torch_fwd_ms']:9.3f}/{r['dlsys_fwd_ms']:<9.3f} "
            f"{r['torch_bwd_ms']:9.3f}/{r['dlsys_bwd_ms']:<9.3f} "
            f"{r['torch_total_ms']:11.3f}/{r['dlsys_total_ms']:<11.3f} {r['ratio']:6.2f} "
            f"{tgt:>7} {r['torch_rate']:8.1f}/{r['dlsys_rate']:<8.1f}{r['unit']}{flag}"
        )
    lb, la = result["loadavg_before"], result["loadavg_after"]
    lines.append(
        f"threads {result['threads']} (torch and dlsys), {result['reps']} interleaved repetitions, "
        f"medians; torch {result['torch']}; load average before {lb[0]:.2f} {lb[1]:.2f} "
        f"{lb[2]:.2f}, after {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} on {result['cpu_count']} CPUs"
    )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Bar chart of fwd+bwd time relative to torch (1 = torch) per benchmark, with each
    target marked; saved as PNG with the rows as JSON beside it."""
    from dlsys.common.plotting import pyplot as plt
    from dlsys.common.plotting import save_figure

    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) + 1.6))
    y = list(range(len(rows)))[::-1]
    colors = [
        "#8c8c8c" if r["target"] != r["target"] else ("#55a868" if r["met"] else "#c44e52")
        for r in rows
    ]
    ax.barh(y, [r["ratio"] for r in rows], color=colors)
    for yi, r in zip(y, rows, strict=True):
        if r["target"] == r["target"]:
            ax.plot([r["target"]] * 2, [yi - 0.4, yi + 0.4], color="black", lw=2)
        ax.text(r["ratio"], yi, f" {r['ratio']:.2f}", va="center", fontsize=8)
    ax.axvline(1.0, color="#4c72b0", ls="--", lw=1, label="torch (1.0)")
    ax.set_yticks(y, [r["name"] for r in rows], fontsize=8)
    ax.set_xlabel("dlsys fwd+bwd time / torch fwd+bwd time (lower is faster; | = target)")
    lb = result["loadavg_before"]
    ax.set_title(
        f"dlsys kernels vs torch {result['torch']}, {result['threads']} threads, load {lb[0]:.2f}",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path, data=result)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: ``[--quick] [--threads N] [--json] [--plot PNG]``; prints the
    table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 repetitions instead of 21")
    parser.add_argument("--threads", type=int, default=2, help="threads for torch and dlsys")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--plot", metavar="PNG", help="also draw the ratios into this PNG")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads: must be >= 1, got {args.threads}")
    result = run(quick=args.quick, threads=args.threads)
    if args.json:
        from dlsys.common.io import dumps

        print(dumps(result))
    else:
        print(format_table(result))
    if args.plot:
        plot(result, args.plot)
    return 0
