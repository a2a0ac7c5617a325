"""dlsys.common: nearest-name errors, atomic output folders, JSON conversion."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from dlsys.common import (
    check_choice,
    check_int,
    check_positive,
    output_dir,
    to_jsonable,
    unknown_name,
    write_json,
)


def test_unknown_name_suggests_nearest() -> None:
    err = unknown_name("protocol", "asnyc", ["sync", "async", "ssp"])
    assert str(err) == "unknown protocol 'asnyc'; did you mean 'async'? (valid: async, ssp, sync)"
    err = unknown_name("model", "zzzz", ["vgg19"])
    assert "did you mean" not in str(err)


@pytest.mark.parametrize(
    ("value", "match"),
    [(-1, "must be > 0, got -1"), (0, "must be > 0"), (math.nan, "finite"), (math.inf, "finite")],
)
def test_check_positive_names_the_field(value: float, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        check_positive("learner[2].compute.rate", value)
    assert str(info.value).startswith("learner[2].compute.rate: ")


def test_check_positive_rejects_non_numbers() -> None:
    with pytest.raises(TypeError, match=r"x: must be a number, got '3'"):
        check_positive("x", "3")
    assert check_positive("x", 0, allow_zero=True) == 0.0


def test_output_dir_publishes_on_success(tmp_path: Path) -> None:
    out = tmp_path / "res"
    with output_dir(out) as stage:
        assert stage is not None and stage != out
        (stage / "a.txt").write_text("a")
        (stage / "sub").mkdir()
        (stage / "sub" / "b.txt").write_text("b")
        assert not out.exists()
    assert (out / "a.txt").read_text() == "a"
    assert (out / "sub" / "b.txt").read_text() == "b"
    # Publishing into an existing folder replaces files of the same name, keeps the others.
    with output_dir(out) as stage:
        assert stage is not None
        (stage / "a.txt").write_text("A")
    assert (out / "a.txt").read_text() == "A"
    assert (out / "sub" / "b.txt").read_text() == "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]


def test_output_dir_leaves_nothing_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "res"
    with pytest.raises(RuntimeError), output_dir(out) as stage:
        assert stage is not None
        (stage / "half.txt").write_text("half")
        raise RuntimeError("failed mid-way")
    assert list(tmp_path.iterdir()) == []


def test_to_jsonable_and_write_json(tmp_path: Path) -> None:
    obj = {"a": np.int64(2**40 + 1), "b": np.float32(0.5), "c": np.arange(3), "d": (1, math.nan)}
    assert to_jsonable(obj) == {"a": 2**40 + 1, "b": 0.5, "c": [0, 1, 2], "d": [1, None]}
    path = write_json(tmp_path / "x.json", obj)
    assert json.loads(path.read_text())["a"] == 1099511627777


def test_outputs_follow_the_umask_not_mkstemp_private_modes(tmp_path: Path) -> None:
    # mkstemp/mkdtemp create 0600 files and 0700 folders; published output must be readable
    # by others as any file the user creates would be (umask 022 -> 0644 and 0755).
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "x.json", {"a": 1})
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        out = tmp_path / "res"
        with output_dir(out) as stage:
            assert stage is not None
            (stage / "a.txt").write_text("a")
        assert stat.S_IMODE(out.stat().st_mode) == 0o755
    finally:
        os.umask(old)


@pytest.mark.parametrize(
    ("value", "kw", "exc", "message"),
    [
        (0, {"minimum": 1}, ValueError, "batch_size: must be >= 1, got 0"),
        (9, {"maximum": 8}, ValueError, "batch_size: must be <= 8, got 9"),
        (9, {"minimum": 1, "maximum": 8}, ValueError, "batch_size: must be in [1, 8], got 9"),
        (True, {}, TypeError, "batch_size: must be an integer, got True"),
        (2.0, {}, TypeError, "batch_size: must be an integer, got 2.0"),
        ("3", {}, TypeError, "batch_size: must be an integer, got '3'"),
    ],
)
def test_check_int_refuses_with_one_wording(
    value: object, kw: dict[str, int], exc: type[Exception], message: str
) -> None:
    with pytest.raises(exc) as info:
        check_int("batch_size", value, **kw)
    assert str(info.value) == message


def test_check_int_accepts_numpy_integers_as_int() -> None:
    out = check_int("n", np.int64(5), minimum=1)
    assert out == 5 and type(out) is int


def test_check_choice_suggests_nearest() -> None:
    assert check_choice("rule", "constant", ["constant", "inverse"]) == "constant"
    with pytest.raises(ValueError, match=r"^rule: unknown value 'constnat'; did you mean"):
        check_choice("rule", "constnat", ["constant", "inverse"])
    with pytest.raises(TypeError, match=r"^rule: must be one of constant, inverse, got 3"):
        check_choice("rule", 3, ["inverse", "constant"])
