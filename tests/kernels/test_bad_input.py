"""Bad input gives a Python exception naming the argument, never a crash or a wrong answer."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

import dlsys.kernels._plumbing as plumbing
from dlsys.kernels import _C, FloodingLoss, conv2d, flooding_cross_entropy
from dlsys.kernels.testing import assert_close

X = torch.randn(2, 4, 8, 8)
W = torch.randn(6, 4, 3, 3)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"x": "not a tensor"}, TypeError, "x: must be a torch.Tensor"),
        ({"weight": [1.0]}, TypeError, "weight: must be a torch.Tensor"),
        ({"bias": 3.0}, TypeError, "bias: must be a torch.Tensor"),
        ({"weight": W.double()}, TypeError, r"weight: dtype torch.float64 does not match"),
        ({"bias": torch.randn(6).double()}, TypeError, "bias: dtype"),
        ({"x": X.half(), "weight": W.half()}, TypeError, "x: dtype must be float32 or float64"),
        ({"x": X.int(), "weight": W.int()}, TypeError, "x: dtype must be float32 or float64"),
        ({"x": X[0, 0]}, ValueError, r"x: must be 4-D \(N, C, H, W\) or 3-D"),
        ({"x": X[None]}, ValueError, "x: must be 4-D"),
        ({"weight": W[0]}, ValueError, "weight: must be 4-D"),
        ({"x": torch.randn(2, 5, 8, 8)}, ValueError, "x: has 5 input channels but weight"),
        ({"groups": 3}, ValueError, r"groups: 3 must divide both the input channels \(4\)"),
        ({"groups": 0}, ValueError, "groups: must be an int >= 1, got 0"),
        ({"groups": True}, ValueError, "groups: must be an int >= 1"),
        ({"weight": torch.randn(6, 4, 11, 3)}, ValueError, "weight: kernel 11x3 .* larger than"),
        ({"weight": torch.randn(6, 4, 5, 5), "dilation": 3}, ValueError, "larger than the padded"),
        ({"stride": 0}, ValueError, "stride: must be >= 1, got 0"),
        ({"stride": (1, -2)}, ValueError, "stride: must be >= 1"),
        ({"stride": 1.5}, TypeError, "stride: must be an int or a pair of ints"),
        ({"stride": (1, 2, 3)}, TypeError, "stride: must be an int or a pair"),
        ({"dilation": 0}, ValueError, "dilation: must be >= 1, got 0"),
        ({"padding": -1}, ValueError, "padding: must be >= 0, got -1"),
        ({"padding": (0, -2)}, ValueError, "padding: must be >= 0"),
        ({"padding": "full"}, ValueError, "padding: must be an int, a pair, 'same' or 'valid'"),
        ({"padding": "same", "stride": 2}, ValueError, "padding='same' needs stride 1"),
        ({"bias": torch.randn(5)}, ValueError, r"bias: must have shape \(6,\), got \(5,\)"),
        ({"weight": torch.randn(0, 4, 3, 3)}, ValueError, "weight: every dimension must be >= 1"),
        ({"x": torch.randn(2, 4, 0, 8)}, ValueError, "x: C, H and W must be >= 1"),
        ({"weight": W.to("meta")}, ValueError, "weight: is on meta but x is on cpu"),
    ],
)
def test_conv2d_rejects(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    args: dict[str, Any] = {"x": X, "weight": W, "bias": None, "stride": 1, "padding": 1}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        conv2d(**args)


def test_other_devices_are_rejected_and_meta_gives_shapes() -> None:
    with FakeTensorMode():
        x = torch.empty(2, 4, 8, 8, device="mps")
        with pytest.raises(ValueError, match=r"x: device mps(:0)? is not supported"):
            conv2d(x, torch.empty(6, 4, 3, 3, device="mps"))
    # meta tensors (shape inference, e.g. a cost model tracing a dlsys model) use the fakes
    xm = torch.empty(2, 4, 8, 8, device="meta", requires_grad=True)
    y = conv2d(xm, W.to("meta"), None, 2, 1)
    assert y.shape == (2, 6, 4, 4) and y.device.type == "meta"
    y.sum().backward()
    assert xm.grad is not None and xm.grad.shape == xm.shape
    loss = flooding_cross_entropy(L.to("meta"), T.to("meta"), 0.1)
    assert loss.shape == () and loss.device.type == "meta"


def test_cuda_tensor_on_a_build_without_cuda_is_an_error_not_a_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(plumbing, "_CUDA_COMPILED", False)
    with FakeTensorMode():
        x = torch.empty(2, 4, 8, 8, device="cuda")
        w = torch.empty(6, 4, 3, 3, device="cuda")
        with pytest.raises(ValueError, match=r"x: is on cuda:0, but this build .* no CUDA"):
            conv2d(x, w)
        logits = torch.empty(3, 5, device="cuda")
        target = torch.zeros(3, dtype=torch.long, device="cuda")
        with pytest.raises(ValueError, match="logits: is on cuda:0, but this build"):
            flooding_cross_entropy(logits, target)


def test_cuda_double_is_rejected() -> None:
    with FakeTensorMode():
        x = torch.empty(2, 4, 8, 8, device="cuda", dtype=torch.float64)
        w = torch.empty(6, 4, 3, 3, device="cuda", dtype=torch.float64)
        if plumbing._CUDA_COMPILED:
            with pytest.raises(TypeError, match="x: CUDA kernels support float32"):
                conv2d(x, w)


L = torch.randn(5, 3)
T = torch.tensor([0, 2, 1, 1, 0])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"logits": torch.tensor(1.0)}, ValueError, r"logits: must be \(C,\), \(N, C\) or"),
        ({"logits": L[0]}, ValueError, r"target: class indices must have shape \(\) to match"),
        ({"logits": L[None]}, ValueError, r"target: class indices must have shape \(1, 3\)"),
        ({"logits": [[1.0]]}, TypeError, "logits: must be a torch.Tensor, got list"),
        ({"target": [0, 1, 2, 1, 0]}, TypeError, "target: must be a torch.Tensor, got list"),
        (
            {"target": T.float()},
            ValueError,
            r"holds class probabilities and must have the logits' shape \(5, 3\), got \(5,\)",
        ),
        (
            {"target": L.softmax(1).double()},
            TypeError,
            "class probabilities must have the logits' dtype torch.float32",
        ),
        (
            {"target": T.bool()},
            TypeError,
            r"target: must hold class indices \(an integer dtype\) or class probabilities",
        ),
        ({"target": T[:4]}, ValueError, r"target: class indices must have shape \(5,\)"),
        ({"label_smoothing": -0.1}, ValueError, r"label_smoothing: must be in \[0, 1\], got -0.1"),
        ({"label_smoothing": 1.5}, ValueError, r"label_smoothing: must be in \[0, 1\], got 1.5"),
        ({"label_smoothing": float("nan")}, ValueError, r"label_smoothing: must be in \[0, 1\]"),
        ({"label_smoothing": "0.1"}, TypeError, "label_smoothing: must be a number"),
        (
            {"weight": torch.ones(4)},
            ValueError,
            r"weight: must have shape \(3,\), one value per class, got \(4,\)",
        ),
        ({"weight": torch.ones(3, 1)}, ValueError, r"weight: must have shape \(3,\)"),
        (
            {"weight": torch.tensor([1.0, float("inf"), 1.0])},
            ValueError,
            "weight: every class weight must be finite",
        ),
        (
            {"weight": torch.tensor([1.0, float("nan"), 1.0])},
            ValueError,
            "weight: every class weight must be finite",
        ),
        (
            {"weight": torch.ones(3, dtype=torch.int64)},
            TypeError,
            "weight: must be a floating-point tensor",
        ),
        (
            {"weight": torch.ones(3, dtype=torch.float64)},
            TypeError,
            "weight: dtype torch.float64 does not match",
        ),
        (
            {"weight": torch.ones(3, device="meta")},
            ValueError,
            "weight: is on meta but logits is on cpu",
        ),
        ({"weight": [1.0, 1.0, 1.0]}, TypeError, "weight: must be a torch.Tensor or None"),
        ({"target": torch.tensor([0, 3, 1, 1, 0])}, ValueError, r"target\[1\] = 3 is out of range"),
        ({"target": torch.tensor([0, 1, -2, 1, 0])}, ValueError, r"target\[2\] = -2 is out of"),
        ({"logits": L.int()}, TypeError, "logits: dtype must be float32 or float64"),
        ({"logits": L.half()}, TypeError, "logits: dtype must be float32 or float64"),
        ({"logits": torch.empty(5, 0)}, ValueError, "logits: needs at least one class"),
        ({"b": -0.1}, ValueError, "b: the flood level must be finite and >= 0, got -0.1"),
        ({"b": float("nan")}, ValueError, "b: the flood level must be finite"),
        ({"b": float("inf")}, ValueError, "b: the flood level must be finite"),
        ({"b": True}, TypeError, "b: must be a number"),
        ({"b": "0.1"}, TypeError, "b: must be a number"),
        ({"reduction": "avg"}, ValueError, "unknown reduction 'avg'"),
        ({"reduction": "none", "b": 0.2}, ValueError, "b must be 0 with reduction='none'"),
        ({"ignore_index": 1.0}, TypeError, "ignore_index: must be an int"),
        ({"target": T.to("meta")}, ValueError, "target: is on meta but logits is on cpu"),
    ],
)
def test_flooding_rejects(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    args: dict[str, Any] = {"logits": L, "target": T, "b": 0.1, "reduction": "mean"}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        flooding_cross_entropy(**args)


def test_flooding_accepts_negative_class_weights_as_torch_does() -> None:
    w = torch.tensor([1.0, -0.5, 2.0])
    assert_close(flooding_cross_entropy(L, T, weight=w), F.cross_entropy(L, T, weight=w))


def test_flooding_loss_module_checks_at_construction() -> None:
    with pytest.raises(ValueError, match=r"label_smoothing: must be in \[0, 1\]"):
        FloodingLoss(label_smoothing=2.0)
    with pytest.raises(ValueError, match="weight: every class weight must be finite"):
        FloodingLoss(weight=torch.tensor([1.0, float("inf")]))


def test_flooding_accepts_int32_targets() -> None:
    assert torch.equal(flooding_cross_entropy(L, T.int()), flooding_cross_entropy(L, T))


def test_flooding_loss_validates_at_construction() -> None:
    with pytest.raises(ValueError, match="b: the flood level"):
        FloodingLoss(b=-1.0)
    with pytest.raises(ValueError, match="unknown reduction 'meen'; did you mean 'mean'"):
        FloodingLoss(reduction="meen")


def _buf(t: torch.Tensor) -> tuple[int, int]:
    return (t.data_ptr(), t.numel())


def test_cpp_rechecks_sizes_and_arguments() -> None:
    """Called directly with inconsistent sizes, _C raises ValueError instead of reading memory."""
    x, w, y = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3), torch.empty(1, 3, 3, 3)
    dims = [1, 2, 5, 5, 3, 3, 3, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1]
    none = (0, 0)
    _C.conv2d_forward("cpu", "float32", _buf(x), _buf(w), none, _buf(y), dims, 1)  # valid
    small = (x.data_ptr(), x.numel() - 1)
    with pytest.raises(ValueError, match="x: expected 50 elements, got 49"):
        _C.conv2d_forward("cpu", "float32", small, _buf(w), none, _buf(y), dims, 1)
    with pytest.raises(ValueError, match="out: null data pointer"):
        _C.conv2d_forward("cpu", "float32", _buf(x), _buf(w), none, (0, 27), dims, 1)
    with pytest.raises(ValueError, match="output size does not match"):
        bad = [*dims[:7], 4, 4, *dims[9:]]
        _C.conv2d_forward("cpu", "float32", _buf(x), _buf(w), none, _buf(y), bad, 1)
    with pytest.raises(ValueError, match="expected 18 dims"):
        _C.conv2d_forward("cpu", "float32", _buf(x), _buf(w), none, _buf(y), dims[:-1], 1)
    with pytest.raises(ValueError, match="groups=2 must divide"):
        _C.conv2d_forward("cpu", "float32", _buf(x), _buf(w), none, _buf(y), [*dims[:-1], 2], 1)
    with pytest.raises(ValueError, match="impl must be 'ref', 'cpu' or 'cuda', got 'gpu'"):
        _C.conv2d_forward("gpu", "float32", _buf(x), _buf(w), none, _buf(y), dims, 1)
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64', got 'int8'"):
        _C.conv2d_forward("cpu", "int8", _buf(x), _buf(w), none, _buf(y), dims, 1)
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"):
        _C.conv2d_forward("cpu", "float32", _buf(x), _buf(w), none, _buf(y), dims, 0)
    logits, t = torch.randn(4, 3), torch.tensor([0, 1, 2, 7])
    loss, rows, stats = torch.empty(1), torch.empty(4, 2), torch.empty(2)
    with pytest.raises(ValueError, match=r"target\[3\] = 7 is out of range \[0, 3\)"):
        _C.flood_ce_forward("cpu", "float32", _buf(logits), _buf(t), _buf(loss), _buf(rows),
                            _buf(stats), 4, 3, 0.0, 1, -100, 1)  # fmt: skip
    with pytest.raises(ValueError, match="b must be finite and >= 0"):
        _C.flood_ce_forward("cpu", "float32", _buf(logits), _buf(t), _buf(loss), _buf(rows),
                            _buf(stats), 4, 3, -1.0, 1, -100, 1)  # fmt: skip
    with pytest.raises(ValueError, match="rows: expected 8 elements, got 4"):
        short = (rows.data_ptr(), 4)
        _C.flood_ce_forward("cpu", "float32", _buf(logits), _buf(t), _buf(loss), short,
                            _buf(stats), 4, 3, 0.0, 1, -100, 1)  # fmt: skip
