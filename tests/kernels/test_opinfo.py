"""dlsys's ops on PyTorch's own OpInfo samples (``torch.testing._internal``): every sample of
``nn.functional.cross_entropy`` and ``nn.functional.conv2d`` that dlsys accepts must match torch
in value and gradient.

The samples are torch's test inputs for the op (cross_entropy: (N, C) and (N, C, d1, ...)
logits, class-index and class-probability targets, every reduction, class weights,
ignore_index; conv2d: batched and unbatched inputs, strides, paddings including the strings,
dilation, groups, with and without bias). A sample dlsys refuses must be refused with a clear
``ValueError``/``TypeError``, and the tests check how many are accepted, so a regression that
starts refusing samples fails too.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

# needs the expecttest package (the test extra); imported, not skipped, so a missing one fails
from torch.testing._internal import common_methods_invocations as common

from dlsys.kernels import conv2d, flooding_cross_entropy
from dlsys.kernels.testing import assert_close

# torch warns that 'same' with an even kernel copies the input; that is torch's business.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


TOL = {torch.float32: (1e-5, 1e-5), torch.float64: (1e-10, 1e-10)}


def _samples(name: str, dtype: torch.dtype) -> list[Any]:
    (op,) = [o for o in common.op_db if o.name == name and o.variant_test_name == ""]
    return list(op.sample_inputs("cpu", dtype, requires_grad=True))


def _grads(out: torch.Tensor, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(out.shape, generator=gen, dtype=out.dtype)
    return torch.autograd.grad(out, inputs, g, allow_unused=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_cross_entropy_opinfo_samples(dtype: torch.dtype) -> None:
    rtol, atol = TOL[dtype]
    samples = _samples("nn.functional.cross_entropy", dtype)
    accepted = 0
    for i, s in enumerate(samples):
        (target,) = s.args
        x_ours = s.input.detach().clone().requires_grad_()
        x_ref = s.input.detach().clone().requires_grad_()
        expected = F.cross_entropy(x_ref, target, **s.kwargs)
        try:
            ours = flooding_cross_entropy(x_ours, target, **s.kwargs)  # the same keyword names
        except (ValueError, TypeError) as exc:  # refused: must say why, in one line
            assert "\n" not in str(exc) and str(exc), f"sample {i}: {exc!r}"
            continue
        accepted += 1
        where = f"sample {i} {tuple(s.input.shape)} {s.kwargs}"
        assert_close(ours, expected, rtol=rtol, atol=atol, name=f"{where}: loss")
        (g_ours,) = _grads(ours, [x_ours])
        (g_ref,) = _grads(expected, [x_ref])
        assert_close(g_ours, g_ref, rtol=rtol, atol=atol, name=f"{where}: grad")
    # torch 2.13 has 21 samples: (N, C) and (N, C, d1..d3) logits with index and probability
    # targets, reductions, class weights, ignore_index. dlsys accepts every one.
    assert accepted == len(samples) >= 21


@pytest.mark.parametrize("b", [0.01, 5.0])
def test_flooding_on_cross_entropy_opinfo_samples(b: float) -> None:
    """Flooding acts on the (weighted) batch loss: |R - b| + b with R torch's mean or sum."""
    for s in _samples("nn.functional.cross_entropy", torch.float64):
        if s.kwargs.get("reduction", "mean") == "none":
            continue
        (target,) = s.args
        x_ours = s.input.detach().clone().requires_grad_()
        x_ref = s.input.detach().clone().requires_grad_()
        expected = (F.cross_entropy(x_ref, target, **s.kwargs) - b).abs() + b
        ours = flooding_cross_entropy(x_ours, target, b=b, **s.kwargs)
        assert_close(ours, expected, name="flooded loss")
        assert_close(_grads(ours, [x_ours])[0], _grads(expected, [x_ref])[0], name="grad")


def test_label_smoothing_matches_torch_for_index_and_probability_targets() -> None:
    # OpInfo has no label_smoothing sample; torch's definition on both target kinds.
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 4, 3, generator=gen, dtype=torch.float64)
    idx = torch.randint(0, 4, (6, 3), generator=gen)
    idx[0, 0] = -100
    probs = torch.randn(6, 4, 3, generator=gen, dtype=torch.float64).softmax(1)
    w = torch.tensor([0.5, 1.0, 2.0, -0.25], dtype=torch.float64)
    for target in (idx, probs):
        for kw in ({}, {"weight": w}):
            for reduction in ("mean", "sum", "none"):
                a = x.clone().requires_grad_()
                e = x.clone().requires_grad_()
                ours = flooding_cross_entropy(a, target, 0.0, reduction, label_smoothing=0.3, **kw)
                ref = F.cross_entropy(e, target, reduction=reduction, label_smoothing=0.3, **kw)
                assert_close(ours, ref, name="loss")
                assert_close(_grads(ours, [a])[0], _grads(ref, [e])[0], name="grad")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_conv2d_opinfo_samples(dtype: torch.dtype) -> None:
    rtol, atol = (1e-4, 1e-4) if dtype == torch.float32 else (1e-10, 1e-10)
    samples = _samples("nn.functional.conv2d", dtype)
    accepted = 0
    for i, s in enumerate(samples):
        leaves = [s.input, *[a for a in s.args if isinstance(a, torch.Tensor)]]
        ours_in = [t.detach().clone().requires_grad_() for t in leaves]
        ref_in = [t.detach().clone().requires_grad_() for t in leaves]

        def call(fn: Any, tensors: list[torch.Tensor], s: Any = s) -> torch.Tensor:
            it = iter(tensors[1:])
            args = [next(it) if isinstance(a, torch.Tensor) else a for a in s.args]
            out: torch.Tensor = fn(tensors[0], *args, **s.kwargs)
            return out

        expected = call(F.conv2d, ref_in)
        try:
            ours = call(conv2d, ours_in)
        except (ValueError, TypeError) as exc:
            assert "\n" not in str(exc) and str(exc), f"sample {i}: {exc!r}"
            continue
        accepted += 1
        where = f"sample {i} {tuple(s.input.shape)} {s.args[1:]} {s.kwargs}"
        assert_close(ours, expected, rtol=rtol, atol=atol, name=f"{where}: y")
        for j, (a, e) in enumerate(
            zip(_grads(ours, ours_in), _grads(expected, ref_in), strict=True)
        ):
            assert_close(a, e, rtol=rtol, atol=atol, name=f"{where}: grad {j}")
    assert accepted == len(samples) > 0
