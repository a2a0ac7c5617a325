"""One-call answers for the reproduce report, the registry rules and the torch-free builder."""

from __future__ import annotations

import subprocess
import sys

import pytest

import dlsys.analytics as an
from dlsys.analytics.formulas import OpCost


def test_one_call_answers() -> None:
    answers = an.conv_answers()
    one = answers.pop("one_4x4_filter")
    assert answers == {
        "output_6x4": (3, 2),  # floor((6-2)/2)+1, floor((4-2)/2)+1
        "keep_6x4": ((3, 3), (2, 2)),  # totals 6 and 4 split evenly
        "params_4x4_on_22x22": 17,  # 4*4*1 + 1 bias
    }
    # the whole report of that layer: 16 weights + 1 bias; output floor((22-4)/2)+1 = 10
    assert (one.totals["weights"], one.totals["biases"]) == (16, 1)
    assert one.layers[-1].output_shape == (1, 1, 10, 10)
    cmp = an.inception_comparison()
    rows = {m: (a, b) for m, a, b, _ in cmp.rows()}
    assert rows["output shape"] == ((1, 672, 32, 32), (1, 480, 32, 32))
    assert rows["macs"] == (1_115_684_864, 397_410_304)
    assert cmp.as_dict()["saving"]["macs"] == pytest.approx(0.64380, abs=1e-5)
    assert an.vgg19_table().totals["params"] == 143_667_240


def test_registry_rejects_duplicates_and_lists_names() -> None:
    assert {"conv", "linear", "max_pool", "cat", "elementwise", "matmul"} <= set(an.formula_names())
    with pytest.raises(ValueError, match="'conv' is already registered"):
        an.register_formula("conv", lambda inputs, **kw: OpCost(output_shape=()))
    with pytest.raises(TypeError, match="must be callable"):
        an.register_formula("test_not_callable", 3)  # type: ignore[arg-type]


def test_formulas_by_hand() -> None:
    # conv1d: (2, 4, 10) with 6 filters of 3, stride 2: out (10-3)//2+1 = 4;
    # MACs 2*6*4 * 4*3 = 576
    c = an.apply("conv", [(2, 4, 10)], out_channels=6, kernel=3, stride=2)
    assert c.output_shape == (2, 6, 4) and c.macs == 576 and c.weights == 72 and c.biases == 6
    # matmul (3, 5, 7) @ (7, 2): batch 3, 5*7*2 = 70 each -> 210 MACs
    m = an.apply("matmul", [(3, 5, 7), (7, 2)])
    assert m.output_shape == (3, 5, 2) and m.macs == 210
    # broadcasting add (4, 1, 3) + (5, 1): out (4, 5, 3), 60 additions
    e = an.apply("elementwise", [(4, 1, 3), (5, 1)])
    assert e.output_shape == (4, 5, 3) and e.elementwise == 60
    # nearest upsample x2 of (1, 3, 4, 4): (1, 3, 8, 8), no arithmetic
    u = an.apply("upsample", [(1, 3, 4, 4)], scale_factor=2)
    assert u.output_shape == (1, 3, 8, 8) and u.elementwise == 0


def test_builder_needs_no_torch() -> None:
    code = (
        "import sys, dlsys.analytics as a; r = a.cost('vgg19'); "
        "assert r.totals['macs'] == 19632062464; assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_residual_builder_matches_its_module() -> None:
    net = an.Net(
        an.Input(8, 6, 6),
        an.Add([an.Conv(8, 3, padding=1), an.BatchNorm(), an.ReLU(), an.Conv(8, 3, padding=1)], []),
        an.ReLU(),
        an.AdaptiveAvgPool(1),
        an.Flatten(),
        an.Linear(4),
        name="resblock",
    )
    built = net.cost(batch=2)
    # two convs: 2*8*6*6 outputs * 8*9 = 41,472 MACs each; fc 2*8*4 = 64
    assert built.totals["macs"] == 2 * 41_472 + 64
    # the residual add: one addition per element of (2, 8, 6, 6) = 576
    assert [r.elementwise for r in built.layers if r.type == "add"] == [576]
    traced = an.cost(net.to_module(), (8, 6, 6), batch=2)
    assert traced.totals == built.totals


def test_inception_naive_peak_memory() -> None:
    r = an.cost("inception_naive")
    # While the pool branch runs, the input (256*1024) and every branch output are alive:
    # 262,144 + (128 + 192 + 96 + 256) * 1024 = 950,272; at the concat the branch outputs
    # (688,128) and the concatenated copy (688,128) are: 1,376,256, the peak.
    assert an.peak_activations(r) == 2 * 688_128 == 1_376_256
