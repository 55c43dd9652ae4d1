"""Tests for edge/http/seam.py: the decision on a request and the failure -> answer mapping both
HTTP versions share. Pure: values in, values out (no sockets, no clock)."""

from __future__ import annotations

import dataclasses
import json
import logging

import h11
import pytest
import trio

from edge.config import HttpConfig
from edge.endpoints.registry import AttachedPolicy, StreamLimitError
from edge.http.h1.upstream import UpstreamError
from edge.http.policy import ClientConn
from edge.http.seam import (
    AgentStreamError,
    ClientBodyError,
    ClientGoneError,
    Failure,
    HttpRequest,
    Refusal,
    RelayError,
    client_response_headers,
    decide,
    error_response,
    failure_kind,
    failure_response,
    log_refusal,
    open_failure,
)
from edge.policy.activation import EndpointFacts
from protocol.wire.errors import ErrorCode, StreamGoneError

LIMITS = HttpConfig(head_timeout=7.0, idle_timeout=42.0)
NOW = 1_700_000_000.0  # Unix seconds: the seam takes the time from its shells


class Route:
    key: object = "app"
    forwards_to = "http://localhost:3000"
    policy: AttachedPolicy | None = None

    def endpoint_facts(self) -> EndpointFacts:
        return EndpointFacts(url="https://app.test", host="app.test", port=443, protocol="https")

    async def open_agent_stream(self, client_addr: str) -> trio.abc.HalfCloseableStream:
        raise AssertionError("the decision never opens a stream")


class Router:
    def __init__(self, routes: dict[tuple[str, str], Route]) -> None:
        self.routes = routes
        self.asked: list[tuple[str, str]] = []

    def route(self, host: str, scheme: str) -> Route | None:
        self.asked.append((host, scheme))
        return self.routes.get((host, scheme))


def request(host: str = "app.test", scheme: str = "https") -> HttpRequest:
    assert scheme in ("http", "https")
    return HttpRequest(
        method=b"GET",
        target=b"/",
        host=host,
        scheme="https" if scheme == "https" else "http",
        headers=[(b"Host", host.encode())],
        accept=None,
        client_addr="203.0.113.9:5000",
        sni=host if scheme == "https" else None,
    )


# ----------------------------------------------------------------------------- the decision


def test_a_request_with_another_head_keeps_every_other_field() -> None:
    conn = ClientConn(None, ("198.51.100.7", 4000), "app.test")
    req = HttpRequest(
        method=b"PUT",
        target=b"/old",
        host="app.test",
        scheme="http",
        headers=[(b"Host", b"app.test")],
        accept=b"application/json",
        client_addr="198.51.100.7:4000",
        sni="app.test",
        conn=conn,
        version="HTTP/1.0",
    )
    changed = req.with_head([(b"X-New", b"1")], b"/new?q")
    assert changed == dataclasses.replace(req, headers=[(b"X-New", b"1")], target=b"/new?q")
    assert changed.conn is conn
    assert req.target == b"/old"  # the request itself is left as it was
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.target = b"/"  # type: ignore[misc]


def test_decide_forwards_to_the_endpoint_for_the_host_and_scheme() -> None:
    route = Route()
    router = Router({("app.test", "https"): route})
    assert decide(request("app.test", "https"), router, now=NOW) is route
    assert router.asked == [("app.test", "https")]


def test_decide_answers_404_3200_when_no_endpoint_is_online() -> None:
    router = Router({("app.test", "https"): Route()})
    decision = decide(request("app.test", "http"), router, now=NOW)  # only https is online
    assert isinstance(decision, Refusal)
    assert decision.page.status == 404
    assert decision.page.code == "ERR_NGROK_3200"
    assert decision.page.ngrok_code == "ERR_NGROK_3200"
    assert "app.test" in decision.page.message
    assert decision.reason == "no endpoint is online"
    assert router.asked == [("app.test", "http")]


class Endpoint(Route):
    """A route with its own identity: two names of one endpoint share one `Endpoint`."""

    def __init__(self, key: str) -> None:
        self.key = key


def on_connection(host: str, sni: str | None) -> HttpRequest:
    """A request for `host` on an https connection made for `sni` (None: the HTTP port)."""
    return HttpRequest(
        method=b"GET",
        target=b"/",
        host=host,
        scheme="https" if sni is not None else "http",
        headers=[(b"Host", host.encode())],
        accept=None,
        client_addr="203.0.113.9:5000",
        sni=sni,
    )


def test_decide_answers_421_for_a_host_of_another_endpoint_than_the_sni() -> None:
    mine, theirs = Endpoint("a"), Endpoint("victim")
    router = Router({("a.test", "https"): mine, ("victim.test", "https"): theirs})
    decision = decide(on_connection("victim.test", sni="a.test"), router, now=NOW)
    assert isinstance(decision, Refusal)
    assert decision.page.status == 421
    assert decision.page.reason == b"Misdirected Request"
    assert decision.page.code == "BURROW_MISDIRECTED_REQUEST"
    assert decision.page.ngrok_code is None
    assert "a.test" in decision.page.message and "victim.test" in decision.page.message
    assert decision.reason == "the connection is for a.test, another endpoint"
    assert router.asked == [("victim.test", "https"), ("a.test", "https")]


