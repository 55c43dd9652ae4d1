"""edge/policy/cel_run.py: cel-python's transpiled code run without its per-call copies."""

from __future__ import annotations

import celpy
import pytest
from celpy import celtypes
from celpy.evaluation import CELEvalError

from edge.policy.cel import compile_expression
from edge.policy.cel_run import run


def runner(text: str) -> celpy.Runner:
    return compile_expression(text)._runner


def test_run_gives_the_same_values_as_cel_pythons_own_evaluate() -> None:
    text = "req.method == 'GET' && [1, 2].exists(n, n > 1 && req.size < 3) ? 'yes' : 'no'"
    context = {
        "req": celtypes.MapType(
            {
                celtypes.StringType("method"): celtypes.StringType("GET"),
                celtypes.StringType("size"): celtypes.IntType(2),
            }
        )
    }
    compiled = runner(text)
    assert run(compiled, dict(context)) == compiled.evaluate(dict(context)) == "yes"


def test_run_raises_cel_eval_error_for_a_failed_evaluation() -> None:
    with pytest.raises(CELEvalError):
        run(runner("1 / 0 == 1"), {})
    with pytest.raises(CELEvalError):
        run(runner("req.missing == 1"), {"req": celtypes.MapType()})


def test_run_leaves_cel_pythons_module_globals_alone() -> None:
    celpy.evaluation.__dict__.pop("base_activation", None)
    run(runner("1 < 2"), {})
    assert "base_activation" not in celpy.evaluation.__dict__
