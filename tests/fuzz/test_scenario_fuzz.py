"""Fuzz the scenario TOML: random mutations of the example scenarios through ``dlsys simulate``.

Each case takes one example scenario (its run shortened to at most 2000 updates or 50 s so a
normal run is quick), applies one to three mutations (a value replaced by a wrong type, NaN,
inf, a negative, zero, a huge or an empty value; a key deleted; an unknown key added; a
learner table duplicated), writes the TOML and runs ``dlsys simulate FILE --no-table``. It
must end in a normal run or one line ``dlsys: error: ...`` naming a key on the mutated path,
with exit code 2, within the time limit (see conftest.py). A second test feeds malformed
TOML text (cut, spliced and byte-flipped files).
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"
SCENARIOS = sorted(p.name for p in EXAMPLES.glob("*.toml"))

# Values a mutation writes: every TOML type, and for numbers the edges that break code that
# forgot them (0, negatives, NaN, inf, huge ints that size allocations, tiny floats that make
# durations vanish).
HUGE_INTS = [10**9, 10**12, 2**63 - 1, 10**30]
VALUES: list[Any] = [
    -1,
    0,
    1,
    2,
    3,
    *HUGE_INTS,
    -(2**63),
    0.0,
    -0.0,
    0.5,
    -2.5,
    1e-300,
    1e300,
    math.nan,
    math.inf,
    -math.inf,
    "",
    "x",
    "async",
    "exponential",
    "1.0",
    True,
    False,
    [],
    [1, 2],
    [0.5, -1.0],
    {},
    {"kind": "k-sync"},
    {"dist": "fixed"},
    datetime.date(2020, 1, 1),
]


def toml_value(v: Any) -> str:
    """``v`` as a TOML value (inline tables and arrays; JSON string escapes are TOML's)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML form for {v!r}")


def toml_text(doc: dict[str, Any]) -> str:
    """A whole document: one ``key = value`` line per top-level key."""
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in doc.items())


def _short(doc: dict[str, Any]) -> dict[str, Any]:
    """The example with its run shortened (a normal run must finish within seconds)."""
    sim = doc.setdefault("simulation", {})
    if "until_updates" in sim:
        sim["until_updates"] = min(sim["until_updates"], 2000)
    if "until_time" in sim:
        sim["until_time"] = min(sim["until_time"], 50.0)
    return doc


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    node = doc
    for key in path[:-1]:
        node = node[key]
    return node


def _names(path: tuple[Any, ...]) -> list[str]:
    """Words a refusal about ``path`` may use: its keys, ``learner[0]`` style items."""
    names: list[str] = []
    for i, key in enumerate(path):
        if isinstance(key, str):
            names.append(key)
        elif i > 0 and isinstance(path[i - 1], str):
            names.append(f"{path[i - 1]}[{key}]")
    return names


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, dict[str, Any], list[str]]:
    """(example name, mutated document, words the refusal may name)."""
    name = draw(st.sampled_from(SCENARIOS))
    doc = _short(tomllib.loads((EXAMPLES / name).read_text()))
    names: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(doc, path)
        op = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "copy"]))
        if op == "replace":
            parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(VALUES)))
        elif op == "delete":
            del parent[path[-1]]
        elif op == "add" and isinstance(parent, dict):
            extra = draw(st.sampled_from(["bogus", "Count", "rate", "until_update", "kind"]))
            parent[extra] = copy.deepcopy(draw(st.sampled_from(VALUES)))
            path = (*path[:-1], extra)
        elif op == "copy" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))
        else:
            continue
        names += _names(path)
    return name, doc, names


def _write(tmp: Path, text: str) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "durations.csv", tmp / "durations.csv")  # trace distributions
    path = tmp / "scenario.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", SCENARIOS)
def test_examples_run_shortened(name: str, fuzz: Any, tmp_path: Path) -> None:
    """The unmutated (shortened) examples run normally: the fuzz starts from valid input."""
    doc = _short(tomllib.loads((EXAMPLES / name).read_text()))
    o = fuzz.run(["simulate", _write(tmp_path, toml_text(doc)), "--no-table"])
    assert o.code == 0, o.err


@settings(parent=settings.get_profile("dlsys-fuzz"), max_examples=60)
@given(case=mutated())
def test_mutated_scenarios_end_cleanly(
    case: tuple[str, dict[str, Any], list[str]], fuzz: Any, tmp_path_factory: Any
) -> None:
    _example, doc, names = case
    path = _write(tmp_path_factory.mktemp("scenario"), toml_text(doc))
    o = fuzz.run(["simulate", path, "--no-table"])
    fuzz.check(o, *names, "scenario", "simulation", "learner", "until_updates")


@settings(parent=settings.get_profile("dlsys-fuzz"), max_examples=30)
@given(
    name=st.sampled_from(SCENARIOS),
    cut=st.floats(0, 1),
    junk=st.sampled_from(["", "=", "[", "]]", '"', "\x00", "\xff", "[[learner]]\n", "k = \n"]),
)
def test_malformed_toml_is_refused_naming_the_file(
    name: str, cut: float, junk: str, fuzz: Any, tmp_path_factory: Any
) -> None:
    text = (EXAMPLES / name).read_text()
    at = int(cut * len(text))
    path = _write(tmp_path_factory.mktemp("scenario"), text[:at] + junk + text[at:])
    o = fuzz.run(["simulate", path, "--no-table"])
    fuzz.check(o, str(path), "scenario", "simulation", "learner", "until_updates", "protocol")
