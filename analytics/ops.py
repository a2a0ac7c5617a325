"""The op registry: which torch functions and module types the tracer prices, and how.

An *adapter* turns one torch call's arguments into an :class:`OpCall`: the name of a formula
of :mod:`dlsys.analytics.formulas`, the input shapes and the settings. A torch function maps
to ``(row type, adapter)``; a module type maps to a module adapter that prices the whole
module as one leaf (its forward is not run). Some calls are ignored with a reason (metadata
reads, tensor creation).

The built-in entries are one table (:func:`_builtin_table`), read once, the first time the
registry is consulted (:func:`ensure_builtins`); nothing is registered on import. Users add
entries with :func:`register_torch_op` and :func:`register_module` (also re-exported by
:mod:`dlsys.analytics`); registering a function or a module type twice is an error. Adding a
new operation is one call: write its formula (``formulas.register_formula``) and an adapter,
then ``register_torch_op(fn, adapter)``. dlsys's own kernel modules are listed by import path
in :data:`KNOWN_MODULES` (one line each), so that this module never imports
:mod:`dlsys.kernels`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlsys.analytics.formulas import Shape, conv_settings

__all__ = [
    "KNOWN_MODULES",
    "Adapter",
    "ModuleAdapter",
    "OpCall",
    "conv_module_adapter",
    "conv_relu_pool_module_adapter",
    "ensure_builtins",
    "find_module_adapter",
    "ignored_reason",
    "main_output",
    "op_name",
    "register_module",
    "register_torch_op",
    "tensor_shape",
    "torch_op",
]


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


#: ``adapter(args, kwargs, out) -> OpCall`` for one torch call (``out`` is None when torch
#: refused the call and the tracer asks the formula for a clearer error).
Adapter = Callable[[tuple[Any, ...], dict[str, Any], Any], OpCall]
#: ``adapter(module, input_shapes) -> OpCall`` for a module priced as one leaf; a fused
#: module returns one OpCall per part (a row each, chained by the tracer, whose inputs are
#: filled in from the previous part's output).
ModuleAdapter = Callable[[nn.Module, list[Shape]], "OpCall | list[OpCall]"]

_TORCH_OPS: dict[Any, tuple[str, Adapter]] = {}
_MODULES: dict[type, ModuleAdapter] = {}
_IGNORED: dict[Any, str] = {}
_BUILTINS_LOADED = False


def register_torch_op(fn: Any, adapter: Adapter, *, name: str | None = None) -> None:
    """Price calls of the torch function ``fn`` with ``adapter(args, kwargs, out) -> OpCall``.

    ``name`` is the row type shown in reports (default ``fn.__name__``). Registering the
    same function twice is an error.
    """
    ensure_builtins()
    _add_torch_op(fn, adapter, name)


def _add_torch_op(fn: Any, adapter: Adapter, name: str | None) -> None:
    if fn in _TORCH_OPS or fn in _IGNORED:
        raise ValueError(f"torch op {op_name(fn)} is already registered (twice is an error)")
    _TORCH_OPS[fn] = (name or getattr(fn, "__name__", repr(fn)).strip("_"), adapter)


def register_module(cls: type, adapter: ModuleAdapter) -> None:
    """Price every module of type ``cls`` as one leaf with ``adapter(module, input_shapes)``.

    The module's forward is not run (its output is a meta tensor of the formula's shape), so
    this is how modules built on operations the tracer cannot see (custom kernels, custom
    autograd functions) are costed. Registering a type twice is an error.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"register_module: cls must be an nn.Module subclass, got {cls!r}")
    if cls in _MODULES or _qualified(cls) in KNOWN_MODULES:
        raise ValueError(
            f"module type {cls.__qualname__} is already registered (twice is an error)"
        )
    _MODULES[cls] = adapter


def torch_op(fn: Any) -> tuple[str, Adapter] | None:
    """``(row type, adapter)`` registered for the torch function ``fn``, or None."""
    ensure_builtins()
    return _TORCH_OPS.get(fn)


def ignored_reason(fn: Any) -> str | None:
    """Why calls of ``fn`` are ignored (listed in the ledger, not counted), or None."""
    ensure_builtins()
    return _IGNORED.get(fn)


def find_module_adapter(cls: type) -> ModuleAdapter | None:
    """The module adapter for ``cls`` or its nearest registered base class, or None."""
    for c in cls.__mro__:
        if c in _MODULES:
            return _MODULES[c]
        known = KNOWN_MODULES.get(_qualified(c))
        if known is not None:
            return known
    return None


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


