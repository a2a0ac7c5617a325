"""``dlsys replay``: JSON, output files, byte-identical reruns, resume and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlsys.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
SOFTSYNC = str(ROOT / "examples" / "scenarios" / "softsync.toml")
QUICK = ["--dataset", "synthetic", "--model", "mlp:8", "--kernels", "torch", "--quiet"]


def test_json_has_the_promised_fields(capsys):
    argv = ["replay", SOFTSYNC, "--until-updates", "12", "--per-learner-batch", "4"]
    assert main([*argv, "--lr", "0.1", "--lr-rule", "inverse-staleness", *QUICK, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    for key in ("updates", "gradients_applied", "mean_staleness", "max_weight_versions"):
        assert key in doc
    # softsync(c = 4): 12 updates of 4 gradients each.
    assert doc["updates"] == 12 and doc["gradients_applied"] == 48
    assert 0.0 <= doc["test_accuracy"] <= 1.0
    assert doc["seconds"] > 0 and doc["final_train_loss"] == doc["history"][-1]["train_loss"]
    assert [h["version"] for h in doc["history"]] == list(range(12))
    assert {"version", "t", "train_loss"} <= set(doc["history"][0])


def test_out_files_are_byte_identical_across_runs_and_resume_continues(tmp_path, capsys):
    argv = ["replay", SOFTSYNC, "--until-updates", "10", "--per-learner-batch", "4", *QUICK]
    a, b = tmp_path / "a", tmp_path / "b"
    assert main([*argv, "--eval-every", "4", "--out", str(a)]) == 0
    assert main([*argv, "--eval-every", "4", "--out", str(b)]) == 0
    for name in ("metrics.json", "history.csv", "evals.csv", "accuracy_vs_time.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "accuracy_vs_updates.png").is_file() and (a / "checkpoints/replay.pt").is_file()
    evals = (a / "evals.csv").read_text().splitlines()
    assert evals[0] == "update,t,val_loss,val_acc,test_loss,test_acc"
    assert [r.split(",")[0] for r in evals[1:]] == ["0", "4", "8", "10"]
    # --resume of a finished run returns the same metrics.
    assert main([*argv, "--eval-every", "4", "--out", str(b), "--resume"]) == 0
    assert (a / "metrics.json").read_bytes() == (b / "metrics.json").read_bytes()
    capsys.readouterr()


def test_trace_csv_source(tmp_path, capsys):
    assert main(["simulate", SOFTSYNC, "--until-updates", "6", "--out", str(tmp_path / "s")]) == 0
    trace = str(tmp_path / "s" / "trace.csv")
    assert main(["replay", trace, "--per-learner-batch", "4", *QUICK, "--json"]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out[out.index("{") :])
    assert doc["updates"] == 6 and doc["schedule"]["source"] == trace


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--per-learner-batch", "0"], "--per-learner-batch: must be >= 1, got 0"),
        (["--per-learner-batch", "481"], "must be <= the training set size (480), got 481"),
        (["--lr-rule", "inverse-stalness"], "did you mean 'inverse-staleness'?"),
        (["--lr", "0"], "--lr: must be > 0"),
        (["--resume"], "no checkpoint"),
        (["--model", "mpl"], "unknown model 'mpl'"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    argv = ["replay", SOFTSYNC, "--until-updates", "3", *QUICK, "--out", str(out), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dlsys: error: ") and message in err and "\n" not in err
    assert not out.exists()


def test_bad_trace_file(tmp_path, capsys):
    bad = tmp_path / "trace.csv"
    bad.write_text("learner,seq,version,t_apply,status\nA,1,0,1.0,applied\n")
    assert main(["replay", str(bad), *QUICK]) == 2
    assert "missing column 'read_version'" in capsys.readouterr().err
    gap = tmp_path / "gap.csv"
    gap.write_text(
        "learner,seq,read_version,version,t_apply,status\n"
        "A,1,0,0,1.0,applied\nA,2,1,2,2.0,applied\n"
    )
    assert main(["replay", str(gap), *QUICK]) == 2
    err = capsys.readouterr().err
    assert "no gradient applied at version 1" in err and "gap.csv:3" in err
    assert main(["replay", str(tmp_path / "nope.csv"), *QUICK]) == 2
    assert "not found" in capsys.readouterr().err
