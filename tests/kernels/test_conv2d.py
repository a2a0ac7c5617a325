"""dlsys.kernels.conv2d against torch.nn.functional.conv2d, and the C++ versions against each other.

The cases are chosen to hit every code path of the C++ kernels (kernels/csrc/conv2d_cpu.cpp):
batch 1, odd sizes, 1 and many channels, kernel 1/3/5/7 and non-square, stride 1-3, padding
0/1/2/'same'/'valid' (and 'same' with an even kernel, which pads asymmetrically), dilation 1-2,
groups 1/2/4 and depthwise, inputs smaller than a register tile (8 x 32), the 1x1 path that
reads the input in place, a reduction CRS = 32*3*3 = 288 longer than the k-block (256), output
channels that leave a partial row panel (17 = 2*8 + 1) and non-contiguous inputs.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlsys.kernels import _C, Conv2d, conv2d
from dlsys.kernels.conv import normalize_padding
from dlsys.kernels.testing import assert_close

# torch warns that 'same' with an even kernel copies the input; that is torch's business.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

# (N, C, H, W, K, (R, S), stride, padding, dilation, groups)
CASES: list[tuple[Any, ...]] = [
    (1, 1, 5, 5, 1, (3, 3), 1, 0, 1, 1),  # batch 1, one channel, one output pixel row
    (2, 3, 7, 9, 5, (3, 3), 1, 1, 1, 1),  # odd sizes
    (3, 4, 11, 10, 6, (5, 5), 2, 2, 1, 2),  # groups 2, stride 2
    (2, 6, 9, 9, 6, (3, 3), 1, "same", 2, 6),  # depthwise, 'same', dilation 2
    (2, 5, 8, 8, 12, (1, 1), 1, 0, 1, 1),  # 1x1: input used in place as Xcol
    (1, 2, 13, 12, 3, (7, 7), 3, 2, 1, 1),  # kernel 7, stride 3
    (2, 32, 6, 6, 17, (3, 3), 1, 1, 1, 1),  # CRS 288 > k-block 256; K 17 = 2*8 + 1
    (2, 3, 4, 4, 4, (3, 3), 1, "same", 1, 1),  # smaller than a tile
    (1, 4, 10, 7, 8, (3, 5), (2, 1), (1, 2), (2, 1), 1),  # non-square everything
    (2, 3, 9, 9, 4, (4, 4), 1, "same", 1, 1),  # even kernel: 'same' pads 1 before, 2 after
    (2, 8, 5, 5, 40, (2, 2), 2, "valid", 1, 4),  # groups 4, 'valid'
    (5, 1, 28, 28, 16, (5, 5), 1, 2, 1, 1),  # the training CNN's first layer, odd batch
    (2, 3, 5, 6, 2, (3, 3), 2, 3, 1, 1),  # padding larger than half the kernel
    (1, 2, 6, 6, 3, (1, 1), 3, 1, 1, 1),  # 1x1 with stride and padding (not the in-place path)
    (3, 8, 7, 9, 40, (3, 3), (1, 2), 1, 1, 1),  # grad weight 8 x 3 tiles (K 40: 3 vectors)
    (2, 16, 6, 5, 20, (3, 3), 1, 1, 2, 2),  # grad weight 12 x 2 tiles, groups, dilation
    # channels in the lanes: K 40 = 2 + 1 float32 vectors (a 2-vector and a 1-vector block),
    # 31 columns = row tiles of 14 + 14 + 3, 9 rows (the 2-row tiles end in a 1-row tile),
    # 'same' with an even kernel and dilation (2, 1): padding 3/3 rows, 1/2 columns
    (2, 8, 9, 31, 40, (4, 4), 1, "same", (2, 1), 1),
    # conv layer 2's shape: grad weight 10 x 2 tiles (80 taps per kernel row), and the
    # pixels of the top and bottom kernel rows' padding skipped; channels in the lanes with
    # the tile columns that read left (s = 0, 1) or right (s = 3, 4) padding left out, in the
    # forward and in the grad input (a conv of the same shape)
    (2, 16, 14, 14, 32, (5, 5), 1, 2, 1, 1),
    # channels in the lanes, column edges of every kind in a 12-wide tile: dilation 2 and
    # padding 4 give s = 0: 4 padding columns before (wider than the skipped edges: computed
    # as zeros), s = 1: 2 before, s = 3: 2 after, s = 4: 4 after
    (2, 16, 9, 12, 16, (3, 5), 1, (1, 4), (1, 2), 1),
    # a padded 1x1 conv in the lanes (CRS = 64): the 10-wide tile reads 2 padding columns on
    # both sides at once (computed as zeros)
    (1, 64, 5, 6, 16, (1, 1), 1, 2, 1, 1),
    # grad weight in tap tiles of 8 input channels sharing (r, s): 12 channels = a tile of 8
    # and one of 4 real taps + 4 dummies
    (2, 12, 8, 8, 16, (3, 3), 1, 1, 1, 1),
    # stride (1, 2): the row-sharing grad weight tiles, 10 x 2 (16 * 5 = 80 taps per kernel
    # row) and 12 x 2 (8 * 3 = 24 taps per kernel row)
    (2, 16, 9, 11, 32, (5, 5), (1, 2), 2, 1, 1),
    (2, 8, 7, 9, 16, (3, 3), (1, 2), 1, 1, 1),
]

GRAD_TOL = {torch.float32: (2e-4, 2e-3), torch.float64: (1e-10, 1e-9)}


def _case_id(case: tuple[Any, ...]) -> str:
    n, c, h, w, k, (r, s), stride, pad, dil, g = case
    return f"n{n}c{c}{h}x{w}k{k}r{r}s{s}st{stride}p{pad}d{dil}g{g}"


def _make(case: tuple[Any, ...], dtype: torch.dtype, seed: int = 0) -> tuple[Any, ...]:
    n, c, h, w, k, (r, s), stride, pad, dil, g = case
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen, dtype=dtype)
    wt = torch.randn(k, c // g, r, s, generator=gen, dtype=dtype)
    b = torch.randn(k, generator=gen, dtype=dtype)
    return x, wt, b, stride, pad, dil, g


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_forward_and_gradients_match_torch(case: tuple[Any, ...], dtype: torch.dtype) -> None:
    x, w, b, stride, pad, dil, g = _make(case, dtype)
    ours = [t.clone().requires_grad_() for t in (x, w, b)]
    ref = [t.clone().requires_grad_() for t in (x, w, b)]
    y = conv2d(*ours, stride, pad, dil, g)
    y_ref = F.conv2d(*ref, stride, pad, dil, g)
    assert_close(y, y_ref, name="y")
    gy = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    grads = torch.autograd.grad(y, ours, gy)
    grads_ref = torch.autograd.grad(y_ref, ref, gy)
    rtol, atol = GRAD_TOL[dtype]
    for name, a, e in zip(["grad_x", "grad_w", "grad_b"], grads, grads_ref, strict=True):
        assert_close(a, e, rtol=rtol, atol=atol, name=name)


def _c_conv(impl: str, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, conf: tuple) -> list:
    """Run the forward and all three gradients through _C with the given impl."""
    stride, pad, dil, g = conf
    k, _, r, s = w.shape
    st2 = (stride, stride) if isinstance(stride, int) else stride
    dl2 = (dil, dil) if isinstance(dil, int) else dil
    pads = normalize_padding(pad, (r, s), st2, dl2)
    y_shape = F.conv2d(x, w, b, stride, pad, dil, g).shape
    dims = [*x.shape, k, r, s, y_shape[2], y_shape[3], *st2, *pads, *dl2, g]
    name = "float32" if x.dtype == torch.float32 else "float64"
    y = torch.empty(y_shape, dtype=x.dtype)
    _C.conv2d_forward(impl, name, (x.data_ptr(), x.numel()), (w.data_ptr(), w.numel()),
                      (b.data_ptr(), b.numel()), (y.data_ptr(), y.numel()), dims, 2)  # fmt: skip
    gy = torch.randn(y_shape, generator=torch.Generator().manual_seed(2), dtype=x.dtype)
    gx, gw, gb = torch.empty_like(x), torch.empty_like(w), torch.empty_like(b)
    _C.conv2d_backward(
        impl, name, (x.data_ptr(), x.numel()), (w.data_ptr(), w.numel()),
        (gy.data_ptr(), gy.numel()), (gx.data_ptr(), gx.numel()), (gw.data_ptr(), gw.numel()),
        (gb.data_ptr(), gb.numel()), dims, 2,
    )  # fmt: skip
    return [y, gx, gw, gb]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_reference_and_optimised_cpp_agree(case: tuple[Any, ...]) -> None:
    """conv2d_ref.cpp (plain loops) and conv2d_cpu.cpp (GEMM) give the same numbers (float64)."""
    x, w, b, *conf = _make(case, torch.float64, seed=3)
    ref = _c_conv("ref", x, w, b, tuple(conf))
    opt = _c_conv("cpu", x, w, b, tuple(conf))
    for name, a, e in zip(["y", "grad_x", "grad_w", "grad_b"], opt, ref, strict=True):
        assert_close(a, e, rtol=1e-12, atol=1e-11, name=name)
    # and the reference agrees with torch (so all three agree)
    assert_close(ref[0], F.conv2d(x, w, b, *conf), name="y_ref_vs_torch")


def test_non_contiguous_inputs() -> None:
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 9, 11, 6, generator=gen).permute(0, 3, 1, 2)  # (2, 6, 9, 11), NHWC
    w = torch.randn(3, 3, 4, 6, generator=gen).permute(2, 3, 0, 1)  # (4, 6, 3, 3)
    b = torch.randn(8, generator=gen)[::2]  # stride 2
    assert not x.is_contiguous() and not w.is_contiguous() and not b.is_contiguous()
    assert_close(conv2d(x, w, b, 1, 1), F.conv2d(x, w, b, 1, 1), name="y")
    xs = torch.randn(2, 6, 9, 22, generator=gen)[..., ::2]  # a strided view
    assert_close(conv2d(xs, w, None, 2, 0), F.conv2d(xs, w, None, 2, 0), name="y_view")


def test_unbatched_input_like_torch() -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 8, 8, generator=gen)
    w = torch.randn(4, 3, 3, 3, generator=gen)
    y = conv2d(x, w, padding=1)
    assert y.shape == (4, 8, 8)
    assert_close(y, F.conv2d(x, w, padding=1))


def test_empty_batch_gives_empty_result_like_torch() -> None:
    x = torch.randn(0, 3, 8, 8, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    y = conv2d(x, w, b, padding=1)
    assert y.shape == F.conv2d(x, w, b, padding=1).shape == (0, 4, 8, 8)
    gx, gw, gb = torch.autograd.grad(y.sum(), (x, w, b))
    assert gx.shape == (0, 3, 8, 8)
    # No samples: the weight and bias gradients are exactly zero (an empty sum).
    assert torch.equal(gw, torch.zeros_like(w)) and torch.equal(gb, torch.zeros_like(b))


def test_first_layer_skips_grad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """An input that needs no grad is never differentiated: the C++ call gets (0, 0) for it."""
    calls: list[tuple[int, int]] = []
    real = _C.conv2d_backward

    def spy(*args: Any, **kwargs: Any) -> None:
        calls.append(args[5])  # grad_input buffer
        real(*args, **kwargs)

    monkeypatch.setattr(_C, "conv2d_backward", spy)
    x = torch.randn(2, 1, 8, 8)
    w = torch.randn(4, 1, 3, 3, requires_grad=True)
    conv2d(x, w, None, padding=1).sum().backward()
    assert calls == [(0, 0)]
    assert w.grad is not None
    x.requires_grad_()
    calls.clear()
    conv2d(x, w, None, padding=1).sum().backward()
    assert calls[0][1] == x.numel()


def test_gradcheck_float64() -> None:
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 4, 6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: conv2d(x, w, b, (2, 1), 1, (1, 2), 2), (x, w, b), eps=1e-6, atol=1e-7
    )


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
def test_opcheck(with_bias: bool) -> None:
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 4, 7, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    b = (
        torch.randn(6, generator=gen, dtype=torch.float64, requires_grad=True)
        if with_bias
        else None
    )
    torch.library.opcheck(
        torch.ops.dlsys.conv2d.default, (x, w, b, [2, 1], [1, 1, 0, 2], [1, 2], 2)
    )
    gy = torch.randn(2, 6, 4, 4, generator=gen, dtype=torch.float64)
    torch.library.opcheck(
        torch.ops.dlsys.conv2d_backward.default,
        (gy, x.detach(), w.detach(), [2, 1], [1, 1, 0, 2], [1, 2], 2, [True, False, with_bias]),
    )


def test_module_is_a_drop_in_for_nn_conv2d() -> None:
    torch.manual_seed(8)
    ours = Conv2d(3, 5, 3, stride=2, padding=1, groups=1, bias=True)
    torch.manual_seed(8)
    ref = torch.nn.Conv2d(3, 5, 3, stride=2, padding=1, groups=1, bias=True)
    assert isinstance(ours, torch.nn.Conv2d)
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight", "bias"]
    # Same seed, same (Kaiming-uniform) initialisation.
    assert torch.equal(ours.weight, ref.weight) and torch.equal(ours.bias, ref.bias)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 9, 9)
    assert_close(ours(x), ref(x))
    assert repr(ours).startswith("Conv2d(3, 5, kernel_size=(3, 3)")
    same = Conv2d(2, 4, 5, padding="same", bias=False, dtype=torch.float64)
    assert same.bias is None
    assert same(torch.randn(1, 2, 7, 7, dtype=torch.float64)).shape == (1, 4, 7, 7)
    with pytest.raises(ValueError, match="padding_mode"):
        Conv2d(2, 4, 3, padding_mode="reflect")


@st.composite
def conv_problems(draw: st.DrawFn) -> tuple[Any, ...]:
    g = draw(st.sampled_from([1, 1, 2, 3]))
    c = g * draw(st.integers(1, 4))
    k = g * draw(st.integers(1, 5))
    r, s = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, dh * (r - 1) + 1 - 2 * ph), 12))
    w = draw(st.integers(max(1, dw * (s - 1) + 1 - 2 * pw), 12))
    n = draw(st.integers(1, 3))
    return (n, c, h, w, k, (r, s), (sh, sw), (ph, pw), (dh, dw), g)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_problems())
def test_hypothesis_shapes_match_torch(case: tuple[Any, ...]) -> None:
    x, w, b, stride, pad, dil, g = _make(case, torch.float32, seed=9)
    xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))
    xo, wo, bo = (t.clone().requires_grad_() for t in (x, w, b))
    y_ref = F.conv2d(xr, wr, br, stride, pad, dil, g)
    y = conv2d(xo, wo, bo, stride, pad, dil, g)
    assert_close(y, y_ref, name="y")
    gy = torch.ones_like(y_ref)
    for name, a, e in zip(
        ["grad_x", "grad_w", "grad_b"],
        torch.autograd.grad(y, (xo, wo, bo), gy),
        torch.autograd.grad(y_ref, (xr, wr, br), gy),
        strict=True,
    ):
        assert_close(a, e, rtol=2e-4, atol=1e-3, name=name)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_problems())
def test_hypothesis_shapes_reference_vs_optimised_slow(case: tuple[Any, ...]) -> None:
    x, w, b, *conf = _make(case, torch.float64, seed=10)
    for name, a, e in zip(
        ["y", "grad_x", "grad_w", "grad_b"],
        _c_conv("cpu", x, w, b, tuple(conf)),
        _c_conv("ref", x, w, b, tuple(conf)),
        strict=True,
    ):
        assert_close(a, e, rtol=1e-12, atol=1e-11, name=name)


@pytest.mark.parametrize("c", [3, 16])  # dot-product and transposed-GEMM grad weight
def test_thread_count_follows_torch_and_result_does_not_depend_on_it(c: int) -> None:
    """dlsys uses torch.get_num_threads(); gradient sums are chunked so 1 and 2 threads agree."""
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(19, c, 10, 10, generator=gen, requires_grad=True)
    w = torch.randn(8, c, 3, 3, generator=gen, requires_grad=True)
    saved = torch.get_num_threads()
    out = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            y = conv2d(x, w, None, 1, 1)
            out.append((y, *torch.autograd.grad(y.square().sum(), (x, w))))
    finally:
        torch.set_num_threads(saved)
    for a, e in zip(out[0], out[1], strict=True):
        assert torch.equal(a, e)


@pytest.mark.parametrize(
    ("dims", "dtype", "expected"),
    [
        # conv layer 1: CRS = 25, short: the flat-pixel implicit GEMM
        ([128, 1, 28, 28, 16, 5, 5, 28, 28, 1, 1, 2, 2, 2, 2, 1, 1, 1], "float32", "implicit_gemm"),
        # conv layer 2 (32 channels = 2 vectors, CRS = 400) and its grad input as a conv
        ([128, 16, 14, 14, 32, 5, 5, 14, 14, 1, 1, 2, 2, 2, 2, 1, 1, 1], "float32",
         "channels_in_lanes"),
        ([128, 32, 14, 14, 16, 5, 5, 14, 14, 1, 1, 2, 2, 2, 2, 1, 1, 1], "float32",
         "channels_in_lanes"),
        # 8 output channels: half a float32 vector, one float64 vector
        ([2, 16, 8, 8, 8, 3, 3, 8, 8, 1, 1, 1, 1, 1, 1, 1, 1, 1], "float32", "implicit_gemm"),
        ([2, 16, 8, 8, 8, 3, 3, 8, 8, 1, 1, 1, 1, 1, 1, 1, 1, 1], "float64", "channels_in_lanes"),
        ([2, 16, 8, 8, 8, 1, 1, 8, 8, 1, 1, 0, 0, 0, 0, 1, 1, 1], "float32", "direct_1x1"),
        ([2, 16, 9, 9, 32, 3, 3, 4, 4, 2, 2, 0, 0, 0, 0, 1, 1, 1], "float32", "im2col_gemm"),
    ],
)  # fmt: skip
def test_forward_path_chooser(dims: list[int], dtype: str, expected: str) -> None:
    assert _C.conv2d_backward_plan(dims, dtype)["forward"] == expected


@pytest.mark.parametrize(
    ("dims", "dtype", "expected"),
    [
        # conv layer 1: one input channel (GEMM + col2im), CRS = 25 < 4 vectors (pixel dots)
        ([128, 1, 28, 28, 16, 5, 5, 28, 28, 1, 1, 2, 2, 2, 2, 1, 1, 1], "float32",
         ("gemm_col2im", "pixel_dot")),
        # conv layer 2: 32 channels = 2 float32 vectors, CRS = 400, 16 input channels: tiles
        # of 8 taps sharing (r, s) x 2 vectors
        ([128, 16, 14, 14, 32, 5, 5, 14, 14, 1, 1, 2, 2, 2, 2, 1, 1, 1], "float32",
         ("as_conv", "tap_rows_8x2")),
        # 40 channels = 3 vectors (odd, a multiple of 3): 8 x 3
        ([2, 8, 9, 31, 40, 4, 4, 9, 31, 1, 1, 3, 3, 1, 2, 2, 1, 1], "float32",
         ("as_conv", "tap_rows_8x3")),
        # stride (1, 2): tiles share a kernel row; 16 * 5 = 80 taps fill 8 tiles of 10
        # (12 x 2 would pad to 84)
        ([2, 16, 9, 11, 32, 5, 5, 9, 6, 1, 2, 2, 2, 2, 2, 1, 1, 1], "float32",
         ("gemm_col2im", "transposed_gemm_10x2")),
        # 20 channels in groups of 10 (1 vector), 8 input channels per group, 8 * 3 = 24
        # taps per kernel row: 8 taps sharing (r, s), one vector padded to 2
        ([2, 16, 6, 5, 20, 3, 3, 4, 3, 1, 1, 1, 1, 1, 1, 2, 2, 2], "float32",
         ("as_conv", "tap_rows_8x2")),
        # 6 input channels: too few for tiles of 8 taps; 6 * 4 = 24 taps per kernel row: 12 x 2
        ([2, 6, 9, 9, 16, 4, 4, 8, 8, 1, 1, 1, 1, 1, 1, 1, 1, 1], "float32",
         ("gemm_col2im", "transposed_gemm_12x2")),
        # inception 3x3: 96 channels = 6 vectors (even: 8 x 2)
        ([64, 160, 13, 13, 96, 3, 3, 13, 13, 1, 1, 1, 1, 1, 1, 1, 1, 1], "float32",
         ("as_conv", "tap_rows_8x2")),
        # stride (1, 2) with 40 channels = 3 vectors: 8 x 3 row-sharing tiles
        ([3, 8, 7, 9, 40, 3, 3, 7, 5, 1, 2, 1, 1, 1, 1, 1, 1, 1], "float32",
         ("gemm_col2im", "transposed_gemm_8x3")),
        # float64 vectors hold 8: 48 channels = 6 vectors
        ([2, 16, 8, 8, 48, 3, 3, 8, 8, 1, 1, 1, 1, 1, 1, 1, 1, 1], "float64",
         ("as_conv", "tap_rows_8x2")),
        # stride 2: im2col rows; grad input cannot be a stride-1 conv
        ([2, 16, 9, 9, 8, 3, 3, 4, 4, 2, 2, 0, 0, 0, 0, 1, 1, 1], "float32",
         ("gemm_col2im", "im2col_gemm")),
    ],
)  # fmt: skip
def test_backward_strategy_chooser(dims: list[int], dtype: str, expected: tuple[str, str]) -> None:
    plan = _C.conv2d_backward_plan(dims, dtype)
    assert (plan["grad_input"], plan["grad_weight"]) == expected
    with pytest.raises(ValueError, match="output size does not match"):
        _C.conv2d_backward_plan([*dims[:7], dims[7] + 1, *dims[8:]], dtype)
