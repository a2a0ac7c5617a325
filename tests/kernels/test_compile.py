"""torch.compile(fullgraph=True) traces through the dlsys ops, forward and backward.

One compiled function covers both ops (compiling is slow on 2 cores): the training CNN's
shape in miniature, the fused conv -> ReLU -> max-pool -> conv -> linear -> flooding loss.
"""

from __future__ import annotations

import pytest
import torch

from dlsys.kernels import conv2d, conv2d_relu_pool, flooding_cross_entropy
from dlsys.kernels.testing import assert_close

# torch's own compile stack warns about its deprecated torch.jit internals; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.*")


def _step(x, t, w1, b1, w2, lin):  # type: ignore[no-untyped-def]
    h = conv2d_relu_pool(x, w1, b1, padding=2, pool=2)
    h = torch.relu(conv2d(h, w2, None, stride=2, padding="valid"))
    return flooding_cross_entropy(h.flatten(1) @ lin, t, b=0.05)


def test_compile_fullgraph_forward_and_backward() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 12, 12, generator=gen)
    t = torch.randint(0, 3, (4,), generator=gen)
    params = [
        torch.randn(4, 1, 5, 5, generator=gen) * 0.3,
        torch.randn(4, generator=gen) * 0.1,
        torch.randn(6, 4, 3, 3, generator=gen) * 0.3,
        torch.randn(6 * 2 * 2, 3, generator=gen) * 0.3,
    ]
    eager = [p.clone().requires_grad_() for p in params]
    comp = [p.clone().requires_grad_() for p in params]
    loss_e = _step(x, t, *eager)
    grads_e = torch.autograd.grad(loss_e, eager)
    compiled = torch.compile(_step, fullgraph=True, backend="aot_eager")
    loss_c = compiled(x, t, *comp)
    grads_c = torch.autograd.grad(loss_c, comp)
    assert_close(loss_c, loss_e, rtol=1e-6, atol=1e-7, name="loss")
    for i, (a, e) in enumerate(zip(grads_c, grads_e, strict=True)):
        assert_close(a, e, rtol=1e-5, atol=1e-6, name=f"grad {i}")


def test_compile_inductor_conv_step() -> None:
    """The default backend (inductor) also compiles a graph holding the custom ops."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 6, 6, generator=gen)
    w = (torch.randn(5, 3, 3, 3, generator=gen) * 0.3).requires_grad_()
    t = torch.tensor([1, 4])

    def f(x, w, t):  # type: ignore[no-untyped-def]
        return flooding_cross_entropy(conv2d(x, w, padding=1).mean((2, 3)), t, b=0.0)

    loss_c = torch.compile(f, fullgraph=True)(x, w, t)
    (g_c,) = torch.autograd.grad(loss_c, w)
    loss_e = f(x, w, t)
    (g_e,) = torch.autograd.grad(loss_e, w)
    assert_close(loss_c, loss_e, rtol=1e-6, atol=1e-7, name="loss")
    assert_close(g_c, g_e, rtol=1e-5, atol=1e-6, name="grad")
