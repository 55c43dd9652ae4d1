"""forward-internal end to end: a real edge, a "clinic" agent that binds internal endpoints (an
HTTP API, a TLS endpoint whose TLS the agent terminates, a tcp echo), a "vendor" agent whose
public endpoints forward into them with their Traffic Policy, and curl / Python's ssl as the
clients. The edge allows 2 forwards per request, so that a chain of 3 is refused."""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.e2e.harness import (
    SHARED_PORT_RANGE,
    Agent,
    EchoServer,
    Edge,
    curl_endpoint,
    make_agent,
    make_edge,
    roundtrip,
)
from tests.e2e.upstreams import HttpUpstream

MAX_HOPS = 2
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    running = make_edge(
        tmp_path_factory.mktemp("forward-edge"),
        port_range=SHARED_PORT_RANGE,
        extra_config=f"http: {{http2: true}}\nlimits: {{forward_internal_max_hops: {MAX_HOPS}}}\n",
    ).start()
    try:
        yield running
    finally:
        running.stop()


def endpoint(url: str, upstream: str, policy: str = "", extra: str = "") -> str:
    """One item of a v3 config's `endpoints:`; `policy` is YAML indented under traffic_policy."""
    name = hashlib.sha256(f"{url} {upstream} {policy}".encode()).hexdigest()[:12]
    text = f"  - name: e{name}\n    url: {url}\n    upstream:\n      url: {upstream}\n" + extra
    if policy:
        text += "    traffic_policy:\n" + "".join(f"      {line}\n" for line in policy.splitlines())
    return text


def forward_to(url: str, phase: str = "on_http_request", extra: str = "") -> str:
    action = f"      - type: forward-internal\n        config: {{url: {url}{extra}}}"
    return f"{phase}:\n  - actions:\n{action}"


def start(edge: Edge, tmp_path: Path, name: str, *endpoints: str) -> tuple[Agent, list[str]]:
    """An agent serving `endpoints` from a config file, once every one is online; its URLs."""
    config = tmp_path / f"{name}.yml"
    config.write_text("version: 3\nagent:\n  log: stderr\nendpoints:\n" + "".join(endpoints))
    agent = make_agent(
        edge, edge.credential(), "--all", tmp_path, "--config", str(config), name=name
    )
    agent.args[0] = "start"
    agent.start()
    urls = [agent.url]
    try:
        urls += [agent.wait_forwarding() for _ in endpoints[1:]]
    except BaseException:
        agent.kill()
        raise
    return agent, urls


def response_headers(out: str) -> tuple[str, dict[str, str], str]:
    """(status line, lower-cased headers, body) of `curl --include` output."""
    head, _, body = out.partition("\n\n")
    status, *lines = head.splitlines()
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def test_https_forwards_to_the_internal_api_with_both_policies(
    edge: Edge, upstream: HttpUpstream, echo: EchoServer, tmp_path: Path
) -> None:
    clinic_policy = (
        "on_http_request:\n"
        "  - actions:\n"
        "      - type: add-headers\n"
        "        config: {headers: {x-clinic-endpoint: '${endpoint.url}'}}\n"
        "on_http_response:\n"
        "  - actions: [{type: add-headers, config: {headers: {x-clinic: seen}}}]"
    )
    vendor_policy = (
        forward_to("https://api.clinic-a.internal") + "\n"
        "on_http_response:\n"
        "  - actions: [{type: add-headers, config: {headers: {x-vendor: seen}}}]"
    )
    host = "acme-api.burrow.localhost"
    clinic, _ = start(
        edge,
        tmp_path,
        "clinic",
        endpoint("https://api.clinic-a.internal", f"127.0.0.1:{upstream.port}", clinic_policy),
    )
    # The vendor's own upstream is an echo server that must never hear from anyone.
    vendor, urls = start(
        edge,
        tmp_path,
        "vendor",
        endpoint(f"https://{host}", f"127.0.0.1:{echo.port}", vendor_policy),
    )
    try:
        assert urls == [f"https://{host}:{edge.agents_port}"]
        for version in ("--http1.1", "--http2"):
            out = curl_endpoint(
                edge, host, ["/headers"], version, "--include", "--interface", "127.0.0.2"
            )
            assert out.returncode == 0, out.stderr
            status, headers, body = response_headers(out.stdout)
            assert status.split()[1] == "200", out.stdout
            # Both response phases ran: the target's, then the forwarder's.
            assert (headers["x-clinic"], headers["x-vendor"]) == ("seen", "seen")
            seen = {name.lower(): value for name, value in json.loads(body)["headers"]}
            # Host stays the public one; X-Forwarded-* describe the public client.
            assert seen["host"] == f"{host}:{edge.agents_port}"
            assert seen["x-forwarded-host"] == f"{host}:{edge.agents_port}"
            assert seen["x-forwarded-proto"] == "https"
            assert seen["x-forwarded-for"] == "127.0.0.2"
            assert seen["x-clinic-endpoint"] == "https://api.clinic-a.internal"
        assert echo.connections == 0
    finally:
        vendor.kill()
        clinic.kill()


