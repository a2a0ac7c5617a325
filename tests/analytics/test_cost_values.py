"""Required exact values of the cost model, with the hand arithmetic beside each number."""

from __future__ import annotations

import json

import pytest

from dlsys.analytics import Convention, cost, zoo
from dlsys.analytics.report import ROW_KEYS, TOTAL_KEYS

# VGG19 conv layers (Simonyan & Zisserman Table 1, config E), 3x3 kernels, pad 1.
VGG19_CONVS = [  # (in, out, H=W of the output)
    (3, 64, 224), (64, 64, 224),
    (64, 128, 112), (128, 128, 112),
    (128, 256, 56), (256, 256, 56), (256, 256, 56), (256, 256, 56),
    (256, 512, 28), (512, 512, 28), (512, 512, 28), (512, 512, 28),
    (512, 512, 14), (512, 512, 14), (512, 512, 14), (512, 512, 14),
]  # fmt: skip


def test_vgg19_totals_exact() -> None:
    t = cost("vgg19").totals
    # Weights: sum 3*3*in*out over the convs + 25088*4096 + 4096*4096 + 4096*1000
    #   = 20,018,880 + 102,760,448 + 16,777,216 + 4,096,000 = 143,652,544 (the seed's total)
    conv_w = sum(9 * i * o for i, o, _ in VGG19_CONVS)
    assert conv_w == 20_018_880
    assert t["weights"] == conv_w + 102_760_448 + 16_777_216 + 4_096_000 == 143_652_544
    # Biases: one per conv filter and FC unit: 5,504 + 4096 + 4096 + 1000 = 14,696
    assert t["biases"] == sum(o for _, o, _ in VGG19_CONVS) + 4096 + 4096 + 1000 == 14_696
    assert t["params"] == 143_652_544 + 14_696 == 143_667_240
    # MACs: sum H*W*out*9*in over convs + FC weights (one MAC per weight at batch 1)
    conv_macs = sum(h * h * o * 9 * i for i, o, h in VGG19_CONVS)
    assert t["macs"] == conv_macs + 102_760_448 + 16_777_216 + 4_096_000 == 19_632_062_464
    assert t["flops"] == 2 * 19_632_062_464
    # Activations: input 3*224*224 = 150,528, every conv output H*H*out, pools
    # 112*112*64 + 56*56*128 + 28*28*256 + 14*14*512 + 7*7*512, FC 4096 + 4096 + 1000.
    pools = 112 * 112 * 64 + 56 * 56 * 128 + 28 * 28 * 256 + 14 * 14 * 512 + 7 * 7 * 512
    convs = sum(h * h * o for _, o, h in VGG19_CONVS)
    assert t["activations"] == 150_528 + convs + pools + 9_192 == 16_542_184


def test_vgg19_rows_match_the_homework_table() -> None:
    rows = {r.name: r for r in cost("vgg19").layers}
    assert rows["input"].activations == 224 * 224 * 3 == 150_528
    assert rows["conv1_1"].weights == (3 * 3 * 3) * 64 == 1_728
    assert rows["conv1_2"].weights == (3 * 3 * 64) * 64 == 36_864
    assert rows["pool1"].activations == 112 * 112 * 64 == 802_816
    assert rows["conv5_4"].activations == 14 * 14 * 512 == 100_352
    assert rows["fc6"].weights == 7 * 7 * 512 * 4096 == 102_760_448
    assert rows["fc8"].activations == 1000
    assert rows["relu1_1"].activations == 0  # pointwise, in place (homework convention)


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_rows_sum_to_totals(name: str) -> None:
    r = cost(name)
    t = r.totals
    for key in ("weights", "biases", "activations", "macs", "flops"):
        assert sum(getattr(row, key) for row in r.layers) == t[key]
    assert t["params"] == t["weights"] + t["biases"]
    assert all(isinstance(v, int) for v in t.values())


def test_vgg_family_parameter_counts() -> None:
    # torchvision's model tables (same layers without the adaptive pool, which has no params):
    # vgg11 132,863,336; vgg13 133,047,848; vgg16 138,357,544; vgg19 143,667,240;
    # vgg16_bn 138,365,992 (+2 per conv channel: 2 * 4,224 = 8,448).
    assert cost("vgg11").totals["params"] == 132_863_336
    assert cost("vgg13").totals["params"] == 133_047_848
    assert cost("vgg16").totals["params"] == 138_357_544
    assert cost("vgg16_bn").totals["params"] == 138_357_544 + 2 * 4_224 == 138_365_992
    assert cost("vgg19_bn").totals["macs"] == 19_632_062_464  # BN adds no MACs


