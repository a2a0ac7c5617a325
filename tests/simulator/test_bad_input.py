"""Bad input: a clear error naming the field, exit code 2, nothing written to --out."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlsys.cli.main import main
from dlsys.simulator import Exponential, Learner, Scenario, load_scenario

GOOD = """
[simulation]
protocol = "async"
until_updates = 10

[[learner]]
name = "A"
compute = { dist = "exponential", rate = 1.0 }

[[learner]]
name = "B"
compute = { dist = "fixed", value = 1.0 }

[[learner]]
name = "C"
compute = { dist = "exponential", rate = 2.0 }
"""


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def with_learner2(compute: str, extra: str = "") -> str:
    return GOOD.replace('compute = { dist = "exponential", rate = 2.0 }', compute + extra)


CASES = [
    # (scenario text, expected message fragment)
    (GOOD.split("[[learner]]")[0], "learner: no learners"),
    (
        with_learner2('compute = { dist = "exponential", rate = -1 }'),
        "learner[2].compute.rate: must be > 0, got -1",
    ),
    (
        with_learner2('compute = { dist = "exponential", rate = 0 }'),
        "learner[2].compute.rate: must be > 0, got 0",
    ),
    (
        with_learner2('compute = { dist = "exponential", rate = nan }'),
        "learner[2].compute.rate: must be finite, got nan",
    ),
    (
        with_learner2('compute = { dist = "exponential", rate = inf }'),
        "learner[2].compute.rate: must be finite, got inf",
    ),
    (
        with_learner2('compute = { dist = "fixed", value = -0.5 }'),
        "learner[2].compute.value: must be > 0, got -0.5",
    ),
    (
        with_learner2('compute = { dist = "fixed", value = 0.0 }'),
        "learner[2].compute.value: must be > 0, got 0.0",
    ),
    (
        with_learner2('compute = { dist = "uniform", low = 1.0, high = inf }'),
        "learner[2].compute.high: must be finite, got inf",
    ),
    (
        with_learner2('compute = { dist = "times", values = [1.0, 2.0, 2.0] }'),
        "learner[2].compute.values[2]: times must be strictly increasing, got 2.0 then 2.0",
    ),
    (
        with_learner2('compute = { dist = "times", values = [3.0, 2.0] }'),
        "learner[2].compute.values[1]: times must be strictly increasing",
    ),
    (
        with_learner2('compute = { dist = "exponential", rate = 1.0 }', "\npull_latency = -0.1"),
        "learner[2].pull_latency: must be >= 0, got -0.1",
    ),
    (
        with_learner2('compute = { dist = "exponential", rate = 1.0 }', "\npush_latency = nan"),
        "learner[2].push_latency: must be finite, got nan",
    ),
    (
        with_learner2('compute = { dist = "exponential", rate = 1.0 }', "\nbandwidth = 0"),
        "learner[2].bandwidth: must be > 0, got 0",
    ),
    (
        GOOD.replace("[simulation]", "[network]\nbandwidth = -5.0\n[simulation]"),
        "network.bandwidth: must be > 0, got -5.0",
    ),
    (
        with_learner2('compute = { dist = "exponential", rate = 1.0 }', "\nspeed = inf"),
        "learner[2].speed: must be finite, got inf",
    ),
    (
        GOOD.replace('"async"', '{ kind = "k-sync", k = 0 }'),
        "simulation.protocol.k: must be >= 1, got 0",
    ),
    (
        GOOD.replace('"async"', '{ kind = "k-sync", k = 4 }'),
        "simulation.protocol.k: must be <= the number of learners (3), got 4",
    ),
    (
        GOOD.replace('"async"', '{ kind = "k-batch-async", k = 5 }'),
        "simulation.protocol.k: must be <= the number of learners (3), got 5",
    ),
    (
        GOOD.replace('"async"', '{ kind = "ssp", s = -1 }'),
        "simulation.protocol.s: must be >= 0, got -1",
    ),
    (
        GOOD.replace('"async"', '{ kind = "softsync", c = 0 }'),
        "simulation.protocol.c: must be >= 1, got 0",
    ),
    (
        GOOD.replace('"async"', '{ kind = "backup", b = 3 }'),
        "simulation.protocol.b: must be < the number of learners (3)",
    ),
    (GOOD.replace('"async"', '"asnyc"'), "unknown protocol 'asnyc'; did you mean 'async'?"),
    (GOOD.replace('"async"', '"k-sync"'), "protocol 'k-sync' needs a parameter"),
    (
        GOOD.replace('"async"', '{ kind = "k-sync", s = 2 }'),
        "simulation.protocol (k-sync): unknown key 's' (valid: k, kind)",
    ),
    (
        with_learner2('compute = { dist = "exponentail", rate = 1.0 }'),
        "learner[2].compute.dist: unknown distribution 'exponentail'; did you mean 'exponential'?",
    ),
    (
        with_learner2('compute = { dist = "exponential", rat = 1.0 }'),
        "learner[2].compute: unknown key for dist 'exponential' 'rat'; did you mean 'rate'?",
    ),
    (
        with_learner2('compute = { dist = "exponential", rate = 1.0 }', "\nmax_gradient = 3"),
        "learner[2]: unknown key 'max_gradient'; did you mean 'max_gradients'?",
    ),
    (
        GOOD.replace("until_updates", "until_update"),
        "simulation: unknown key 'until_update'; did you mean 'until_updates'?",
    ),
    (
        GOOD + '\n[[fault]]\nkind = "crsh"\nlearner = "A"\nat = 1.0\n',
        "fault[0].kind: unknown fault kind 'crsh'; did you mean 'crash'?",
    ),
    (
        GOOD + '\n[[fault]]\nkind = "crash"\nlearner = "Z"\nat = 1.0\n',
        "fault[0].learner: unknown learner 'Z'",
    ),
    (
        GOOD.replace("until_updates = 10", ""),
        "until_updates/until_time: neither is set and learner 'A' has no max_gradients",
    ),
    (
        GOOD.replace("until_updates = 10", "until_time = -3.0"),
        "simulation.until_time: must be > 0, got -3.0",
    ),
    (GOOD.replace("[simulation]", "[simulation"), "malformed TOML"),
    (GOOD.replace('name = "A"', 'name = "A'), "malformed TOML"),
]


@pytest.mark.parametrize(("text", "message"), CASES, ids=[c[1][:50] for c in CASES])
def test_bad_scenario_names_the_field(tmp_path, text, message):
    p = write(tmp_path, text)
    with pytest.raises((ValueError, TypeError)) as info:
        load_scenario(p)
    assert message in str(info.value)


@pytest.mark.parametrize(("text", "message"), CASES[::4], ids=[c[1][:50] for c in CASES[::4]])
def test_cli_exit_2_one_line_and_nothing_written(tmp_path, capsys, text, message):
    p = write(tmp_path, text)
    out = tmp_path / "out"
    assert main(["simulate", str(p), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dlsys: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()
    assert [x.name for x in tmp_path.iterdir()] == ["s.toml"]  # no staging folder left


def test_missing_scenario_file(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "nope.toml")]) == 2
    assert "scenario file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        (None, "not found"),
        ("", "is empty"),
        ("seconds\n", "has a header but no durations"),
        ("seconds\n0.5\nfast\n", "line 3: not a number: 'fast'"),
        ("0.5\n-1\n", "durations must be > 0 seconds, got -1"),
        ("0.5\n0\n", "durations must be > 0 seconds, got 0"),
    ],
    ids=["missing", "empty", "header-only", "non-numeric", "negative", "zero"],
)
def test_bad_trace_file(tmp_path, csv_text, message):
    if csv_text is not None:
        (tmp_path / "d.csv").write_text(csv_text)
    p = write(tmp_path, with_learner2('compute = { dist = "trace", path = "d.csv" }'))
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        load_scenario(p)
    assert "learner[2].compute.path" in str(info.value) and message in str(info.value)


def test_trace_column_by_unknown_name(tmp_path):
    (tmp_path / "d.csv").write_text("step,seconds\n1,0.5\n")
    p = write(
        tmp_path, with_learner2('compute = { dist = "trace", path = "d.csv", column = "secs" }')
    )
    with pytest.raises(ValueError, match="did you mean 'seconds'"):
        load_scenario(p)


def test_cli_flag_values_checked(tmp_path, capsys):
    p = write(tmp_path, GOOD)
    assert main(["simulate", str(p), "--until-updates", "0"]) == 2
    assert "--until-updates: must be > 0, got 0" in capsys.readouterr().err
    assert main(["simulate", str(p), "--until-time", "nan"]) == 2
    assert "--until-time: must be > 0, got nan" in capsys.readouterr().err


def test_python_api_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"learner: no learners"):
        Scenario(learners=())
    with pytest.raises(ValueError, match=r"rate: must be > 0, got -2"):
        Exponential(-2)
    with pytest.raises(ValueError, match=r"learner\.name: duplicate learner names \['A'\]"):
        Scenario(
            learners=(Learner("A", Exponential(1)), Learner("A", Exponential(1))), until_updates=3
        )
