"""Convolution arithmetic against PyTorch's own shape rules and the homework's questions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dlsys.analytics import conv_output_size, keep_padding, receptive_field
from dlsys.analytics.builder import Conv, Flatten, Input, Linear, MaxPool, Net
from dlsys.analytics.convarith import keep_padding_1d, output_size_1d
from dlsys.analytics.formulas import apply


def test_homework_questions() -> None:
    # 6x4 input, 2x2 kernel, stride 2, no padding: floor((6-2)/2)+1 = 3, floor((4-2)/2)+1 = 2
    assert conv_output_size((6, 4), 2, stride=2) == (3, 2)
    # Padding that keeps 6x4 at stride 2: P = (L-1)*s + k - L -> 5*2+2-6 = 6, 3*2+2-4 = 4
    assert keep_padding((6, 4), 2, stride=2, symmetric=True) == ((3, 3), (2, 2))
    # One 4x4 filter on a 22x22 single-channel image: 4*4*1 weights + 1 bias = 17
    r = Net(Input(1, 22, 22), Conv(1, 4, stride=2)).cost()
    assert r.totals["params"] == 4 * 4 * 1 + 1 == 17
    assert r.layers[-1].output_shape == (1, 1, 10, 10)  # floor((22-4)/2)+1 = 10


def test_same_padding_asymmetric_for_even_kernels() -> None:
    # Stride 1, kernel 2: total padding 1 -> PyTorch's 'same' puts it after: (0, 1)
    assert keep_padding_1d(6, 2) == (0, 1)
    with pytest.raises(ValueError, match="symmetric"):
        keep_padding_1d(6, 2, symmetric=True)
    # Dilation 2, kernel 3: effective 5, total 4 -> (2, 2)
    assert keep_padding_1d(7, 3, dilation=2) == (2, 2)


def test_ceil_mode_rule() -> None:
    # 6 with kernel 3 stride 2: floor -> (6-3)//2+1 = 2; ceil -> ceil(3/2)+1 = 3
    assert output_size_1d(6, 3, 2) == 2
    assert output_size_1d(6, 3, 2, ceil_mode=True) == 3
    # 5 with kernel 2 stride 2 pad 1 ceil: ceil(5/2)+1 = 4, but window 4 would start at
    # 3*2 = 6 >= 5 + 1 (inside the right padding) -> 3 (PyTorch's rule)
    assert output_size_1d(5, 2, 2, padding=1, ceil_mode=True) == 3
    assert F.max_pool1d(torch.zeros(1, 1, 5), 2, 2, 1, ceil_mode=True).shape[-1] == 3


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 20),
    kernel=st.integers(1, 5),
    stride=st.integers(1, 4),
    padding=st.integers(0, 2),
    dilation=st.integers(1, 3),
)
def test_output_size_matches_torch(
    size: int, kernel: int, stride: int, padding: int, dilation: int
) -> None:
    x = torch.empty(1, 1, size, device="meta")
    w = torch.empty(1, 1, kernel, device="meta")
    k_eff = dilation * (kernel - 1) + 1
    if k_eff > size + 2 * padding:
        with pytest.raises(ValueError, match="larger than the padded input"):
            output_size_1d(size, kernel, stride, padding, dilation)
        return
    expect = F.conv1d(x, w, stride=stride, padding=padding, dilation=dilation).shape[-1]
    assert output_size_1d(size, kernel, stride, padding, dilation) == expect
    lo, hi = keep_padding_1d(size, kernel, stride, dilation)
    kept = F.conv1d(F.pad(x, (lo, hi)), w, stride=stride, dilation=dilation).shape[-1]
    assert kept == size


def test_receptive_field() -> None:
    # Two 3x3 convs: 1 + 2 + 2 = 5; VGG's conv, conv, 2x2 pool: 1 + 2 + 2 + 1 = 6, jump 2
    assert receptive_field([(3, 1, 1, 1), (3, 1, 1, 1)]).size == 5
    rf = receptive_field([(3, 1, 1, 1), (3, 1, 1, 1), (2, 2, 0, 1)])
    assert (rf.size, rf.jump) == (6, 2)
    # Dilation 2 on a 3x3: effective 5
    assert receptive_field([(3, 1, 0, 2)]).size == 5


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match=r"kernel 5 .* larger than the padded input 4"):
        Net(Input(3, 4, 4), Conv(8, 5, name="c1")).cost()
    with pytest.raises(ValueError, match="'c1'"):
        Net(Input(3, 4, 4), Conv(8, 5, name="c1")).cost()
    with pytest.raises(ValueError, match="stride: must be >= 1, got 0"):
        conv_output_size(8, 3, stride=0)
    with pytest.raises(ValueError, match="conv: out_channels: must be >= 1, got 0"):
        apply("conv", [(1, 3, 8, 8)], out_channels=0, kernel=3)
    with pytest.raises(
        ValueError, match=r"in_channels 6 and out_channels 8 .* divisible by groups 4"
    ):
        apply("conv", [(1, 6, 8, 8)], out_channels=8, kernel=3, groups=4)
    with pytest.raises(ValueError, match="expects 100 input features, got 7744"):
        Net(
            Input(1, 28, 28), Conv(64, 7), MaxPool(2), Flatten(), Linear(10, in_features=100)
        ).cost()
    with pytest.raises(ValueError, match=r"Input\[1\]: must be >= 1, got 0"):
        Input(3, 0, 4)
    with pytest.raises(ValueError, match="did you mean 'conv'"):
        apply("cnov", [(1, 3, 4, 4)])
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        apply("conv", [(1, 3, 8, 8)], out_channels=4, kernel=3, stride=2, padding="same")
