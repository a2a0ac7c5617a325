"""The op registry: filled from its table once, on first use, never on import."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from dlsys.analytics import ops
from dlsys.analytics.formulas import apply, conv_settings


def test_importing_the_registry_registers_nothing() -> None:
    code = (
        "import dlsys.analytics.ops as ops, dlsys.analytics.trace; "
        "print(len(ops._TORCH_OPS), len(ops._IGNORED)); "
        "ops.ensure_builtins(); ops.ensure_builtins(); "
        "print(len(ops._TORCH_OPS) > 100, len(ops._IGNORED) > 10)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "0", "True", "True"]


def test_builtin_rows_and_default_row_type() -> None:
    name, _ = ops.torch_op(torch.Tensor.__iadd__) or ("?", None)
    assert name == "iadd"  # __name__ without underscores
    assert (ops.torch_op(torch.mm) or ("?", None))[0] == "matmul"  # the row's own type
    assert ops.ignored_reason(torch.Tensor.size) == "metadata read: no arithmetic, no memory"
    assert ops.torch_op(torch.Tensor.size) is None


def test_registering_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="already registered"):
        ops.register_torch_op(F.relu, lambda a, k, o: ops.OpCall("pointwise", []))
    with pytest.raises(ValueError, match="already registered"):
        ops.register_torch_op(torch.zeros, lambda a, k, o: ops.OpCall("pointwise", []))


def test_kernel_conv_module_is_known_by_import_path() -> None:
    from dlsys.kernels.modules import Conv2d

    assert ops.find_module_adapter(Conv2d) is ops.conv_module_adapter
    with pytest.raises(ValueError, match="already registered"):
        ops.register_module(Conv2d, ops.conv_module_adapter)


def test_conv_settings_one_mapping_for_module_and_function_adapters() -> None:
    conv = torch.nn.Conv2d(3, 8, (3, 5), stride=2, padding=(1, 2), dilation=1, groups=1)
    from_module = ops.conv_module_adapter(conv, [(2, 3, 16, 16)])
    w, b = conv.weight, conv.bias
    from_call = ops._conv((torch.empty(2, 3, 16, 16), w, b, (2, 2), (1, 2), (1, 1), 1), {}, None)
    a = apply("conv", from_module.inputs, **from_module.settings)
    c = apply("conv", from_call.inputs, **from_call.settings)
    assert a == c
    # out (2, 8, 8, 8): (16 + 2 - 3) // 2 + 1 = 8 rows, (16 + 4 - 5) // 2 + 1 = 8 columns
    assert a.output_shape == (2, 8, 8, 8)
    assert a.macs == 2 * 8 * 8 * 8 * 3 * 3 * 5  # outputs x (C_in x kh x kw) = 46,080
    assert set(from_module.settings) == set(conv_settings(out_channels=1, kernel=1))
