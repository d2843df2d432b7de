"""privtuner's errors survive pickling whole (errors raised in worker processes)."""

from __future__ import annotations

import pickle

from privtuner.errors import InfeasibleError, ScenarioError


def test_errors_pickle_whole() -> None:
    e = ScenarioError(["a: bad (got 1)", "b: worse"], source="x.yaml")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is ScenarioError
    assert (str(back), back.lines(), back.source) == (str(e), e.lines(), e.source)
    inf = InfeasibleError(["device 0: deadline", "server CPU"])
    back2 = pickle.loads(pickle.dumps(inf))
    assert (str(back2), back2.lines()) == (str(inf), inf.lines())
