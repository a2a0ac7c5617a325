"""The nn.Module tracer: agrees with FlopCounterMode, sum(p.numel()), torchinfo and the builder."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dlsys.analytics import cost, zoo
from dlsys.analytics.examples import SmallResNet
from dlsys.analytics.formulas import OpCost, register_formula
from dlsys.analytics.ops import OpCall, register_module, register_torch_op
from dlsys.analytics.trace import UncountableOpError


class Residual(nn.Module):
    """Residual block with grouped and dilated convs and a functional add + relu."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=2, dilation=2, groups=4, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.b = nn.Conv2d(c, c, 3, padding="same", groups=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn(self.a(x)))
        return F.relu(x + self.b(y))


class Branchy(nn.Module):
    """Branches joined by torch.cat, a 1-d conv, a matmul and flatten/transpose views."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.res = Residual(16)
        self.left = nn.Conv2d(16, 8, 1)
        self.right = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(inplace=True))
        self.pool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.seq = nn.Conv1d(16, 4, 5, stride=2)
        self.proj = nn.Linear(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res(self.stem(x))
        x = torch.cat([self.left(x), self.right(x)], dim=1)
        x = self.pool(x)
        s = x.flatten(2)  # (N, 16, L)
        s = self.seq(s).transpose(1, 2)  # (N, L', 4)
        s = self.proj(s)  # (N, L', 6)
        return s @ s.transpose(1, 2) * 0.5  # (N, L', L')


def _flop_counter_macs(factory: type[nn.Module], shape: tuple[int, ...]) -> int:
    with torch.device("meta"):
        model = factory()
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.empty(shape, device="meta"))
    total = counter.get_total_flops()
    assert total % 2 == 0
    return total // 2


@pytest.mark.parametrize(
    ("factory", "shape"),
    [(Residual, (2, 16, 12, 12)), (Branchy, (2, 3, 32, 32)), (SmallResNet, (3, 3, 32, 32))],
)
def test_matches_flop_counter_and_numel(factory: type[nn.Module], shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = factory()
    r = cost(model, shape[1:], batch=shape[0])
    assert r.totals["macs"] == _flop_counter_macs(factory, shape)
    assert r.totals["params"] == sum(p.numel() for p in model.parameters())
    assert all(e.status == "counted" or e.reason for e in r.ledger)


def test_residual_block_by_hand() -> None:
    r = cost(Residual(16), (16, 12, 12), batch=2)
    rows = {row.name: row for row in r.layers}
    # a: groups 4, dilation 2 keeps 12x12: MACs 2*16*12*12 * (16/4)*9 = 4608*36 = 165,888
    assert rows["a"].macs == 2 * 16 * 12 * 12 * 4 * 9 == 165_888
    assert rows["a"].weights == 16 * 4 * 9 == 576 and rows["a"].biases == 0
    # b: groups 2, 'same': 4608 * 8*9 = 331,776 MACs; 16*8*9 = 1,152 weights + 16 biases
    assert rows["b"].macs == 4608 * 72 == 331_776
    assert rows["b"].params == 1_152 + 16
    # the residual add is counted (x + y): 4608 elementwise additions, a new tensor
    add = [row for row in r.layers if row.type == "add"]
    assert len(add) == 1 and add[0].elementwise == 4608 and add[0].activations == 4608
    # bn: gamma 16 weights, beta 16 biases
    assert rows["bn"].weights == 16 and rows["bn"].biases == 16


def test_functional_calls_are_counted_once() -> None:
    class Fn(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.cat([F.relu(x), x], dim=1)  # (1, 8, 5) -> cat
            return torch.matmul(y, y.transpose(1, 2))  # (1, 8, 5) @ (1, 5, 8): 8*5*8 = 320

    r = cost(Fn(), (4, 5))
    types = [row.type for row in r.layers]
    assert types == ["input", "relu", "cat", "transpose", "matmul"]
    assert r.totals["macs"] == 8 * 5 * 8 == 320
    counted = [e for e in r.ledger if e.status == "counted"]
    assert len(counted) == 4  # relu, cat, transpose, matmul: nothing nested is counted


def test_shared_weights_counted_once() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.fc(x))

    model = Tied()
    r = cost(model, (8,))
    assert r.totals["params"] == sum(p.numel() for p in model.parameters()) == 72
    assert r.totals["macs"] == 2 * 64  # two passes through the same 8x8 weight


def test_unused_parameters_reported() -> None:
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(4, 2)
            self.spare = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    r = cost(Unused(), (4,))
    assert r.totals["params"] == 10 + 15  # the rows still sum to sum(p.numel())
    assert any("spare.weight" in e.reason for e in r.ledger)


def test_uncountable_op_is_an_error_or_ignored() -> None:
    class Odd(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cumsum(x, dim=1)

    with pytest.raises(UncountableOpError, match=r"torch\.cumsum"):
        cost(Odd(), (4,))
    r = cost(Odd(), (4,), allow_uncountable=True)
    ignored = [e for e in r.ledger if e.status == "ignored"]
    assert [e.op for e in ignored] == ["torch.cumsum"]
    assert "no cost formula" in ignored[0].reason


def test_user_registered_op_and_module() -> None:
    def cumsum_cost(inputs: list[tuple[int, ...]], *, where: str = "cumsum") -> OpCost:
        (x,) = inputs
        return OpCost(output_shape=x, activations=x[0] * x[1], elementwise=x[0] * x[1])

    register_formula("test_cumsum", cumsum_cost)
    register_torch_op(torch.cumprod, lambda a, k, out: OpCall("test_cumsum", [tuple(a[0].shape)]))
    with pytest.raises(ValueError, match="already registered"):
        register_formula("test_cumsum", cumsum_cost)
    with pytest.raises(ValueError, match="already registered"):
        register_torch_op(torch.cumprod, lambda a, k, out: OpCall("test_cumsum", []))

    class Prod(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cumprod(x, dim=1)

    r = cost(Prod(), (6,), batch=2)
    assert r.layers[-1].elementwise == 12

    class Black(nn.Module):  # a module whose forward the tracer must not run
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(3, 5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise AssertionError("leaf forward must not run")

    register_module(
        Black, lambda m, shapes: OpCall("linear", shapes, dict(out_features=3, bias=False))
    )
    with pytest.raises(ValueError, match="already registered"):
        register_module(Black, lambda m, shapes: OpCall("linear", shapes, {}))
    r = cost(nn.Sequential(Black(), nn.ReLU()), (5,))
    assert r.totals["macs"] == 15 and r.totals["params"] == 15


def test_model_left_untouched_and_no_activation_memory() -> None:
    model = Branchy().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # 100,000 x 3 x 224 x 224 float32 would be 60 GB: tracing must not allocate it.
    r = cost(model, (3, 224, 224), batch=100_000)
    assert r.totals["activations"] > 10**10
    assert model.training
    assert all(p.device.type == "cpu" for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not nn.modules.module._global_forward_hooks
    assert not nn.modules.module._global_forward_pre_hooks


@pytest.mark.parametrize("name", ["vgg11_bn", "googlenet", "small_inception", "cnn_deep"])
def test_builder_and_tracer_agree(name: str) -> None:
    net = zoo.get(name)
    assert net.input is not None
    built = net.cost()
    traced = cost(net.to_module(), net.input.shape)
    assert traced.totals == built.totals


def test_vgg19_traced_equals_flop_counter() -> None:
    net = zoo.get("vgg19")
    with torch.device("meta"):
        model = net.to_module()
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.empty(1, 3, 224, 224, device="meta"))
    r = cost(model, (3, 224, 224))  # a model already on meta is traced as is
    assert r.totals["macs"] == counter.get_total_flops() // 2 == 19_632_062_464
    assert r.totals["params"] == 143_667_240


def test_torchinfo_agrees_where_conventions_agree() -> None:
    torchinfo = pytest.importorskip("torchinfo")
    model = zoo.get("mnist_cnn").to_module()
    stats = torchinfo.summary(model, input_size=(4, 1, 28, 28), verbose=0)
    r = cost(model, (1, 28, 28), batch=4)
    assert stats.total_params == r.totals["params"] == 28_938
    # torchinfo's mult-adds count one per weight *and bias* per output position, i.e. our
    # MACs plus the bias adds.
    assert stats.total_mult_adds == r.totals["macs"] + r.bias_adds


def test_bad_model_inputs() -> None:
    with pytest.raises(TypeError, match=r"nn\.Module"):
        from dlsys.analytics.trace import trace

        trace("vgg", (3,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="input_shape"):
        cost(nn.Linear(3, 2), (0,))
    with pytest.raises(ValueError, match="input_shape: required"):
        cost(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="batch"):
        cost(nn.Linear(3, 2), (3,), batch=0)


def test_dlsys_kernel_conv_is_priced_as_a_leaf() -> None:
    kernels = pytest.importorskip("dlsys.kernels.modules")  # needs the compiled module
    torch.manual_seed(0)
    ours = nn.Sequential(kernels.Conv2d(3, 8, 3, padding=1, groups=1), nn.ReLU())
    ref = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
    a, b = cost(ours, (3, 10, 10), batch=2), cost(ref, (3, 10, 10), batch=2)
    # 2*8*10*10 outputs * 3*9 = 43,200 MACs; 8*27 + 8 = 224 parameters
    assert a.totals == b.totals
    assert a.totals["macs"] == 43_200 and a.totals["params"] == 224
    assert a.layers[1].biases == 8


def test_upsample_and_reductions() -> None:
    class Up(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = nn.Upsample(scale_factor=2, mode="nearest")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.up(x)  # (1, 2, 6, 6)
            y = F.interpolate(y, size=(9, 9), mode="bilinear", align_corners=False)
            return y.mean(dim=(2, 3))  # (1, 2)

    r = cost(Up(), (2, 3, 3))
    rows = [row for row in r.layers if row.type != "input"]
    assert [row.output_shape for row in rows] == [(1, 2, 6, 6), (1, 2, 9, 9), (1, 2)]
    # bilinear: 2 * (2**2 - 1) = 6 units per output element, 162 elements -> 972
    assert rows[1].elementwise == 6 * 2 * 9 * 9
    assert rows[2].elementwise == 2 * 9 * 9  # the mean reads every element once


class TinyTransformer(nn.Module):
    """Embedding, group norm, attention via F.scaled_dot_product_attention, stack and pad."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.qkv = nn.Linear(16, 48)
        self.norm = nn.GroupNorm(4, 16)
        self.out = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x.long())  # (N, 12, 16)
        q, k, v = self.qkv(h).view(h.shape[0], 12, 3, 2, 8).unbind(2)  # each (N, 12, 2, 8)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        a = self.out(a.transpose(1, 2).reshape(h.shape[0], 12, 16))
        a = self.norm(a.transpose(1, 2)).transpose(1, 2)
        return F.pad(torch.stack([a, h], dim=1), (0, 1))


