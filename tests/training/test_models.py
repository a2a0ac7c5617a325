"""Models: parameter counts by hand, dlsys kernels vs torch, the flooding loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dlsys.training.models import build_model, flooding_loss, parameter_count


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "shape", "expected"),
    [
        # (784 + 1) * 500 + (500 + 1) * 10 = 392,500 + 5,010
        ("mlp", (1, 28, 28), 397_510),
        # (784 + 1) * 128 + (128 + 1) * 10 = 100,480 + 1,290 (seed 003)
        ("mlp:128", (1, 28, 28), 101_770),
        # (5*5*1 + 1) * 16 + (5*5*16 + 1) * 32 + (32*7*7 + 1) * 10 = 416 + 12,832 + 15,690
        ("cnn", (1, 28, 28), 28_938),
        # (7*7*1 + 1) * 64 + (11*11*64 + 1) * 10 = 3,200 + 77,450 (seed 003)
        ("cnn7", (1, 28, 28), 80_650),
        # 3,200 + (2*2*64 + 1) * 128 + (5*5*128 + 1) * 10 = 3,200 + 32,896 + 32,010 (seed 003)
        ("cnn7-3", (1, 28, 28), 68_106),
        # Zhang et al. 2017, Table 1, small Inception on 3-channel input: 1,649,402
        ("inception", (3, 28, 28), 1_649_402),
    ],
)
def test_parameter_counts(name: str, shape: tuple[int, int, int], expected: int) -> None:
    m = build_model(name, shape, 10, kernels="torch")
    assert n_params(m) == expected
    counted = parameter_count(m, shape)
    assert counted["params"] == expected


def test_inception_any_input_channels_and_second_downsample_96() -> None:
    m = build_model("inception", (1, 28, 28), kernels="torch")
    down2 = m.features[8]
    assert down2.conv.conv.out_channels == 96 and down2.conv.conv.in_channels == 144
    m.eval()
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    m5 = build_model("inception", (5, 32, 32), kernels="torch").eval()
    assert m5(torch.zeros(1, 5, 32, 32)).shape == (1, 10)


def test_mlp_widths_and_bad_names() -> None:
    m = build_model("mlp:7,5", (1, 4, 4), 3, kernels="torch")
    # (16 + 1) * 7 + (7 + 1) * 5 + (5 + 1) * 3 = 119 + 40 + 18
    assert n_params(m) == 177
    with pytest.raises(ValueError, match="did you mean 'inception'"):
        build_model("inceptoin", kernels="torch")
    with pytest.raises(ValueError, match="widths must be >= 1"):
        build_model("mlp:0", kernels="torch")
    with pytest.raises(ValueError, match="did you mean 'torch'"):
        build_model("mlp", kernels="torh")


@pytest.mark.parametrize("name", ["cnn", "cnn7", "cnn7-3", "inception"])
def test_dlsys_kernels_same_init_and_outputs_as_torch(name: str) -> None:
    torch.manual_seed(0)
    a = build_model(name, (1, 28, 28), kernels="dlsys")
    torch.manual_seed(0)
    b = build_model(name, (1, 28, 28), kernels="torch")
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    convs = [m for m in a.modules() if type(m).__module__.startswith("dlsys.kernels")]
    assert convs, "no dlsys.kernels module in the model"
    x = torch.rand(3, 1, 28, 28)
    a.eval()
    b.eval()
    torch.testing.assert_close(a(x), b(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernels", ["torch", "dlsys"])
def test_flooding_loss_value_and_gradient(kernels: str) -> None:
    torch.manual_seed(0)
    logits = torch.randn(8, 10, dtype=torch.float32, requires_grad=True)
    target = torch.randint(0, 10, (8,))
    ce = F.cross_entropy(logits, target)
    ce_value = ce.item()
    g_ce = torch.autograd.grad(ce, logits)[0]
    # b = 0: plain cross-entropy.
    torch.testing.assert_close(flooding_loss(0.0, kernels)(logits, target), ce.detach())
    # b above the loss: |CE - b| + b = 2b - CE and the gradient flips sign (Ishida et al.).
    b = ce_value + 1.0
    loss = flooding_loss(b, kernels)(logits, target)
    torch.testing.assert_close(loss, torch.tensor(2 * b - ce_value), rtol=1e-5, atol=1e-5)
    g = torch.autograd.grad(loss, logits)[0]
    torch.testing.assert_close(g, -g_ce, rtol=1e-5, atol=1e-6)
    # b below the loss: unchanged.
    torch.testing.assert_close(flooding_loss(ce_value / 2, kernels)(logits, target), ce.detach())
    with pytest.raises(ValueError, match=r"flood level b: must be a number >= 0, got -0\.1"):
        flooding_loss(-0.1, kernels)
