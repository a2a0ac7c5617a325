"""dlsys.kernels.conv2d_relu_pool against F.max_pool2d(F.relu(F.conv2d(...))), and the C++
versions (reference, OpenMP) against each other.

The conv cases reuse a spread of conv settings (stride, padding, dilation, groups, non-square);
the pool cases cover 2x2/2 (the CPU fast path), 3x3/2 with and without padding, a
non-square window with a stride of its own and overlapping windows (stride 1), where one conv
element can be selected by several pooled outputs and its gradient is a sum.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlsys.kernels import _C, ConvReLUPool, conv2d_relu_pool
from dlsys.kernels.conv import _check_conv_args, conv2d_output_size
from dlsys.kernels.conv_relu_pool import _check_pool_args, _dims
from dlsys.kernels.testing import assert_close

# (N, C, H, W, K, (R, S), stride, padding, dilation, groups)
CONVS: list[tuple[Any, ...]] = [
    (3, 1, 28, 28, 16, (5, 5), 1, 2, 1, 1),  # the flooding CNN's first layer (odd batch)
    (2, 16, 14, 14, 32, (5, 5), 1, 2, 1, 1),  # and its second
    (2, 3, 11, 10, 6, (3, 3), 2, 1, 1, 1),  # strided conv (im2col path)
    (2, 4, 13, 12, 8, (3, 3), 1, 1, 2, 2),  # groups 2, dilation 2
    (1, 3, 9, 12, 4, (2, 3), (1, 2), (0, 1), 1, 1),  # non-square everything
    # 16 input channels, stride 1: the backward from the pooled gradient's nonzeros
    # (conv_relu_pool_sparse.h), with 5 x 5 (conv layer 2 above) and 3 x 3 register tiles
    # in float32, the general loops in float64 (two vectors of 8 channels)
    (2, 16, 9, 10, 8, (3, 3), 1, 1, 1, 1),
]
# (pool, pool_stride, pool_padding)
POOLS: list[tuple[Any, Any, Any]] = [
    (2, None, 0),  # 2x2 stride 2: the CPU fast path
    (3, 2, 0),
    (3, 2, 1),  # padded: windows at the border are clipped (padding is -inf)
    ((2, 3), (1, 2), (1, 1)),  # non-square, overlapping rows
    (2, 1, 0),  # overlapping windows: gradients add up
]
GRAD_TOL = {torch.float32: (2e-4, 2e-3), torch.float64: (1e-10, 1e-9)}


def _torch_block(x, w, b, conv, pool):  # type: ignore[no-untyped-def]
    stride, pad, dil, g = conv
    p, ps, pp = pool
    return F.max_pool2d(F.relu(F.conv2d(x, w, b, stride, pad, dil, g)), p, ps, pp)


def _make(case: tuple[Any, ...], dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
    n, c, h, w, k, (r, s), _, _, _, g = case
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(n, c, h, w, generator=gen, dtype=dtype),
        torch.randn(k, c // g, r, s, generator=gen, dtype=dtype),
        torch.randn(k, generator=gen, dtype=dtype),
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("pool", POOLS, ids=lambda p: f"pool{p[0]}s{p[1]}p{p[2]}")
@pytest.mark.parametrize("case", CONVS, ids=lambda c: f"n{c[0]}c{c[1]}k{c[4]}st{c[6]}g{c[9]}")
def test_forward_and_gradients_match_torch(
    case: tuple[Any, ...], pool: tuple[Any, Any, Any], dtype: torch.dtype
) -> None:
    conv = case[6:]
    tensors = _make(case, dtype)
    ours = [t.clone().requires_grad_() for t in tensors]
    ref = [t.clone().requires_grad_() for t in tensors]
    y = conv2d_relu_pool(*ours, *conv, *pool)
    y_ref = _torch_block(*ref, conv, pool)
    assert_close(y, y_ref, name="y")
    gy = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    rtol, atol = GRAD_TOL[dtype]
    for name, a, e in zip(
        ["grad_x", "grad_w", "grad_b"],
        torch.autograd.grad(y, ours, gy),
        torch.autograd.grad(y_ref, ref, gy),
        strict=True,
    ):
        assert_close(a, e, rtol=rtol, atol=atol, name=name)


def _raw(impl: str, x, w, b, conv, pool, threads: int = 2):  # type: ignore[no-untyped-def]
    """(out, argmax, grad_x, grad_w, grad_b) straight from _C for implementation ``impl``."""
    x, _, st, pads, dl = _check_conv_args(x, w, b, *conv)
    oh, ow = conv2d_output_size((x.shape[2], x.shape[3]), w.shape[2:], st, pads, dl)
    pl = _check_pool_args(*pool, (oh, ow))
    dims, pdims = _dims(x, w, list(st), list(pads), list(dl), conv[3], pl)
    out = x.new_empty((dims[0], dims[4], pdims[6], pdims[7]))
    arg = torch.empty(out.shape, dtype=torch.uint8)
    dt = "float32" if x.dtype == torch.float32 else "float64"

    def buf(t):  # type: ignore[no-untyped-def]
        return (t.data_ptr(), t.numel())

    _C.conv_relu_pool_forward(
        impl, dt, buf(x), buf(w), buf(b), buf(out), buf(arg), dims, pdims, threads
    )
    gout = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=x.dtype)
    gx, gw, gb = torch.empty_like(x), torch.empty_like(w), torch.empty_like(b)
    _C.conv_relu_pool_backward(
        impl,
        dt,
        buf(x),
        buf(w),
        buf(gout),
        buf(out),
        buf(arg),
        buf(gx),
        buf(gw),
        buf(gb),
        dims,
        pdims,
        threads,
    )
    return out, arg, gx, gw, gb


@pytest.mark.parametrize("pool", POOLS[:3], ids=["2x2", "3x3s2", "3x3s2p1"])
@pytest.mark.parametrize("case", CONVS[:3], ids=["layer1", "layer2", "strided"])
def test_reference_and_optimised_cpu_agree(case: tuple[Any, ...], pool: Any) -> None:
    x, w, b = _make(case, torch.float64)
    ref = _raw("ref", x, w, b, case[6:], pool)
    cpu = _raw("cpu", x, w, b, case[6:], pool)
    assert torch.equal(ref[1], cpu[1]), "argmax differs"
    for name, a, e in zip(
        ["out", "grad_x", "grad_w", "grad_b"], cpu[0:1] + cpu[2:], ref[0:1] + ref[2:], strict=True
    ):
        assert_close(a, e, name=name)


def test_results_do_not_depend_on_the_thread_count() -> None:
    x, w, b = _make(CONVS[1], torch.float32)
    one = _raw("cpu", x, w, b, CONVS[1][6:], POOLS[0], threads=1)
    two = _raw("cpu", x, w, b, CONVS[1][6:], POOLS[0], threads=2)
    for a, e in zip(one, two, strict=True):
        assert torch.equal(a, e)


def _argmax_like_torch(z: torch.Tensor, pool: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's pooled values and selected flat indices of relu(z)."""
    return F.max_pool2d(F.relu(z), *pool, return_indices=True)


