"""The models of the experiments, with every convolution on dlsys's kernels by default.

``kernels="dlsys"`` builds convolutions from :class:`dlsys.kernels.Conv2d` (a drop-in
``nn.Conv2d``: same state_dict keys and initialisation), each conv -> ReLU -> max-pool of the
CNNs as one fused :class:`dlsys.kernels.ConvReLUPool` (placed at the conv's index in the
``nn.Sequential``, so the state_dict keys are the unfused model's) and the flooding loss from
:class:`dlsys.kernels.FloodingLoss`; ``kernels="torch"`` uses ``nn.Conv2d``, ``nn.ReLU``,
``nn.MaxPool2d`` and ``|F.cross_entropy - b| + b`` for comparison. Same seed, same initial
weights either way, and a checkpoint of one loads into the other.

Model names (:func:`build_model`):

- ``mlp`` / ``mlp:W1,W2,...``: flatten, then Linear+ReLU per hidden width, then Linear to the
  classes (default one hidden layer of 500; the seeds use ``mlp:500`` and ``mlp:128``).
- ``cnn``: the flooding problem's CNN: conv 16 5x5 pad 2, ReLU, max-pool 2, conv 32 5x5 pad 2,
  ReLU, max-pool 2, Linear.
- ``cnn7``: the out-of-distribution problem's 2-layer CNN: conv 64 7x7 (no padding), ReLU,
  max-pool 2, Linear. On 28x28x1 with 10 classes: (7*7*1+1)*64 + (11*11*64+1)*10 = 80,650
  parameters.
- ``cnn7-3``: its 3-layer variant: conv 64 7x7, ReLU, max-pool 2, conv 128 2x2, ReLU,
  max-pool 2, Linear: (7*7+1)*64 + (2*2*64+1)*128 + (5*5*128+1)*10 = 68,106 parameters.
- ``inception``: the small Inception of Zhang et al. 2017 (Figure 3), for any input channels.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlsys.common.errors import unknown_name
from dlsys.common.memory import check_memory

__all__ = [
    "CNN7",
    "KERNELS",
    "MLP",
    "MODELS",
    "FloodingCNN",
    "SmallInception",
    "build_model",
    "conv_class",
    "conv_relu_pool_layers",
    "flooding_loss",
    "parameter_count",
]

#: Kernel back-ends accepted by ``--kernels``.
KERNELS = ("dlsys", "torch")
#: Model names accepted by :func:`build_model` (``mlp`` also takes ``:W1,W2,...``).
MODELS = ("mlp", "cnn", "cnn7", "cnn7-3", "inception")


def _check_kernels(kernels: str) -> str:
    if kernels not in KERNELS:
        raise unknown_name("kernels", str(kernels), KERNELS)
    return kernels


def conv_class(kernels: str = "dlsys") -> Callable[..., nn.Module]:
    """The Conv2d class for ``kernels``: :class:`dlsys.kernels.Conv2d` or ``nn.Conv2d``."""
    if _check_kernels(kernels) == "torch":
        return nn.Conv2d
    try:
        from dlsys.kernels import Conv2d
    except ImportError as exc:  # the compiled module dlsys.kernels._C was not built
        raise RuntimeError(
            f"--kernels dlsys: dlsys.kernels.Conv2d is not available ({exc}); use --kernels torch"
        ) from exc
    return Conv2d


def conv_relu_pool_layers(
    kernels: str, index: int, in_channels: int, out_channels: int, kernel_size: int, padding: int
) -> list[tuple[str, nn.Module]]:
    """conv (stride 1) -> ReLU -> max-pool 2 as named layers of an ``nn.Sequential`` from
    position ``index``: ``nn.Conv2d``, ``nn.ReLU`` and ``nn.MaxPool2d(2)`` at ``index`` ..
    ``index + 2`` for ``kernels="torch"``, one :class:`dlsys.kernels.ConvReLUPool` at ``index``
    for ``"dlsys"`` (the same state_dict keys, ``{index}.weight`` and ``{index}.bias``)."""
    if _check_kernels(kernels) == "torch":
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding)
        return [(str(index), conv), (str(index + 1), nn.ReLU()), (str(index + 2), nn.MaxPool2d(2))]
    try:
        from dlsys.kernels import ConvReLUPool
    except ImportError as exc:  # the compiled module dlsys.kernels._C was not built
        raise RuntimeError(
            f"--kernels dlsys: dlsys.kernels.ConvReLUPool is not available ({exc}); use "
            "--kernels torch"
        ) from exc
    block = ConvReLUPool(in_channels, out_channels, kernel_size, padding=padding, pool=2)
    return [(str(index), block)]


class _TorchFloodingLoss(nn.Module):
    """``|cross_entropy(logits, target) - b| + b`` in plain PyTorch (Ishida et al. 2020)."""

    def __init__(self, b: float = 0.0) -> None:
        super().__init__()
        self.b = float(b)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(logits, target)
        if self.b == 0.0:
            return loss
        return (loss - self.b).abs() + self.b


def flooding_loss(b: float = 0.0, kernels: str = "dlsys") -> nn.Module:
    """The mean flooding loss ``|CE - b| + b`` (plain cross-entropy when ``b == 0``).

    ``b`` is the flood level in nats (>= 0); ``kernels`` picks dlsys's fused kernel or torch.
    """
    if isinstance(b, bool) or not isinstance(b, int | float) or not b >= 0.0:
        raise ValueError(f"flood level b: must be a number >= 0, got {b!r}")
    if _check_kernels(kernels) == "torch":
        return _TorchFloodingLoss(b)
    try:
        from dlsys.kernels import FloodingLoss
    except ImportError as exc:
        raise RuntimeError(
            f"--kernels dlsys: dlsys.kernels.FloodingLoss is not available ({exc}); "
            "use --kernels torch"
        ) from exc
    return FloodingLoss(b=float(b))


class MLP(nn.Module):
    """Fully connected ReLU network: flatten, Linear+ReLU per hidden width, Linear to classes.

    ``in_features`` and widths are element counts.
    """

    def __init__(self, in_features: int, widths: Sequence[int], num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        prev = in_features
        for w in widths:
            layers += [nn.Linear(prev, w), nn.ReLU()]
            prev = w
        layers.append(nn.Linear(prev, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FloodingCNN(nn.Module):
    """The flooding problem's CNN: [conv 16 5x5 pad 2, ReLU, pool 2] then [conv 32 5x5 pad 2,
    ReLU, pool 2], then Linear(32 * H/4 * W/4 -> classes)."""

    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int = 10, kernels: str = "dlsys"
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        self.features = nn.Sequential(
            OrderedDict(
                conv_relu_pool_layers(kernels, 0, c, 16, 5, 2)
                + conv_relu_pool_layers(kernels, 3, 16, 32, 5, 2)
            )
        )
        self.classifier = nn.Linear(32 * (h // 2 // 2) * (w // 2 // 2), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class CNN7(nn.Module):
    """The out-of-distribution problem's CNN: conv 64 7x7 (valid), ReLU, max-pool 2, then
    (``deep=True``) conv 128 2x2 (valid), ReLU, max-pool 2, then Linear to classes."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int = 10,
        kernels: str = "dlsys",
        deep: bool = False,
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        h, w = (h - 6) // 2, (w - 6) // 2
        channels = 64
        if deep:
            h, w = (h - 1) // 2, (w - 1) // 2
            channels = 128
        if h < 1 or w < 1:
            raise ValueError(f"input_shape: {input_shape} is too small for the 7x7 CNN")
        layers = conv_relu_pool_layers(kernels, 0, c, 64, 7, 0)
        if deep:
            layers += conv_relu_pool_layers(kernels, 3, 64, 128, 2, 0)
        self.features = nn.Sequential(OrderedDict(layers))
        self.classifier = nn.Linear(channels * h * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class _ConvModule(nn.Module):
    """Zhang et al.'s "Conv module": convolution, batch norm, ReLU.

    As in TensorFlow-slim's ``conv2d(normalizer_fn=batch_norm)`` that the paper's count
    reflects, the convolution has no bias and the batch norm learns a shift (beta) but no
    scale: ``cout`` learnable numbers after the conv weights, not ``3 * cout``.
    """

    def __init__(
        self, conv: Callable[..., nn.Module], cin: int, cout: int, k: int, stride: int = 1
    ) -> None:
        super().__init__()
        self.conv = conv(cin, cout, k, stride=stride, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, affine=False)
        self.shift = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)) + self.shift[:, None, None])


