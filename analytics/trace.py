"""Trace any ``torch.nn.Module`` on the meta device and cost every operation it performs.

How it works: the model's parameters and buffers are swapped for meta tensors
(``torch.func.functional_call``), the input is a meta tensor, and the forward runs under a
``TorchFunctionMode`` that sees every torch function the model calls — module internals
(``F.conv2d`` inside ``nn.Conv2d``) and functional calls alike (``torch.cat``, ``F.relu``,
``x + y``, ``a @ b``). Meta tensors carry shapes but no data, so no activation memory is
allocated. Each call is priced by an *adapter* that turns its arguments into a formula of
:mod:`dlsys.analytics.formulas`; the formula's output shape is checked against the shape
torch computed. While the mode handles a call, torch disables it, so calls nested inside a
counted function (``torch.relu`` inside ``F.relu``) are never counted twice.

Every call lands in the ledger: counted, or ignored with the reason (metadata reads such as
``x.shape``, tensor creation). A call with no adapter raises :class:`UncountableOpError`
naming it, unless ``allow_uncountable=True``, in which case it is listed as ignored.

Users extend the tracer with :func:`register_torch_op` (a function -> adapter) or
:func:`register_module` (a module type priced as one leaf; its forward is not run).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from dlsys.analytics.formulas import OpCost, Shape, apply
from dlsys.analytics.report import Convention, CostReport, Layer, LedgerEntry, Step


class UncountableOpError(ValueError):
    """The traced model called an operation that has no cost formula."""


@dataclass
class OpCall:
    """What an adapter extracts from one torch call: the formula, its inputs and settings.

    ``biases``: the tensor arguments that play the bias role (their parameters are counted
    as biases; every other parameter argument counts as weights).
    """

    formula: str
    inputs: list[Shape]
    settings: dict[str, Any] = field(default_factory=dict)
    biases: tuple[torch.Tensor, ...] = ()


Adapter = Callable[[tuple[Any, ...], dict[str, Any], Any], OpCall]
ModuleAdapter = Callable[[nn.Module, list[Shape]], OpCall]

_TORCH_OPS: dict[Any, tuple[str, Adapter]] = {}
_MODULES: dict[type, ModuleAdapter] = {}
_IGNORED: dict[Any, str] = {}


def register_torch_op(fn: Any, adapter: Adapter, *, name: str | None = None) -> None:
    """Price calls of the torch function ``fn`` with ``adapter(args, kwargs, out) -> OpCall``.

    ``name`` is the row type shown in reports (default ``fn.__name__``). Registering the
    same function twice is an error.
    """
    if fn in _TORCH_OPS or fn in _IGNORED:
        raise ValueError(f"torch op {_op_name(fn)} is already registered (twice is an error)")
    _TORCH_OPS[fn] = (name or getattr(fn, "__name__", repr(fn)).strip("_"), adapter)


def register_module(cls: type, adapter: ModuleAdapter) -> None:
    """Price every module of type ``cls`` as one leaf with ``adapter(module, input_shapes)``.

    The module's forward is not run (its output is a meta tensor of the formula's shape), so
    this is how modules built on operations the tracer cannot see (custom kernels, custom
    autograd functions) are costed. Registering a type twice is an error.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"register_module: cls must be an nn.Module subclass, got {cls!r}")
    if cls in _MODULES:
        raise ValueError(
            f"module type {cls.__qualname__} is already registered (twice is an error)"
        )
    _MODULES[cls] = adapter


def _ignore(fn: Any, reason: str) -> None:
    _IGNORED[fn] = reason


_OP_NAMES: dict[Any, str] = {}


def _op_name(fn: Any) -> str:
    try:
        return _OP_NAMES[fn]
    except (KeyError, TypeError):
        pass
    name = _op_name_uncached(fn)
    try:
        _OP_NAMES[fn] = name
    except TypeError:  # unhashable callables are named every time
        pass
    return name


