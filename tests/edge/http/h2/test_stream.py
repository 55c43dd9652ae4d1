"""Tests for edge/http/h2/stream.py: one HTTP/2 request stream answered as an HTTP/1.1 exchange
over an agent stream (early answers, 1xx, HEAD, and the error pages a stream gets), through the
real HTTP/2 proxy and clients of `tests/edge/http/h2/test_proxy.py`'s harness."""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from dataclasses import replace
from pathlib import Path

import h11
import trio
import trio.testing
from h2.errors import ErrorCodes

from edge.config import CertificateFiles
from edge.endpoints.registry import Endpoint, EndpointRegistry, Member, OpenProxy
from edge.http.h2.kept import MAX_KEPT
from protocol.adapters.mux import MuxSession, open_mux_session
from protocol.formats.units import KiB, MiB
from protocol.wire.errors import ErrorCode
from protocol.wire.session import Role
from tests.edge.http.h1.test_proxy import (
    DeadRoute,
    Handler,
    Reply,
    Route,
    answering,
    attach,
    read_message,
    response_head,
)
from tests.edge.http.h2 import test_proxy as harness
from tests.edge.http.h2.test_proxy import LIMITS, TIMEOUT, curl, world

# The HTTP/2 tests' fixtures: no ERROR log in any test (autouse), and the certificate files.
no_unexpected_failures = harness.no_unexpected_failures
tls_files = harness.tls_files

# ---------------------------------------------------------------------------- the exchange


async def test_an_early_answer_stops_the_upload_with_no_error(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while conn.next_event() is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(64 * KiB))
        await stream.send_all(
            conn.send(h11.Response(status_code=413, headers=[("content-length", "8")]))
            + conn.send(h11.Data(data=b"too big!"))
            + conn.send(h11.EndOfMessage())
        )

    async with world(tls_files) as w:
        await w.upstream("app.test", handler)
        async with w.client() as client:
            stream_id = await client.request("POST", "/up", [], b"x" * 1000, end=False)
            response = client.responses[stream_id]
            await response.done.wait()
            assert response.status == 413 and bytes(response.body) == b"too big!"
            with trio.fail_after(TIMEOUT):
                while response.reset is None:
                    await trio.sleep(0.01)
            assert response.reset == ErrorCodes.NO_ERROR


