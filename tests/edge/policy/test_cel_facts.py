"""edge/policy/cel_facts.py: what the fast closures read from a running phase.

Every `DIRECT` reader gives what the view gives (same text, same CEL type) and every `RAW`
reader the same value as plain Python, as its attribute path does; the remembered
`inCidrRange` answers stay the macro's and stay bounded; a raw comparison refuses (leaves to
cel-python) a fact of another type.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

import pytest
from celpy import celtypes

from edge.policy.activation import ConnFacts, EndpointFacts, RequestFacts, ResponseFacts
from edge.policy.cel import in_cidr_range, to_cel
from edge.policy.cel_facts import (
    _CIDR_ANSWERS,
    DIRECT,
    FALSE,
    RAW,
    RAW_SOURCE,
    TRUE,
    FastPathError,
    fixed_header_getter,
    raw_comparison,
    remembered_cidr,
)
from edge.policy.phase import PhaseRun
from edge.policy.ratelimit import PolicyState

REQUEST = RequestFacts(
    method="PATCH",
    scheme="https",
    host="a.example.com:8443",
    path="/api/v1",
    query="a=1&b=2",
    headers=(("Host", "a.example.com:8443"),),
)
CONN = ConnFacts(
    client_ip="192.0.2.7", client_port=40000, server_ip="198.51.100.1", server_port=8443
)
RESPONSE = ResponseFacts(status=418)
ENDPOINT = EndpointFacts(
    url="https://a.example.com", host="a.example.com", port=443, protocol="https"
)


def _run() -> PhaseRun:
    return PhaseRun(
        "on_http_response", CONN, ENDPOINT, 1.0, PolicyState(), request=REQUEST, response=RESPONSE
    )


def _through_view(run: PhaseRun, root: str, fields: tuple[str, ...]) -> Any:
    value: Any = to_cel(run.activation[root])
    for name in fields:
        value = value.get(name)
    return value


@pytest.mark.parametrize("key", sorted(DIRECT))
def test_direct_readers_give_what_the_views_give(key: tuple[str, tuple[str, ...]]) -> None:
    root, fields = key
    direct = DIRECT[key](_run())
    viewed = _through_view(_run(), root, fields)
    assert direct == viewed
    assert type(direct) is type(viewed)


@pytest.mark.parametrize("key", sorted(RAW))
def test_raw_readers_give_the_same_value_as_plain_python(key: tuple[str, tuple[str, ...]]) -> None:
    raw = RAW[key](_run())
    assert type(raw) in (str, int)
    assert raw == DIRECT[key](_run())
    assert set(RAW) <= set(DIRECT)


@pytest.mark.parametrize("key", sorted(RAW))
def test_each_raw_readers_path_reads_what_it_reads(key: tuple[str, tuple[str, ...]]) -> None:
    # The light run writes `run.<path>` in place of calling the reader (edge.policy.light).
    path = RAW_SOURCE[RAW[key]]
    assert attrgetter(path)(_run()) == RAW[key](_run())
    assert len(RAW_SOURCE) == len(RAW)


def test_a_raw_comparison_answers_for_its_type_and_refuses_another() -> None:
    equal = raw_comparison(lambda run: "GET", str.__eq__, celtypes.StringType("GET"))
    assert equal(None) is TRUE
    at_least = raw_comparison(lambda run: 404, int.__ge__, celtypes.IntType(500))
    assert at_least(None) is FALSE
    with pytest.raises(FastPathError):
        raw_comparison(lambda run: 200, str.__eq__, celtypes.StringType("200"))(None)
    with pytest.raises(FastPathError):
        raw_comparison(lambda run: "200", int.__eq__, celtypes.IntType(200))(None)


def test_remembered_cidr_answers_are_the_macros_and_bounded() -> None:
    calls: list[str] = []

    def counted(address: object, cidr: object) -> object:
        calls.append(str(address))
        return in_cidr_range(address, cidr)

    addresses = iter(f"10.0.{i // 256}.{i % 256}" for i in range(_CIDR_ANSWERS + 10))
    current = {"ip": "10.1.2.3"}
    in_range = remembered_cidr(counted, lambda run: current["ip"], "10.0.0.0/16")
    assert in_range(None) is FALSE
    assert in_range(None) is FALSE
    assert calls == ["10.1.2.3"]  # the second answer was remembered
    for address in addresses:
        current["ip"] = address
        assert in_range(None) is TRUE
    count = len(calls)
    current["ip"] = "10.0.200.1"  # never seen, past the bound: computed, and not kept
    assert in_range(None) is TRUE
    assert in_range(None) is TRUE
    assert len(calls) == count + 2


def test_header_getters_answer_cel_strings_as_the_constructor_makes_them() -> None:
    run = PhaseRun(
        "on_http_request",
        CONN,
        ENDPOINT,
        1.0,
        PolicyState(),
        request=RequestFacts(
            method="GET",
            scheme="https",
            host="a",
            path="/",
            headers=(("X-A", "one"), ("x-a", "two"), ("X-B", "")),
        ),
    )
    got = fixed_header_getter("req", False, "x-a")(run)
    assert type(got) is celtypes.ListType
    assert got == celtypes.ListType([celtypes.StringType("one"), celtypes.StringType("two")])
    assert all(type(value) is celtypes.StringType for value in got)
    assert repr(got[0]) == repr(celtypes.StringType("one"))
    empty = fixed_header_getter("req", False, "x-b")(run)
    assert empty == [""] and type(empty[0]) is celtypes.StringType
    assert fixed_header_getter("req", False, "x-none")(run) == []
    assert fixed_header_getter("req", True, "x-b")(run) is TRUE
