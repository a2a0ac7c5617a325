"""Model zoo: the architectures of the homework and the training experiments, as builder nets.

Every factory returns a :class:`~dlsys.analytics.builder.Net` (no torch needed); call
``.to_module()`` for the equivalent ``nn.Module``. Names for :func:`get` (and ``dlsys cost``):

- ``vgg11``/``vgg13``/``vgg16``/``vgg19`` (Simonyan & Zisserman 2015, configs A/B/D/E) and
  the ``_bn`` variants (batch norm after every conv), 3x224x224, 1000 classes, no adaptive
  pooling (the paper's network).
- ``googlenet`` (Szegedy et al. 2015, Table 1: 5x5 branch, conv biases, no batch norm;
  NB: the paper's local response normalisation layers are left out: no parameters, no MACs)
  and ``googlenet_torchvision`` (3x3 in the "5x5" branch, batch norm, no conv biases, no
  auxiliary classifiers: torchvision's ``googlenet``).
- ``inception`` (one module, ``variant="naive"|"reduced"``, any filter counts; default the
  homework's 32x32x256 input with 1x1 128, 3x3 192 (reduce 128), 5x5 96 (reduce 32), pool
  projection 64), also ``inception_naive`` and ``inception_reduced``.
- ``small_inception`` (Zhang et al. 2017, Figure 3, 3x28x28 CIFAR-10 crops: 1,649,402
  parameters = conv biases + batch norm without affine parameters).
- ``mlp`` (784-128-10), ``mlp500`` (784-500-10), ``cnn`` (conv 7x7x64 + 2x2 pool + FC,
  80,650), ``cnn_deep`` (+ conv 2x2x128 + 2x2 pool, 68,106), ``mnist_cnn`` (two 5x5 convs
  16/32 with pooling, the flooding homework's CNN), all on 1x28x28.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dlsys.analytics.builder import (
    AdaptiveAvgPool,
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
    Spec,
)
from dlsys.common.errors import unknown_name

#: VGG configurations A, B, D, E (Simonyan & Zisserman 2015, Table 1): conv widths, M = pool.
VGG_CONFIGS: dict[str, list[int | str]] = {
    name: [int(v) if v != "M" else v for v in spec.split()]
    for name, spec in {
        "vgg11": "64 M 128 M 256 256 M 512 512 M 512 512 M",
        "vgg13": "64 64 M 128 128 M 256 256 M 512 512 M 512 512 M",
        "vgg16": "64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M",
        "vgg19": "64 64 M 128 128 M 256 256 256 256 M 512 512 512 512 M 512 512 512 512 M",
    }.items()
}


def vgg(
    depth: int = 19, *, batch_norm: bool = False, num_classes: int = 1000, in_channels: int = 3
) -> Net:
    """VGG-11/13/16/19 at 3x224x224: 3x3 convs (pad 1), 2x2 max pools, FC 4096-4096-classes.

    Rows are named ``conv<block>_<i>``, ``pool<block>``, ``fc6``..``fc8`` as in the paper.
    """
    key = f"vgg{depth}"
    if key not in VGG_CONFIGS:
        raise ValueError(f"depth: must be 11, 13, 16 or 19, got {depth!r}")
    layers: list[Spec] = []
    block, i = 1, 1
    for v in VGG_CONFIGS[key]:
        if v == "M":
            layers.append(MaxPool(2, name=f"pool{block}"))
            block, i = block + 1, 1
            continue
        assert isinstance(v, int)
        layers.append(Conv(v, 3, padding=1, name=f"conv{block}_{i}"))
        if batch_norm:
            layers.append(BatchNorm(name=f"bn{block}_{i}"))
        layers.append(ReLU(name=f"relu{block}_{i}"))
        i += 1
    layers += [
        Flatten(name="flatten"),
        Linear(4096, in_features=512 * 7 * 7, name="fc6"),
        ReLU(name="relu6"),
        Dropout(0.5, name="drop6"),
        Linear(4096, name="fc7"),
        ReLU(name="relu7"),
        Dropout(0.5, name="drop7"),
        Linear(num_classes, name="fc8"),
    ]
    return Net(Input(in_channels, 224, 224), *layers, name=key + ("_bn" if batch_norm else ""))


@dataclass(frozen=True)
class InceptionFilters:
    """Filter counts of an Inception module (GoogLeNet Table 1 columns).

    ``c1``: 1x1 branch; ``c3_reduce``/``c3``: 1x1 reduction then 3x3; ``c5_reduce``/``c5``:
    1x1 reduction then 5x5; ``pool_proj``: 1x1 after the 3x3 max pool. Default: the
    homework's module (128, 128/192, 32/96, 64).
    """

    c1: int = 128
    c3_reduce: int = 128
    c3: int = 192
    c5_reduce: int = 32
    c5: int = 96
    pool_proj: int = 64


def _conv_block(
    c: int, k: int, *, stride: int = 1, padding: int = 0, bn: bool, bn_affine: bool = True,
    conv_bias: bool = True, name: str,
) -> list[Spec]:  # fmt: skip
    layers: list[Spec] = [Conv(c, k, stride=stride, padding=padding, bias=conv_bias, name=name)]
    if bn:
        layers.append(BatchNorm(affine=bn_affine, name=name + "_bn"))
    layers.append(ReLU(name=name + "_relu"))
    return layers


def inception_block(
    f: InceptionFilters,
    *,
    variant: str = "reduced",
    five: int = 5,
    bn: bool = False,
    name: str = "inception",
) -> Concat:
    """One Inception module as a :class:`Concat`: ``variant`` ``"naive"`` or ``"reduced"``.

    Naive: 1x1 ``c1``, 3x3 ``c3``, 5x5 ``c5`` and a 3x3 stride-1 max pool passing all input
    channels through. Reduced: adds the 1x1 reductions and the pool projection. ``five``:
    kernel of the "5x5" branch (3 in torchvision). Convs have biases unless ``bn``.
    """
    cb = dict(bn=bn, conv_bias=not bn)
    pad5 = five // 2
    if variant == "naive":
        return Concat(
            _conv_block(f.c1, 1, name="1x1", **cb),
            _conv_block(f.c3, 3, padding=1, name="3x3", **cb),
            _conv_block(f.c5, five, padding=pad5, name=f"{five}x{five}", **cb),
            [MaxPool(3, stride=1, padding=1, name="pool")],
            name=name,
            branch_names=["b1", "b2", "b3", "b4"],
        )
    if variant == "reduced":
        return Concat(
            _conv_block(f.c1, 1, name="1x1", **cb),
            _conv_block(f.c3_reduce, 1, name="3x3_reduce", **cb)
            + _conv_block(f.c3, 3, padding=1, name="3x3", **cb),
            _conv_block(f.c5_reduce, 1, name=f"{five}x{five}_reduce", **cb)
            + _conv_block(f.c5, five, padding=pad5, name=f"{five}x{five}", **cb),
            [
                MaxPool(3, stride=1, padding=1, name="pool"),
                *_conv_block(f.pool_proj, 1, name="pool_proj", **cb),
            ],
            name=name,
            branch_names=["b1", "b2", "b3", "b4"],
        )
    raise unknown_name("inception variant", str(variant), ["naive", "reduced"])


def inception(
    variant: str = "reduced",
    *,
    in_channels: int = 256,
    size: int = 32,
    filters: InceptionFilters | None = None,
) -> Net:
    """One Inception module on ``in_channels`` x ``size`` x ``size`` (homework: 256x32x32).

    Output channels: naive c1 + c3 + c5 + in_channels (128+192+96+256 = 672 by default);
    reduced c1 + c3 + c5 + pool_proj (128+192+96+64 = 480).
    """
    f = filters or InceptionFilters()
    block = inception_block(f, variant=variant, name="inception")
    return Net(Input(in_channels, size, size), block, name=f"inception_{variant}")


#: GoogLeNet Table 1 (Szegedy et al. 2015): (name, c1, c3_reduce, c3, c5_reduce, c5, pool_proj).
GOOGLENET_INCEPTIONS: list[tuple[str, int, int, int, int, int, int]] = [
    ("3a", 64, 96, 128, 16, 32, 32),
    ("3b", 128, 128, 192, 32, 96, 64),
    ("4a", 192, 96, 208, 16, 48, 64),
    ("4b", 160, 112, 224, 24, 64, 64),
    ("4c", 128, 128, 256, 24, 64, 64),
    ("4d", 112, 144, 288, 32, 64, 64),
    ("4e", 256, 160, 320, 32, 128, 128),
    ("5a", 256, 160, 320, 32, 128, 128),
    ("5b", 384, 192, 384, 48, 128, 128),
]


def googlenet(
    *, five_by_five: bool = True, batch_norm: bool = False, num_classes: int = 1000
) -> Net:
    """GoogLeNet at 3x224x224 (Table 1 of the paper), without auxiliary classifiers.

    ``five_by_five=False`` uses 3x3 in the 5x5 branch (torchvision's variant);
    ``batch_norm=True`` puts batch norm after every conv and drops conv biases (torchvision).
    Max pools are 3x3 stride 2 with ceil_mode (224 -> 112 -> 56 -> 28 -> 14 -> 7).
    """
    cb = dict(bn=batch_norm, conv_bias=not batch_norm)
    layers: list[Spec] = [
        *_conv_block(64, 7, stride=2, padding=3, name="conv1", **cb),
        MaxPool(3, stride=2, ceil_mode=True, name="pool1"),
        *_conv_block(64, 1, name="conv2_reduce", **cb),
        *_conv_block(192, 3, padding=1, name="conv2", **cb),
        MaxPool(3, stride=2, ceil_mode=True, name="pool2"),
    ]
    five = 5 if five_by_five else 3
    for name, *counts in GOOGLENET_INCEPTIONS:
        if name in ("4a", "5a"):
            layers.append(MaxPool(3, stride=2, ceil_mode=True, name=f"pool{name[0]}"))
        layers.append(
            inception_block(
                InceptionFilters(*counts), five=five, bn=batch_norm, name=f"inception{name}"
            )
        )
    layers += [
        AdaptiveAvgPool(1, name="avgpool"),
        Flatten(name="flatten"),
        Dropout(0.4, name="dropout"),
        Linear(num_classes, in_features=1024, name="fc"),
    ]
    label = "googlenet" if five_by_five and not batch_norm else "googlenet_variant"
    if not five_by_five and batch_norm:
        label = "googlenet_torchvision"
    return Net(Input(3, 224, 224), *layers, name=label)


def small_inception(*, in_channels: int = 3, size: int = 28, num_classes: int = 10) -> Net:
    """The small Inception of Zhang et al. 2017 ("Understanding deep learning requires
    rethinking generalization"), Figure 3, on ``in_channels`` x ``size`` x ``size``.

    Conv module = conv (with bias) + batch norm (no affine parameters) + ReLU. Inception
    module(c1, c3) = 1x1 conv module with c1 filters || 3x3 conv module with c3 filters.
    Downsample module(c) = 3x3 stride-2 conv module with c filters || 3x3 stride-2 max pool.
    Conv(96) I(32,32) I(32,48) D(80) I(112,48) I(96,64) I(80,80) I(48,96) D(96)
    I(176,160) I(176,160) mean pool FC. The second Downsample has 96 filters (144 in,
    240 out). Parameters at 3 input channels: 1,649,402 (the paper's Table 1).
    """
    cb = dict(bn=True, bn_affine=False, conv_bias=True)

    def inc(c1: int, c3: int, name: str) -> Concat:
        return Concat(
            _conv_block(c1, 1, name="1x1", **cb),
            _conv_block(c3, 3, padding=1, name="3x3", **cb),
            name=name,
            branch_names=["b1", "b2"],
        )

    def down(c: int, name: str) -> Concat:
        return Concat(
            _conv_block(c, 3, stride=2, padding=1, name="conv", **cb),
            [MaxPool(3, stride=2, padding=1, name="pool")],
            name=name,
            branch_names=["b1", "b2"],
        )

    return Net(
        Input(in_channels, size, size),
        *_conv_block(96, 3, padding=1, name="conv1", **cb),
        inc(32, 32, "inception1a"),
        inc(32, 48, "inception1b"),
        down(80, "downsample1"),
        inc(112, 48, "inception2a"),
        inc(96, 64, "inception2b"),
        inc(80, 80, "inception2c"),
        inc(48, 96, "inception2d"),
        down(96, "downsample2"),
        inc(176, 160, "inception3a"),
        inc(176, 160, "inception3b"),
        AdaptiveAvgPool(1, name="avgpool"),
        Flatten(name="flatten"),
        Linear(num_classes, in_features=336, name="fc"),
        name="small_inception",
    )


def mlp(hidden: int = 128, *, num_classes: int = 10, size: int = 28) -> Net:
    """784-hidden-10 MLP on 1x28x28 (784-128-10: 785*128 + 129*10 = 101,770 parameters)."""
    return Net(
        Input(1, size, size),
        Flatten(name="flatten"),
        Linear(hidden, name="fc1"),
        ReLU(name="relu1"),
        Linear(num_classes, name="fc2"),
        name=f"mlp{size * size}-{hidden}-{num_classes}",
    )


def cnn(*, deep: bool = False, num_classes: int = 10, size: int = 28) -> Net:
    """The training experiments' CNN on 1x28x28: conv 7x7x64 (valid) + ReLU + 2x2 max pool
    (+ with ``deep`` conv 2x2x128 + ReLU + 2x2 max pool) + FC.

    28 -> 22 -> 11 (64*11*11 = 7744 features; 3,200 + 77,450 = 80,650 parameters);
    deep: 11 -> 10 -> 5 (128*5*5 = 3200 features; 3,200 + 32,896 + 32,010 = 68,106).
    """
    layers: list[Spec] = [
        Conv(64, 7, name="conv1"),
        ReLU(name="relu1"),
        MaxPool(2, name="pool1"),
    ]
    if deep:
        layers += [Conv(128, 2, name="conv2"), ReLU(name="relu2"), MaxPool(2, name="pool2")]
    layers += [Flatten(name="flatten"), Linear(num_classes, name="fc")]
    return Net(Input(1, size, size), *layers, name="cnn_deep" if deep else "cnn")


def mnist_cnn(*, num_classes: int = 10) -> Net:
    """The flooding homework's CNN on 1x28x28: conv 5x5x16 (pad 2) + ReLU + pool 2,
    conv 5x5x32 (pad 2) + ReLU + pool 2, FC 1568 -> classes."""
    return Net(
        Input(1, 28, 28),
        Conv(16, 5, padding=2, name="conv1"),
        ReLU(name="relu1"),
        MaxPool(2, name="pool1"),
        Conv(32, 5, padding=2, name="conv2"),
        ReLU(name="relu2"),
        MaxPool(2, name="pool2"),
        Flatten(name="flatten"),
        Linear(num_classes, in_features=32 * 7 * 7, name="fc"),
        name="mnist_cnn",
    )


MODELS: dict[str, Callable[..., Net]] = {
    "vgg11": lambda **kw: vgg(11, **kw),
    "vgg13": lambda **kw: vgg(13, **kw),
    "vgg16": lambda **kw: vgg(16, **kw),
    "vgg19": lambda **kw: vgg(19, **kw),
    "vgg11_bn": lambda **kw: vgg(11, batch_norm=True, **kw),
    "vgg13_bn": lambda **kw: vgg(13, batch_norm=True, **kw),
    "vgg16_bn": lambda **kw: vgg(16, batch_norm=True, **kw),
    "vgg19_bn": lambda **kw: vgg(19, batch_norm=True, **kw),
    "googlenet": lambda **kw: googlenet(**kw),
    "googlenet_torchvision": lambda **kw: googlenet(five_by_five=False, batch_norm=True, **kw),
    "inception": lambda **kw: inception(**kw),
    "inception_naive": lambda **kw: inception("naive", **kw),
    "inception_reduced": lambda **kw: inception("reduced", **kw),
    "small_inception": lambda **kw: small_inception(**kw),
    "mlp": lambda **kw: mlp(128, **kw),
    "mlp500": lambda **kw: mlp(500, **kw),
    "cnn": lambda **kw: cnn(**kw),
    "cnn_deep": lambda **kw: cnn(deep=True, **kw),
    "mnist_cnn": lambda **kw: mnist_cnn(**kw),
}


def names() -> list[str]:
    """Zoo model names, sorted."""
    return sorted(MODELS)


def get(name: str, **options: Any) -> Net:
    """The zoo model ``name`` built with ``options`` (e.g. ``variant="naive"``)."""
    if not isinstance(name, str):
        raise TypeError(f"model name: must be a str, got {name!r}")
    try:
        factory = MODELS[name]
    except KeyError:
        raise unknown_name("model", name, MODELS) from None
    try:
        return factory(**options)
    except TypeError as exc:
        raise TypeError(f"model {name!r}: {exc}") from None
