"""Training benchmarks: dlsys's data path and kernels against their PyTorch peers.

Claims (issue 6), each timed as one training epoch (forward, loss, backward, SGD step):

1. Device-resident batching (:class:`dlsys.training.data.Batches`: tensors indexed by a
   seeded permutation) vs ``torch.utils.data.DataLoader`` over a ``TensorDataset`` (shuffle,
   no workers), for the 784-500-10 MLP, batch 128, one epoch of 48,000 samples of MNIST shape
   (synthetic values): dlsys must be at least 1.2x faster.
2. One epoch of the flooding CNN (conv 16 5x5, conv 32 5x5, each with ReLU and max-pool 2;
   flooding loss b = 0.05) with ``--kernels dlsys`` (fused conv-ReLU-pool blocks, fused
   flooding loss) vs ``--kernels torch``: dlsys must take at most 0.85x torch's time (issue 15).

The contenders run interleaved in one process (A B A B ...) after one warm-up epoch each;
the table reports the median of ``--repeats`` epochs, the thread count and the load average.
Run: ``.venv/bin/python benchmarks/training.py [--repeats 3] [--samples 48000]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Iterable

import torch
from torch.utils.data import DataLoader, TensorDataset

from dlsys.training.data import Batches
from dlsys.training.models import build_model, flooding_loss

#: Most time a flooding CNN epoch with dlsys kernels may take, relative to torch (issue 15).
EPOCH_TARGET = 0.85


def epoch_time(
    model: torch.nn.Module,
    loss_fn: torch.nn.Module,
    batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]],
) -> float:
    """Wall seconds for one epoch of SGD updates over ``batches()``."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    t0 = time.perf_counter()
    for x, y in batches():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
    return time.perf_counter() - t0


def interleaved(cases: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median seconds per case; one warm-up call each, then ``repeats`` rounds in turn."""
    for fn in cases.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for k, fn in cases.items():
            times[k].append(fn())
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs per contender")
    ap.add_argument("--samples", type=int, default=48_000, help="samples per epoch")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    torch.manual_seed(0)
    n = args.samples
    x = torch.rand(n, 1, 28, 28)
    y = torch.randint(0, 10, (n,))
    rows = []

    # 1. Batching: same MLP, same loss, only the data path differs.
    mlp = build_model("mlp:500", (1, 28, 28), kernels="torch")
    ce = flooding_loss(0.0, "torch")
    gen = torch.Generator().manual_seed(0)
    resident = Batches(x, y, gen)
    loader = DataLoader(
        TensorDataset(x, y),
        batch_size=128,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    t = interleaved(
        {
            "resident": lambda: epoch_time(mlp, ce, lambda: resident.epoch(128)),
            "dataloader": lambda: epoch_time(mlp, ce, lambda: loader),
        },
        args.repeats,
    )
    rows.append(
        (
            "MLP 784-500-10 epoch, batch 128",
            "device-resident",
            t["resident"],
            "DataLoader",
            t["dataloader"],
            t["dataloader"] / t["resident"],
            ">= 1.2x faster",
            t["dataloader"] / t["resident"] >= 1.2,
        )
    )

    # 2. Flooding CNN: dlsys kernels (fused conv-ReLU-pool blocks + fused flooding loss) vs torch.
    torch.manual_seed(0)
    cnn_d = build_model("cnn", (1, 28, 28), kernels="dlsys")
    torch.manual_seed(0)
    cnn_t = build_model("cnn", (1, 28, 28), kernels="torch")
    fl_d, fl_t = flooding_loss(0.05, "dlsys"), flooding_loss(0.05, "torch")
    t = interleaved(
        {
            "dlsys": lambda: epoch_time(cnn_d, fl_d, lambda: resident.epoch(128)),
            "torch": lambda: epoch_time(cnn_t, fl_t, lambda: resident.epoch(128)),
        },
        args.repeats,
    )
    rows.append(
        (
            "flooding CNN epoch, batch 128, b=0.05",
            "--kernels dlsys",
            t["dlsys"],
            "--kernels torch",
            t["torch"],
            t["dlsys"] / t["torch"],
            f"<= {EPOCH_TARGET}x torch time",
            t["dlsys"] / t["torch"] <= EPOCH_TARGET,
        )
    )

    load = os.getloadavg()
    print(f"# dlsys training benchmark: {n} samples/epoch, median of {args.repeats} epochs")
    print(
        f"# torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
        f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
        f"after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    head = ("case", "ours", "s", "peer", "s", "ratio", "target", "met")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for case, a, ta, b, tb, ratio, target, ok in rows:
        print(
            f"| {case} | {a} | {ta:.3f} | {b} | {tb:.3f} | {ratio:.2f} | {target} | "
            f"{'yes' if ok else 'NO'} |"
        )
    print("# ratio: row 1 = DataLoader time / resident time; row 2 = dlsys time / torch time")


if __name__ == "__main__":
    main()
