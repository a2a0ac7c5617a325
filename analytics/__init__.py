"""dlsys.analytics: what an architecture costs — parameters, activations, MACs, memory — exactly.

Entry point: :func:`cost` (an ``nn.Module`` traced on the meta device, a declarative
builder ``Net``, or a zoo name) returning a :class:`CostReport` with ``.layers``,
``.totals`` and ``.ledger``. Formulas live in one registry (:mod:`.formulas`).
"""

from dlsys.analytics.api import cost, make_convention
from dlsys.analytics.convarith import (
    ReceptiveField,
    conv_output_size,
    keep_padding,
    receptive_field,
)
from dlsys.analytics.formulas import OpCost, formula_names, get_formula, register_formula
from dlsys.analytics.report import Convention, CostReport, Layer, LedgerEntry

__all__ = [
    "Convention",
    "CostReport",
    "Layer",
    "LedgerEntry",
    "OpCost",
    "ReceptiveField",
    "conv_output_size",
    "cost",
    "formula_names",
    "get_formula",
    "keep_padding",
    "make_convention",
    "receptive_field",
    "register_formula",
]
