"""Exact backward multiply-accumulates: held to PyTorch's FlopCounterMode and to hand counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dlsys.analytics import cost
from dlsys.analytics.builder import Conv, Input, Linear, Net, ReLU
from dlsys.analytics.roofline import Device, roofline
from dlsys.analytics.zoo import MODELS


def torch_total_macs(model: nn.Module, shape: tuple[int, ...], batch: int) -> int:
    """FlopCounterMode's FLOPs of a real forward and backward (input without gradient),
    divided by 2 (its FLOP is 2 x MAC)."""
    x = torch.randn(batch, *shape)
    with FlopCounterMode(display=False) as fc:
        model(x).sum().backward()
    return fc.get_total_flops() // 2


class TwoTowers(nn.Module):
    """Two branches on the raw input (neither needs an input gradient), a matmul of two
    activations (both need one), then a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.a(x).flatten(2)  # (N, 4, 64)
        b = self.b(x).flatten(2)
        g = a @ b.transpose(1, 2)  # (N, 4, 4): 4 * 4 * 64 MACs per sample
        return self.fc(torch.relu(g).flatten(1))


MODELS_TO_CHECK = {
    "mlp": lambda: (
        nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)), (1, 8, 8)
    ),
    "cnn": lambda: (
        nn.Sequential(
            nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, stride=2),
            nn.ReLU(), nn.Flatten(), nn.Linear(16 * 2 * 2, 10),
        ),
        (1, 12, 12),
    ),
    "two towers": lambda: (TwoTowers(), (1, 8, 8)),
}  # fmt: skip


@pytest.mark.parametrize("name", list(MODELS_TO_CHECK))
def test_forward_plus_backward_macs_equal_flop_counter(name: str) -> None:
    model, shape = MODELS_TO_CHECK[name]()
    t = cost(model, shape, batch=3).totals
    assert t["macs"] + t["backward_macs"] == torch_total_macs(model, shape, 3)


@pytest.mark.parametrize("name", ["cnn", "cnn_deep", "mlp", "mnist_cnn"])
def test_zoo_nets_built_and_traced_agree_with_flop_counter(name: str) -> None:
    net = MODELS[name]()
    built = net.cost(batch=2)
    module = net.to_module()
    traced = cost(module, built.input_shape, batch=2)
    assert built.totals["backward_macs"] == traced.totals["backward_macs"]
    total = torch_total_macs(module, built.input_shape, 2)
    assert built.totals["macs"] + built.totals["backward_macs"] == total


def test_hand_counts() -> None:
    # Input 1x6x6 -> conv 2 3x3 (no pad) -> 2x4x4 -> ReLU -> conv 3 3x3 -> 3x2x2 -> linear 5.
    # forward MACs: conv1 2*4*4*9 = 288; conv2 3*2*2*(2*9) = 216; fc 12*5 = 60.
    # backward: conv1 weight grad only (its input is the data) 288; conv2 and fc weight and
    # input grads: 2 * 216 + 2 * 60 = 552; total 840.
    r = Net(Input(1, 6, 6), Conv(2, 3), ReLU(), Conv(3, 3), Linear(5)).cost()
    assert r.totals["macs"] == 288 + 216 + 60
    assert r.backward_macs() == [0, 288, 0, 432, 120]  # input, conv, relu, conv, fc
    assert r.totals["backward_macs"] == 840


def test_roofline_backward_by_hand() -> None:
    # Linear 8 -> 4 without bias on the raw input: backward is the weight gradient only:
    # 2 * 32 = 64 FLOP (2 s at 32 FLOP/s) and the forward's 176 bytes once (1 s).
    r = Net(Input(8), Linear(4, bias=False)).cost()
    est = roofline(r, Device("toy", {"float32": 32.0}, 176.0))
    assert est.backward_s == pytest.approx(2.0)
    # A second linear layer 4 -> 2 needs both gradients: 2 * (2 * 8) = 32 FLOP (1 s) and
    # twice its (4 read + 2 written + 8 weights) * 4 = 56 bytes: 112 / 176 s.
    r2 = Net(Input(8), Linear(4, bias=False), Linear(2, bias=False)).cost()
    est2 = roofline(r2, Device("toy", {"float32": 32.0}, 176.0))
    assert est2.backward_s == pytest.approx(2.0 + 1.0)
