"""Trace any ``torch.nn.Module`` on the meta device and cost every operation it performs.

How it works: the model's parameters and buffers are swapped for meta tensors
(``torch.func.functional_call``), the input is a meta tensor, and the forward runs under a
``TorchFunctionMode`` that sees every torch function the model calls — module internals
(``F.conv2d`` inside ``nn.Conv2d``) and functional calls alike (``torch.cat``, ``F.relu``,
``x + y``, ``a @ b``). Meta tensors carry shapes but no data, so no activation memory is
allocated. Each call is priced by the *adapter* that :mod:`dlsys.analytics.ops` (the op
registry) holds for it, which turns its arguments into a formula of
:mod:`dlsys.analytics.formulas`; the formula's output shape is checked against the shape
torch computed. While the mode handles a call, torch disables it, so calls nested inside a
counted function (``torch.relu`` inside ``F.relu``) are never counted twice.

Every call lands in the ledger: counted, or ignored with the reason (metadata reads such as
``x.shape``, tensor creation). A call with no adapter raises :class:`UncountableOpError`
naming it, unless ``allow_uncountable=True``, in which case it is listed as ignored.

Users extend the tracer through the registry: :func:`~dlsys.analytics.ops.register_torch_op`
(a function -> adapter) or :func:`~dlsys.analytics.ops.register_module` (a module type
priced as one leaf; its forward is not run).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from dlsys.analytics.formulas import apply, as_shape
from dlsys.analytics.ops import (
    ModuleAdapter,
    OpCall,
    find_module_adapter,
    ignored_reason,
    main_output,
    op_name,
    tensor_shape,
    torch_op,
)
from dlsys.analytics.report import Convention, CostReport, Layer, LedgerEntry, Step
from dlsys.common.errors import check_int

__all__ = ["UncountableOpError", "trace"]


class UncountableOpError(ValueError):
    """The traced model called an operation that has no cost formula."""


# -- the tracer --------------------------------------------------------------------------


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, list | tuple):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def _key(t: torch.Tensor) -> int:
    base = t._base if t._base is not None else t
    return id(base)


class _Mode(TorchFunctionMode):
    def __init__(self, tracer: _Tracer) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        try:
            out = func(*args, **kwargs)
        except RuntimeError as exc:
            if not self.tracer.suspended:
                self.tracer.explain(func, args, kwargs, exc)
            raise
        if not self.tracer.suspended:
            self.tracer.record(func, args, kwargs, out)
        return out


class _Tracer:
    def __init__(
        self, convention: Convention, allow_uncountable: bool, param_names: dict[int, str]
    ) -> None:
        self.convention = convention
        self.allow_uncountable = allow_uncountable
        self.param_names = param_names
        self.counted_params: set[int] = set()
        self.stack: list[str] = [""]
        self.layers: list[Layer] = []
        self.ledger: list[LedgerEntry] = []
        self.steps: list[Step] = []
        self.names: set[str] = set()
        self.path_used: set[str] = set()
        self.suspended = False
        self.keep: list[Any] = []  # keep meta tensors alive so their ids stay unique
        self.leaf_params: dict[int, list[str]] = {}
        self.parents: set[str] = set()  # module paths with children: their own ops get .type

    def _row_name(self, type_: str) -> str:
        path = self.stack[-1]
        if path and path not in self.path_used and path not in self.parents:
            name = path
        else:
            name = f"{path}.{type_}" if path else type_
        self.path_used.add(path)
        base, k = name, 2
        while name in self.names:
            name = f"{base}#{k}"
            k += 1
        self.names.add(name)
        return name

    def explain(
        self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], exc: Exception
    ) -> None:
        """torch refused a call: raise the formula's clearer ValueError if it has one."""
        entry = torch_op(func)
        if entry is None:
            return
        where = f"layer {self.stack[-1] or '<model>'!r} ({entry[0]})"
        try:
            call = entry[1](args, kwargs, None)
            apply(call.formula, call.inputs, where=where, **call.settings)
        except ValueError as err:
            raise ValueError(str(err)) from exc
        except Exception:  # keep torch's own error
            return

    def record(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        where = self.stack[-1] or "<model>"
        reason = ignored_reason(func)
        if reason is not None:
            self.ledger.append(LedgerEntry(where, op_name(func), "ignored", reason))
            return
        entry = torch_op(func)
        if entry is None:
            if getattr(func, "__name__", "") == "__get__":
                self.ledger.append(
                    LedgerEntry(where, op_name(func), "ignored", "attribute read: no arithmetic")
                )
                return
            if self.allow_uncountable:
                self.ledger.append(
                    LedgerEntry(where, op_name(func), "ignored", "no cost formula (allowed)")
                )
                return
            raise UncountableOpError(
                f"cannot count operation {op_name(func)} called in {where!r}: no cost formula "
                "is registered for it; register one with dlsys.analytics.register_torch_op "
                "(or register_module for the whole module), or pass allow_uncountable=True to "
                "list it as ignored in the ledger"
            )
        type_, adapter = entry
        call = adapter(args, kwargs, out)
        self._count(func, type_, call, list(_tensors((args, kwargs))), out)

    def _count(
        self,
        func: Any,
        type_: str,
        call: OpCall,
        inputs: list[torch.Tensor],
        out: Any,
    ) -> None:
        name = self._row_name(type_)
        cost = apply(call.formula, call.inputs, where=f"layer {name!r} ({type_})", **call.settings)
        main = main_output(out)
        if isinstance(main, torch.Tensor) and tuple(main.shape) != tuple(cost.output_shape):
            raise RuntimeError(
                f"{name}: formula {call.formula!r} gives output shape {cost.output_shape} but "
                f"torch computed {tuple(main.shape)} (a bug in the formula or its adapter)"
            )
        # Parameters: attributed to the first row that reads them (shared weights once).
        weights = biases = 0
        bias_ids = {id(b) for b in call.biases}
        for t in inputs:
            if id(t) in self.param_names and id(t) not in self.counted_params:
                self.counted_params.add(id(t))
                if id(t) in bias_ids:
                    biases += t.numel()
                else:
                    weights += t.numel()
        # Memory actually written: none for in-place ops and views, whatever the formula says.
        in_ids = {id(t) for t in inputs}
        outs = list(_tensors(out))
        new = [o for o in outs if id(o) not in in_ids and o._base is None]
        written = sum(o.numel() for o in new)
        acts = cost.activations
        if not new:
            acts = 0
        elif cost.view:
            acts = written
        conv = self.convention
        if cost.pointwise and not conv.pointwise_activations:
            acts = 0  # the same rule as report.make_layer, inlined for speed
        flops = 2 * cost.macs
        if conv.bias:
            flops += cost.bias_adds
        if conv.elementwise:
            flops += cost.elementwise
        reads_el = sum(t.numel() for t in inputs if id(t) not in self.param_names)
        self.layers.append(
            Layer(
                name=name,
                type=type_,
                output_shape=tuple(cost.output_shape),
                weights=weights,
                biases=biases,
                activations=acts,
                macs=cost.macs,
                bias_adds=cost.bias_adds,
                elementwise=cost.elementwise,
                flops=flops,
                reads=reads_el,
            )
        )
        reads = tuple(_key(t) for t in inputs if id(t) not in self.param_names)
        wkey = _key(main) if isinstance(main, torch.Tensor) else -1
        self.steps.append(Step(writes=wkey, size=written, reads=reads))
        self.keep.append(out)
        self.ledger.append(LedgerEntry(name, op_name(func), "counted"))

    def leaf(self, module: nn.Module, adapter: ModuleAdapter, args: tuple[Any, ...]) -> Any:
        # During functional_call the module's attributes are the meta parameters.
        params = [_getpath(module, n) for n in self.leaf_params.get(id(module), [])]
        pids = {id(p) for p in params}
        ins = [t for t in _tensors(args) if id(t) not in pids]
        calls = adapter(module, [tensor_shape(t) for t in ins])
        # A fused module (dlsys's conv -> ReLU -> max-pool) gives one call per part: one row
        # each, in order, each part reading the previous part's output (the tracer fills in
        # its shape) and the first one the parameters, exactly as the unfused modules count.
        parts = calls if isinstance(calls, list) else [calls]
        dtype = ins[0].dtype if ins else torch.float32
        out: Any = None
        for i, call in enumerate(parts):
            if i > 0:
                call = replace(call, inputs=[tuple(out.shape)])
            probe = apply(call.formula, call.inputs, where=self.stack[-1], **call.settings)
            self.suspended = True
            try:
                out = torch.empty(probe.output_shape, device="meta", dtype=dtype)
            finally:
                self.suspended = False
            type_ = type(module).__name__
            if len(parts) > 1:
                type_ = f"{type_}:{call.formula}"
            self._count(type(module), type_, call, [*ins, *params] if i == 0 else ins, out)
            ins = [out]
        return out


def _getpath(module: nn.Module, dotted: str) -> Any:
    obj: Any = module
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def trace(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    batch: int = 1,
    convention: Convention | None = None,
    allow_uncountable: bool = False,
    dtype: torch.dtype = torch.float32,
    name: str | None = None,
) -> CostReport:
    """Cost ``model`` on one input of shape ``(batch, *input_shape)`` on the meta device.

    The model runs in eval mode (restored afterwards) with its parameters swapped for meta
    tensors; nothing about the model is changed and no activation memory is allocated.
    Raises :class:`UncountableOpError` for an operation without a formula unless
    ``allow_uncountable`` (then it is listed as ignored in ``report.ledger``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: must be a torch.nn.Module, got {type(model).__name__}")
    check_int("batch", batch, minimum=1)
    shape = as_shape("input_shape", input_shape)
    convention = convention or Convention()

    named_params = dict(model.named_parameters())
    named_buffers = dict(model.named_buffers())
    on_meta = all(p.device.type == "meta" for p in named_params.values()) and all(
        b.device.type == "meta" for b in named_buffers.values()
    )
    state: dict[str, torch.Tensor] = {}
    for k, p in named_params.items():
        m = p if on_meta else torch.empty(p.shape, dtype=p.dtype, device="meta")
        state[k] = m
    if not on_meta:
        for k, b in named_buffers.items():
            state[k] = torch.empty(b.shape, dtype=b.dtype, device="meta")
    param_names = {id(m): k for k, m in state.items() if k in named_params}

    tracer = _Tracer(convention, allow_uncountable, param_names)
    x = torch.empty((batch, *shape), device="meta", dtype=dtype)
    input_layer = Layer(
        name="input", type="input", output_shape=(batch, *shape), activations=math.prod(x.shape)
    )
    tracer.layers.append(input_layer)
    tracer.steps.append(Step(writes=_key(x), size=x.numel(), reads=()))
    tracer.names.add("input")

    named = list(model.named_modules())
    paths = {id(m): n for n, m in named}
    tracer.parents = {n for n, m in named if next(m.children(), None) is not None}
    handles = []
    patched: list[nn.Module] = []

    def pre(mod: nn.Module, args: Any) -> None:
        tracer.stack.append(paths.get(id(mod), tracer.stack[-1]))

    def post(mod: nn.Module, args: Any, out: Any) -> None:
        tracer.stack.pop()

    modes = {mod: mod.training for _, mod in named}
    for _, mod in named:
        adapter = find_module_adapter(type(mod))
        if adapter is not None:
            tracer.leaf_params[id(mod)] = [n for n, _ in mod.named_parameters()]
            patched.append(mod)
            mod.forward = _leaf_forward(tracer, mod, adapter)
    handles.append(nn.modules.module.register_module_forward_pre_hook(pre))
    handles.append(nn.modules.module.register_module_forward_hook(post, always_call=True))
    try:
        model.eval()
        with _Mode(tracer):
            out = torch.func.functional_call(model, state, (x,), strict=False)
    finally:
        for h in handles:
            h.remove()
        for mod in patched:
            del mod.forward
        for mod, flag in modes.items():
            mod.training = flag
    unused = sum(
        p.numel() for k, p in named_params.items() if id(state[k]) not in tracer.counted_params
    )
    if unused:
        names = [k for k in named_params if id(state[k]) not in tracer.counted_params]
        tracer.ledger.append(
            LedgerEntry(
                "<model>",
                "parameters",
                "ignored",
                f"{unused:,} parameter elements not read by any counted operation: "
                + ", ".join(names),
            )
        )
        tracer.layers.append(
            Layer(name="unused parameters", type="parameters", output_shape=(), weights=unused)
        )
    return CostReport(
        model=name or type(model).__name__,
        input_shape=shape,
        batch=batch,
        layers=tracer.layers,
        convention=convention,
        ledger=tracer.ledger,
        steps=tracer.steps,
        outputs=tuple(_key(t) for t in _tensors(out)),
        model_params=sum(p.numel() for p in named_params.values()),
    )


def _leaf_forward(tracer: _Tracer, module: nn.Module, adapter: ModuleAdapter) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        return tracer.leaf(module, adapter, (args, kwargs))

    return forward