class _Inception(nn.Module):
    """Inception module: a 1x1 conv module (``c1`` filters) beside a 3x3 one (``c3``),
    concatenated along channels (``c1 + c3`` out)."""

    def __init__(self, conv: Callable[..., nn.Module], cin: int, c1: int, c3: int) -> None:
        super().__init__()
        self.b1 = _ConvModule(conv, cin, c1, 1)
        self.b3 = _ConvModule(conv, cin, c3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x)], 1)


class _Downsample(nn.Module):
    """Downsample module: a 3x3 stride-2 conv module (``c3`` filters) beside a 3x3 stride-2
    max-pool, concatenated (``c3 + cin`` out)."""

    def __init__(self, conv: Callable[..., nn.Module], cin: int, c3: int) -> None:
        super().__init__()
        self.conv = _ConvModule(conv, cin, c3, 3, stride=2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.pool(x)], 1)


class SmallInception(nn.Module):
    """The small Inception of Zhang et al. 2017 ("Understanding deep learning requires
    rethinking generalization", Figure 3), with any number of input channels.

    conv module 96 3x3 -> Inception(32, 32) -> Inception(32, 48) -> Downsample(80) ->
    Inception(112, 48) -> Inception(96, 64) -> Inception(80, 80) -> Inception(48, 96) ->
    Downsample(96) -> Inception(176, 160) -> Inception(176, 160) -> global mean pool -> Linear.
    The second Downsample has 96 filters (144 in, 240 out), as in the paper; with 3 input
    channels and 10 classes the model has 1,649,402 parameters (the paper's Table 1).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, kernels: str = "dlsys"):
        super().__init__()
        conv = conv_class(kernels)
        self.features = nn.Sequential(
            _ConvModule(conv, in_channels, 96, 3),
            _Inception(conv, 96, 32, 32),  # 64 out
            _Inception(conv, 64, 32, 48),  # 80 out
            _Downsample(conv, 80, 80),  # 160 out
            _Inception(conv, 160, 112, 48),  # 160
            _Inception(conv, 160, 96, 64),  # 160
            _Inception(conv, 160, 80, 80),  # 160
            _Inception(conv, 160, 48, 96),  # 144
            _Downsample(conv, 144, 96),  # 240
            _Inception(conv, 240, 176, 160),  # 336
            _Inception(conv, 336, 176, 160),  # 336
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(336, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _parse_widths(spec: str) -> list[int]:
    text = spec.partition(":")[2]
    if not text:
        return [500]
    widths = []
    for part in text.split(","):
        try:
            w = int(part)
        except ValueError:
            raise ValueError(
                f"--model {spec!r}: MLP widths must be positive integers, got {part!r}"
            ) from None
        if w < 1:
            raise ValueError(f"--model {spec!r}: MLP widths must be >= 1, got {w}")
        widths.append(w)
    return widths


def build_model(
    name: str,
    input_shape: tuple[int, int, int] = (1, 28, 28),
    num_classes: int = 10,
    kernels: str = "dlsys",
) -> nn.Module:
    """Build model ``name`` (see the module docstring) for images ``(C, H, W)``.

    Initialisation draws from torch's global generator: seed it first for reproducible weights.
    """
    _check_kernels(kernels)
    base = name.partition(":")[0].strip().lower()
    if base not in MODELS:
        raise unknown_name("model", name, MODELS)
    if base != "mlp" and ":" in name:
        raise ValueError(f"--model {name!r}: only 'mlp' takes ':W1,W2,...' widths")
    c, h, w = input_shape
    if base == "mlp":
        widths = _parse_widths(name)
        sizes = [c * h * w, *widths, num_classes]
        params = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
        check_memory(  # 16 bytes a parameter: float32 weight, gradient, two Adam moments
            "--model",
            16 * params,
            "use narrower MLP widths",
            what=f"{name!r} with {params} parameters at 16 bytes each",
        )
        return MLP(c * h * w, widths, num_classes)
    if base == "cnn":
        return FloodingCNN(input_shape, num_classes, kernels)
    if base == "cnn7":
        return CNN7(input_shape, num_classes, kernels)
    if base == "cnn7-3":
        return CNN7(input_shape, num_classes, kernels, deep=True)
    return SmallInception(c, num_classes, kernels)


def parameter_count(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, Any]:
    """Trainable parameter count (elements) of ``model`` from :func:`dlsys.analytics.cost`.

    Returns ``{"params": int, "source": "dlsys.analytics"}``. If the cost model cannot handle
    the model (or is not installed), the count is ``sum(p.numel())`` and ``source`` says
    ``"torch numel"`` with the reason, so a report never hides where the number came from.
    """
    try:
        from dlsys.analytics import cost

        report = cost(model, input_shape=input_shape)
        return {"params": int(report.totals["params"]), "source": "dlsys.analytics"}
    except Exception as exc:
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return {
            "params": int(n),
            "source": f"torch numel (dlsys.analytics unavailable: {type(exc).__name__})",
        }
