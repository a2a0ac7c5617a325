"""Cost reports: one row per operation, totals, a ledger, and text/Markdown/CSV/JSON output.

A :class:`CostReport` is what both front ends (builder and tracer) produce. Its rows sum to
its totals exactly (a test checks this for every model). The first row is the input (its
elements count as activations, as in the homework's VGG19 table).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dlsys.common.errors import unknown_name
from dlsys.common.io import dumps

#: Bytes per element of the dtypes a report can price.
DTYPE_BYTES: dict[str, int] = {
    "float64": 8,
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "float8": 1,
    "int8": 1,
}

#: Keys of a row and of the totals in the JSON output (the `dlsys cost --json` shape).
ROW_KEYS = ("name", "type", "output_shape", "params", "weights", "biases", "activations", "macs")
TOTAL_KEYS = ("params", "weights", "biases", "activations", "macs", "flops", "backward_macs")


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of ``dtype`` (e.g. ``"float32"`` -> 4)."""
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise unknown_name("dtype", str(dtype), DTYPE_BYTES) from None


@dataclass(frozen=True)
class Convention:
    """How work and activations are counted; stated in every report.

    ``unit``: ``"mac"`` (one multiply-accumulate) or ``"flop"`` (2 x MAC, as FlopCounterMode
    and torchvision's tables) — which one the text reports show. ``bias``: add one FLOP per
    bias add to ``flops``. ``elementwise``: add the elementwise work (activation functions,
    pooling windows, residual adds, norms) to ``flops``. ``pointwise_activations``: count
    the outputs of pointwise activation functions and dropout as activations (off: they are
    taken as applied in place, as in the homework tables). ``macs`` is never changed by the
    switches: it is the multiply-accumulates of convolutions, linear layers and matmuls.
    """

    unit: str = "mac"
    bias: bool = False
    elementwise: bool = False
    pointwise_activations: bool = False

    def __post_init__(self) -> None:
        if self.unit not in ("mac", "flop"):
            raise unknown_name("convention", str(self.unit), ["mac", "flop"])
        for name in ("bias", "elementwise", "pointwise_activations"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"convention.{name}: must be a bool, got {getattr(self, name)!r}")

    def describe(self) -> str:
        """One line stating the convention."""
        extras = [
            n for n, on in (("bias adds", self.bias), ("elementwise", self.elementwise)) if on
        ]
        flop = "FLOP = 2 x MAC" + (" + " + " + ".join(extras) if extras else "")
        act = "pointwise outputs counted" if self.pointwise_activations else "pointwise in place"
        return f"MAC = one multiply-accumulate; {flop}; activations: {act}"


@dataclass
class Layer:
    """One row: an operation's output shape (batch first) and its exact counts.

    ``params = weights + biases`` (elements); ``activations``: elements written (under the
    convention); ``macs``: multiply-accumulates; ``bias_adds``, ``elementwise``: other work
    (elementary operations); ``flops``: 2 x macs plus what the convention adds; ``reads``:
    activation elements the op reads (its tensor inputs other than parameters; used by the
    roofline estimate).
    """

    name: str
    type: str
    output_shape: tuple[int, ...]
    weights: int = 0
    biases: int = 0
    activations: int = 0
    macs: int = 0
    bias_adds: int = 0
    elementwise: int = 0
    flops: int = 0
    reads: int = 0

    @property
    def params(self) -> int:
        """Parameters (elements): weights + biases."""
        return self.weights + self.biases

    def as_dict(self) -> dict[str, Any]:
        """The row with the JSON keys of ``dlsys cost --json``."""
        return {
            "name": self.name,
            "type": self.type,
            "output_shape": list(self.output_shape),
            "params": self.params,
            "weights": self.weights,
            "biases": self.biases,
            "activations": self.activations,
            "macs": self.macs,
        }


@dataclass(frozen=True)
class LedgerEntry:
    """One operation the tracer saw: ``status`` is ``"counted"`` or ``"ignored"``."""

    where: str
    op: str
    status: str
    reason: str = ""


@dataclass(frozen=True)
class Step:
    """Liveness of one row for memory estimates: the storage it writes and those it reads.

    Keys are opaque ints; ``size`` is the elements of the written storage (0 for views and
    in-place ops, which write into an existing storage).
    """

    writes: int
    size: int
    reads: tuple[int, ...]


