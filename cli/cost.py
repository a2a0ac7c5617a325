"""``dlsys cost``: what an architecture costs (parameters, activations, MACs, memory, time).

Three forms share one parser:

- ``dlsys cost MODEL`` — a zoo name, ``inception --variant naive|reduced`` or
  ``module:pkg.mod.factory`` (any importable function returning an nn.Module);
- ``dlsys cost conv --input 6,4 --kernel 2 --stride 2`` — convolution arithmetic;
- ``dlsys cost compare A B`` — two models side by side with the saving.
"""

from __future__ import annotations

import argparse
import importlib
import math
from typing import Any

from dlsys.analytics import cost, zoo
from dlsys.analytics.api import Comparison
from dlsys.analytics.builder import Net
from dlsys.analytics.convarith import conv_output_size, keep_padding, receptive_field
from dlsys.analytics.memory import inference_memory, training_memory
from dlsys.analytics.roofline import roofline
from dlsys.cli.common import add_command, add_json_flag, add_out_flag, print_json
from dlsys.common.io import atomic_write_text, dumps, output_dir


def _ints(field: str, text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"{field}: expected comma-separated integers such as 3,224,224, got {text!r}"
        ) from None
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"{field}: sizes must be positive integers, got {text!r}")
    return values


def _nonneg_ints(field: str, text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise ValueError(f"{field}: expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise ValueError(f"{field}: must be integers >= 0, got {text!r}")
    return values


def load_model(spec: str, variant: str | None = None) -> Any:
    """A zoo net for a name, or the nn.Module (or Net) a ``module:pkg.mod.factory`` returns."""

    if spec.startswith("module:"):
        path = spec[len("module:") :]
        mod_name, _, attr = path.rpartition(".")
        if not mod_name or not attr:
            raise ValueError(f"MODEL: expected module:package.module.factory, got {spec!r}")
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as exc:
            raise ValueError(f"MODEL {spec!r}: cannot import {mod_name!r}: {exc}") from None
        factory = getattr(mod, attr, None)
        if not callable(factory):
            raise ValueError(f"MODEL {spec!r}: {mod_name!r} has no callable {attr!r}")
        try:
            model = factory()
        except Exception as exc:
            raise ValueError(f"MODEL {spec!r}: calling {attr}() failed: {exc}") from None

        if isinstance(model, Net):
            return model
        import torch

        if not isinstance(model, torch.nn.Module):
            raise TypeError(
                f"MODEL {spec!r}: the factory returned {type(model).__name__}, "
                "not a torch.nn.Module"
            )
        return model
    options = {}
    if variant is not None:
        if spec != "inception":
            raise ValueError(f"--variant: only for MODEL 'inception', got MODEL {spec!r}")
        options["variant"] = variant
    return zoo.get(spec, **options)


def _report(args: argparse.Namespace, spec: str) -> Any:

    model = load_model(spec, args.variant)
    shape = _ints("--input", args.input)
    if shape is None and not hasattr(model, "layers"):
        raise ValueError("--input: required for module: models, e.g. --input 3,224,224")
    return cost(
        model,
        shape,
        batch=args.batch,
        convention=args.convention,
        bias=args.bias,
        elementwise=args.elementwise,
        allow_uncountable=args.allow_uncountable,
    )


def _extras(args: argparse.Namespace, report: Any) -> dict[str, Any]:

    out: dict[str, Any] = {}
    if args.memory:
        out["memory"] = {
            "inference": inference_memory(report, args.dtype).as_dict(),
            "training": training_memory(report, args.optimizer, args.dtype).as_dict(),
        }
    if args.device:
        est = roofline(report, args.device, args.dtype)
        out["roofline"] = {
            "device": est.device,
            "dtype": est.dtype,
            "batch": est.batch,
            "forward_s": est.forward_s,
            "backward_s": est.backward_s,
        }
    return out


def _run_model(args: argparse.Namespace) -> int:
    if args.rest:
        raise ValueError(f"unexpected arguments after MODEL: {' '.join(args.rest)}")
    report = _report(args, args.model)
    extras = _extras(args, report)
    fmt = "json" if args.json else args.format
    if args.out:
        with output_dir(args.out) as stage:
            assert stage is not None
            atomic_write_text(stage / "cost.json", report.to_json() + "\n")
            atomic_write_text(stage / "cost.csv", report.to_csv())
            atomic_write_text(stage / "cost.md", report.to_markdown(args.dtype))
            atomic_write_text(stage / "cost.txt", report.to_text(args.dtype))
    if fmt == "json":
        print_json({**report.as_dict(), **extras})
        return 0
    print(report.format(fmt, args.dtype), end="")
    if extras:
        print(dumps(extras))
    return 0


def _run_conv(args: argparse.Namespace) -> int:

    size = _ints("--input", args.input)
    if size is None:
        raise ValueError("--input: required for 'cost conv', e.g. --input 6,4")
    n = len(size)

    def per_axis(field: str, text: str, minimum: int) -> tuple[int, ...]:
        v = _nonneg_ints(field, text)
        if len(v) == 1:
            v = v * n
        if len(v) != n:
            raise ValueError(
                f"{field}: give 1 or {n} values (one per axis of --input), got {text!r}"
            )
        if any(x < minimum for x in v):
            raise ValueError(f"{field}: must be >= {minimum}, got {text!r}")
        return v

    k = per_axis("--kernel", args.kernel, 1)
    s = per_axis("--stride", args.stride, 1)
    p = per_axis("--padding", args.padding, 0)
    d = per_axis("--dilation", args.dilation, 1)
    out = conv_output_size(size, k, s, p, d, ceil_mode=args.ceil_mode)
    keep = keep_padding(size, k, s, d)
    try:
        keep_sym: Any = keep_padding(size, k, s, d, symmetric=True)
    except ValueError:
        keep_sym = None
    rf = receptive_field([(k[0], s[0], p[0], d[0])])
    per_filter = args.channels * int(math.prod(k)) + 1
    result = {
        "input": list(size),
        "kernel": list(k),
        "stride": list(s),
        "padding": list(p),
        "dilation": list(d),
        "ceil_mode": args.ceil_mode,
        "output": list(out),
        "keep_padding": [list(x) for x in keep],
        "keep_padding_symmetric": None if keep_sym is None else [list(x) for x in keep_sym],
        "receptive_field": rf.size,
        "params_per_filter": per_filter,
        "params": per_filter * args.filters,
    }
    if args.json:
        print_json(result)
        return 0
    x = "x".join
    print(f"input {x(map(str, size))}, kernel {x(map(str, k))}, stride {x(map(str, s))}, "
          f"padding {x(map(str, p))}, dilation {x(map(str, d))}"
          + (", ceil_mode" if args.ceil_mode else ""))  # fmt: skip
    print(f"output size: {x(map(str, out))}")
    pads = ", ".join(f"axis {i}: before {a}, after {b}" for i, (a, b) in enumerate(keep))
    print(f"padding that keeps {x(map(str, size))}: {pads}")
    if keep_sym is not None and keep_sym != keep:
        pads = ", ".join(f"axis {i}: {a} each side" for i, (a, _) in enumerate(keep_sym))
        print(f"symmetric padding that keeps it: {pads}")
    elif keep_sym is None:
        print("no symmetric padding keeps it (odd total padding)")
    print(f"receptive field of one output (axis 0): {rf.size}")
    print(
        f"parameters: {args.filters} filter(s) x ({x(map(str, k))} x {args.channels} channel(s) "
        f"+ 1 bias) = {result['params']:,}"
    )
    return 0


def _run_compare(args: argparse.Namespace) -> int:

    if len(args.rest) != 2:
        raise ValueError(
            f"compare: expected two models (e.g. compare inception_naive inception_reduced), "
            f"got {len(args.rest)}: {' '.join(args.rest) or '(none)'}"
        )
    cmp = Comparison(_report(args, args.rest[0]), _report(args, args.rest[1]))
    if args.json:
        print_json(cmp.as_dict())
    else:
        print(cmp.to_text(), end="")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.model == "conv":
        return _run_conv(args)
    if args.model == "compare":
        return _run_compare(args)
    return _run_model(args)


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "cost",
        help="parameters, activations, MACs, memory and time of an architecture",
        description=(
            "Exact cost of a model (MAC = one multiply-accumulate; FLOP = 2 x MAC).\n\n"
            "MODEL is a zoo name: vgg11 vgg13 vgg16 vgg19 (and _bn), googlenet,\n"
            "googlenet_torchvision, inception (--variant), inception_naive, inception_reduced,\n"
            "small_inception, mlp, mlp500, cnn, cnn_deep, mnist_cnn; or module:pkg.mod.factory\n"
            "(any importable function returning an nn.Module; give --input).\n"
            "'cost conv' does convolution arithmetic; 'cost compare A B' compares two models."
        ),
        example=(
            "dlsys cost vgg19\n"
            "dlsys cost inception --variant naive --json\n"
            "dlsys cost compare inception_naive inception_reduced\n"
            "dlsys cost conv --input 6,4 --kernel 2 --stride 2\n"
            "dlsys cost module:torch.nn.Identity --input 3,8,8"
        ),
    )
    parser.add_argument(
        "model", metavar="MODEL", help="zoo name, module:path.factory, conv or compare"
    )
    parser.add_argument("rest", nargs="*", metavar="ARG", help="the two models of 'compare'")
    parser.add_argument("--input", metavar="C,H,W", help="input shape without batch (conv: H,W)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--variant", choices=["naive", "reduced"], help="Inception variant")
    parser.add_argument("--convention", choices=["mac", "flop"], default="mac",
                        help="work unit shown in tables (FLOP = 2 x MAC)")  # fmt: skip
    parser.add_argument("--bias", action="store_true", help="add bias adds to FLOPs")
    parser.add_argument("--elementwise", action="store_true", help="add elementwise work to FLOPs")
    parser.add_argument("--format", choices=["text", "md", "csv", "json"], default="text")
    parser.add_argument("--dtype", default="float32", help="dtype for bytes (default float32)")
    parser.add_argument("--memory", action="store_true", help="also report memory (bytes)")
    parser.add_argument("--optimizer", default="adam", choices=["sgd", "momentum", "adam", "adamw"],
                        help="optimizer state for --memory training (default adam)")  # fmt: skip
    parser.add_argument("--device", help="roofline time on a100, h100, v100 or cpu")
    parser.add_argument("--allow-uncountable", action="store_true",
                        help="list ops without a formula as ignored, not an error")  # fmt: skip
    conv = parser.add_argument_group("cost conv")
    conv.add_argument("--kernel", default="3", help="kernel size(s), e.g. 2 or 2,2")
    conv.add_argument("--stride", default="1", help="stride(s)")
    conv.add_argument("--padding", default="0", help="padding on each side, per axis")
    conv.add_argument("--dilation", default="1", help="dilation(s)")
    conv.add_argument("--ceil-mode", action="store_true", help="pooling ceil_mode")
    conv.add_argument("--channels", type=int, default=1, help="input channels (for parameters)")
    conv.add_argument("--filters", type=int, default=1, help="number of filters (for parameters)")
    add_json_flag(parser)
    add_out_flag(parser)
    parser.set_defaults(func=run)
