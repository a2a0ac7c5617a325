"""The `dlsys cost` command: exact numbers, the JSON shape, errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlsys.cli.main import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_vgg19_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "cost", "vgg19", "--json")
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert list(doc) == ["layers", "totals"]
    assert doc["totals"] == {
        "params": 143_667_240,
        "weights": 143_652_544,
        "biases": 14_696,
        "activations": 16_542_184,
        "macs": 19_632_062_464,
        "flops": 2 * 19_632_062_464,
        # every layer's weight and input gradient, except conv1_1's input gradient (the image
        # needs none): 2 * 19,632,062,464 - 64 * 224 * 224 * 27 (86,704,128)
        "backward_macs": 2 * 19_632_062_464 - 86_704_128,
    }
    assert list(doc["layers"][1]) == [
        "name", "type", "output_shape", "params", "weights", "biases", "activations", "macs"
    ]  # fmt: skip


def test_inception_variants(capsys: pytest.CaptureFixture[str]) -> None:
    for variant, channels, macs in (("naive", 672, 1_115_684_864), ("reduced", 480, 397_410_304)):
        code, out, _ = _run(capsys, "cost", "inception", "--variant", variant, "--json")
        doc = json.loads(out)
        assert code == 0
        assert doc["layers"][-1]["output_shape"] == [1, channels, 32, 32]
        assert doc["totals"]["macs"] == macs


def test_compare_and_conv(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "cost", "compare", "inception_naive", "inception_reduced")
    assert code == 0 and "1,115,684,864" in out and "397,410,304" in out and "64.38%" in out
    code, out, _ = _run(
        capsys, "cost", "conv", "--input", "6,4", "--kernel", "2", "--stride", "2", "--json"
    )
    doc = json.loads(out)
    assert doc["output"] == [3, 2]  # floor((6-2)/2)+1, floor((4-2)/2)+1
    assert doc["keep_padding_symmetric"] == [[3, 3], [2, 2]]
    code, out, _ = _run(
        capsys, "cost", "conv", "--input", "22,22", "--kernel", "4", "--stride", "2"
    )
    assert code == 0 and "output size: 10x10" in out and "= 17" in out  # 4*4 + 1 bias


def test_formats_and_out_dir(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = _run(capsys, "cost", "cnn", "--format", "csv", "--out", str(tmp_path / "o"))
    assert code == 0 and out.splitlines()[-1].startswith("TOTAL,,,80650,")
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "cost.csv", "cost.json", "cost.md", "cost.txt"
    ]  # fmt: skip
    code, out, _ = _run(capsys, "cost", "mlp", "--convention", "flop", "--format", "md")
    # mlp FLOPs: 2 * (784*128 + 128*10) = 203,264
    assert code == 0 and "| FLOPs |" in out and "**203,264**" in out
    code, out, _ = _run(capsys, "cost", "cnn", "--memory", "--device", "a100", "--json")
    doc = json.loads(out)
    assert doc["memory"]["training"]["total"] == 1_448_456  # see test_memory
    assert doc["roofline"]["forward_s"] > 0


def test_module_factory(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "cost", "module:torch.nn.ReLU", "--input", "4", "--json")
    assert code == 0
    assert [row["type"] for row in json.loads(out)["layers"]] == ["input", "relu"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cost", "vggg19"], "did you mean 'vgg19'"),
        (["cost", "module:no_such_pkg.factory"], "cannot import 'no_such_pkg'"),
        (["cost", "module:dlsys.analytics.zoo.names", "--input", "3"], "not a torch.nn.Module"),
        (["cost", "vgg19", "--input", "3,0,224"], "--input: sizes must be positive"),
        (["cost", "mlp", "--variant", "naive"], "--variant: only for MODEL 'inception'"),
        (["cost", "conv", "--input", "4,4", "--kernel", "5"], "larger than the padded input 4"),
        (["cost", "compare", "vgg19"], "expected two models"),
        (["cost", "vgg19", "--batch", "0"], "batch: must be >= 1, got 0"),
    ],
)
def test_bad_input(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("dlsys: error: ") and message in err and err.count("\n") == 1
