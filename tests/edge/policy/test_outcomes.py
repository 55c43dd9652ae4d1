"""edge/policy/outcomes.py: what a phase leaves the shell, and what a request phase carries."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest

from edge.policy.outcomes import NOTHING_CARRIED, Carried, HeaderChanges, Trace, carried_by
from edge.policy.phase import PhaseRun
from edge.policy.ratelimit import PolicyState
from tests.edge.policy.engine_helpers import CONN, ENDPOINT, NOW, request


def _run() -> PhaseRun:
    return PhaseRun("on_http_request", CONN, ENDPOINT, NOW, PolicyState(), request=request())


def test_a_phase_that_set_nothing_carries_the_one_empty_value() -> None:
    assert carried_by(_run()) is NOTHING_CARRIED
    assert Carried() == NOTHING_CARRIED  # the same as the engine's default
    assert not NOTHING_CARRIED.results and NOTHING_CARRIED.breakers == ()


def test_result_variables_are_carried_as_they_are_and_read_only() -> None:
    run = _run()
    run.set_result("add_headers", {"headers_added": {"x-a": "1"}})
    carried = carried_by(run)
    assert carried == Carried(MappingProxyType({"add_headers": {"headers_added": {"x-a": "1"}}}))
    assert carried.results["add_headers"] is run.results["add_headers"]  # shown, not copied
    with pytest.raises(TypeError):
        carried.results["log"] = {}  # type: ignore[index]


def test_outcomes_are_frozen_values() -> None:
    changes = HeaderChanges(("x-a",), (("x-b", "1"),))
    with pytest.raises(dataclasses.FrozenInstanceError):
        changes.removed = ()  # type: ignore[misc]
    assert Trace("on_http_request", ()) == Trace("on_http_request", ())