def test_decide_answers_421_for_a_host_no_endpoint_serves_on_another_names_connection() -> None:
    router = Router({("a.test", "https"): Endpoint("a")})
    decision = decide(on_connection("nobody.test", sni="a.test"), router, now=NOW)
    assert isinstance(decision, Refusal)
    assert decision.page.status == 421


def test_decide_answers_421_when_the_snis_endpoint_went_offline() -> None:
    router = Router({("b.test", "https"): Endpoint("b")})
    decision = decide(on_connection("b.test", sni="a.test"), router, now=NOW)
    assert isinstance(decision, Refusal)
    assert decision.page.status == 421


def test_decide_forwards_another_name_of_the_same_endpoint() -> None:
    wildcard = Endpoint("*.apps.test")  # one endpoint serving both names
    router = Router({("a.apps.test", "https"): wildcard, ("b.apps.test", "https"): wildcard})
    assert decide(on_connection("b.apps.test", sni="a.apps.test"), router, now=NOW) is wildcard


def test_decide_routes_by_host_alone_without_sni() -> None:
    router = Router({("b.test", "http"): Endpoint("b")})
    decision = decide(on_connection("b.test", sni=None), router, now=NOW)
    assert decision is router.routes[("b.test", "http")]
    assert router.asked == [("b.test", "http")]


# ------------------------------------------------------------------- failure -> response


@pytest.mark.parametrize(
    ("failure", "status", "code", "reason"),
    [
        (Failure.NO_ENDPOINT, 404, "ERR_NGROK_3200", "no endpoint is online"),
        (Failure.AGENT_UNREACHABLE, 502, "ERR_NGROK_3200", "the agent is unreachable"),
        (Failure.AGENT_TOO_SLOW, 502, "ERR_NGROK_3200", "the agent did not open a stream in time"),
        (
            Failure.UPSTREAM_UNREACHABLE,
            502,
            "ERR_NGROK_8012",
            "the agent could not reach http://localhost:3000",
        ),
        (Failure.INVALID_RESPONSE, 502, "ERR_NGROK_3004", "what went wrong"),
        (
            Failure.RESPONSE_TIMEOUT,
            504,
            "BURROW_GATEWAY_TIMEOUT",
            "nothing moved for the idle timeout before a response",
        ),
        (Failure.BAD_BODY, 400, "BURROW_BAD_REQUEST", "what went wrong"),
        (
            Failure.UNFORWARDABLE,
            400,
            "BURROW_BAD_REQUEST",
            "unforwardable request: what went wrong",
        ),
        (Failure.HEAD_TIMEOUT, 408, "BURROW_REQUEST_TIMEOUT", "the request head was too slow"),
    ],
)
def test_failure_response_maps_each_failure_to_its_status_code_and_reason(
    failure: Failure, status: int, code: str, reason: str
) -> None:
    answer = failure_response(
        failure,
        limits=LIMITS,
        host="app.test",
        forwards_to="http://localhost:3000",
        detail="what went wrong",
    )
    assert (answer.page.status, answer.page.code, answer.reason) == (status, code, reason)
    assert answer.page.ngrok_code == (code if code.startswith("ERR_NGROK_") else None)


def test_failure_response_pages_name_the_host_the_upstream_and_the_timeouts() -> None:
    def message(failure: Failure) -> str:
        answer = failure_response(
            failure, limits=LIMITS, host="app.test", forwards_to="http://localhost:3000"
        )
        return answer.page.message

    assert "app.test" in message(Failure.NO_ENDPOINT)
    assert "app.test" in message(Failure.AGENT_UNREACHABLE)
    assert "app.test" in message(Failure.AGENT_TOO_SLOW)
    assert "http://localhost:3000" in message(Failure.UPSTREAM_UNREACHABLE)
    assert "42" in message(Failure.RESPONSE_TIMEOUT)  # idle_timeout
    assert "7" in message(Failure.HEAD_TIMEOUT)  # head_timeout


def test_every_failure_has_an_answer() -> None:
    for failure in Failure:
        answer = failure_response(failure, limits=LIMITS, host="h", forwards_to="f", detail="d")
        assert 400 <= answer.page.status < 600
        assert answer.reason


def reset_error(code: ErrorCode) -> AgentStreamError:
    """An AgentStreamError as the relays raise it from a reset agent stream: from the
    BrokenResourceError a MuxStream raises, itself from the muxado StreamGoneError."""
    try:
        try:
            try:
                raise StreamGoneError("reset by the agent", code=code)
            except StreamGoneError as gone:
                raise trio.BrokenResourceError("the stream was reset") from gone
        except trio.BrokenResourceError as exc:
            raise AgentStreamError(f"the agent stream failed: {exc}") from exc
    except AgentStreamError as failure:
        return failure