@dataclass
class CostReport:
    """Per-layer costs of a model at one input shape and batch size.

    ``layers``: rows (first the input); ``totals``: sums of the rows (keys params, weights,
    biases, activations, macs, flops); ``ledger``: every operation seen and whether it was
    counted; ``convention``: how it was counted; ``steps``/``outputs``: liveness for
    :mod:`dlsys.analytics.memory`.
    """

    model: str
    input_shape: tuple[int, ...]
    batch: int
    layers: list[Layer]
    convention: Convention = field(default_factory=Convention)
    ledger: list[LedgerEntry] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    outputs: tuple[int, ...] = ()
    model_params: int | None = None

    @property
    def totals(self) -> dict[str, int]:
        """Sums over the rows: params, weights, biases, activations, macs, flops, and the
        backward pass's multiply-accumulates (:meth:`backward_macs`) (ints)."""
        t = dict.fromkeys(TOTAL_KEYS, 0)
        for row in self.layers:
            t["params"] += row.params
            t["weights"] += row.weights
            t["biases"] += row.biases
            t["activations"] += row.activations
            t["macs"] += row.macs
            t["flops"] += row.flops
        t["backward_macs"] = sum(self.backward_macs())
        return t

    def grad_inputs(self) -> list[int]:
        """Per row, how many of its operands receive a gradient in the backward pass.

        Walks the rows' data flow (``steps``) from the input, which needs no gradient: a
        row's parameters count as one operand (``weights > 0``), each activation it reads
        that depends on some parameter as one more; its output needs a gradient when any
        operand does. 0 marks a row no gradient flows through (the input, or anything
        computed from the input alone). NB: a weight shared by several rows is counted at
        its first row only, as in ``weights``.
        """
        needs: set[int] = set()
        out = []
        for i, row in enumerate(self.layers):
            step = self.steps[i] if i < len(self.steps) else None
            reads = step.reads if step is not None else ()
            parts = (1 if row.weights > 0 else 0) + sum(1 for k in reads if k in needs)
            if parts and step is not None:
                needs.add(step.writes)
            out.append(parts)
        return out

    def backward_macs(self) -> list[int]:
        """Per row, the multiply-accumulates of its backward pass: ``macs`` once per operand
        that receives a gradient (:meth:`grad_inputs`), at most two (the weight and the input
        of a convolution or linear layer, the two factors of a matmul).

        For convolutions, linear layers and matmuls each gradient costs exactly the forward's
        MACs (grad input: the transposed operation; grad weight: a correlation of input and
        output gradient over the batch), and the first layer, whose input needs no gradient,
        computes only its weight gradient. NB: attention's backward is taken as two of its
        forward passes.
        """
        return [
            row.macs * min(k, 2) for row, k in zip(self.layers, self.grad_inputs(), strict=True)
        ]

    @property
    def bias_adds(self) -> int:
        """Total bias additions (elementary operations)."""
        return sum(r.bias_adds for r in self.layers)

    @property
    def elementwise(self) -> int:
        """Total elementwise work (elementary operations)."""
        return sum(r.elementwise for r in self.layers)

    def work(self) -> int:
        """Total work in the convention's unit (MACs or FLOPs)."""
        t = self.totals
        return t["macs"] if self.convention.unit == "mac" else t["flops"]

    def as_dict(self) -> dict[str, Any]:
        """``{"layers": [...], "totals": {...}}``, the JSON shape of ``dlsys cost --json``."""
        return {"layers": [r.as_dict() for r in self.layers], "totals": self.totals}

    def to_json(self) -> str:
        """The report as one JSON document (see :meth:`as_dict`)."""
        return dumps(self.as_dict())

    # -- tables ---------------------------------------------------------------------------
    def _table(self, dtype: str) -> tuple[list[str], list[list[str]], list[str]]:
        nb = dtype_bytes(dtype)
        unit = "MACs" if self.convention.unit == "mac" else "FLOPs"
        head = [
            "layer",
            "type",
            "output shape",
            "activations",
            "parameters",
            "weights",
            "biases",
            unit,
            f"act. bytes ({dtype})",
            f"param bytes ({dtype})",
        ]

        def cells(name: str, typ: str, shape: str, r: dict[str, int]) -> list[str]:
            work = r["macs"] if unit == "MACs" else r["flops"]
            return [
                name,
                typ,
                shape,
                f"{r['activations']:,}",
                f"{r['params']:,}",
                f"{r['weights']:,}",
                f"{r['biases']:,}",
                f"{work:,}",
                f"{r['activations'] * nb:,}",
                f"{r['params'] * nb:,}",
            ]

        rows = []
        for row in self.layers:
            d = row.as_dict()
            d["flops"] = row.flops
            rows.append(cells(row.name, row.type, "x".join(map(str, row.output_shape)), d))
        total = cells("TOTAL", "", "", self.totals)
        return head, rows, total

    def to_text(self, dtype: str = "float32") -> str:
        """Aligned text table with totals and the convention line."""
        head, rows, total = self._table(dtype)
        allrows = [head, *rows, total]
        widths = [max(len(r[i]) for r in allrows) for i in range(len(head))]
        right = set(range(3, len(head)))

        def fmt(r: Sequence[str]) -> str:
            return "  ".join(
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()

        sep = "  ".join("-" * w for w in widths)
        lines = [
            f"{self.model}: input {'x'.join(map(str, self.input_shape))}, batch {self.batch}",
            fmt(head),
            sep,
            *(fmt(r) for r in rows),
            sep,
            fmt(total),
            self.convention.describe(),
        ]
        return "\n".join(lines) + "\n"

    def to_markdown(self, dtype: str = "float32") -> str:
        """GitHub Markdown table (numbers right-aligned) with a totals row."""
        head, rows, total = self._table(dtype)
        align = ["---", "---", "---"] + ["---:"] * (len(head) - 3)
        out = [
            "| " + " | ".join(head) + " |",
            "| " + " | ".join(align) + " |",
            *("| " + " | ".join(r) + " |" for r in rows),
            "| " + " | ".join(f"**{c}**" if c else "" for c in total) + " |",
        ]
        return "\n".join(out) + f"\n\n{self.convention.describe()}\n"

    def to_csv(self) -> str:
        """CSV with one row per layer and a TOTAL row; plain integers, no separators."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        keys = [*ROW_KEYS, "bias_adds", "elementwise", "flops"]
        w.writerow(keys)
        for row in self.layers:
            d = row.as_dict()
            d["output_shape"] = "x".join(map(str, row.output_shape))
            d.update(bias_adds=row.bias_adds, elementwise=row.elementwise, flops=row.flops)
            w.writerow([d[k] for k in keys])
        t = self.totals
        w.writerow(
            [
                "TOTAL",
                "",
                "",
                *(t[k] for k in ROW_KEYS[3:]),
                self.bias_adds,
                self.elementwise,
                t["flops"],
            ]
        )
        return buf.getvalue()

    def format(self, fmt: str = "text", dtype: str = "float32") -> str:
        """The report as ``"text"``, ``"md"``, ``"csv"`` or ``"json"``."""
        if fmt == "text":
            return self.to_text(dtype)
        if fmt == "md":
            return self.to_markdown(dtype)
        if fmt == "csv":
            return self.to_csv()
        if fmt == "json":
            return self.to_json() + "\n"
        raise unknown_name("format", str(fmt), ["text", "md", "csv", "json"])


def make_layer(name: str, type_: str, cost: Any, convention: Convention, reads: int = 0) -> Layer:
    """A :class:`Layer` from an :class:`~dlsys.analytics.formulas.OpCost` under ``convention``."""
    acts = cost.activations
    if cost.pointwise and not convention.pointwise_activations:
        acts = 0
    flops = 2 * cost.macs
    if convention.bias:
        flops += cost.bias_adds
    if convention.elementwise:
        flops += cost.elementwise
    return Layer(
        name=name,
        type=type_,
        output_shape=tuple(cost.output_shape),
        weights=cost.weights,
        biases=cost.biases,
        activations=acts,
        macs=cost.macs,
        bias_adds=cost.bias_adds,
        elementwise=cost.elementwise,
        flops=flops,
        reads=reads,
    )
