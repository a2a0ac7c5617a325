"""`dlsys train EXPERIMENT`: every experiment writes its files; bad input; resume; seeds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import dlsys.training.experiments as ex
import dlsys.training.experiments.context as ex_context
from dlsys.cli.main import main

TINY = ["--dataset", "synthetic", "--limit", "150", "--quiet"]

CASES = {
    "lr-range": ["--num-lrs", "3", "--sweep-steps", "20", "--lo", "1e-4", "--hi", "10"],
    "clr": ["--epochs", "2", "--lr-min", "0.01", "--lr-max", "0.1", "--step-epochs", "0.5"],
    "batch-ramp": ["--epochs", "2", "--ramp-every", "2", "--ramp-max", "128"],
    "flooding": ["--epochs", "2", "--b-grid", "0,0.1"],
    "batch-size": ["--epochs", "2", "--batch-sizes", "5,50", "--patience", "1"],
    "early-stopping": ["--epochs", "3", "--batch-size", "16", "--patience", "1"],
    "momentum": ["--epochs", "2", "--momenta", "0.5,0.9"],
    "ood": ["--epochs", "1", "--shift", "3"],
}

KEYS = {
    "lr-range": ["lr_min", "lr_max", "rule", "grid", "sweep"],
    "clr": ["lr_min", "lr_max", "policies"],
    "batch-ramp": ["ramp", "decay"],
    "flooding": ["chosen_b", "mlp_test_acc_chosen_b", "cnn_test_acc_no_flood", "table"],
    "batch-size": ["rows"],
    "early-stopping": ["stop_epoch", "restored_epoch", "test_acc_at_restored"],
    "momentum": ["rows", "lowest_final_train_loss_momentum"],
    "ood": ["rows", "shift_pixels"],
}


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, Any]:
    assert main(argv) == 0
    out = capsys.readouterr().out
    return json.loads(out)  # exactly one JSON document


@pytest.mark.parametrize("experiment", list(CASES))
def test_every_experiment_writes_metrics_csv_and_plots(
    experiment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / experiment
    doc = run_json(
        capsys, ["train", experiment, *TINY, *CASES[experiment], "--out", str(out), "--json"]
    )
    for key in KEYS[experiment]:
        assert key in doc["summary"], key
    assert doc["summary"]["stand_in"] is True and "SYNTHETIC" in doc["summary"]["note"]
    assert doc["plots"]
    for name in doc["plots"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / name).with_suffix(".json").is_file()
    assert any(f.endswith(".csv") for f in doc["files"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["summary"] == doc["summary"]
    config = json.loads((out / "config.json").read_text())
    assert config["experiment"] == experiment and config["common"]["kernels"] == "dlsys"
    # Every run keeps a checkpoint except the LR sweeps (short runs whose stopping rule
    # carries state: lr-range's "sweep", the "lr-sweep" that picks clr's or batch-ramp's LR).
    ckpts = sorted(p.stem for p in (out / "checkpoints").glob("*.pt"))
    assert ckpts == sorted(r for r in metrics["runs"] if r not in ("sweep", "lr-sweep"))
    assert ckpts  # each experiment trains at least one resumable run


def test_ood_reports_parameter_counts_from_analytics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = run_json(
        capsys, ["train", "ood", *TINY, "--epochs", "1", "--out", str(tmp_path), "--json"]
    )
    rows = {r["model"]: r for r in doc["summary"]["rows"]}
    # seed 003: 101,770 (MLP 784-128-10), 80,650 (7x7 CNN), 68,106 (3-layer CNN)
    assert [rows[m]["params"] for m in ("mlp:128", "cnn7", "cnn7-3")] == [101_770, 80_650, 68_106]
    assert all(r["params_source"] == "dlsys.analytics" for r in rows.values())
    for r in rows.values():
        assert set(r) >= {"in-domain", "shift up 4", "rot 90", "rot 180", "rot 270"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "floding"], "did you mean 'flooding'"),
        (["train", "momentum", "--model", "mpl"], "did you mean 'mlp'"),
        (["train", "momentum", "--dataset", "digts"], "did you mean 'digits'"),
        (["train", "momentum", "--epochs", "0"], "--epochs: must be >= 1, got 0"),
        (["train", "momentum", "--batch-size", "-5"], "--batch-size: must be >= 1, got -5"),
        (["train", "momentum", "--lr", "0"], "--lr: must be > 0, got 0"),
        (["train", "lr-range", "--lo", "1", "--hi", "0.1"], "lo must be < hi"),
        (["train", "flooding", "--b-grid", "0,-0.1"], "--b-grid: must be >= 0, got -0.1"),
        (["train", "ood", "--b-grid", "0.1"], "--b-grid: not used by experiment 'ood'"),
        (["train", "momentum", "--kernels", "cuda"], "unknown kernels 'cuda'"),
        (["train", "momentum", "--dataset", "mnist:/nonexistent"], "does not exist"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dlsys: error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_resume_cli_same_result_and_config_mismatch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "m")
    argv = ["train", "momentum", *TINY, "--epochs", "2", "--momenta", "0.5", "--out", out, "--json"]
    first = run_json(capsys, argv)
    again = run_json(capsys, [*argv, "--resume"])
    assert again["summary"] == first["summary"]
    assert main([*argv, "--resume", "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "different config" in err and "train.lr: checkpoint=0.01, now=0.5" in err
    assert main(["train", "momentum", "--resume", "--out", str(tmp_path / "none")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_interrupted_experiment_resumes_to_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def common(ck: Path, resume: bool = False) -> ex.Common:
        return ex.Common(dataset="synthetic", limit=150, epochs=3, checkpoint_dir=ck, resume=resume)

    whole = ex.momentum_sweep(common(tmp_path / "a"), momenta=(0.3, 0.9))
    real_train = ex_context.train
    calls = {"n": 0}

    def interrupted(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # the second run dies after its first epoch
            kw["on_epoch_end"] = lambda rec: (_ for _ in ()).throw(KeyboardInterrupt())
        return real_train(*args, **kw)

    monkeypatch.setattr(ex_context, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ex.momentum_sweep(common(tmp_path / "b"), momenta=(0.3, 0.9))
    monkeypatch.setattr(ex_context, "train", real_train)
    resumed = ex.momentum_sweep(common(tmp_path / "b", resume=True), momenta=(0.3, 0.9))
    assert resumed.summary == whole.summary


def test_seeds_report_mean_and_spread(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "early-stopping", *TINY, "--epochs", "2", "--batch-size", "32"]
    doc = run_json(capsys, [*argv, "--seeds", "0,1", "--out", str(tmp_path), "--json"])
    assert doc["seeds"] == [0, 1]
    per = [s["summary"]["final_test_acc"] for s in doc["per_seed"]]
    assert doc["mean"]["final_test_acc"] == pytest.approx(sum(per) / 2)
    # sample std of two values: |a - b| / sqrt(2)
    assert doc["std"]["final_test_acc"] == pytest.approx(abs(per[0] - per[1]) / 2**0.5)
    assert (tmp_path / "seed-1" / "metrics.json").is_file()


def test_same_seed_same_files_except_wall_time(tmp_path: Path) -> None:
    def run(out: Path) -> dict[str, Any]:
        ex.flooding(ex.Common(dataset="synthetic", limit=150, epochs=2), out, b_grid=[0.0, 0.1])
        return json.loads((out / "metrics.json").read_text())

    def strip(d: Any) -> Any:
        if isinstance(d, dict):
            return {k: strip(v) for k, v in d.items() if "time" not in k}
        if isinstance(d, list):
            return [strip(v) for v in d]
        return d

    assert strip(run(tmp_path / "a")) == strip(run(tmp_path / "b"))
    assert (tmp_path / "a" / "flooding.csv").read_bytes() == (
        tmp_path / "b" / "flooding.csv"
    ).read_bytes()