_OP_NAMES: dict[Any, str] = {}


def op_name(fn: Any) -> str:
    """A readable dotted name of the torch function ``fn`` (``torch.Tensor.add``)."""
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


# -- argument helpers and adapters-------------------------------------------------------------


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], i: int, name: str, default: Any) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def tensor_shape(t: Any) -> Shape:
    """The shape of tensor ``t`` as ints; ``()`` for a Python scalar."""
    if isinstance(t, torch.Tensor):
        return tuple(int(s) for s in t.shape)
    return ()  # Python scalars broadcast like 0-d tensors


def main_output(out: Any) -> Any:
    """The first tensor of a tuple/list output (``max_pool2d_with_indices``), else ``out``."""
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return out


# -- adapters ----------------------------------------------------------------------------


def _conv(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    x, w = args[0], _arg(args, kwargs, 1, "weight", None)
    b = _arg(args, kwargs, 2, "bias", None)
    return OpCall(
        "conv",
        [tensor_shape(x)],
        conv_settings(
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
        [tensor_shape(x)],
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
        [tensor_shape(args[0])],
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
        [tensor_shape(args[0])],
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
        [tensor_shape(args[0])],
        dict(output_size=size if isinstance(size, int) else tuple(size)),
    )


def _batch_norm(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    w = _arg(args, kwargs, 3, "weight", None)
    b = _arg(args, kwargs, 4, "bias", None)
    return OpCall(
        "batch_norm",
        [tensor_shape(args[0])],
        dict(affine=w is not None),
        biases=(b,) if b is not None else (),
    )


def _layer_norm(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    w = _arg(args, kwargs, 2, "weight", None)
    b = _arg(args, kwargs, 3, "bias", None)
    return OpCall(
        "layer_norm",
        [tensor_shape(args[0])],
        dict(
            normalized_shape=tuple(_arg(args, kwargs, 1, "normalized_shape", ())),
            affine=w is not None,
            bias=b is not None,
        ),
        biases=(b,) if b is not None else (),
    )


def _pointwise(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    return OpCall("pointwise", [tensor_shape(args[0] if args else kwargs["input"])])


def _softmax(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    return OpCall("softmax", [tensor_shape(args[0] if args else kwargs["input"])])


def _view(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    return OpCall(
        "view", [tensor_shape(args[0])], dict(output_shape=tensor_shape(main_output(out)))
    )


def _reduce(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    return OpCall(
        "reduce", [tensor_shape(args[0])], dict(output_shape=tensor_shape(main_output(out)))
    )


def _flatten(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    return OpCall(
        "flatten",
        [tensor_shape(args[0])],
        dict(
            start_dim=_arg(args, kwargs, 1, "start_dim", 0),
            end_dim=_arg(args, kwargs, 2, "end_dim", -1),
        ),
    )


def _cat(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    tensors = _arg(args, kwargs, 0, "tensors", ())
    return OpCall(
        "cat", [tensor_shape(t) for t in tensors], dict(dim=int(_arg(args, kwargs, 1, "dim", 0)))
    )


def _elementwise(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    other = _arg(args, kwargs, 1, "other", None)
    return OpCall("elementwise", [tensor_shape(args[0]), tensor_shape(other)])


def _matmul(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    return OpCall(
        "matmul",
        [
            tensor_shape(args[0]),
            tensor_shape(_arg(args, kwargs, 1, "other", None) if len(args) < 2 else args[1]),
        ],
    )


def _norm_channels(w_pos: int, b_pos: int) -> Adapter:
    # group_norm(input, num_groups, weight, bias), instance_norm(input, rm, rv, weight, bias)
    def adapter(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
        w = _arg(args, kwargs, w_pos, "weight", None)
        b = _arg(args, kwargs, b_pos, "bias", None)
        return OpCall(
            "batch_norm",
            [tensor_shape(args[0])],
            dict(affine=w is not None),
            biases=(b,) if b is not None else (),
        )

    return adapter


def _sdpa(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    q = _arg(args, kwargs, 0, "query", None)
    k = _arg(args, kwargs, 1, "key", None)
    v = _arg(args, kwargs, 2, "value", None)
    return OpCall("attention", [tensor_shape(q), tensor_shape(k), tensor_shape(v)])


def _addmm(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    # addmm(bias, a, b) / baddbmm(bias, a, b): the product's MACs; the add is the bias.
    return OpCall("matmul", [tensor_shape(args[1]), tensor_shape(args[2])], biases=(args[0],))


def _interpolate(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> OpCall:
    mode = _arg(args, kwargs, 3, "mode", "nearest")
    # Price at the size torch chose (scale factors may round either way).
    return OpCall(
        "upsample",
        [tensor_shape(args[0])],
        dict(size=tensor_shape(out)[2:], mode=mode),
    )


# -- the built-in table -----------------------------------------------------------------


_OWNERS: dict[str, Any] = {"torch": torch, "F": F, "Tensor": torch.Tensor}


def _fns(names: str) -> list[Any]:
    """The functions named ``owner.name`` (owner ``torch``, ``F`` or ``Tensor``), in order."""
    out = []
    for dotted in names.split():
        owner, name = dotted.split(".")
        out.append(getattr(_OWNERS[owner], name))
    return out


def _builtin_table() -> list[tuple[Adapter, str | None, list[Any]]]:
    """The built-in torch functions: ``(adapter, row type or None, functions)`` rows, in
    registration order (a function listed twice keeps its first row). The row type defaults
    to the function's ``__name__`` without underscores (``Tensor.__add__`` -> ``add``)."""
    return [
        (_conv, None, _fns("torch.conv1d torch.conv2d torch.conv3d")),
        (_linear, None, _fns("F.linear")),
        (
            _max_pool,
            None,
            _fns(
                "F.max_pool1d F.max_pool2d F.max_pool3d torch.max_pool1d torch.max_pool2d "
                "torch.max_pool3d F.max_pool1d_with_indices F.max_pool2d_with_indices "
                "F.max_pool3d_with_indices"
            ),
        ),
        (_avg_pool, None, _fns("F.avg_pool1d F.avg_pool2d F.avg_pool3d")),
        (
            _adaptive,
            None,
            _fns(
                "F.adaptive_avg_pool1d F.adaptive_avg_pool2d F.adaptive_avg_pool3d "
                "F.adaptive_max_pool1d F.adaptive_max_pool2d F.adaptive_max_pool3d"
            ),
        ),
        (_batch_norm, None, _fns("F.batch_norm")),
        (_layer_norm, None, _fns("F.layer_norm")),
        (
            _pointwise,
            None,
            _fns(
                "F.relu F.relu_ torch.relu torch.relu_ Tensor.relu Tensor.relu_ F.relu6 F.elu "
                "F.selu F.leaky_relu F.gelu F.silu F.mish F.hardswish F.hardsigmoid "
                "F.hardtanh F.softplus F.sigmoid torch.sigmoid Tensor.sigmoid F.tanh "
                "torch.tanh Tensor.tanh F.dropout F.dropout1d F.dropout2d F.dropout3d "
                "F.alpha_dropout F.threshold"
            ),
        ),
        (
            _softmax,
            None,
            _fns(
                "F.softmax F.log_softmax Tensor.softmax Tensor.log_softmax torch.softmax "
                "torch.log_softmax"
            ),
        ),
        (_flatten, None, _fns("torch.flatten Tensor.flatten")),
        (
            _view,
            None,
            _fns(
                "Tensor.view Tensor.reshape torch.reshape Tensor.permute torch.permute "
                "Tensor.transpose torch.transpose Tensor.t torch.t Tensor.squeeze "
                "torch.squeeze Tensor.unsqueeze torch.unsqueeze Tensor.__getitem__ "
                "Tensor.contiguous Tensor.expand Tensor.view_as Tensor.reshape_as torch.chunk "
                "Tensor.chunk torch.split Tensor.split Tensor.clone torch.clone"
            ),
        ),
        (
            _reduce,
            None,
            _fns("torch.mean Tensor.mean torch.sum Tensor.sum torch.amax Tensor.amax"),
        ),
        (_cat, None, _fns("torch.cat torch.concat torch.concatenate")),
        (
            _elementwise,
            None,
            _fns(
                "torch.add Tensor.add Tensor.add_ Tensor.__add__ Tensor.__radd__ "
                "Tensor.__iadd__ torch.sub Tensor.sub Tensor.sub_ Tensor.__sub__ "
                "Tensor.__rsub__ Tensor.__isub__ torch.mul Tensor.mul Tensor.mul_ "
                "Tensor.__mul__ Tensor.__rmul__ Tensor.__imul__ torch.div Tensor.div "
                "Tensor.div_ Tensor.__truediv__ Tensor.__rtruediv__ Tensor.__itruediv__"
            ),
        ),
        (
            _matmul,
            "matmul",
            _fns(
                "torch.matmul Tensor.matmul Tensor.__matmul__ torch.mm Tensor.mm torch.bmm "
                "Tensor.bmm"
            ),
        ),
        (_interpolate, "upsample", _fns("F.interpolate")),
        (_norm_channels(2, 3), None, _fns("F.group_norm")),
        (_norm_channels(3, 4), None, _fns("F.instance_norm")),
        (_sdpa, "attention", _fns("F.scaled_dot_product_attention")),
        (_addmm, None, _fns("torch.addmm torch.baddbmm")),
        # Data movement without arithmetic: priced by what they actually write.
        (
            _view,
            None,
            _fns(
                "torch.stack F.pad F.embedding Tensor.repeat Tensor.expand_as Tensor.to "
                "Tensor.float Tensor.double Tensor.half Tensor.long Tensor.int Tensor.bool "
                "Tensor.type_as Tensor.detach torch.squeeze Tensor.unflatten torch.unflatten "
                "Tensor.narrow torch.narrow Tensor.select Tensor.unbind torch.unbind"
            ),
        ),
    ]


def _ignored_table() -> list[tuple[str, list[Any]]]:
    """Calls listed in the ledger as ignored: ``(reason, functions)`` rows."""
    return [
        (
            "metadata read: no arithmetic, no memory",
            _fns(
                "Tensor.dim Tensor.size Tensor.numel Tensor.stride Tensor.is_contiguous "
                "Tensor.__len__ Tensor.nelement Tensor.ndimension Tensor.element_size "
                "Tensor.is_floating_point Tensor.get_device Tensor.is_complex"
            ),
        ),
        (
            "tensor creation: no arithmetic (NB: its memory is not counted)",
            _fns(
                "torch.zeros torch.ones torch.empty torch.full torch.arange torch.zeros_like "
                "torch.ones_like torch.empty_like torch.full_like torch.tensor "
                "torch.as_tensor torch.randn torch.rand torch.randint torch.linspace "
                "torch.eye Tensor.new_zeros Tensor.new_ones Tensor.new_empty Tensor.new_full "
                "Tensor.new_tensor"
            ),
        ),
    ]


def ensure_builtins() -> None:
    """Load the built-in table into the registry (once; later calls do nothing)."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    for adapter, name, fns in _builtin_table():
        for fn in fns:
            if fn not in _TORCH_OPS:
                _add_torch_op(fn, adapter, name)
    for reason, fns in _ignored_table():
        for fn in fns:
            _IGNORED[fn] = reason


def conv_module_adapter(module: Any, shapes: list[Shape]) -> OpCall:
    """Module adapter pricing any ``nn.ConvNd``-like module (``out_channels``,
    ``kernel_size``, ``stride``, ``padding``, ``dilation``, ``groups``, ``bias``) with the
    ``conv`` formula; for modules whose forward cannot run on meta tensors (custom kernels)."""
    return OpCall(
        "conv",
        shapes[:1],
        conv_settings(
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


def conv_relu_pool_module_adapter(module: Any, shapes: list[Shape]) -> list[OpCall]:
    """Module adapter for a fused conv -> ReLU -> max-pool (``dlsys.kernels.ConvReLUPool``:
    the conv's attributes plus ``pool``, ``pool_stride`` (None: ``pool``), ``pool_padding``):
    the three parts, each priced as the unfused ``nn.Conv2d``, ``nn.ReLU`` and
    ``nn.MaxPool2d`` are."""
    pool = dict(
        kernel=module.pool,
        stride=module.pool_stride,
        padding=module.pool_padding,
        dilation=1,
        ceil_mode=False,
    )
    return [
        conv_module_adapter(module, shapes),
        OpCall("pointwise", []),
        OpCall("max_pool", [], pool),
    ]


#: dlsys's own kernel modules, by import path: priced as leaves (their custom ops have no
#: formula of their own). A type is looked up here only when a traced model contains it,
#: so dlsys.analytics never imports dlsys.kernels.
KNOWN_MODULES: dict[str, ModuleAdapter] = {
    "dlsys.kernels.modules.Conv2d": conv_module_adapter,
    "dlsys.kernels.modules.ConvReLUPool": conv_relu_pool_module_adapter,
}