@pytest.mark.parametrize("pool", [(2, None, 0), (3, 2, 1), (2, 1, 0)])
def test_ties_and_nans_select_the_element_torch_selects(pool: Any) -> None:
    # 1x1 identity conv, so the conv output is the input: ties (zeros after ReLU, repeated
    # values) and NaNs (ReLU keeps them) placed by hand. Torch takes the first of equal
    # maxima and the last NaN of a window; the gradient goes where torch sends it.
    z = torch.tensor(
        [
            [0.0, 0.0, 2.0, 2.0, -1.0],
            [0.0, 0.0, 1.0, 2.0, -3.0],
            [float("nan"), 5.0, 7.0, 7.0, 0.5],
            [1.0, float("nan"), 7.0, 7.0, 0.5],
            [-1.0, -2.0, -3.0, -4.0, 9.0],
        ],
        dtype=torch.float64,
    ).reshape(1, 1, 5, 5)
    w = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    zin = z.clone().requires_grad_()
    y = conv2d_relu_pool(zin, w, None, pool=pool[0], pool_stride=pool[1], pool_padding=pool[2])
    zt = z.clone().requires_grad_()
    y_ref = F.max_pool2d(F.relu(zt), *pool)
    assert_close(y, y_ref, name="y")
    gy = torch.arange(1.0, y.numel() + 1, dtype=torch.float64).reshape(y.shape)
    (g,) = torch.autograd.grad(y, zin, gy)
    (g_ref,) = torch.autograd.grad(y_ref, zt, gy)
    assert torch.equal(g, g_ref), f"{g}\n{g_ref}"


