"""flooding_cross_entropy against PyTorch: ``(F.cross_entropy(x, t) - b).abs() + b``.

Flooding (Ishida et al., ICML 2020): loss = |R - b| + b with R the batch cross-entropy. Its
gradient is dR/dx while R > b, -dR/dx while R < b and 0 exactly at R = b (torch's abs has
sgn(0) = 0); b = 0 is plain cross-entropy.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

import dlsys.kernels.flood_ce as ops
from dlsys.kernels import _C, FloodingLoss, flooding_cross_entropy
from dlsys.kernels.flood_ce import REDUCTIONS
from dlsys.kernels.testing import assert_close


def torch_flood(
    x: torch.Tensor, t: torch.Tensor, b: float, reduction: str = "mean", ii: int = -100
):
    """The definition, in plain torch."""
    ce = F.cross_entropy(x, t, reduction=reduction, ignore_index=ii)
    return ce if b == 0 else (ce - b).abs() + b


def _data(n: int, c: int, dtype: torch.dtype = torch.float32, seed: int = 0, scale: float = 1.0):
    gen = torch.Generator().manual_seed(seed)
    x = scale * torch.randn(n, c, generator=gen, dtype=dtype)
    t = torch.randint(0, c, (n,), generator=gen)
    return x, t


def _value_and_grad(fn: Any, x: torch.Tensor, *args: Any, **kwargs: Any):
    x = x.clone().requires_grad_()
    loss = fn(x, *args, **kwargs)
    (g,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), g


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (33, 10), (64, 1000), (300, 3), (5, 1500)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_below_above_and_zero_flood_level_match_torch(
    shape: tuple[int, int], dtype: torch.dtype, reduction: str
) -> None:
    x, t = _data(*shape, dtype=dtype)
    r = float(F.cross_entropy(x, t, reduction=reduction))
    # b = 0 (plain CE), b below R (descent), b above R (ascent: the gradient flips sign)
    for b in (0.0, 0.5 * r, 2.0 * r + 1.0):
        loss, g = _value_and_grad(flooding_cross_entropy, x, t, b, reduction)
        loss_ref, g_ref = _value_and_grad(torch_flood, x, t, b, reduction)
        assert_close(loss, loss_ref, name=f"loss b={b:g}")
        assert_close(g, g_ref, name=f"grad b={b:g}")
    # the flooded gradient above R is exactly minus the plain one (up to rounding)
    _, g0 = _value_and_grad(flooding_cross_entropy, x, t, 0.0, reduction)
    _, g_up = _value_and_grad(flooding_cross_entropy, x, t, 2.0 * r + 1.0, reduction)
    assert_close(g_up, -g0, name="ascent is negated descent")


def test_b_zero_is_plain_cross_entropy() -> None:
    x, t = _data(257, 13, dtype=torch.float64, seed=1)
    loss, g = _value_and_grad(flooding_cross_entropy, x, t)
    loss_ref, g_ref = _value_and_grad(F.cross_entropy, x, t)
    assert_close(loss, loss_ref, rtol=1e-13, atol=1e-13)
    assert_close(g, g_ref, rtol=1e-12, atol=1e-14)


def test_exactly_at_the_flood_level_the_gradient_is_zero() -> None:
    x, t = _data(40, 6, dtype=torch.float64, seed=2)
    b = float(flooding_cross_entropy(x, t))  # R itself: R - b == 0 exactly
    loss, g = _value_and_grad(flooding_cross_entropy, x, t, b)
    assert float(loss) == b  # |0| + b
    assert torch.equal(g, torch.zeros_like(g))
    # torch's definition agrees when given its own R
    bt = float(F.cross_entropy(x, t))
    _, g_ref = _value_and_grad(torch_flood, x, t, bt)
    assert torch.equal(g_ref, torch.zeros_like(g_ref))


def test_reduction_none_is_per_sample_cross_entropy() -> None:
    x, t = _data(50, 9, seed=3)
    t[::7] = -100
    loss, g = _value_and_grad(flooding_cross_entropy, x, t, 0.0, "none")
    loss_ref, g_ref = _value_and_grad(F.cross_entropy, x, t, reduction="none")
    assert loss.shape == (50,)
    assert_close(loss, loss_ref)
    assert_close(g, g_ref)
    assert torch.equal(loss[::7], torch.zeros(8))  # ignored rows contribute 0, as in torch


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_ignore_index(reduction: str, ignore_index: int) -> None:
    x, t = _data(30, 5, dtype=torch.float64, seed=4)
    t[::3] = ignore_index
    b = 0.0 if reduction == "none" else 0.3
    loss, g = _value_and_grad(flooding_cross_entropy, x, t, b, reduction, ignore_index)
    loss_ref, g_ref = _value_and_grad(torch_flood, x, t, b, reduction, ignore_index)
    assert_close(loss, loss_ref)
    assert_close(g, g_ref)
    assert torch.equal(g[t == ignore_index], torch.zeros_like(g[t == ignore_index]))


def test_all_rows_ignored_gives_nan_mean_and_zero_gradient_like_torch() -> None:
    x, _ = _data(4, 3, seed=5)
    t = torch.full((4,), -100)
    loss, g = _value_and_grad(flooding_cross_entropy, x, t)
    loss_ref, g_ref = _value_and_grad(F.cross_entropy, x, t)
    assert math.isnan(float(loss)) and math.isnan(float(loss_ref))  # 0 / 0
    assert torch.equal(g, g_ref) and torch.equal(g, torch.zeros_like(g))


def test_empty_batch_like_torch() -> None:
    x = torch.empty(0, 5)
    t = torch.empty(0, dtype=torch.long)
    assert math.isnan(float(flooding_cross_entropy(x, t)))  # torch: mean of nothing is NaN
    assert math.isnan(float(F.cross_entropy(x, t)))
    assert float(flooding_cross_entropy(x, t, reduction="sum")) == 0.0
    assert flooding_cross_entropy(x, t, reduction="none").shape == (0,)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_stable_for_large_logits(dtype: torch.dtype) -> None:
    # exp(1e4) overflows in both dtypes; the max-shifted log-sum-exp must not.
    x, t = _data(64, 100, dtype=dtype, seed=6, scale=1e4)
    x[0, 0] = 3e4
    x[1] = -5e4
    for b in (0.0, 1.0):
        loss, g = _value_and_grad(flooding_cross_entropy, x, t, b)
        loss_ref, g_ref = _value_and_grad(torch_flood, x, t, b)
        assert torch.isfinite(loss) and torch.isfinite(g).all()
        assert_close(loss, loss_ref, rtol=1e-5 if dtype == torch.float32 else 1e-12)
        assert_close(g, g_ref)


def test_nan_and_inf_propagate_like_torch() -> None:
    x, t = _data(6, 4, seed=7)
    x[1, 2] = float("nan")
    x[3, 0] = float("inf")
    x[4] = float("-inf")
    x[5, t[5]] = float("-inf")  # target logit -inf: an infinite loss for that row
    for reduction in ("none", "sum"):
        loss, g = _value_and_grad(flooding_cross_entropy, x, t, 0.0, reduction)
        loss_ref, g_ref = _value_and_grad(torch_flood, x, t, 0.0, reduction)
        assert_close(loss, loss_ref, name=f"loss {reduction}")
        assert_close(g, g_ref, name=f"grad {reduction}")
    # a NaN batch loss with flooding: the value is NaN, as torch's
    loss = flooding_cross_entropy(x, t, 0.5)
    assert math.isnan(float(loss)) and math.isnan(float(torch_flood(x, t, 0.5)))


def test_gradcheck_float64() -> None:
    x, t = _data(7, 5, dtype=torch.float64, seed=8)
    t[2] = -100
    x.requires_grad_()
    for b, reduction in [(0.0, "mean"), (0.2, "mean"), (9.0, "sum"), (0.0, "none")]:
        assert torch.autograd.gradcheck(
            lambda x, b=b, r=reduction: flooding_cross_entropy(x, t, b, r), (x,)
        )


def test_opcheck() -> None:
    x, t = _data(9, 6, dtype=torch.float64, seed=9)
    x.requires_grad_()
    for b, code in [(0.0, REDUCTIONS["mean"]), (1.5, REDUCTIONS["sum"]), (0.0, REDUCTIONS["none"])]:
        torch.library.opcheck(torch.ops.dlsys.flood_ce.default, (x, t, b, code, -100))
    _, rows, stats = torch.ops.dlsys.flood_ce(x.detach(), t, 0.3, 1, -100)
    torch.library.opcheck(
        torch.ops.dlsys.flood_ce_backward.default,
        (torch.ones(()).double(), x.detach(), t, rows, stats, 0.3, 1, -100),
    )


def _c_flood(impl: str, x: torch.Tensor, t: torch.Tensor, b: float, code: int, ii: int):
    n, c = x.shape
    name = "float32" if x.dtype == torch.float32 else "float64"
    loss = torch.empty((n,) if code == 0 else (1,), dtype=x.dtype)
    rows = torch.empty(n, 2, dtype=x.dtype)
    stats = torch.empty(2, dtype=x.dtype)
    buf = lambda u: (u.data_ptr(), u.numel())  # noqa: E731
    _C.flood_ce_forward(impl, name, buf(x), buf(t), buf(loss), buf(rows), buf(stats), n, c, b,
                        code, ii, 2)  # fmt: skip
    gl = torch.full(loss.shape, 0.7, dtype=x.dtype)
    gx = torch.empty_like(x)
    _C.flood_ce_backward(impl, name, buf(gl), buf(x), buf(t), buf(rows), buf(stats), buf(gx),
                         n, c, b, code, ii, 2)  # fmt: skip
    return [loss, rows, stats, gx]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(1, 1), (3, 2000), (700, 10), (20000, 3)])
def test_reference_and_optimised_cpp_agree(shape: tuple[int, int], dtype: torch.dtype) -> None:
    """flood_ce_ref.cpp and flood_ce_cpu.cpp (vectorised exp, chunked sums) agree."""
    x, t = _data(*shape, dtype=dtype, seed=10)
    t[::5] = -1
    for b, code in [(0.0, 0), (0.1, 1), (1e6, 2)]:
        ref = _c_flood("ref", x, t, b, code, -1)
        opt = _c_flood("cpu", x, t, b, code, -1)
        rtol = 2e-6 if dtype == torch.float32 else 1e-13
        for name, a, e in zip(["loss", "rows", "stats", "grad"], opt, ref, strict=True):
            assert_close(a, e, rtol=rtol, atol=rtol, name=f"{name} b={b}")


def test_module() -> None:
    crit = FloodingLoss(b=0.4)
    assert repr(crit) == (
        "FloodingLoss(b=0.4, reduction='mean', ignore_index=-100, label_smoothing=0.0)"
    )
    x, t = _data(16, 4, seed=11)
    assert_close(crit(x, t), torch_flood(x, t, 0.4))
    assert list(crit.state_dict()) == []


@st.composite
def ce_problems(draw: st.DrawFn) -> tuple[Any, ...]:
    n = draw(st.integers(1, 70))
    c = draw(st.integers(1, 300))
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    b = 0.0 if reduction == "none" else draw(st.sampled_from([0.0, 0.01, 1.0, 3.0, 50.0]))
    scale = draw(st.sampled_from([0.1, 1.0, 30.0]))
    ignore = draw(st.booleans())
    return n, c, reduction, b, scale, ignore


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ce_problems())
def test_hypothesis_shapes_match_torch(problem: tuple[Any, ...]) -> None:
    n, c, reduction, b, scale, ignore = problem
    x, t = _data(n, c, seed=n * 1000 + c, scale=scale)
    if ignore:
        t[::2] = -100
    loss, g = _value_and_grad(flooding_cross_entropy, x, t, b, reduction)
    loss_ref, g_ref = _value_and_grad(torch_flood, x, t, b, reduction)
    if reduction != "none" and b > 0:
        r = float(F.cross_entropy(x, t, reduction=reduction))
        if abs(r - b) < 1e-5 * max(1.0, b):
            return  # R within rounding of b: the sign of the gradient is legitimately ambiguous
    assert_close(loss, loss_ref, rtol=1e-5, atol=1e-5, name="loss")
    assert_close(g, g_ref, rtol=1e-4, atol=1e-6, name="grad")


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ce_problems())
def test_hypothesis_shapes_match_torch_slow(problem: tuple[Any, ...]) -> None:
    test_hypothesis_shapes_match_torch.hypothesis.inner_test(problem)  # type: ignore[attr-defined]


def test_eager_fast_path_equals_the_custom_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eager calls skip the dispatcher (ops._FloodCEEager) but run the very same kernels."""
    x, t = _data(100, 7, seed=12)
    t[::9] = -100
    cases = [(0.0, "mean"), (0.4, "mean"), (50.0, "sum"), (0.0, "none")]
    fast = [_value_and_grad(flooding_cross_entropy, x, t, b, r) for b, r in cases]
    monkeypatch.setattr(ops, "_EAGER_FAST_PATH", False)
    slow = [_value_and_grad(flooding_cross_entropy, x, t, b, r) for b, r in cases]
    for (lf, gf), (ls, gs) in zip(fast, slow, strict=True):
        assert torch.equal(lf, ls) and torch.equal(gf, gs)


def test_dispatch_modes_see_the_custom_ops() -> None:
    """Under a dispatch mode (as used by tracers and FLOP counters) the dlsys ops appear."""
    seen: list[str] = []

    class Log(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            seen.append(str(func))
            return func(*args, **(kwargs or {}))

    x, t = _data(8, 3, seed=13)
    x.requires_grad_()
    with Log():
        flooding_cross_entropy(x, t, 0.2).backward()
    assert "dlsys.flood_ce.default" in seen and "dlsys.flood_ce_backward.default" in seen
