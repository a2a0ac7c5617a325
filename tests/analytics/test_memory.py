"""Memory estimates (bytes) and the roofline time, checked by hand."""

from __future__ import annotations

import pytest
from torch import nn

from dlsys.analytics import cost
from dlsys.analytics.builder import Input, Linear, Net
from dlsys.analytics.memory import inference_memory, peak_activations, training_memory
from dlsys.analytics.roofline import DEVICES, Device, get_device, roofline


def test_cnn_inference_memory() -> None:
    r = cost("cnn")
    # Live at once: pool1 reads conv1's 64*22*22 = 30,976 and writes 64*11*11 = 7,744
    # (the input 784 is freed after conv1; ReLU is in place) -> 38,720 elements
    assert peak_activations(r) == 30_976 + 7_744 == 38_720
    m = inference_memory(r)
    assert m.weights == 80_650 * 4 == 322_600
    assert m.activations == 38_720 * 4
    assert m.total == 322_600 + 154_880


def test_cnn_training_memory_per_optimizer() -> None:
    r = cost("cnn", batch=32)
    p = 80_650 * 4  # float32 bytes of the weights
    acts = 32 * 39_514 * 4  # input 784 + conv 30,976 + pool 7,744 + fc 10 = 39,514 per sample
    assert r.totals["activations"] == 32 * 39_514
    sgd = training_memory(r, "sgd")
    assert (sgd.weights, sgd.gradients, sgd.optimizer, sgd.activations) == (p, p, 0, acts)
    assert training_memory(r, "momentum").optimizer == p
    assert training_memory(r, "adam").total == p + p + 2 * p + acts
    assert training_memory(r, "adam", dtype="bfloat16").weights == 80_650 * 2
    with pytest.raises(ValueError, match="did you mean 'adam'"):
        training_memory(r, "adma")


def test_peak_follows_real_allocation_in_traced_models() -> None:
    # conv (3x10x10 -> 8x8x8 = 512), ReLU *not* in place (new 512), conv -> 8x6x6 = 288.
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
    # step relu: conv1 out 512 + relu out 512 alive = 1,024 (the input 300 is freed)
    assert peak_activations(cost(m, (3, 10, 10))) == 1_024
    m_inplace = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(inplace=True), nn.Conv2d(8, 8, 3))
    # in place: input 300 + conv1 512 = 812 is the peak; then 512 + 288 = 800
    assert peak_activations(cost(m_inplace, (3, 10, 10))) == 812


def test_vgg19_peak_is_two_first_block_maps() -> None:
    # conv1_2 reads conv1_1's 64*224*224 and writes as many: 2 * 3,211,264
    assert peak_activations(cost("vgg19")) == 2 * 3_211_264


def test_roofline_by_hand() -> None:
    r = Net(Input(8), Linear(4, bias=False)).cost()
    # work 2*32 = 64 FLOP; bytes (8 read + 4 written + 32 weights) * 4 = 176
    est = roofline(r, Device("toy", {"float32": 32.0}, 176.0))
    assert est.forward_s == pytest.approx(64 / 32)  # compute bound: 2 s > 176/176 = 1 s
    # backward: the weight gradient only (the input needs none): the forward's work again
    assert est.backward_s == pytest.approx(est.forward_s)
    assert (est.compute_bound_rows, est.memory_bound_rows) == (1, 0)
    slow_mem = roofline(r, "a100", peak_flops=1e12, bandwidth=1.0)
    assert slow_mem.forward_s == pytest.approx(176.0)
    assert slow_mem.memory_bound_rows == 1


def test_device_presets() -> None:
    assert set(DEVICES) == {"a100", "h100", "v100"}
    assert get_device("h100").flops_for("bfloat16") > get_device("a100").flops_for("bfloat16")
    with pytest.raises(ValueError, match="did you mean 'a100'"):
        get_device("a10")
    with pytest.raises(ValueError, match="dtype for device"):
        roofline(cost("mlp"), "v100", "bfloat16")
    cpu = get_device("cpu")
    assert cpu.bandwidth > 0 and cpu.flops_for("float32") > 0