@pytest.mark.parametrize("hw", [(9, 37), (8, 32), (4, 6)], ids=["odd", "one_vector", "narrow"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_2x2_fast_path_ties_nans_and_tails(hw: tuple[int, int], dtype: torch.dtype) -> None:
    # The 2x2/2 path (AVX-512 for float32: 16 pooled columns per step, masked tails) against
    # the reference loops and torch, through a 1x1 identity conv so the conv output is the
    # input: small integers (ties everywhere, zeros and negatives that ReLU turns into tied
    # zeros) and NaNs. 37 columns: 18 pooled (one full step + a tail of 2) and an odd last
    # column and row that no window covers (their gradient must be 0); 32: exactly one step.
    gen = torch.Generator().manual_seed(5)
    z = torch.randint(-2, 3, (3, 1, *hw), generator=gen).to(dtype)
    z.view(-1)[torch.randperm(z.numel(), generator=gen)[: z.numel() // 10]] = float("nan")
    w = torch.ones(1, 1, 1, 1, dtype=dtype)
    b = torch.zeros(1, dtype=dtype)
    ref = _raw("ref", z, w, b, (1, 0, 1, 1), (2, None, 0))
    cpu = _raw("cpu", z, w, b, (1, 0, 1, 1), (2, None, 0))
    assert torch.equal(ref[1], cpu[1]), "argmax differs"
    assert torch.equal(ref[0].isnan(), cpu[0].isnan())
    assert torch.equal(ref[0].nan_to_num(), cpu[0].nan_to_num())
    assert torch.equal(ref[2].isnan(), cpu[2].isnan())
    assert torch.equal(ref[2].nan_to_num(), cpu[2].nan_to_num()), "grad_x differs"
    zin = z.clone().requires_grad_()
    y = conv2d_relu_pool(zin, w, None, pool=2)
    zt = z.clone().requires_grad_()
    y_ref = F.max_pool2d(F.relu(zt), 2)
    assert_close(y, y_ref, name="y")
    gy = torch.arange(1.0, y.numel() + 1, dtype=dtype).reshape(y.shape)
    (g,) = torch.autograd.grad(y, zin, gy)
    (g_ref,) = torch.autograd.grad(y_ref, zt, gy)
    assert torch.equal(g, g_ref)


def test_gradcheck_float64() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 9, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    for pool in [(2, None, 0), (3, 2, 1)]:
        assert torch.autograd.gradcheck(
            lambda x, w, b, p=pool: conv2d_relu_pool(x, w, b, 1, 1, 1, 1, *p), (x, w, b)
        )


def test_opcheck() -> None:
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 10, 10, generator=gen, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, generator=gen, requires_grad=True)
    b = torch.randn(4, generator=gen, requires_grad=True)
    op = torch.ops.dlsys.conv2d_relu_pool.default
    for args in [
        (x, w, b, [1, 1], [1, 1, 1, 1], [1, 1], 1, [2, 2, 2, 2, 0, 0]),
        (x, w, None, [2, 2], [0, 0, 0, 0], [1, 1], 1, [3, 3, 1, 1, 1, 1]),
    ]:
        torch.library.opcheck(op, args)


def test_only_needed_gradients_and_unbatched_and_empty_batch() -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 8, 8, generator=gen)
    w = torch.randn(4, 3, 3, 3, generator=gen, requires_grad=True)
    y = conv2d_relu_pool(x, w, padding=1)  # unbatched, no bias, x needs no gradient
    assert y.shape == (4, 4, 4)
    assert_close(y, F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2))
    y.sum().backward()
    assert w.grad is not None and x.grad is None
    empty = conv2d_relu_pool(torch.randn(0, 3, 8, 8), w, padding=1)
    assert empty.shape == (0, 4, 4, 4)
    (gw,) = torch.autograd.grad(empty.sum(), w)
    assert torch.equal(gw, torch.zeros_like(w))


def test_module_state_dict_and_init_are_the_unfused_conv2d() -> None:
    torch.manual_seed(7)
    fused = ConvReLUPool(3, 5, 3, padding=1, pool=3, pool_stride=2, pool_padding=1)
    torch.manual_seed(7)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    assert list(fused.state_dict()) == list(conv.state_dict()) == ["weight", "bias"]
    for key, value in conv.state_dict().items():
        assert torch.equal(fused.state_dict()[key], value)  # same seed, same weights
    conv.load_state_dict(fused.state_dict())
    x = torch.randn(2, 3, 11, 11)
    assert_close(fused(x), F.max_pool2d(F.relu(conv(x)), 3, 2, 1))
    assert "pool=3" in repr(fused)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"pool": 0}, ValueError, "pool: must be >= 1"),
        ({"pool": -2}, ValueError, "pool: must be >= 1"),
        ({"pool": 2, "pool_stride": 0}, ValueError, "pool_stride: must be >= 1"),
        ({"pool": 2, "pool_padding": -1}, ValueError, "pool_padding: must be >= 0"),
        ({"pool": 2, "pool_padding": 2}, ValueError, "pool_padding: must be at most half"),
        ({"pool": 9}, ValueError, "pool: window 9x9 is larger than the conv output 8x8"),
        ({"pool": (17, 17)}, ValueError, "at most 256 elements"),
        ({"pool": 2.0}, TypeError, "pool: must be an int or a pair"),
    ],
)
def test_bad_pool_arguments(kwargs: dict[str, Any], error: type, match: str) -> None:
    x, w = torch.randn(1, 2, 8, 8), torch.randn(3, 2, 3, 3)
    with pytest.raises(error, match=match):
        conv2d_relu_pool(x, w, padding=1, **kwargs)