def test_tls_and_tcp_forwards_pass_the_bytes_untouched(
    edge: Edge, upstream: HttpUpstream, echo: EchoServer, tmp_path: Path
) -> None:
    """The client's TLS ends at the clinic's agent: it sees the agent's certificate, which the
    edge's CA did not issue, so the edge cannot have terminated it."""
    public = "db-acme.burrow.localhost"
    clinic_ca = trustme.CA(organization_name="Clinic A test CA")
    cert = clinic_ca.issue_cert(public)
    (tmp_path / "db.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(tmp_path / "db.key"))
    clinic_ca.cert_pem.write_to_path(str(tmp_path / "clinic-ca.pem"))
    termination = (
        "    agent_tls_termination:\n"
        f"      server_certificate: {tmp_path / 'db.pem'}\n"
        f"      server_private_key: {tmp_path / 'db.key'}\n"
    )
    decoy = EchoServer()  # the vendor's own upstreams: never reached
    clinic, _ = start(
        edge,
        tmp_path,
        "clinic",
        endpoint(
            "tls://db.clinic-a.internal:5432", f"127.0.0.1:{upstream.port}", extra=termination
        ),
        endpoint("tcp://echo.clinic-a.internal:7000", f"127.0.0.1:{echo.port}"),
    )
    vendor, urls = start(
        edge,
        tmp_path,
        "vendor",
        endpoint(
            f"tls://{public}",
            f"127.0.0.1:{decoy.port}",
            forward_to("tls://db.clinic-a.internal:5432", "on_tcp_connect"),
        ),
        endpoint(
            "tcp://",
            f"127.0.0.1:{decoy.port}",
            forward_to("tcp://echo.clinic-a.internal:7000", "on_tcp_connect"),
        ),
    )
    try:
        context = ssl.create_default_context(cafile=str(tmp_path / "clinic-ca.pem"))
        with (
            socket.create_connection(("127.0.0.1", edge.agents_port), timeout=TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=public) as tls,
        ):
            peer = tls.getpeercert()
            assert peer is not None
            issuer = str(peer["issuer"])
            request = f"GET /db HTTP/1.1\r\nHost: {public}\r\nConnection: close\r\n\r\n"
            tls.sendall(request.encode())
            reply = b""
            while chunk := tls.recv(65536):
                reply += chunk
        assert "Clinic A test CA" in issuer  # the agent's certificate, not the edge's
        assert reply.endswith(b"hello from /db\n"), reply
        # The edge's own CA does not vouch for what the client saw.
        edge_only = ssl.create_default_context(cafile=str(edge.ca_path))
        with (
            socket.create_connection(("127.0.0.1", edge.agents_port), timeout=TIMEOUT) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            edge_only.wrap_socket(raw, server_hostname=public)
        tcp_port = int(next(url for url in urls if url.startswith("tcp://")).rsplit(":", 1)[1])
        assert roundtrip(tcp_port, b"plain bytes") == b"plain bytes"
        assert echo.connections == 1 and decoy.connections == 0
    finally:
        vendor.kill()
        clinic.kill()
        decoy.close()


def test_failed_forwards_answer_with_ngroks_codes(
    edge: Edge, upstream: HttpUpstream, echo: EchoServer, tmp_path: Path
) -> None:
    served = f"127.0.0.1:{upstream.port}"
    clinic, _ = start(
        edge,
        tmp_path,
        "clinic",
        endpoint(
            "https://loop.clinic-a.internal", served, forward_to("https://loop.clinic-a.internal")
        ),
        endpoint("https://a.clinic-a.internal", served, forward_to("https://b.clinic-a.internal")),
        endpoint("https://b.clinic-a.internal", served, forward_to("https://c.clinic-a.internal")),
        endpoint("https://c.clinic-a.internal", served),
    )
    fallback = forward_to("https://gone.clinic-a.internal", extra=", on_error: continue") + (
        "\n      - type: custom-response\n"
        "        config: {status_code: 503, body: '${actions.ngrok.forward_internal.error.code}'}"
    )
    upstream_at = f"127.0.0.1:{echo.port}"
    vendor, _ = start(
        edge,
        tmp_path,
        "vendor",
        endpoint(
            "https://acme-gone.burrow.localhost",
            upstream_at,
            forward_to("https://gone.clinic-a.internal"),
        ),
        endpoint("https://acme-fallback.burrow.localhost", upstream_at, fallback),
        endpoint(
            "https://acme-loop.burrow.localhost",
            upstream_at,
            forward_to("https://loop.clinic-a.internal"),
        ),
        endpoint(
            "https://acme-long.burrow.localhost",
            upstream_at,
            forward_to("https://a.clinic-a.internal"),
        ),
        endpoint(
            "https://acme-chain.burrow.localhost",
            upstream_at,
            forward_to("https://b.clinic-a.internal"),
        ),
        endpoint(
            "tls://acme-db-gone.burrow.localhost",
            upstream_at,
            forward_to("tls://gone.clinic-a.internal:5432", "on_tcp_connect"),
        ),
    )

    def get(name: str) -> tuple[str, dict[str, str], str]:
        out = curl_endpoint(edge, f"acme-{name}.burrow.localhost", ["/x"], "--include")
        assert out.returncode == 0, out.stderr
        return response_headers(out.stdout)

    try:
        status, headers, body = get("gone")
        assert status.split()[1] == "404" and headers["ngrok-error-code"] == "ERR_NGROK_3200"
        assert "gone.clinic-a.internal" in body
        status, headers, body = get("fallback")
        assert (status.split()[1], body) == ("503", "ERR_NGROK_3200")
        assert "ngrok-error-code" not in headers  # the policy's answer, not an edge error
        status, headers, body = get("loop")
        assert status.split()[1] == "502" and headers["ngrok-error-code"] == "ERR_NGROK_3501"
        assert "loop" in body
        status, headers, body = get("long")  # public -> a -> b -> c: 3 forwards
        assert status.split()[1] == "502" and headers["ngrok-error-code"] == "ERR_NGROK_3501"
        assert f"may only forward through {MAX_HOPS} endpoints" in body
        status, _, body = get("chain")  # public -> b -> c: 2 forwards
        assert (status.split()[1], body) == ("200", "hello from /x\n")
        # A tls:// forward to an offline endpoint closes the connection: no handshake.
        with (
            socket.create_connection(("127.0.0.1", edge.agents_port), timeout=TIMEOUT) as raw,
            pytest.raises((ssl.SSLError, ConnectionError)),
        ):
            ssl.create_default_context().wrap_socket(
                raw, server_hostname="acme-db-gone.burrow.localhost"
            )
        assert echo.connections == 0
        logged = edge.log()
        assert "forward-internal of the connection" in logged and "ERR_NGROK_3200" in logged
    finally:
        vendor.kill()
        clinic.kill()


def test_openssl_s_client_sees_the_agents_certificate(
    edge: Edge, upstream: HttpUpstream, tmp_path: Path
) -> None:
    public = "db2-acme.burrow.localhost"
    clinic_ca = trustme.CA(organization_name="Clinic A test CA")
    cert = clinic_ca.issue_cert(public)
    (tmp_path / "db.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(tmp_path / "db.key"))
    clinic_ca.cert_pem.write_to_path(str(tmp_path / "clinic-ca.pem"))
    termination = (
        "    agent_tls_termination:\n"
        f"      server_certificate: {tmp_path / 'db.pem'}\n"
        f"      server_private_key: {tmp_path / 'db.key'}\n"
    )
    clinic, _ = start(
        edge,
        tmp_path,
        "clinic",
        endpoint(
            "tls://db2.clinic-a.internal:5432", f"127.0.0.1:{upstream.port}", extra=termination
        ),
    )
    vendor, _ = start(
        edge,
        tmp_path,
        "vendor",
        endpoint(
            f"tls://{public}",
            f"127.0.0.1:{upstream.port}",
            forward_to("tls://db2.clinic-a.internal:5432", "on_tcp_connect"),
        ),
    )
    try:
        out = subprocess.run(
            [
                "openssl", "s_client", "-connect", f"127.0.0.1:{edge.agents_port}",
                "-servername", public, "-CAfile", str(tmp_path / "clinic-ca.pem"),
                "-verify_return_error", "-quiet",
            ],
            input=f"GET /s HTTP/1.1\r\nHost: {public}\r\nConnection: close\r\n\r\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )  # fmt: skip
        assert "hello from /s" in out.stdout, out.stderr
        assert "Clinic A test CA" in out.stderr  # the chain openssl verified is the agent's
    finally:
        vendor.kill()
        clinic.kill()