def test_failure_kind_tells_which_answer_a_relay_error_gets() -> None:
    assert failure_kind(ClientGoneError("gone")) is None
    assert failure_kind(ClientBodyError("bad chunk")) is Failure.BAD_BODY
    assert failure_kind(reset_error(ErrorCode.STREAM_REFUSED)) is Failure.UPSTREAM_UNREACHABLE
    assert failure_kind(reset_error(ErrorCode.INTERNAL_ERROR)) is Failure.INVALID_RESPONSE
    assert failure_kind(AgentStreamError("invalid response")) is Failure.INVALID_RESPONSE
    assert failure_kind(RelayError("anything else")) is Failure.INVALID_RESPONSE


# ------------------------------------------------------------------ rendering and logging


def test_error_response_is_html_or_json_as_the_client_prefers() -> None:
    page = failure_response(Failure.NO_ENDPOINT, limits=LIMITS, host="app.test").page
    headers, body = error_response(page, None)
    assert (b"Burrow-Error-Code", b"ERR_NGROK_3200") in headers
    assert (b"ngrok-error-code", b"ERR_NGROK_3200") in headers
    assert body.startswith(b"<!doctype html>")
    headers, body = error_response(page, b"application/json")
    assert json.loads(body)["error_code"] == "ERR_NGROK_3200"


def test_client_response_headers_drop_hop_by_hop_and_edge_only_headers() -> None:
    response = h11.Response(
        status_code=200,
        headers=[
            ("Content-Length", "2"),
            ("Connection", "keep-alive, X-Private"),
            ("Keep-Alive", "timeout=5"),
            ("X-Private", "secret"),
            ("Burrow-Error-Code", "forged"),
            ("X-App", "kept"),
        ],
    )
    assert client_response_headers(response.headers) == [
        (b"Content-Length", b"2"),
        (b"X-App", b"kept"),
    ]


def test_log_refusal_warns_for_gateway_failures_and_informs_for_client_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("tests.seam")
    bad_gateway = failure_response(Failure.AGENT_UNREACHABLE, limits=LIMITS, host="app.test")
    timeout = failure_response(Failure.RESPONSE_TIMEOUT, limits=LIMITS)
    bad_body = failure_response(Failure.BAD_BODY, limits=LIMITS, detail="bad chunk")
    with caplog.at_level(logging.DEBUG, logger="tests.seam"):
        log_refusal(logger, "http", "1.2.3.4:5", "app.test", bad_gateway.page, bad_gateway.reason)
        log_refusal(logger, "http2", "1.2.3.4:5", "app.test", timeout.page, timeout.reason)
        log_refusal(logger, "http", "1.2.3.4:5", None, bad_body.page, bad_body.reason)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.WARNING,
            "http 1.2.3.4:5: app.test: 502 ERR_NGROK_3200: the agent is unreachable",
        ),
        (
            logging.WARNING,
            "http2 1.2.3.4:5: app.test: 504 BURROW_GATEWAY_TIMEOUT: "
            "nothing moved for the idle timeout before a response",
        ),
        (logging.INFO, "http 1.2.3.4:5: -: 400 BURROW_BAD_REQUEST: bad chunk"),
    ]


def test_an_agent_at_its_stream_limit_is_503_not_agent_unreachable() -> None:
    at_limit = StreamLimitError("the agent session is at its stream limit")
    assert open_failure(at_limit) is Failure.AGENT_AT_CAPACITY
    assert open_failure(trio.BrokenResourceError("gone")) is Failure.AGENT_UNREACHABLE
    assert open_failure(OSError("refused")) is Failure.AGENT_UNREACHABLE
    refusal = failure_response(
        Failure.AGENT_AT_CAPACITY, limits=LIMITS, host="app.test", detail=str(at_limit)
    )
    assert refusal.page.status == 503
    assert refusal.page.code == "BURROW_ENDPOINT_AT_CAPACITY"
    assert refusal.page.ngrok_code is None  # not ERR_NGROK_3200: the agent is online
    assert refusal.page.reason == b"Service Unavailable"
    assert "app.test" in refusal.page.message
    assert "stream limit" in refusal.reason


def test_a_503_is_logged_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    refusal = failure_response(Failure.AGENT_AT_CAPACITY, limits=LIMITS, host="app.test")
    logger = logging.getLogger("test.seam.capacity")
    with caplog.at_level(logging.INFO, logger="test.seam.capacity"):
        log_refusal(logger, "http", "192.0.2.1:5", "app.test", refusal.page, refusal.reason)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "503 BURROW_ENDPOINT_AT_CAPACITY" in caplog.records[0].getMessage()


def test_an_upstream_codec_complaint_says_whether_the_stream_ended() -> None:
    exc = UpstreamError("illegal status line")
    early = AgentStreamError.from_upstream(exc, ended=True, head_seen=False)
    assert str(early) == "the agent stream ended before a complete response head"
    late = AgentStreamError.from_upstream(exc, ended=True, head_seen=True)
    assert str(late) == "the agent stream ended before a complete response"
    garbage = AgentStreamError.from_upstream(exc, ended=False, head_seen=False)
    assert str(garbage) == "invalid response: illegal status line"
