"""A check for engine work: a faster engine must give the SimPy engine's answer, byte for byte.

Whoever adds or changes a vector path (or an engine of their own) holds it to the reference
with :func:`assert_engines_agree` on the scenarios it covers; dlsys's own tests do.
"""

from __future__ import annotations

import json

from dlsys.simulator.scenario import Scenario
from dlsys.simulator.trace import simulate

__all__ = ["assert_engines_agree"]


def assert_engines_agree(
    scenario: Scenario, seed: int = 0, engine: str = "auto"
) -> tuple[str, str]:
    """Run ``scenario`` on the SimPy engine and on ``engine`` ("auto" or "vector") with the
    same ``seed``; assert their trace CSVs and summaries (all but the ``engine`` entry) are
    byte-identical; return the two engines' names (``("simpy", "vector")`` when ``auto``
    chose the vector engine)."""
    a = simulate(scenario, seed=seed, engine="simpy")
    b = simulate(scenario, seed=seed, engine=engine)
    assert b.trace.csv_text() == a.trace.csv_text(), "trace CSVs differ"
    sa, sb = dict(a.summary), dict(b.summary)
    ea, eb = sa.pop("engine"), sb.pop("engine")
    assert json.dumps(sb, sort_keys=True) == json.dumps(sa, sort_keys=True), "summaries differ"
    return ea["name"], eb["name"]
