"""Benchmark dlsys's conv2d and flooding cross-entropy against PyTorch (2 threads, interleaved).

    python benchmarks/kernels.py [--quick] [--threads N] [--json]

The work lives in dlsys.kernels.bench (so `dlsys reproduce` can call run()/format_table());
see its docstring for the napkin math behind the GFLOP/s and GB/s columns.
"""

from __future__ import annotations

import sys

from dlsys.kernels.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