def test_bad_tensors_are_refused() -> None:
    x, w = torch.randn(1, 2, 8, 8), torch.randn(3, 2, 3, 3)
    with pytest.raises(TypeError, match=r"weight: dtype torch\.float64 does not match"):
        conv2d_relu_pool(x, w.double())
    with pytest.raises(ValueError, match="x: has 2 input channels"):
        conv2d_relu_pool(x, torch.randn(3, 4, 3, 3))


def test_the_cpp_layer_rechecks_the_pool_sizes() -> None:
    x, w, b = torch.randn(1, 2, 8, 8), torch.randn(3, 2, 3, 3), torch.randn(3)
    out, arg = torch.empty(1, 3, 3, 3), torch.empty(1, 3, 3, 3, dtype=torch.uint8)
    dims = [1, 2, 8, 8, 3, 3, 3, 6, 6, 1, 1, 0, 0, 0, 0, 1, 1, 1]

    def call(pool: list[int]) -> None:
        _C.conv_relu_pool_forward(
            "cpu",
            "float32",
            (x.data_ptr(), x.numel()),
            (w.data_ptr(), w.numel()),
            (b.data_ptr(), 3),
            (out.data_ptr(), out.numel()),
            (arg.data_ptr(), arg.numel()),
            dims,
            pool,
        )

    call([2, 2, 2, 2, 0, 0, 3, 3])  # consistent: 6x6 conv output, 2x2/2 pool -> 3x3
    with pytest.raises(ValueError, match="pooled size does not match"):
        call([2, 2, 2, 2, 0, 0, 4, 4])
    with pytest.raises(ValueError, match="pool window larger than the padded conv output"):
        call([7, 7, 1, 1, 0, 0, 1, 1])
    with pytest.raises(ValueError, match="pool stride must be >= 1"):
        call([2, 2, 0, 0, 0, 0, 3, 3])
    with pytest.raises(ValueError, match="out: expected 12 elements, got 27"):
        call([3, 3, 3, 3, 0, 0, 2, 2])  # 2x2 pooled output: out holds 27, 12 are needed


