"""Type stub of the compiled module dlsys.kernels._C (see kernels/csrc/module.cpp, bind_ops.cpp).

A tensor argument is a pair (data pointer, number of elements); impl is "ref", "cpu" or "cuda";
dtype is "float32" or "float64"; device is the CUDA device index (-1 on the CPU) and stream a
cudaStream_t as an integer.
"""

from typing import Any

Buf = tuple[int, int]

def build_info() -> dict[str, Any]: ...
def omp_max_threads() -> int: ...
def omp_set_threads(n: int) -> None: ...
def cuda_devices() -> tuple[list[dict[str, Any]], str]: ...
def conv2d_forward(
    impl: str,
    dtype: str,
    x: Buf,
    weight: Buf,
    bias: Buf,
    out: Buf,
    dims: list[int],
    threads: int = 1,
    device: int = -1,
    stream: int = 0,
) -> None: ...
def conv2d_backward(
    impl: str,
    dtype: str,
    x: Buf,
    weight: Buf,
    grad_out: Buf,
    grad_input: Buf,
    grad_weight: Buf,
    grad_bias: Buf,
    dims: list[int],
    threads: int = 1,
    device: int = -1,
    stream: int = 0,
) -> None: ...
def pooled_empty(shape: list[int], dtype: str) -> Any: ...
def out_pool_stats() -> dict[str, int]: ...
def out_pool_release() -> int: ...
def conv2d_backward_plan(dims: list[int], dtype: str = "float32") -> dict[str, str]: ...
def conv_relu_pool_forward(
    impl: str,
    dtype: str,
    x: Buf,
    weight: Buf,
    bias: Buf,
    out: Buf,
    argmax: Buf,
    dims: list[int],
    pool: list[int],
    threads: int = 1,
    device: int = -1,
    stream: int = 0,
) -> None: ...
def conv_relu_pool_backward(
    impl: str,
    dtype: str,
    x: Buf,
    weight: Buf,
    grad_out: Buf,
    out: Buf,
    argmax: Buf,
    grad_input: Buf,
    grad_weight: Buf,
    grad_bias: Buf,
    dims: list[int],
    pool: list[int],
    threads: int = 1,
    device: int = -1,
    stream: int = 0,
) -> None: ...
def flood_ce_forward(
    impl: str,
    dtype: str,
    logits: Buf,
    target: Buf,
    loss: Buf,
    rows: Buf,
    stats: Buf,
    N: int,
    C: int,
    b: float,
    reduction: int,
    ignore_index: int,
    threads: int = 1,
    device: int = -1,
    stream: int = 0,
) -> None: ...
def flood_ce_backward(
    impl: str,
    dtype: str,
    grad_loss: Buf,
    logits: Buf,
    target: Buf,
    rows: Buf,
    stats: Buf,
    grad_logits: Buf,
    N: int,
    C: int,
    b: float,
    reduction: int,
    ignore_index: int,
    threads: int = 1,
    device: int = -1,
    stream: int = 0,
) -> None: ...
