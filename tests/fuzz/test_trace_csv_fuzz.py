"""Fuzz the trace CSV that ``dlsys replay`` reads: the homework's trace (as ``dlsys simulate
--out`` writes it) with one to three damages (a cell replaced by a negative, zero, huge,
non-numeric or empty value; a row deleted, duplicated or moved; a column deleted or added;
the status renamed), replayed on a small MLP. Each case must run normally or end in one line
naming the file (and line), exit 2, within the time limit (see conftest.py)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

# The homework's two learners (dlsys simulate examples/scenarios/homework_two_learners.toml).
TRACE = """\
learner,seq,read_version,version,staleness,t_read,t_start,t_done,t_arrive,t_apply,status,lr
L1,1,0,0,0,0.0,0.0,1.0,1.0,1.0,applied,0.01
L1,2,1,1,0,1.0,1.0,2.0,2.0,2.0,applied,0.01
L2,1,0,2,2,0.0,0.0,2.5,2.5,2.5,applied,0.01
L1,3,2,3,1,2.0,2.0,3.0,3.0,3.0,applied,0.01
L1,4,4,4,0,3.0,3.0,4.0,4.0,4.0,applied,0.01
L2,2,3,5,2,2.5,2.5,5.0,5.0,5.0,applied,0.01
"""
ROWS = list(csv.reader(io.StringIO(TRACE)))
CELLS = ["-1", "0", "1", "7", "1000000000000", "9223372036854775808", "10" * 20, "1.5", "nan"]
CELLS += ["inf", "", " ", "x", "applied", "lost", "cancelled", "L1", "L3", "\u00e9"]
REPLAY = ["--model", "mlp:8", "--limit", "64", "--quiet"]


@st.composite
def damaged(draw: st.DrawFn) -> list[list[str]]:
    rows = [list(r) for r in ROWS]
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["cell", "cell", "cell", "drop", "dup", "move", "col", "add"]))
        body = len(rows) - 1
        if op == "cell" and body:
            r = draw(st.integers(1, body))
            c = draw(st.integers(0, len(rows[r]) - 1))
            rows[r][c] = draw(st.sampled_from(CELLS))
        elif op == "drop" and body:
            del rows[draw(st.integers(1, body))]
        elif op == "dup" and body:
            rows.append(list(rows[draw(st.integers(1, body))]))
        elif op == "move" and body > 1:
            rows.insert(draw(st.integers(1, body)), rows.pop(draw(st.integers(1, body))))
        elif op == "col":
            c = draw(st.integers(0, len(rows[0]) - 1))
            for row in rows:
                if c < len(row):
                    del row[c]
        elif op == "add":
            for i, row in enumerate(rows):
                row.append("extra" if i == 0 else draw(st.sampled_from(CELLS)))
    return rows


def _write(path: Path, rows: list[list[str]]) -> Path:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def test_the_trace_replays(fuzz: Any, tmp_path: Path) -> None:
    o = fuzz.run(["replay", _write(tmp_path / "trace.csv", ROWS), *REPLAY])
    assert o.code == 0, o.err


@settings(parent=settings.get_profile("dlsys-fuzz"), max_examples=40)
@given(rows=damaged())
def test_damaged_traces_end_cleanly(
    rows: list[list[str]], fuzz: Any, tmp_path_factory: Any
) -> None:
    path = _write(tmp_path_factory.mktemp("trace") / "trace.csv", rows)
    o = fuzz.run(["replay", path, *REPLAY])
    fuzz.check(o, str(path), "trace")