@pytest.mark.parametrize("name", ["cnn", "cnn7", "cnn7-3"])
def test_training_models_use_the_fused_block_and_match_the_unfused_model(name: str) -> None:
    from dlsys.analytics import cost
    from dlsys.analytics.report import Convention
    from dlsys.training.models import build_model

    torch.manual_seed(11)
    fused = build_model(name, (1, 28, 28), 10, kernels="dlsys")
    torch.manual_seed(11)
    plain = build_model(name, (1, 28, 28), 10, kernels="torch")
    assert any(isinstance(m, ConvReLUPool) for m in fused.modules())
    assert not any(isinstance(m, ConvReLUPool) for m in plain.modules())
    # the same keys and, from the same seed, the same initial weights
    assert list(fused.state_dict()) == list(plain.state_dict())
    for key, value in plain.state_dict().items():
        assert torch.equal(fused.state_dict()[key], value), key
    x = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(12))
    assert_close(fused(x), plain(x), rtol=1e-4, atol=1e-5, name="logits")
    # checkpoints move both ways
    plain.load_state_dict(fused.state_dict())
    fused.load_state_dict(plain.state_dict())
    # the cost model counts each fused block exactly like its conv, ReLU and max-pool
    for convention in (
        Convention(),
        Convention(bias=True, elementwise=True, pointwise_activations=True),
    ):
        a = cost(fused, input_shape=(1, 28, 28), convention=convention)
        b = cost(plain, input_shape=(1, 28, 28), convention=convention)
        assert a.totals == b.totals


def test_backward_in_blocks_of_images_matches_torch_and_any_thread_count() -> None:
    # Without grad input (autograd: x needs no gradient) the CPU backward runs image by image
    # in 16 chunks of the batch (45 images: chunks of 2 and 3), sub-blocks of at most 1 MB of
    # image gradients; with grad input by GEMM + col2im (one input channel; _raw computes
    # it) blocks of max(16, 1 MB / image gradient) images: for 16 x 28 x 28 float32 (50,176 B
    # per image) blocks of 20, so 45 images are blocks 20 + 20 + 5.
    case = (45, 1, 28, 28, 16, (5, 5), 1, 2, 1, 1)
    x, w, b = _make(case, torch.float32)
    ours = [w.clone().requires_grad_(), b.clone().requires_grad_()]
    ref = [w.clone().requires_grad_(), b.clone().requires_grad_()]
    y = conv2d_relu_pool(x, *ours, padding=2)
    y_ref = F.max_pool2d(F.relu(F.conv2d(x, *ref, padding=2)), 2)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(9))
    for a, e in zip(
        torch.autograd.grad(y, ours, gy), torch.autograd.grad(y_ref, ref, gy), strict=True
    ):
        assert_close(a, e, rtol=2e-4, atol=2e-3)
    one = _raw("cpu", x, w, b, case[6:], POOLS[0], threads=1)
    two = _raw("cpu", x, w, b, case[6:], POOLS[0], threads=2)
    for a, e in zip(one, two, strict=True):
        assert torch.equal(a, e)


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_non_finite_input_gives_torch_s_nans(bad: float) -> None:
    """An inf or NaN in x times a zero conv output gradient is NaN in torch's (dense) weight
    gradient; the backward from the nonzeros alone would leave those products out, so such
    inputs take the dense backward (the same NaNs as torch)."""
    x, w, b = _make(CONVS[1], torch.float32)
    x[1, 3, 5, 6] = bad
    ours = [t.clone().requires_grad_() for t in (x, w, b)]
    ref = [t.clone().requires_grad_() for t in (x, w, b)]
    y = conv2d_relu_pool(*ours, padding=2)
    y_ref = F.max_pool2d(F.relu(F.conv2d(*ref, padding=2)), 2)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(4))
    grads = torch.autograd.grad(y, ours, gy)
    grads_ref = torch.autograd.grad(y_ref, ref, gy)
    for name, a, e in zip(("gx", "gw", "gb"), grads, grads_ref, strict=True):
        assert torch.equal(a.isnan(), e.isnan()), name
        assert_close(a, e, rtol=2e-4, atol=2e-3, name=name)
    assert bool(grads_ref[1].isnan().any())  # the case is one where NaNs arise
