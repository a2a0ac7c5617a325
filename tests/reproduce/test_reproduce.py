"""``dlsys reproduce``: every section runs (tiny sizes), failures are isolated, bad input is
rejected before anything is written, and the headline numbers are the right ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlsys.cli.main import main
from dlsys.reproduce import report
from dlsys.reproduce.report import Section, SectionResult, section_names


@pytest.mark.parametrize("name", section_names())
def test_each_section_runs_alone(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    code = main(["reproduce", "--tiny", "--only", name, "--out", str(out), "--json"])
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # --json: exactly one document on stdout
    assert code == 0, doc
    (section,) = doc["sections"]
    assert section["name"] == name and section["ok"], section["error"]
    text = (out / "REPORT.md").read_text()
    assert "failed" not in text.lower().split("## contents")[0]
    assert text.count("\n## ") == 2  # Contents + the one section
    # Every image the section links to was written beside the report.
    for line in text.splitlines():
        if line.startswith("![") and "](" in line:
            target = line.split("](", 1)[1].rstrip(")")
            assert (out / target).is_file(), target
    assert json.loads((out / "report.json").read_text())["sections"][name]["ok"]


def test_headline_numbers(tmp_path: Path) -> None:
    outcomes = report.run_report(tmp_path / "r", size="tiny", only=["simulator", "costs"])
    sim, costs = (o.result.data for o in outcomes if o.result is not None)
    # Two-learner homework case; the worked answer's 3 for g[L2,2] is wrong (seeds README).
    assert sim["homework_staleness"] == [0, 0, 1, 0, 2, 2]
    assert costs["vgg19"]["params"] == 143_667_240
    assert costs["vgg19"]["activations"] == 16_542_184
    assert costs["vgg19"]["macs"] == 19_632_062_464
    assert costs["inception"]["a"]["totals"]["macs"] == 1_115_684_864
    assert costs["inception"]["b"]["totals"]["macs"] == 397_410_304
    assert costs["small_inception"]["params"] == 1_649_402
    ca = costs["conv_arithmetic"]
    assert ca["output_size_6x4_k2_s2"] == [3, 2]  # floor((6-2)/2)+1, floor((4-2)/2)+1
    assert ca["keep_padding_6x4_k2_s2"] == [[3, 3], [2, 2]]  # (6-1)*2+2-6 = 6, (4-1)*2+2-4 = 4
    assert ca["one_4x4_filter_params"] == 17  # 4*4 weights + 1 bias
    # j = X[2:5, 1:4] . F: 10*1 + 11*2 - 14*1 + 4*2 - 11*4 - 6*2 + 3*1 + 8*2 - 3*1 = -14; /16
    assert ca["gaussian_j"] == pytest.approx(-14 / 16, abs=1e-12)


def test_a_failing_section_is_reported_and_the_others_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(ctx: report.Context) -> SectionResult:
        raise RuntimeError("disk full while plotting")

    def fine(ctx: report.Context) -> SectionResult:
        return SectionResult("all good", {"x": 1})

    fake = [Section("broken", "Broken section", broken), Section("fine", "Fine section", fine)]
    monkeypatch.setattr(report, "_registry", lambda: fake)
    out = tmp_path / "results"
    assert main(["reproduce", "--tiny", "--out", str(out)]) == 1
    text = (out / "REPORT.md").read_text()
    assert "1 section(s) failed: broken" in text
    assert "RuntimeError: disk full while plotting" in text
    assert "all good" in text
    assert "FAILED: RuntimeError: disk full while plotting" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "simulatr"], "unknown section (--only) 'simulatr'; did you mean 'simulator'?"),
        (["--full"], "--full needs --data ROOT"),
        (["--data", "/no/such/dir"], "--data: '/no/such/dir' is not a directory"),
        (["--seed", "-1"], "--seed: must be >= 0, got -1"),
        (["--quick", "--full"], "not allowed with argument"),
    ],
)
def test_bad_input_exit_2_and_nothing_written(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    assert main(["reproduce", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dlsys: error: ") and err.count("\n") == 1
    assert message in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
