"""Tests for edge/http/h2/stream.py: one HTTP/2 request stream answered as an HTTP/1.1 exchange
over an agent stream (early answers, 1xx, HEAD, and the error pages a stream gets), through the
real HTTP/2 proxy and clients of `tests/edge/http/h2/test_proxy.py`'s harness."""

from __future__ import annotations

import json
from pathlib import Path

import h11
import trio
import trio.testing
from h2.errors import ErrorCodes

from edge.config import CertificateFiles
from protocol.adapters.mux import open_mux_session
from protocol.formats.units import KiB, MiB
from protocol.wire.errors import ErrorCode
from protocol.wire.session import Role
from tests.edge.http.h1.test_proxy import DeadRoute, answering, read_message, response_head
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
            response = await client.fetch("GET", "/", authority="gone.test")
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
