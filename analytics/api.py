"""``cost()``: the one-call entry point of the cost model, and ``compare()``.

``cost(model_or_name, input_shape=(C, H, W), batch=1, convention="mac")`` accepts a
``torch.nn.Module`` (traced on the meta device), a declarative :class:`~dlsys.analytics.builder.Net`
(no torch needed) or the name of a model in :mod:`dlsys.analytics.zoo`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dlsys.analytics.report import Convention, CostReport


def make_convention(
    convention: str | Convention = "mac",
    *,
    bias: bool = False,
    elementwise: bool = False,
    pointwise_activations: bool = False,
) -> Convention:
    """A :class:`Convention` from a unit name (``"mac"``/``"flop"``) and the switches."""
    if isinstance(convention, Convention):
        return convention
    if not isinstance(convention, str):
        raise TypeError(f"convention: must be 'mac', 'flop' or a Convention, got {convention!r}")
    return Convention(
        unit=convention,
        bias=bias,
        elementwise=elementwise,
        pointwise_activations=pointwise_activations,
    )


def cost(
    model_or_name: Any,
    input_shape: Sequence[int] | None = None,
    batch: int = 1,
    convention: str | Convention = "mac",
    *,
    bias: bool = False,
    elementwise: bool = False,
    pointwise_activations: bool = False,
    allow_uncountable: bool = False,
    **zoo_options: Any,
) -> CostReport:
    """Exact per-layer cost of a model at ``(batch, *input_shape)``.

    ``model_or_name``: an ``nn.Module``, a builder ``Net``, or a zoo name (``"vgg19"``,
    ``"inception"`` with ``variant="naive"``, ...; extra keyword arguments go to the zoo
    factory). ``input_shape`` excludes the batch; zoo models and nets have a default.
    Returns a :class:`CostReport` with ``.layers``, ``.totals`` (params, weights, biases,
    activations, macs, flops; exact ints) and ``.ledger``.
    """
    conv = make_convention(
        convention, bias=bias, elementwise=elementwise, pointwise_activations=pointwise_activations
    )
    if isinstance(model_or_name, str):
        from dlsys.analytics import zoo

        model_or_name = zoo.get(model_or_name, **zoo_options)
    elif zoo_options:
        raise TypeError(f"unexpected keyword arguments {sorted(zoo_options)} (only for zoo names)")
    if _is_module(model_or_name):
        from dlsys.analytics.trace import trace

        if input_shape is None:
            raise ValueError("input_shape: required for an nn.Module, e.g. (3, 224, 224)")
        return trace(
            model_or_name,
            input_shape,
            batch=batch,
            convention=conv,
            allow_uncountable=allow_uncountable,
        )
    from dlsys.analytics.builder import Net

    if isinstance(model_or_name, Net):
        return model_or_name.cost(input_shape, batch=batch, convention=conv)
    raise TypeError(
        "model_or_name: must be an nn.Module, a dlsys.analytics.builder.Net or a zoo name, "
        f"got {type(model_or_name).__name__}"
    )


def _is_module(obj: Any) -> bool:
    import sys

    torch_nn = sys.modules.get("torch.nn")  # only loaded when the caller built a module
    return torch_nn is not None and isinstance(obj, torch_nn.Module)


@dataclass(frozen=True)
class Comparison:
    """Two cost reports side by side; ``saving`` of a metric is 1 - b / a (a fraction)."""

    a: CostReport
    b: CostReport

    def rows(self) -> list[tuple[str, Any, Any, float | None]]:
        """``(metric, value a, value b, saving)`` for output shape and every total."""
        out: list[tuple[str, Any, Any, float | None]] = [
            ("output shape", self.a.layers[-1].output_shape, self.b.layers[-1].output_shape, None)
        ]
        ta, tb = self.a.totals, self.b.totals
        for k in ("params", "activations", "macs", "flops"):
            out.append((k, ta[k], tb[k], (1 - tb[k] / ta[k]) if ta[k] else None))
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the two names, totals and the savings (fractions)."""
        return {
            "a": {
                "model": self.a.model,
                "output_shape": list(self.a.layers[-1].output_shape),
                "totals": self.a.totals,
            },
            "b": {
                "model": self.b.model,
                "output_shape": list(self.b.layers[-1].output_shape),
                "totals": self.b.totals,
            },
            "saving": {m: s for m, _, _, s in self.rows() if s is not None},
        }

    def to_text(self) -> str:
        """Aligned side-by-side table with the saving in percent."""

        def cell(v: Any) -> str:
            if isinstance(v, tuple):
                return "x".join(map(str, v))
            return f"{v:,}"

        table = [("", self.a.model, self.b.model, "saving")]
        for m, va, vb, s in self.rows():
            table.append((m, cell(va), cell(vb), "" if s is None else f"{100 * s:.2f}%"))
        w = [max(len(r[i]) for r in table) for i in range(4)]
        lines = [
            "  ".join(
                [r[0].ljust(w[0]), *(c.rjust(wi) for c, wi in zip(r[1:], w[1:], strict=True))]
            ).rstrip()
            for r in table
        ]
        return "\n".join(lines) + "\n" + self.a.convention.describe() + "\n"


def compare(
    a: Any,
    b: Any,
    input_shape: Sequence[int] | None = None,
    batch: int = 1,
    convention: str | Convention = "mac",
    **options: Any,
) -> Comparison:
    """Cost ``a`` and ``b`` (modules, nets or zoo names) at the same input and compare them.

    >>> compare("inception_naive", "inception_reduced").rows()[3]   # doctest: +SKIP
    ('macs', 1115684864, 397410304, 0.6437...)
    """
    return Comparison(
        cost(a, input_shape, batch, convention, **options),
        cost(b, input_shape, batch, convention, **options),
    )
