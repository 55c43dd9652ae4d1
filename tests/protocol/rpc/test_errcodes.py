"""ERR_NGROK_* codes, the wire error-string convention and NgrokError, the base of every
"message plus ngrok code" error in agent and edge (protocol/rpc/errcodes.py)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import AgentError, UsageError
from edge.admin.errors import ApiError, error_body
from edge.cli.api_client import ApiClientError, ApiRefusedError
from edge.tunnels.binding import BindRefused
from protocol.rpc import errcodes
from protocol.rpc.errcodes import (
    ERR_NGROK_334,
    NgrokError,
    WireError,
    docs_url,
    format_wire_error,
    normalize_code,
    parse_wire_error,
)

#: The string ngrok's edge sent in inconshreveable/ngrok#937 (ngrok.md §8.9).
REAL_WORLD = (
    "The tunnel 'tcp://0.tcp.ngrok.io:18899' is already bound to another tunnel session"
    "\r\n\r\nERR_NGROK_334\r\n"
)


def test_required_codes_exist_and_are_their_own_names() -> None:
    for number in (105, 107, 108, 300, 308, 324, 334, 3200, 8012, 3004, 9030, 9029, 9031, 2201):
        assert getattr(errcodes, f"ERR_NGROK_{number}") == f"ERR_NGROK_{number}"
    for name in errcodes.__all__:
        if name.startswith("ERR_NGROK_"):
            assert getattr(errcodes, name) == name


def test_format_puts_the_code_on_its_own_line() -> None:
    assert format_wire_error("already bound", ERR_NGROK_334) == (
        "already bound\r\n\r\nERR_NGROK_334\r\n"
    )
    assert format_wire_error("already bound", 334) == format_wire_error(
        "already bound", "ERR_NGROK_334"
    )


def test_parse_the_real_world_string() -> None:
    assert parse_wire_error(REAL_WORLD) == WireError(
        "The tunnel 'tcp://0.tcp.ngrok.io:18899' is already bound to another tunnel session",
        "ERR_NGROK_334",
    )


def test_parse_without_a_code() -> None:
    assert parse_wire_error("plain failure") == WireError("plain failure", None)
    assert parse_wire_error("") == WireError("", None)


def test_parse_keeps_multi_line_messages_and_finds_a_code_anywhere() -> None:
    text = "  first line \r\n\r\nsecond line\nsee ERR_NGROK_108 for details\n"
    assert parse_wire_error(text) == WireError("first line\nsecond line", "ERR_NGROK_108")


def test_parse_takes_the_first_code() -> None:
    assert parse_wire_error("x\nERR_NGROK_1\nERR_NGROK_2").code == "ERR_NGROK_1"


_LINE = (
    st.text(
        alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"),
        min_size=1,
    )
    .map(str.strip)
    .filter(lambda line: bool(line) and "ERR_NGROK_" not in line)
)


@given(lines=st.lists(_LINE, min_size=1, max_size=4), number=st.integers(0, 99_999))
def test_format_parse_round_trip(lines: list[str], number: int) -> None:
    message = "\n".join(lines)
    assert parse_wire_error(format_wire_error(message, number)) == WireError(
        message, f"ERR_NGROK_{number}"
    )


@given(text=st.text())
def test_parse_never_raises(text: str) -> None:
    parsed = parse_wire_error(text)
    assert parsed.code is None or parsed.code.startswith("ERR_NGROK_")


@pytest.mark.parametrize("code", ["334", "ERR_NGROK_", "ERR_NGROK_33x", "err_ngrok_334", -1, True])
def test_normalize_rejects_non_codes(code: str | int) -> None:
    with pytest.raises(ValueError, match="not an ngrok error code"):
        normalize_code(code)


def test_normalize_code() -> None:
    assert normalize_code(334) == normalize_code("ERR_NGROK_334") == "ERR_NGROK_334"
    with pytest.raises(ValueError):
        normalize_code("ERR_NGROK_\u0663")  # an Arabic-Indic digit is not a Go \d


def test_docs_url() -> None:
    assert docs_url(ERR_NGROK_334) == "https://ngrok.com/docs/errors/err_ngrok_334"


def test_ngrok_error_carries_code_and_message() -> None:
    err = NgrokError("endpoint is already online", 334)
    assert err.code == "ERR_NGROK_334"
    assert err.message == "endpoint is already online"
    assert err.wire() == "endpoint is already online\r\n\r\nERR_NGROK_334\r\n"
    assert str(err) == "endpoint is already online (ERR_NGROK_334)"
    assert repr(err) == "NgrokError('endpoint is already online', 'ERR_NGROK_334')"


def test_ngrok_error_without_code() -> None:
    err = NgrokError("something broke")
    assert err.code is None
    assert err.wire() == "something broke"
    assert str(err) == "something broke"


def test_ngrok_error_from_wire() -> None:
    err = NgrokError.from_wire(REAL_WORLD)
    assert err.code == ERR_NGROK_334
    assert NgrokError.from_wire(err.wire()).message == err.message


def test_ngrok_error_is_raisable() -> None:
    with pytest.raises(NgrokError) as info:
        raise NgrokError("bad token", "ERR_NGROK_107")
    assert info.value.code == "ERR_NGROK_107"


# ------------------------------------------------------------------ the one base and its kin


@given(lines=st.lists(_LINE, min_size=1, max_size=4), number=st.integers(0, 99_999))
def test_ngrok_error_wire_round_trip(lines: list[str], number: int) -> None:
    err = NgrokError("\n".join(lines), number)
    back = NgrokError.from_wire(err.wire())
    assert (back.message, back.code) == (err.message, f"ERR_NGROK_{number}")
    assert NgrokError.from_wire(NgrokError(err.message).wire()).code is None


def test_ngrok_error_refuses_a_bad_code_where_it_is_written() -> None:
    with pytest.raises(ValueError, match="not an ngrok error code"):
        NgrokError("x", "334")


def test_bind_refused_is_an_ngrok_error_printed_as_its_message() -> None:
    err = BindRefused("The tunnel 'tcp://x:1' is already bound", ERR_NGROK_334)
    assert isinstance(err, NgrokError)
    assert (err.message, err.code) == ("The tunnel 'tcp://x:1' is already bound", ERR_NGROK_334)
    assert str(err) == "The tunnel 'tcp://x:1' is already bound"
    assert err.wire() == format_wire_error(err.message, ERR_NGROK_334)
    assert BindRefused("no code").wire() == "no code"


def test_agent_errors_are_ngrok_errors_printed_with_their_code() -> None:
    err = AgentError("the edge refused the session: bad token", "ERR_NGROK_107")
    assert isinstance(err, NgrokError)
    assert (err.message, err.code) == ("the edge refused the session: bad token", "ERR_NGROK_107")
    assert str(err) == "the edge refused the session: bad token (ERR_NGROK_107)"
    assert str(AgentError("config is broken")) == "config is broken"
    assert AgentError("empty code", "").code is None
    assert str(AgentError("empty code", "")) == "empty code"
    usage = UsageError("--url needs a port")
    assert isinstance(usage, NgrokError)
    assert (str(usage), usage.code) == ("--url needs a port", None)


def test_the_admin_api_error_is_an_ngrok_error_printed_as_its_message() -> None:
    err = ApiError(404, "ERR_NGROK_404", "No credential 'cr_x'.")
    assert isinstance(err, NgrokError)
    assert (err.status, err.code, err.msg, err.message) == (
        404,
        "ERR_NGROK_404",
        "No credential 'cr_x'.",
        "No credential 'cr_x'.",
    )
    assert str(err) == "No credential 'cr_x'."
    assert json.loads(error_body(err, "op_1")) == {
        "error_code": "ERR_NGROK_404",
        "status_code": 404,
        "msg": "No credential 'cr_x'.",
        "details": {"operation_id": "op_1"},
    }


def test_the_cli_clients_errors_are_ngrok_errors() -> None:
    refused = ApiRefusedError(404, "ERR_NGROK_404", "No credential.", "op_1")
    assert isinstance(refused, ApiClientError)
    assert isinstance(refused, NgrokError)
    assert (refused.status, refused.error_code, refused.code) == (
        404,
        "ERR_NGROK_404",
        "ERR_NGROK_404",
    )
    assert (refused.msg, refused.operation_id) == ("No credential.", "op_1")
    assert str(refused) == "No credential. (ERR_NGROK_404)"
    assert str(ApiRefusedError(502, "", "answered HTTP 502")) == "answered HTTP 502"
    # A reply's stray error_code is printed as sent but is no ngrok code.
    odd = ApiRefusedError(400, "E_SOMETHING", "odd edge")
    assert (str(odd), odd.code, odd.error_code) == ("odd edge (E_SOMETHING)", None, "E_SOMETHING")
    plain = ApiClientError("the API key is empty")
    assert isinstance(plain, NgrokError)
    assert (str(plain), plain.code) == ("the API key is empty", None)