def test_inception_module_naive_and_reduced() -> None:
    naive = cost("inception", variant="naive")
    reduced = cost("inception", variant="reduced")
    # Output channels: 128 + 192 + 96 + 256 (pool passes input) = 672; 128+192+96+64 = 480
    assert naive.layers[-1].output_shape == (1, 672, 32, 32)
    assert reduced.layers[-1].output_shape == (1, 480, 32, 32)
    # Naive MACs: 32*32 * (256*128 + 9*256*192 + 25*256*96) = 1024 * 1,089,536
    assert naive.totals["macs"] == 1024 * (256 * 128 + 9 * 256 * 192 + 25 * 256 * 96)
    assert naive.totals["macs"] == 1_115_684_864
    # Reduced: 1024 * (256*128 + 256*128 + 9*128*192 + 256*32 + 25*32*96 + 256*64)
    #        = 1024 * 388,096 (the 5x5 reduce reads all 256 input channels)
    assert reduced.totals["macs"] == 1024 * (
        256 * 128 + 256 * 128 + 9 * 128 * 192 + 256 * 32 + 25 * 32 * 96 + 256 * 64
    )
    assert reduced.totals["macs"] == 397_410_304
    # Saving: 1 - 397,410,304 / 1,115,684,864 = 0.6438...
    from dlsys.analytics.api import compare

    saving = dict((m, s) for m, _, _, s in compare("inception_naive", "inception_reduced").rows())
    assert saving["macs"] == pytest.approx(1 - 397_410_304 / 1_115_684_864)


def test_inception_any_filter_counts() -> None:
    f = zoo.InceptionFilters(c1=64, c3_reduce=96, c3=128, c5_reduce=16, c5=32, pool_proj=32)
    r = cost(zoo.inception("reduced", in_channels=192, size=28, filters=f))
    # GoogLeNet inception 3a: 64 + 128 + 32 + 32 = 256 channels at 28x28
    assert r.layers[-1].output_shape == (1, 256, 28, 28)
    # MACs 28*28*(192*64 + 192*96 + 9*96*128 + 192*16 + 25*16*32 + 192*32) = 784 * 163,328
    assert r.totals["macs"] == 784 * (
        192 * 64 + 192 * 96 + 9 * 96 * 128 + 192 * 16 + 25 * 16 * 32 + 192 * 32
    )


def test_small_inception_parameters() -> None:
    # Zhang et al. 2017 Table 1: 1,649,402 (conv biases, batch norm without affine params,
    # second Downsample with 96 filters: 144 -> 240 channels).
    r = cost("small_inception")
    assert r.totals["params"] == 1_649_402
    shapes = {row.name: row.output_shape for row in r.layers}
    assert shapes["downsample2"] == (1, 240, 7, 7)  # 144 + 96 channels, 14 -> 7
    assert shapes["inception3b"] == (1, 336, 7, 7)  # 176 + 160


def test_googlenet_variants() -> None:
    # torchvision googlenet (3x3 "5x5" branch, BN, no aux): 6,624,904 parameters (its docs)
    assert cost("googlenet_torchvision").totals["params"] == 6_624_904
    paper = cost("googlenet")
    assert paper.layers[-1].output_shape == (1, 1000)
    # Inception 3a with the paper's 5x5: 28*28*(16*32*25) MACs in its 5x5 conv = 10,035,200
    row = {r.name: r for r in paper.layers}["inception3a/b3/5x5"]
    assert row.macs == 28 * 28 * 32 * 16 * 25 == 10_035_200


def test_training_models() -> None:
    # MLP: (784+1)*128 + (128+1)*10 = 100,480 + 1,290 = 101,770
    assert cost("mlp").totals["params"] == 101_770
    # CNN: (7*7*1+1)*64 + (64*11*11 + 1)*10 = 3,200 + 77,450 = 80,650
    assert cost("cnn").totals["params"] == 80_650
    # Deeper CNN: 3,200 + (2*2*64+1)*128 + (128*5*5+1)*10 = 3,200 + 32,896 + 32,010 = 68,106
    assert cost("cnn_deep").totals["params"] == 68_106
    # Flooding MLP 784-500-10: 785*500 + 501*10 = 392,500 + 5,010 = 397,510
    assert cost("mlp500").totals["params"] == 397_510


def test_batch_scales_activations_and_macs_not_params() -> None:
    one, eight = cost("cnn").totals, cost("cnn", batch=8).totals
    assert eight["params"] == one["params"]
    assert eight["macs"] == 8 * one["macs"]
    assert eight["activations"] == 8 * one["activations"]


def test_conventions_switch_flops_only() -> None:
    base = cost("cnn")
    withb = cost("cnn", bias=True, elementwise=True)
    # cnn biases: conv1 adds 22*22*64 = 30,976, fc adds 10; elementwise: ReLU 30,976 +
    # pool windows 11*11*64*4 = 30,976
    assert withb.totals["macs"] == base.totals["macs"]
    assert withb.totals["flops"] == base.totals["flops"] + 30_976 + 10 + 30_976 + 30_976
    flop = cost("cnn", convention="flop")
    assert "FLOPs" in flop.to_text() and "MACs" not in flop.to_text().splitlines()[1]
    pw = cost("cnn", convention=Convention(pointwise_activations=True))
    assert pw.totals["activations"] == base.totals["activations"] + 22 * 22 * 64


def test_json_shape_and_formats() -> None:
    r = cost("cnn")
    doc = json.loads(r.to_json())
    assert list(doc) == ["layers", "totals"]
    assert all(list(row) == list(ROW_KEYS) for row in doc["layers"])
    assert list(doc["totals"]) == list(TOTAL_KEYS)
    csv_lines = r.to_csv().splitlines()
    assert csv_lines[-1].startswith("TOTAL,,,80650,")
    md = r.to_markdown()
    assert "| **TOTAL** |" in md and "80,650" in md
    text = r.to_text()
    assert "TOTAL" in text and "80,650" in text
    # Same input, same bytes.
    assert cost("cnn").to_csv() == r.to_csv()
