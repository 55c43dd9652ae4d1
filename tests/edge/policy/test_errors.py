"""edge/policy/errors.py: coded errors whose message starts with the place."""

from __future__ import annotations

from edge.policy.errors import (
    ERR_NGROK_2201,
    ERR_NGROK_2254,
    Place,
    PolicyError,
    PolicyRuntimeError,
)
from protocol.rpc.errcodes import NgrokError, parse_wire_error


def test_place_reads_as_a_path() -> None:
    assert str(Place()) == "policy"
    assert str(Place(phase="on_tcp_connect")) == "on_tcp_connect"
    place = Place(
        phase="on_http_request", rule_index=2, rule_name="bots", action_index=0, action_type="deny"
    )
    assert str(place) == 'on_http_request rule 2 ("bots") action 0 (deny)'
    assert str(place.at_field("config.status_code")) == (
        'on_http_request rule 2 ("bots") action 0 (deny) config.status_code'
    )
    assert str(Place(phase="on_http_request", line=7)) == "on_http_request (line 7)"


def test_policy_error_is_an_ngrok_error_that_travels_on_the_wire() -> None:
    error = PolicyError(
        ERR_NGROK_2201, "Invalid policy action type 'x'.", Place(phase="on_tcp_connect")
    )
    assert isinstance(error, NgrokError)
    assert error.code == "ERR_NGROK_2201"
    assert error.message == "on_tcp_connect: Invalid policy action type 'x'."
    assert error.problem == "Invalid policy action type 'x'."
    parsed = parse_wire_error(error.wire())
    assert (parsed.message, parsed.code) == (error.message, "ERR_NGROK_2201")


def test_runtime_error_is_a_policy_error() -> None:
    error = PolicyRuntimeError(ERR_NGROK_2254, "boom")
    assert isinstance(error, PolicyError)
    assert str(error) == "policy: boom (ERR_NGROK_2254)"