def test_attention_model_matches_flop_counter() -> None:
    torch.manual_seed(0)
    model = TinyTransformer()
    with torch.device("meta"):
        meta = TinyTransformer()
    counter = FlopCounterMode(display=False)
    with counter:
        meta(torch.zeros(2, 12, device="meta"))
    r = cost(model, (12,), batch=2)
    assert r.totals["macs"] == counter.get_total_flops() // 2
    # qkv 2*12*16*48 = 18,432; attention 2*2*12*12*8 * 2 = 9,216; out 2*12*16*16 = 6,144
    assert r.totals["macs"] == 18_432 + 9_216 + 6_144
    assert r.totals["params"] == sum(p.numel() for p in model.parameters())
    # stack writes 2*2*12*16 = 768 elements, pad 2*2*12*17 = 816
    acts = {row.type: row.activations for row in r.layers}
    assert acts["stack"] == 768 and acts["pad"] == 816


@settings(max_examples=30, deadline=None)
@given(
    c_mult=st.integers(1, 3),
    groups=st.sampled_from([1, 2, 4]),
    kernel=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    dilation=st.integers(1, 2),
    bias=st.booleans(),
    size=st.integers(6, 12),
)
def test_random_convs_match_flop_counter(
    c_mult: int, groups: int, kernel: int, stride: int, padding: int, dilation: int,
    bias: bool, size: int,
) -> None:  # fmt: skip
    c_in, c_out = 4 * c_mult, 4 * groups
    conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups, bias)
    if dilation * (kernel - 1) + 1 > size + 2 * padding:
        with pytest.raises(ValueError, match="larger than the padded input"):
            cost(conv, (c_in, size, size))
        return
    r = cost(conv, (c_in, size, size), batch=2)  # real CPU parameters, swapped for meta
    counter = FlopCounterMode(display=False)
    with counter:
        conv.to("meta")(torch.empty(2, c_in, size, size, device="meta"))
    assert r.totals["macs"] == counter.get_total_flops() // 2
    assert r.totals["params"] == sum(p.numel() for p in conv.parameters())
