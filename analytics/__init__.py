"""dlsys.analytics: what an architecture costs — parameters, activations, MACs, memory — exactly.

Entry point: :func:`cost` (an ``nn.Module`` traced on the meta device, a declarative
builder :class:`Net`, or a zoo name) returning a :class:`CostReport` with ``.layers``,
``.totals`` (params, weights, biases, activations, macs, flops: exact ints) and ``.ledger``.
Formulas live in one registry (:mod:`dlsys.analytics.formulas`); MAC = one
multiply-accumulate, FLOP = 2 x MAC. Importing this package does not import torch; the
tracer (:mod:`dlsys.analytics.trace`) and its op registry (:mod:`dlsys.analytics.ops`) do,
when an ``nn.Module`` is costed.

One-call answers for reports: :func:`vgg19_table`, :func:`inception_comparison`,
:func:`conv_answers`.
"""

from typing import Any

from dlsys.analytics import zoo
from dlsys.analytics.api import Comparison, compare, cost, make_convention
from dlsys.analytics.builder import (
    AdaptiveAvgPool,
    Add,
    AvgPool,
    BatchNorm,
    Concat,
    Conv,
    Dropout,
    Flatten,
    Input,
    Linear,
    MaxPool,
    Net,
    ReLU,
)
from dlsys.analytics.convarith import (
    ReceptiveField,
    conv_output_size,
    keep_padding,
    receptive_field,
)
from dlsys.analytics.formulas import OpCost, apply, formula_names, get_formula, register_formula
from dlsys.analytics.memory import (
    MemoryEstimate,
    inference_memory,
    peak_activations,
    training_memory,
)
from dlsys.analytics.report import Convention, CostReport, Layer, LedgerEntry
from dlsys.analytics.roofline import DEVICES, Device, RooflineEstimate, get_device, roofline


def register_torch_op(fn: Any, adapter: Any, *, name: str | None = None) -> None:
    """Price calls of a torch function in traced models (see :mod:`dlsys.analytics.ops`).

    Imports torch (the registry holds torch functions)."""
    from dlsys.analytics import ops

    ops.register_torch_op(fn, adapter, name=name)


def register_module(cls: type, adapter: Any) -> None:
    """Price a module type as one leaf in traced models (see :mod:`dlsys.analytics.ops`).

    Imports torch (the registry holds torch functions)."""
    from dlsys.analytics import ops

    ops.register_module(cls, adapter)


def vgg19_table() -> CostReport:
    """VGG19 at 3x224x224, batch 1: the homework's table with exact totals."""
    return cost("vgg19")


def inception_comparison(in_channels: int = 256, size: int = 32) -> Comparison:
    """Inception module naive vs reduced at ``size`` x ``size`` x ``in_channels`` (the
    homework's 32x32x256: 672 vs 480 channels, 1,115,684,864 vs 397,410,304 MACs)."""
    return compare(
        zoo.inception("naive", in_channels=in_channels, size=size),
        zoo.inception("reduced", in_channels=in_channels, size=size),
    )


def conv_answers() -> dict[str, Any]:
    """The homework's convolution-arithmetic answers, computed.

    ``output_6x4``: a 6x4 input with a 2x2 kernel, stride 2, no padding -> (3, 2);
    ``keep_6x4``: per-axis (before, after) padding that keeps 6x4 at that kernel and stride
    (symmetric: (3, 3), (2, 2)); ``params_4x4_on_22x22``: one 4x4 filter on a 22x22
    single-channel image, 16 weights + 1 bias = 17; ``one_4x4_filter``: that layer's whole
    :class:`CostReport` (weights, biases, output shape (1, 1, 10, 10) at stride 2).
    """
    one = Net(Input(1, 22, 22), Conv(1, 4, stride=2), name="one_4x4_filter").cost()
    return {
        "output_6x4": conv_output_size((6, 4), 2, stride=2),
        "keep_6x4": keep_padding((6, 4), 2, stride=2, symmetric=True),
        "params_4x4_on_22x22": one.totals["params"],
        "one_4x4_filter": one,
    }


__all__ = [
    "DEVICES",
    "AdaptiveAvgPool",
    "Add",
    "AvgPool",
    "BatchNorm",
    "Comparison",
    "Concat",
    "Conv",
    "Convention",
    "CostReport",
    "Device",
    "Dropout",
    "Flatten",
    "Input",
    "Layer",
    "LedgerEntry",
    "Linear",
    "MaxPool",
    "MemoryEstimate",
    "Net",
    "OpCost",
    "ReLU",
    "ReceptiveField",
    "RooflineEstimate",
    "apply",
    "compare",
    "conv_answers",
    "conv_output_size",
    "cost",
    "formula_names",
    "get_device",
    "get_formula",
    "inception_comparison",
    "inference_memory",
    "keep_padding",
    "make_convention",
    "peak_activations",
    "receptive_field",
    "register_formula",
    "register_module",
    "register_torch_op",
    "roofline",
    "training_memory",
    "vgg19_table",
    "zoo",
]


def __getattr__(name: str) -> object:
    """``dlsys.analytics.curves`` and ``.biasvar`` load on first use (they import scikit-learn)."""
    if name in ("curves", "biasvar"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
