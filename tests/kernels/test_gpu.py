"""The CUDA kernels against PyTorch on a CUDA device (marked gpu: skipped without one).

Same comparisons as on the CPU: conv2d forward and the three gradients over the code-path
cases of test_conv2d, the fused conv-ReLU-pool block (values, gradients, NaNs), the flooding
loss below/at/above b with ignore_index and every reduction, large logits and the error for
float64.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from dlsys.kernels import conv2d, conv2d_relu_pool, flooding_cross_entropy
from dlsys.kernels.testing import assert_close

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning"),
]

CASES: list[tuple[Any, ...]] = [
    (1, 1, 5, 5, 1, (3, 3), 1, 0, 1, 1),
    (2, 3, 7, 9, 5, (3, 3), 1, 1, 1, 1),
    (3, 4, 11, 10, 6, (5, 5), 2, 2, 1, 2),
    (2, 6, 9, 9, 6, (3, 3), 1, "same", 2, 6),
    (2, 5, 8, 8, 12, (1, 1), 1, 0, 1, 1),
    (1, 2, 13, 12, 3, (7, 7), 3, 2, 1, 1),
    (2, 32, 6, 6, 17, (3, 3), 1, 1, 1, 1),
    (1, 4, 10, 7, 8, (3, 5), (2, 1), (1, 2), (2, 1), 1),
    (2, 3, 9, 9, 4, (4, 4), 1, "same", 1, 1),
    (128, 16, 14, 14, 32, (5, 5), 1, 2, 1, 1),  # more than one tile in every direction
    (0, 3, 8, 8, 4, (3, 3), 1, 1, 1, 1),  # empty batch
]


@pytest.mark.parametrize("case", CASES)
def test_conv2d_cuda_matches_torch(case: tuple[Any, ...]) -> None:
    n, c, h, w, k, (r, s), stride, pad, dil, g = case
    gen = torch.Generator().manual_seed(0)
    tensors = [
        torch.randn(n, c, h, w, generator=gen),
        torch.randn(k, c // g, r, s, generator=gen),
        torch.randn(k, generator=gen),
    ]
    ours = [t.cuda().requires_grad_() for t in tensors]
    ref = [t.cuda().requires_grad_() for t in tensors]
    y = conv2d(*ours, stride, pad, dil, g)
    y_ref = F.conv2d(*ref, stride, pad, dil, g)
    assert_close(y, y_ref, rtol=1e-4, atol=1e-3, name="y")
    gy = torch.randn(y_ref.shape, generator=gen).cuda()
    for name, a, e in zip(
        ["grad_x", "grad_w", "grad_b"],
        torch.autograd.grad(y, ours, gy),
        torch.autograd.grad(y_ref, ref, gy),
        strict=True,
    ):
        assert_close(a, e, rtol=1e-4, atol=2e-3, name=name)


# (N, C, H, K, kernel, padding, pool, pool_stride, pool_padding)
CRP_CASES: list[tuple[Any, ...]] = [
    (128, 1, 28, 16, 5, 2, 2, None, 0),  # the flooding CNN's layers at batch 128
    (128, 16, 14, 32, 5, 2, 2, None, 0),
    (3, 4, 13, 8, 3, 1, 3, 2, 1),  # 3x3/2 padded
    (2, 3, 12, 6, 3, 0, 3, 2, 0),
    (2, 3, 9, 5, 2, 0, 2, 1, 0),  # overlapping windows: gathered sums
    (0, 3, 8, 4, 3, 1, 2, None, 0),  # empty batch
]


@pytest.mark.parametrize("case", CRP_CASES)
def test_conv_relu_pool_cuda_matches_torch(case: tuple[Any, ...]) -> None:
    n, c, h, k, r, pad, pool, ps, pp = case
    gen = torch.Generator().manual_seed(0)
    tensors = [
        torch.randn(n, c, h, h, generator=gen),
        torch.randn(k, c, r, r, generator=gen),
        torch.randn(k, generator=gen),
    ]
    if n:
        tensors[0][0, 0, :2, :2] = float("nan")  # NaNs reach the pool (ReLU keeps them)
    ours = [t.cuda().requires_grad_() for t in tensors]
    ref = [t.cuda().requires_grad_() for t in tensors]
    y = conv2d_relu_pool(*ours, padding=pad, pool=pool, pool_stride=ps, pool_padding=pp)
    y_ref = F.max_pool2d(F.relu(F.conv2d(*ref, padding=pad)), pool, ps, pp)
    assert_close(y, y_ref, rtol=1e-4, atol=1e-3, name="y")
    gy = torch.randn(y_ref.shape, generator=gen).cuda()
    for name, a, e in zip(
        ["grad_x", "grad_w", "grad_b"],
        torch.autograd.grad(y, ours, gy),
        torch.autograd.grad(y_ref, ref, gy),
        strict=True,
    ):
        assert_close(a, e, rtol=1e-4, atol=2e-3, name=name)


def test_conv_relu_pool_cuda_agrees_with_the_cpu_kernel() -> None:
    gen = torch.Generator().manual_seed(1)
    x, w, b = (
        torch.randn(8, 16, 14, 14, generator=gen),
        torch.randn(32, 16, 5, 5, generator=gen),
        torch.randn(32, generator=gen),
    )
    cpu = conv2d_relu_pool(x, w, b, padding=2)
    gpu = conv2d_relu_pool(x.cuda(), w.cuda(), b.cuda(), padding=2)
    assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-3, name="out")


def test_conv2d_cuda_rejects_float64() -> None:
    x = torch.randn(1, 2, 5, 5, device="cuda", dtype=torch.float64)
    with pytest.raises(TypeError, match="CUDA kernels support float32"):
        conv2d(x, torch.randn(3, 2, 3, 3, device="cuda", dtype=torch.float64))


@pytest.mark.parametrize("shape", [(1, 1), (33, 10), (64, 1000), (7, 3000), (65536, 10)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_flooding_cuda_matches_torch(shape: tuple[int, int], reduction: str) -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, generator=gen).cuda()
    t = torch.randint(0, shape[1], (shape[0],), generator=gen).cuda()
    t[::5] = -100
    r = float(F.cross_entropy(x, t, reduction="sum" if reduction == "none" else reduction))
    for b in [0.0] if reduction == "none" else [0.0, 0.5 * r, 2 * r + 1]:
        xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
        loss = flooding_cross_entropy(xo, t, b, reduction)
        ce = F.cross_entropy(xr, t, reduction=reduction)
        loss_ref = ce if b == 0 else (ce - b).abs() + b
        assert_close(loss, loss_ref, rtol=1e-5, atol=1e-5, name="loss")
        (g,) = torch.autograd.grad(loss.sum(), xo)
        (g_ref,) = torch.autograd.grad(loss_ref.sum(), xr)
        assert_close(g, g_ref, rtol=1e-4, atol=1e-6, name="grad")


def test_flooding_cuda_large_logits_and_bad_target() -> None:
    x = (1e4 * torch.randn(16, 50)).cuda()
    t = torch.randint(0, 50, (16,)).cuda()
    assert_close(flooding_cross_entropy(x, t), F.cross_entropy(x, t), rtol=1e-5, atol=1e-3)
    t[3] = 50
    with pytest.raises(ValueError, match=r"target\[3\] = 50 is out of range"):
        flooding_cross_entropy(x, t)