async def test_expect_100_continue_and_head_responses(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(64 * KiB))
                continue
            assert isinstance(event, h11.Request)
            break
        if event.method == b"HEAD":
            head = [("content-length", "1000"), ("content-type", "text/plain")]
            await stream.send_all(conn.send(h11.Response(status_code=200, headers=head)))
            await stream.send_all(conn.send(h11.EndOfMessage()))
            return
        assert (b"expect", b"100-continue") in event.headers
        await stream.send_all(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        _, body = await read_message(conn, stream)
        await stream.send_all(
            conn.send(h11.Response(status_code=201, headers=[("content-length", str(len(body)))]))
            + conn.send(h11.Data(data=body))
            + conn.send(h11.EndOfMessage())
        )

    async with world(tls_files) as w:
        await w.upstream("app.test", handler)
        async with w.client() as client:
            stream_id = await client.request(
                "PUT", "/", [("expect", "100-continue"), ("content-length", "4")], end=False
            )
            response = client.responses[stream_id]
            with trio.fail_after(TIMEOUT):
                while not response.informational:
                    await trio.sleep(0.01)
            assert response.informational == [100] and response.status == 0
            await client.send_body(stream_id, b"data")
            await response.done.wait()
            assert response.status == 201 and bytes(response.body) == b"data"
        code, out, err = await curl("-I", *w.curl_args("app.test"), w.url("app.test"))
        assert code == 0, err
        assert out == b"HTTP/2 200 \r\ncontent-length: 1000\r\ncontent-type: text/plain\r\n\r\n"


# ------------------------------------------------------------------------------ error pages


async def test_offline_endpoint_is_404_3200_over_http2(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    async with world(tls_files) as w:
        code, out, err = await curl("-i", *w.curl_args("nobody.test"), w.url("nobody.test"))
        assert code == 0, err
        head, _, body = out.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0].strip() == b"HTTP/2 404"
        assert b"burrow-error-code: ERR_NGROK_3200" in lines
        assert b"ngrok-error-code: ERR_NGROK_3200" in lines
        assert b"nobody.test is offline" in body
        async with w.client("nobody.test") as client:
            response = await client.fetch("GET", "/", [("accept", "application/json")])
            assert response.status == 404
            assert json.loads(response.body)["error_code"] == "ERR_NGROK_3200"
        w.router.routes["gone.test"] = DeadRoute()
        async with w.client("gone.test") as client:  # its own connection: SNI and Host agree
            response = await client.fetch("GET", "/")
            assert response.status == 502
            assert response.get("ngrok-error-code") == "ERR_NGROK_3200"


async def test_stream_refused_by_the_agent_is_502_8012_over_http2(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    async with world(tls_files) as w:
        left, right = trio.testing.memory_stream_pair()
        async with (
            open_mux_session(left, Role.CLIENT) as agent,
            open_mux_session(right, Role.SERVER) as edge,
            trio.open_nursery() as nursery,
        ):

            class MuxRoute:
                key = "mux"
                forwards_to = "http://localhost:5999"
                policy = None

                async def open_agent_stream(self, client_addr: str) -> trio.abc.HalfCloseableStream:
                    stream = await edge.open_stream()
                    await stream.send_all(b"proxy-header")  # muxado's SYN rides on data
                    return stream

            async def refuse() -> None:
                while True:
                    stream = await agent.accept_stream()
                    await stream.receive_some(64)
                    stream.reset(ErrorCode.STREAM_REFUSED)

            nursery.start_soon(refuse)
            w.router.routes["refused.test"] = MuxRoute()
            async with w.client("refused.test") as client:
                for body in (None, b"a body"):
                    response = await client.fetch(
                        "POST", "/", [("accept", "application/json")], body
                    )
                    assert response.status == 502
                    assert response.get("burrow-error-code") == "ERR_NGROK_8012"
                    assert response.get("ngrok-error-code") == "ERR_NGROK_8012"
                    assert "http://localhost:5999" in json.loads(response.body)["msg"]
            await w.settle()
            nursery.cancel_scope.cancel()


async def test_a_pool_member_refusing_stream_moves_an_idempotent_request_over_http2(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    """As over HTTP/1.1: member a's agent resets the stream STREAM_REFUSED (8012: its upstream
    is unreachable) before any response byte, and a GET is answered by member b; a bodiless
    POST is not sent twice (the upstream may have taken it) and gets a's 8012 page."""
    async with world(tls_files) as w:  # (refused.test: a name the test certificate has)
        pairs = [trio.testing.memory_stream_pair() for _ in range(2)]
        async with (
            open_mux_session(pairs[0][0], Role.CLIENT) as agent_a,
            open_mux_session(pairs[0][1], Role.SERVER) as edge_a,
            open_mux_session(pairs[1][0], Role.CLIENT) as agent_b,
            open_mux_session(pairs[1][1], Role.SERVER) as edge_b,
            trio.open_nursery() as nursery,
        ):
            seen: dict[str, list[bytes]] = {"a": [], "b": []}

            async def refuse() -> None:  # agent a: its upstream cannot be reached
                while True:
                    stream = await agent_a.accept_stream()
                    seen["a"].append(await stream.receive_some(64 * KiB))
                    stream.reset(ErrorCode.STREAM_REFUSED)

            async def answer() -> None:  # agent b: its upstream answers with its name
                while True:
                    stream = await agent_b.accept_stream()
                    got = b""
                    while b"\r\n\r\n" not in got:
                        got += await stream.receive_some(64 * KiB)
                    seen["b"].append(got)
                    await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb")
                    await stream.send_eof()

            def opener(edge: MuxSession) -> OpenProxy:
                async def open_proxy(client_addr: str) -> trio.abc.HalfCloseableStream:
                    stream = await edge.open_stream()
                    await stream.send_all(b"proxy-header")  # muxado's SYN rides on data
                    return stream

                return open_proxy

            def pool() -> tuple[Endpoint, Member]:
                registry = EndpointRegistry()
                for name, edge in (("a", edge_a), ("b", edge_b)):
                    member = Member(
                        bind_id=f"tun_{name}",
                        token="",
                        session_id=f"ts_{name}",
                        client_id="cl",
                        forwards_to=f"http://{name}:8080",
                        opener=opener(edge),
                        pooling=True,
                    )
                    registry.add(
                        Endpoint(
                            url="https://refused.test",
                            proto="https",
                            binding="public",
                            host="refused.test",
                            members=(member,),
                            runtime=registry.runtime,
                        )
                    )
                endpoint = registry.lookup_public("https", "refused.test")
                assert endpoint is not None and len(endpoint.members) == 2
                return endpoint, endpoint.members[0]

            class PinnedRoute:
                """A route to the pool that picked member a (as `Endpoint.pick` may)."""

                policy = None

                def __init__(self) -> None:
                    self.endpoint, self.member = pool()
                    self.key = self.endpoint
                    self.forwards_to = self.member.forwards_to

                async def open_agent_stream(self, client_addr: str) -> trio.abc.HalfCloseableStream:
                    return await self.endpoint.open_proxy(client_addr, first=self.member)

            nursery.start_soon(refuse)
            nursery.start_soon(answer)
            route = w.router.routes["refused.test"] = PinnedRoute()
            async with w.client("refused.test") as client:
                response = await client.fetch("GET", "/where")
                assert response.status == 200 and bytes(response.body) == b"b"
                assert seen["a"] == [b"proxy-header"]  # a refused it as it read the header
                assert len(seen["b"]) == 1
                assert seen["b"][0].startswith(b"proxy-headerGET /where HTTP/1.1\r\n")
                assert "8012" in route.member.load.health.reason  # a is in back-off
                w.router.routes["refused.test"] = PinnedRoute()  # a fresh pool: a healthy again
                headers = [("accept", "application/json")]
                response = await client.fetch("POST", "/where", headers)
                assert response.status == 502
                assert response.get("ngrok-error-code") == "ERR_NGROK_8012"
                assert "http://a:8080" in json.loads(response.body)["msg"]
                assert len(seen["a"]) == 2 and len(seen["b"]) == 1  # never sent to b
            await w.settle()
            nursery.cancel_scope.cancel()


async def test_bad_response_is_502_3004_and_connect_is_405(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        await stream.receive_some(64 * KiB)
        await stream.send_all(b"this is not http\r\n\r\n")

    async with world(tls_files) as w:
        await w.upstream("bad.test", handler)
        async with w.client("bad.test") as client:
            response = await client.fetch("GET", "/")
            assert response.status == 502
            assert response.get("ngrok-error-code") == "ERR_NGROK_3004"
            response = await client.fetch("CONNECT", authority="bad.test:443")
            assert response.status == 405
            assert response.get("burrow-error-code") == "BURROW_METHOD_NOT_ALLOWED"


async def test_oversized_response_head_is_502_and_never_reaches_the_client_over_http2(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    """As on HTTP/1.1, an upstream's response head is bounded by http.max_head_size."""
    assert LIMITS.max_head_size < MiB
    async with world(tls_files) as w:
        await w.upstream("app.test", answering(response_head(MiB)))
        async with w.client() as client:
            # Were the head relayed, let the client take it (and the test say so).
            client.conn.decoder.max_header_list_size = 4 * MiB
            response = await client.fetch("GET", "/")
            assert response.status == 502 and response.ended
            assert response.get("ngrok-error-code") == "ERR_NGROK_3004"
            assert not [name for name, _ in response.headers if name.startswith(b"x-filler")]
            assert b"x" * 1000 not in response.body


# ------------------------------------------------------------------------ slow request bodies

# Small limits so a slow body is cut within about a second: 100 bytes/s over a 1 s window.
SLOW_LIMITS = replace(LIMITS, body_min_rate=100, body_rate_window=1.0)


async def test_a_trickling_body_over_http2_is_408_and_releases_only_its_upstream(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    """A byte every 0.2 s used to hold the agent stream (and the upstream connection) as long
    as the client kept trickling; now that stream gets a 408 and RST_STREAM(NO_ERROR), and a
    request on the same connection is answered meanwhile."""
    upstream_ended = trio.Event()

    async def handler(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while not isinstance(request := conn.next_event(), h11.Request):
            conn.receive_data(await stream.receive_some(64 * KiB))
        if request.method == b"GET":
            await stream.send_all(
                conn.send(h11.Response(status_code=200, headers=[("content-length", "2")]))
                + conn.send(h11.Data(data=b"ok"))
                + conn.send(h11.EndOfMessage())
            )
            return
        try:
            while await stream.receive_some(64 * KiB):
                pass
        finally:
            upstream_ended.set()

    async with world(tls_files, SLOW_LIMITS) as w:
        await w.upstream("app.test", handler)
        async with w.client("app.test") as client:
            headers = [("content-length", "100000"), ("accept", "application/json")]
            stream_id = await client.request("POST", "/", headers, end=False)
            response = client.responses[stream_id]
            began = trio.current_time()
            released = 0.0

            async def trickle() -> None:
                while response.status == 0 and response.reset is None:
                    await client.send_body(stream_id, b"z", end=False)
                    await trio.sleep(0.2)

            async def watch_upstream() -> None:
                nonlocal released
                await upstream_ended.wait()
                released = trio.current_time() - began

            async with trio.open_nursery() as nursery:
                nursery.start_soon(trickle)
                nursery.start_soon(watch_upstream)
                other = await client.fetch("GET", "/")
                assert other.status == 200 and bytes(other.body) == b"ok"
                await response.done.wait()
                answered = trio.current_time() - began
                with trio.fail_after(TIMEOUT):
                    while response.reset is None:
                        await trio.sleep(0.01)
                await upstream_ended.wait()
            assert response.status == 408 and response.ended
            assert response.get("burrow-error-code") == "BURROW_REQUEST_TIMEOUT"
            assert "too slowly" in json.loads(response.body)["msg"]
            assert response.reset == ErrorCodes.NO_ERROR  # stop sending: we answered
            assert 0.9 < answered < 2.5
            assert released < answered + 0.5
            route = w.router.routes["app.test"]
            assert isinstance(route, Route) and route.opened == route.closed == 2


async def test_a_fast_upload_over_http2_to_a_slow_reading_upstream_is_unaffected(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    """Time the stream waits on its agent stream is not the client's: an upstream that takes
    three windows before it reads still gets the whole body."""
    body = bytes(range(256)) * (4 * MiB // 256)
    gate = trio.Event()
    limits = replace(LIMITS, body_min_rate=MiB, body_rate_window=1.0)
    async with world(tls_files, limits, buffer=32 * KiB) as w:
        await w.upstream("big.test", harness.streaming_app({}, gate))
        async with w.client("big.test") as client:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.fetch, "POST", "/up", [], body)
                await trio.sleep(3.0)
                gate.set()
            [response] = client.responses.values()
            assert response.status == 200, bytes(response.body)
            assert json.loads(response.body) == {
                "sha256": hashlib.sha256(body).hexdigest(),
                "size": len(body),
            }


# ------------------------------------------- Traffic Policy: compress-response, find-replace
# The response body rewritten as it streams (`_relay_response`), no stale content-length,
# and streams with no body to change untouched.

TEXT = b"".join(b"<p>paragraph %d, Alice Smith wrote it</p>\n" % n for n in range(3000))
POLICY = """
on_http_response:
  - actions:
      - type: response-body-find-replace
        config:
          replacements:
            - {from: "Alice ([A-Z])[a-z]+", to: "A. $1."}
      - type: compress-response
"""
EXPECTED = TEXT.replace(b"Alice Smith", b"A. S.")


def chunked_upstream() -> Handler:
    """Answers every request with TEXT in four writes (chunked), or 304 for /304."""

    async def handler(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            request, _ = await read_message(conn, stream)
            if request is None:
                return
            assert isinstance(request, h11.Request)
            if request.target == b"/304":
                await stream.send_all(conn.send(h11.Response(status_code=304, headers=[])))
            else:
                head = h11.Response(status_code=200, headers=[(b"content-type", b"text/html")])
                await stream.send_all(conn.send(head))
                if request.method != b"HEAD":
                    quarter = len(TEXT) // 4
                    for offset in range(0, len(TEXT), quarter):
                        await stream.send_all(
                            conn.send(h11.Data(data=TEXT[offset : offset + quarter]))
                        )
                        await trio.sleep(0.01)
            await stream.send_all(conn.send(h11.EndOfMessage()))
            conn.start_next_cycle()

    return handler


async def test_find_replace_and_compression_over_http2(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    async with world(tls_files) as w:
        await w.upstream("app.test", chunked_upstream())
        attach(w, "app.test", POLICY)
        async with w.client() as client:
            gzipped = await client.fetch("GET", "/", [("accept-encoding", "gzip")])
            assert (gzipped.status, gzipped.ended) == (200, True)
            assert gzipped.get("content-encoding") == "gzip"
            assert gzipped.get("vary") == "Accept-Encoding"
            assert gzipped.get("content-length") is None
            assert gzip.decompress(bytes(gzipped.body)) == EXPECTED
            deflated = await client.fetch("GET", "/", [("accept-encoding", "deflate")])
            assert zlib.decompress(bytes(deflated.body)) == EXPECTED
            plain = await client.fetch("GET", "/")
            assert plain.get("content-encoding") is None
            assert bytes(plain.body) == EXPECTED  # rewritten, not compressed
            head = await client.fetch("HEAD", "/", [("accept-encoding", "gzip")])
            assert (head.status, bytes(head.body), head.ended) == (200, b"", True)
            assert head.get("content-encoding") is None
            not_modified = await client.fetch("GET", "/304", [("accept-encoding", "gzip")])
            assert (not_modified.status, bytes(not_modified.body)) == (304, b"")
            assert not_modified.get("content-encoding") is None


async def test_curl_compressed_over_http2_decodes_to_the_upstreams_bytes(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    length = (b"content-length", b"%d" % len(TEXT))

    def respond(request: h11.Request, body: bytes) -> Reply:
        return 200, [(b"content-type", b"text/html"), length], TEXT

    async with world(tls_files) as w:
        await w.app("app.test", respond)
        attach(w, "app.test", "on_http_response: [{actions: [{type: compress-response}]}]")
        code, out, err = await curl(
            "--compressed", "-D", "-", *w.curl_args("app.test"), w.url("app.test")
        )
        assert code == 0, err
        head, _, body = out.partition(b"\r\n\r\n")
        lines = head.lower().split(b"\r\n")
        assert lines[0].strip() == b"http/2 200"
        assert b"content-encoding: gzip" in lines  # curl offers deflate, gzip, br: our order
        assert not any(line.startswith(b"content-length") for line in lines)
        assert body == TEXT  # curl decoded it


# ------------------------------------------------------------------ kept agent streams


def echo_target_and_body(request: h11.Request, body: bytes) -> Reply:
    payload = request.target + b" " + body
    return 200, [(b"content-length", str(len(payload)).encode())], payload


async def test_requests_one_after_another_share_one_agent_stream_over_http2(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    """As over HTTP/1.1, a finished exchange's agent stream (and so the agent's upstream
    connection) carries the connection's next request to the same endpoint."""
    async with world(tls_files) as w:
        upstream = await w.app("app.test", echo_target_and_body)
        route = w.route_list[0]
        async with w.client() as client:
            for index in range(3):
                response = await client.fetch("GET", f"/{index}")
                assert (response.status, bytes(response.body)) == (200, f"/{index} ".encode())
            posted = await client.fetch("POST", "/form", body=b"a=1")
            assert (posted.status, bytes(posted.body)) == (200, b"/form a=1")
            assert route.opened == 1 and upstream.connections == 1
            assert [r.target for r, _ in upstream.requests] == [b"/0", b"/1", b"/2", b"/form"]
            # Idle past AGENT_STREAM_HOLD, the client holds no agent stream any more.
            with trio.fail_after(TIMEOUT):
                while route.closed < 1:
                    await trio.sleep(0.05)
            again = await client.fetch("GET", "/later")
            assert again.status == 200 and route.opened == 2


async def test_a_kept_stream_the_upstream_closed_is_retried_on_a_new_one_over_http2(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    """An upstream that closes its connection after each answer leaves a dead kept stream: a
    GET on it is sent once more on a new stream, and the client never sees the failure."""
    async with world(tls_files) as w:
        await w.upstream("app.test", answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
        route = w.route_list[0]
        async with w.client() as client:
            first = await client.fetch("GET", "/one")
            assert first.status == 200
            await trio.sleep(0.1)  # the upstream has closed: the kept stream is dead
            second = await client.fetch("GET", "/two")
            assert second.status == 200 and bytes(second.body) == b"ok"
            assert route.opened == 2  # the kept (dead) stream, then a new one for the retry


async def test_a_burst_keeps_at_most_max_kept_agent_streams_over_http2(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    count = MAX_KEPT + 4
    async with world(tls_files) as w:
        await w.app("app.test", echo_target_and_body)
        route = w.route_list[0]
        gate = trio.Event()
        original = route.open_agent_stream

        async def held_open(client_addr: str) -> trio.abc.HalfCloseableStream:
            stream = await original(client_addr)
            if route.opened == count:
                gate.set()
            await gate.wait()  # all requests in flight at once: none reuses a stream
            return stream

        route.open_agent_stream = held_open  # type: ignore[method-assign]
        async with w.client() as client:
            ids = [await client.request("GET", f"/{index}") for index in range(count)]
            for stream_id in ids:
                await client.responses[stream_id].done.wait()
                assert client.responses[stream_id].status == 200
            # The burst's streams beyond MAX_KEPT are closed at once, the rest kept.
            with trio.fail_after(TIMEOUT):
                while route.closed < count - MAX_KEPT:
                    await trio.sleep(0.01)
            assert route.opened == count and route.closed == count - MAX_KEPT