def _op_name_uncached(fn: Any) -> str:
    qual = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    if "<locals>" in qual:
        qual = getattr(fn, "__name__", qual)
    qual = qual.replace("TensorBase.", "Tensor.").replace("_VariableFunctionsClass.", "")
    mod = getattr(fn, "__module__", None)
    if qual.startswith("Tensor."):
        return "torch." + qual
    if qual == "getset_descriptor.__get__":
        owner = getattr(fn, "__self__", None)
        return f"torch.Tensor.{getattr(owner, '__name__', '?')} (attribute)"
    return f"{mod or 'torch'}.{qual}"


# -- argument helpers --------------------------------------------------------------------


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], i: int, name: str, default: Any) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def _shape(t: Any) -> Shape:
    if isinstance(t, torch.Tensor):
        return tuple(int(s) for s in t.shape)
    return ()  # Python scalars broadcast like 0-d tensors


def _main(out: Any) -> Any:
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return out


# -- adapters ----------------------------------------------------------------------------


def _conv(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    x, w = args[0], _arg(args, kwargs, 1, "weight", None)
    b = _arg(args, kwargs, 2, "bias", None)
    return OpCall(
        "conv",
        [_shape(x)],
        dict(
            out_channels=int(w.shape[0]),
            kernel=tuple(int(k) for k in w.shape[2:]),
            stride=_arg(args, kwargs, 3, "stride", 1),
            padding=_arg(args, kwargs, 4, "padding", 0),
            dilation=_arg(args, kwargs, 5, "dilation", 1),
            groups=_arg(args, kwargs, 6, "groups", 1),
            bias=b is not None,
        ),
        biases=(b,) if b is not None else (),
    )


def _linear(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    x, w = args[0], _arg(args, kwargs, 1, "weight", None)
    b = _arg(args, kwargs, 2, "bias", None)
    return OpCall(
        "linear",
        [_shape(x)],
        dict(out_features=int(w.shape[0]), in_features=int(w.shape[1]), bias=b is not None),
        biases=(b,) if b is not None else (),
    )


def _stride(value: Any) -> Any:
    # PyTorch passes stride=None or [] to mean "equal to the kernel".
    if value is None or (isinstance(value, list | tuple) and len(value) == 0):
        return None
    return value


def _max_pool(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    return OpCall(
        "max_pool",
        [_shape(args[0])],
        dict(
            kernel=_arg(args, kwargs, 1, "kernel_size", None),
            stride=_stride(_arg(args, kwargs, 2, "stride", None)),
            padding=_arg(args, kwargs, 3, "padding", 0),
            dilation=_arg(args, kwargs, 4, "dilation", 1),
            ceil_mode=bool(_arg(args, kwargs, 5, "ceil_mode", False)),
        ),
    )


def _avg_pool(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    return OpCall(
        "avg_pool",
        [_shape(args[0])],
        dict(
            kernel=_arg(args, kwargs, 1, "kernel_size", None),
            stride=_stride(_arg(args, kwargs, 2, "stride", None)),
            padding=_arg(args, kwargs, 3, "padding", 0),
            ceil_mode=bool(_arg(args, kwargs, 4, "ceil_mode", False)),
        ),
    )


def _adaptive(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    size = _arg(args, kwargs, 1, "output_size", None)
    return OpCall(
        "adaptive_pool",
        [_shape(args[0])],
        dict(output_size=size if isinstance(size, int) else tuple(size)),
    )


def _batch_norm(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    w = _arg(args, kwargs, 3, "weight", None)
    b = _arg(args, kwargs, 4, "bias", None)
    return OpCall(
        "batch_norm",
        [_shape(args[0])],
        dict(affine=w is not None),
        biases=(b,) if b is not None else (),
    )


def _layer_norm(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    w = _arg(args, kwargs, 2, "weight", None)
    b = _arg(args, kwargs, 3, "bias", None)
    return OpCall(
        "layer_norm",
        [_shape(args[0])],
        dict(
            normalized_shape=tuple(_arg(args, kwargs, 1, "normalized_shape", ())),
            affine=w is not None,
            bias=b is not None,
        ),
        biases=(b,) if b is not None else (),
    )


def _pointwise(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    return OpCall("pointwise", [_shape(args[0] if args else kwargs["input"])])


def _softmax(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    return OpCall("softmax", [_shape(args[0] if args else kwargs["input"])])


def _view(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    return OpCall("view", [_shape(args[0])], dict(output_shape=_shape(_main(out))))


def _reduce(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    return OpCall("reduce", [_shape(args[0])], dict(output_shape=_shape(_main(out))))


def _flatten(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    return OpCall(
        "flatten",
        [_shape(args[0])],
        dict(
            start_dim=_arg(args, kwargs, 1, "start_dim", 0),
            end_dim=_arg(args, kwargs, 2, "end_dim", -1),
        ),
    )


def _cat(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    tensors = _arg(args, kwargs, 0, "tensors", ())
    return OpCall(
        "cat", [_shape(t) for t in tensors], dict(dim=int(_arg(args, kwargs, 1, "dim", 0)))
    )


def _elementwise(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    other = _arg(args, kwargs, 1, "other", None)
    return OpCall("elementwise", [_shape(args[0]), _shape(other)])


def _matmul(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    return OpCall(
        "matmul",
        [
            _shape(args[0]),
            _shape(_arg(args, kwargs, 1, "other", None) if len(args) < 2 else args[1]),
        ],
    )


def _norm_channels(w_pos: int, b_pos: int) -> Adapter:
    # group_norm(input, num_groups, weight, bias), instance_norm(input, rm, rv, weight, bias)
    def adapter(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
        w = _arg(args, kwargs, w_pos, "weight", None)
        b = _arg(args, kwargs, b_pos, "bias", None)
        return OpCall(
            "batch_norm",
            [_shape(args[0])],
            dict(affine=w is not None),
            biases=(b,) if b is not None else (),
        )

    return adapter


def _sdpa(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    q = _arg(args, kwargs, 0, "query", None)
    k = _arg(args, kwargs, 1, "key", None)
    v = _arg(args, kwargs, 2, "value", None)
    return OpCall("attention", [_shape(q), _shape(k), _shape(v)])


def _addmm(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    # addmm(bias, a, b) / baddbmm(bias, a, b): the product's MACs; the add is the bias.
    return OpCall("matmul", [_shape(args[1]), _shape(args[2])], biases=(args[0],))


def _interpolate(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    mode = _arg(args, kwargs, 3, "mode", "nearest")
    # Price at the size torch chose (scale factors may round either way).
    return OpCall(
        "upsample",
        [_shape(args[0])],
        dict(size=_shape(out)[2:], mode=mode),
    )


def _register_builtins() -> None:
    T: Any = torch.Tensor
    fn: Any
    for fn in (torch.conv1d, torch.conv2d, torch.conv3d):
        register_torch_op(fn, _conv)
    register_torch_op(F.linear, _linear)
    for fn in (F.max_pool1d, F.max_pool2d, F.max_pool3d, torch.max_pool1d, torch.max_pool2d,
               torch.max_pool3d, F.max_pool1d_with_indices, F.max_pool2d_with_indices,
               F.max_pool3d_with_indices):  # fmt: skip
        if fn not in _TORCH_OPS:
            register_torch_op(fn, _max_pool)
    for fn in (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d):
        register_torch_op(fn, _avg_pool)
    for fn in (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
               F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d):  # fmt: skip
        register_torch_op(fn, _adaptive)
    register_torch_op(F.batch_norm, _batch_norm)
    register_torch_op(F.layer_norm, _layer_norm)
    pointwise = (
        F.relu, F.relu_, torch.relu, torch.relu_, T.relu, T.relu_, F.relu6, F.elu, F.selu,
        F.leaky_relu, F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh,
        F.softplus, F.sigmoid, torch.sigmoid, T.sigmoid, F.tanh, torch.tanh, T.tanh,
        F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.threshold,
    )  # fmt: skip
    for fn in pointwise:
        if fn not in _TORCH_OPS:
            register_torch_op(fn, _pointwise)
    for fn in (F.softmax, F.log_softmax, T.softmax, T.log_softmax, torch.softmax,
               torch.log_softmax):  # fmt: skip
        if fn not in _TORCH_OPS:
            register_torch_op(fn, _softmax)
    register_torch_op(torch.flatten, _flatten)
    register_torch_op(T.flatten, _flatten)
    views = (
        T.view, T.reshape, torch.reshape, T.permute, torch.permute, T.transpose,
        torch.transpose, T.t, torch.t, T.squeeze, torch.squeeze, T.unsqueeze, torch.unsqueeze,
        T.__getitem__, T.contiguous, T.expand, T.view_as, T.reshape_as, torch.chunk, T.chunk,
        torch.split, T.split, T.clone, torch.clone,
    )  # fmt: skip
    for fn in views:
        if fn not in _TORCH_OPS:
            register_torch_op(fn, _view)
    for fn in (torch.mean, T.mean, torch.sum, T.sum, torch.amax, T.amax):
        register_torch_op(fn, _reduce)
    for fn in (torch.cat, torch.concat, torch.concatenate):
        if fn not in _TORCH_OPS:
            register_torch_op(fn, _cat)
    elementwise = (
        torch.add, T.add, T.add_, T.__add__, T.__radd__, T.__iadd__, torch.sub, T.sub, T.sub_,
        T.__sub__, T.__rsub__, T.__isub__, torch.mul, T.mul, T.mul_, T.__mul__, T.__rmul__,
        T.__imul__, torch.div, T.div, T.div_, T.__truediv__, T.__rtruediv__, T.__itruediv__,
    )  # fmt: skip
    for fn in elementwise:
        if fn not in _TORCH_OPS:
            register_torch_op(fn, _elementwise)
    for fn in (torch.matmul, T.matmul, T.__matmul__, torch.mm, T.mm, torch.bmm, T.bmm):
        if fn not in _TORCH_OPS:
            register_torch_op(fn, _matmul, name="matmul")
    register_torch_op(F.interpolate, _interpolate, name="upsample")
    register_torch_op(F.group_norm, _norm_channels(2, 3))
    register_torch_op(F.instance_norm, _norm_channels(3, 4))
    register_torch_op(F.scaled_dot_product_attention, _sdpa, name="attention")
    register_torch_op(torch.addmm, _addmm)
    register_torch_op(torch.baddbmm, _addmm)
    # Data movement without arithmetic: priced by what they actually write.
    for fn in (torch.stack, F.pad, F.embedding, T.repeat, T.expand_as, T.to, T.float,
               T.double, T.half, T.long, T.int, T.bool, T.type_as, T.detach, torch.squeeze,
               T.unflatten, torch.unflatten, T.narrow, torch.narrow, T.select, T.unbind,
               torch.unbind):  # fmt: skip
        if fn not in _TORCH_OPS:
            register_torch_op(fn, _view)

    for fn in (T.dim, T.size, T.numel, T.stride, T.is_contiguous, T.__len__, T.nelement,
               T.ndimension, T.element_size, T.is_floating_point, T.get_device,
               T.is_complex):  # fmt: skip
        _ignore(fn, "metadata read: no arithmetic, no memory")
    for fn in (torch.zeros, torch.ones, torch.empty, torch.full, torch.arange, torch.zeros_like,
               torch.ones_like, torch.empty_like, torch.full_like, torch.tensor,
               torch.as_tensor, torch.randn, torch.rand, torch.randint, torch.linspace,
               torch.eye, T.new_zeros, T.new_ones, T.new_empty, T.new_full,
               T.new_tensor):  # fmt: skip
        _ignore(fn, "tensor creation: no arithmetic (NB: its memory is not counted)")


def _register_reduce_formula() -> None:
    from dlsys.analytics.formulas import numel, register_formula

    def reduce_cost(
        inputs: Sequence[Shape], *, output_shape: Sequence[int], where: str = "reduce"
    ) -> OpCost:
        """Reduction (mean, sum, max) to ``output_shape``: one unit per input element."""
        (x,) = inputs
        return OpCost(
            output_shape=tuple(output_shape), activations=numel(output_shape), elementwise=numel(x)
        )

    register_formula("reduce", reduce_cost)


_register_reduce_formula()
_register_builtins()


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
        entry = _TORCH_OPS.get(func)
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
        if func in _IGNORED:
            self.ledger.append(LedgerEntry(where, _op_name(func), "ignored", _IGNORED[func]))
            return
        entry = _TORCH_OPS.get(func)
        if entry is None:
            if getattr(func, "__name__", "") == "__get__":
                self.ledger.append(
                    LedgerEntry(where, _op_name(func), "ignored", "attribute read: no arithmetic")
                )
                return
            if self.allow_uncountable:
                self.ledger.append(
                    LedgerEntry(where, _op_name(func), "ignored", "no cost formula (allowed)")
                )
                return
            raise UncountableOpError(
                f"cannot count operation {_op_name(func)} called in {where!r}: no cost formula "
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
        main = _main(out)
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
        self.ledger.append(LedgerEntry(name, _op_name(func), "counted"))

    def leaf(self, module: nn.Module, adapter: ModuleAdapter, args: tuple[Any, ...]) -> Any:
        # During functional_call the module's attributes are the meta parameters.
        params = [_getpath(module, n) for n in self.leaf_params.get(id(module), [])]
        pids = {id(p) for p in params}
        ins = [t for t in _tensors(args) if id(t) not in pids]
        call = adapter(module, [_shape(t) for t in ins])
        probe = apply(call.formula, call.inputs, where=self.stack[-1], **call.settings)
        self.suspended = True
        try:
            dtype = ins[0].dtype if ins else torch.float32
            out = torch.empty(probe.output_shape, device="meta", dtype=dtype)
        finally:
            self.suspended = False
        self._count(type(module), type(module).__name__, call, [*ins, *params], out)
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
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise ValueError(f"batch: must be a positive int, got {batch!r}")
    shape = tuple(input_shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in shape):
        raise ValueError(
            f"input_shape: must be positive ints such as (3, 224, 224), got {input_shape!r}"
        )
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

    _register_known_custom_modules()
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
        adapter = _find_module_adapter(type(mod))
        if adapter is not None:
            tracer.leaf_params[id(mod)] = [n for n, _ in mod.named_parameters()]
            patched.append(mod)
            mod.forward = _leaf_forward(tracer, mod, adapter)  # type: ignore[method-assign]
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


def conv_module_adapter(module: Any, shapes: list[Shape]) -> OpCall:
    """Module adapter pricing any ``nn.ConvNd``-like module (``out_channels``,
    ``kernel_size``, ``stride``, ``padding``, ``dilation``, ``groups``, ``bias``) with the
    ``conv`` formula; for modules whose forward cannot run on meta tensors (custom kernels)."""
    return OpCall(
        "conv",
        shapes[:1],
        dict(
            out_channels=int(module.out_channels),
            kernel=tuple(module.kernel_size),
            stride=tuple(module.stride),
            padding=module.padding if isinstance(module.padding, str) else tuple(module.padding),
            dilation=tuple(module.dilation),
            groups=int(module.groups),
            bias=module.bias is not None,
        ),
        biases=(module.bias,) if module.bias is not None else (),
    )


def _register_known_custom_modules() -> None:
    # dlsys's own Conv2d calls the dlsys::conv2d custom op, which has no formula here; price
    # the module as a leaf conv. Looked up only if the model's code already imported it.
    mod = sys.modules.get("dlsys.kernels.modules")
    cls = getattr(mod, "Conv2d", None) if mod is not None else None
    if isinstance(cls, type) and cls not in _MODULES:
        register_module(cls, conv_module_adapter)


def _find_module_adapter(cls: type) -> ModuleAdapter | None:
    for c in cls.__mro__:
        if c in _MODULES:
            return _MODULES[c]
    return None


def _leaf_forward(tracer: _Tracer, module: nn.Module, adapter: ModuleAdapter) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        return tracer.leaf(module, adapter, (args, kwargs))

    return forward
