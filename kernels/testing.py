"""Comparison helpers for kernel tests: say where and by how much two tensors differ."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["TOLERANCES", "assert_close", "describe_mismatch"]

#: Default (rtol, atol) per dtype for comparing dlsys kernels with PyTorch: float32 sums of
#: a few thousand products differ by a few ulp times the sum's magnitude; float64 much less.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float32: (1e-4, 1e-4),
    torch.float64: (1e-10, 1e-10),
}


def describe_mismatch(
    actual: Tensor, expected: Tensor, rtol: float, atol: float, name: str = "value", top: int = 5
) -> str | None:
    """None when ``|actual - expected| <= atol + rtol * |expected|`` everywhere (NaN == NaN).

    Otherwise a report: shapes, how many elements fail, the largest absolute and relative
    error, and the ``top`` worst elements with their index, both values and the difference.
    """
    if actual.shape != expected.shape:
        return f"{name}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}"
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    both_nan = torch.isnan(a) & torch.isnan(e)
    same_inf = torch.isinf(a) & torch.isinf(e) & (a == e)
    diff = (a - e).abs()
    diff = torch.where(both_nan | same_inf, torch.zeros_like(diff), diff)
    diff = torch.where(torch.isnan(diff), torch.full_like(diff, float("inf")), diff)
    bad = diff > atol + rtol * e.abs().nan_to_num(posinf=0.0, neginf=0.0)
    nbad = int(bad.sum())
    if nbad == 0:
        return None
    rel = diff / e.abs().clamp_min(1e-300)
    flat = torch.where(bad, diff, torch.zeros_like(diff)).flatten()
    worst = torch.topk(flat, min(top, nbad)).indices
    lines = [
        f"{name}: {nbad} of {a.numel()} elements differ (rtol={rtol:g}, atol={atol:g}); "
        f"max abs error {float(diff.max()):.3g}, max rel error {float(rel[bad].max()):.3g}"
    ]
    for i in worst.tolist():
        idx = tuple(int(v) for v in torch.unravel_index(torch.tensor(i), a.shape))
        lines.append(
            f"  at {idx}: actual {float(a.flatten()[i]):.9g}, expected "
            f"{float(e.flatten()[i]):.9g}, diff {float(diff.flatten()[i]):.3g}"
        )
    return "\n".join(lines)


def assert_close(
    actual: Tensor,
    expected: Tensor,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    name: str = "value",
) -> None:
    """Raise ``AssertionError`` with :func:`describe_mismatch`'s report when the tensors differ.

    Tolerances default to :data:`TOLERANCES` of ``expected``'s dtype.
    """
    d_rtol, d_atol = TOLERANCES.get(expected.dtype, (1e-4, 1e-4))
    report = describe_mismatch(
        actual, expected, d_rtol if rtol is None else rtol, d_atol if atol is None else atol, name
    )
    if report is not None:
        raise AssertionError(report)
