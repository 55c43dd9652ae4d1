"""jwt-validation end to end: a real edge that fetches the JWKS from a real HTTPS server on
127.0.0.1 (a certificate from a test CA, trusted through `jwks.ca_file`), a real agent whose
config gives the endpoint the policy, and curl presenting tokens signed with a real key. Also a
JWKS URL that hangs: the endpoint answers 503 at once (fail closed, nothing waits for the
fetch), and the edge logs the bounded timeout."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.e2e.harness import Agent, Edge, curl_endpoint, make_agent, make_edge
from tests.e2e.upstreams import HttpUpstream
from tests.edge.policy.jwt_helpers import (
    AUDIENCE,
    ISSUER,
    b64url,
    claims,
    key_for,
    public_jwk,
    sign,
)

#: How long the edge may take to fetch the keys after the endpoint binds (it takes well under a
#: second on loopback; this only catches a hang).
KEYS_DEADLINE = 30.0


class _JwksHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = json.dumps({"keys": [public_jwk(key_for("RS256"), "e2e-key")]}).encode()
    fetches: list[str] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.fetches.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/jwk-set+json")
        self.send_header("Cache-Control", "max-age=300")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


@pytest.fixture
def jwks_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS JWKS server on 127.0.0.1; its URL and the CA file that trusts it."""
    ca = trustme.CA()
    ca_file = tmp_path / "jwks-ca.pem"
    ca_file.write_bytes(ca.cert_pem.bytes())
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _JwksHandler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json", ca_file
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def edge(tmp_path: Path, jwks_server: tuple[str, Path]) -> Iterator[Edge]:
    running = make_edge(tmp_path, extra_config=f"jwks: {{ca_file: {jwks_server[1]}}}\n").start()
    try:
        yield running
    finally:
        running.stop()


HEADER_TOKEN = "{type: access_token, method: header, name: Authorization, prefix: 'Bearer '}"


def start_agent(
    edge: Edge, upstream: HttpUpstream, tmp_path: Path, jwks_url: str, token: str = HEADER_TOKEN
) -> Agent:
    config = tmp_path / "burrow.yml"
    config.write_text(
        "version: 3\n"
        "agent:\n  log: stderr\n"
        "endpoints:\n"
        "  - name: api\n"
        "    url: https://\n"
        "    upstream:\n"
        f"      url: 127.0.0.1:{upstream.port}\n"
        "    traffic_policy:\n"
        "      on_http_request:\n"
        "        - actions:\n"
        "            - type: jwt-validation\n"
        "              config:\n"
        f"                issuer: {{allow_list: [{{value: '{ISSUER}'}}]}}\n"
        f"                audience: {{allow_list: [{{value: '{AUDIENCE}'}}]}}\n"
        "                http:\n"
        "                  tokens:\n"
        f"                    - {token}\n"
        "                jws:\n"
        "                  allowed_algorithms: [RS256]\n"
        f"                  keys: {{sources: {{additional_jkus: ['{jwks_url}']}}}}\n"
        "        - actions:\n"
        "            - type: add-headers\n"
        "              config:\n"
        "                headers:\n"
        "                  x-jwt-sub: ${actions.ngrok.jwt_validation.tokens[0].payload.sub}\n"
    )
    agent = make_agent(edge, edge.credential(), "api", tmp_path, "--config", str(config))
    agent.args[0] = "start"
    return agent.start()


def get(edge: Edge, agent: Agent, token: str | None) -> subprocess.CompletedProcess[str]:
    auth = ["--header", f"Authorization: Bearer {token}"] if token is not None else []
    return curl_endpoint(edge, agent.host, ["/headers"], "--include", "--http1.1", *auth)


def test_a_signed_token_is_accepted_and_a_tampered_one_refused(
    edge: Edge, upstream: HttpUpstream, tmp_path: Path, jwks_server: tuple[str, Path]
) -> None:
    now = time.time()
    token = sign(key_for("RS256"), "RS256", claims(now), kid="e2e-key")
    agent = start_agent(edge, upstream, tmp_path, jwks_server[0])
    try:
        # The keys are fetched in the background once the endpoint binds; until they arrive a
        # request gets 503 (never the upstream).
        deadline = time.monotonic() + KEYS_DEADLINE
        accepted = get(edge, agent, token)
        while accepted.stdout.startswith("HTTP/1.1 503") and time.monotonic() < deadline:
            assert "ERR_NGROK_7186" in accepted.stdout
            time.sleep(0.1)
            accepted = get(edge, agent, token)
        assert accepted.returncode == 0, accepted.stderr
        head, _, body = accepted.stdout.partition("\n\n")
        assert head.startswith("HTTP/1.1 200"), accepted.stdout
        seen = {name.lower(): value for name, value in json.loads(body)["headers"]}
        assert seen["x-jwt-sub"] == "user-1"  # the result variables reached a later rule
        assert _JwksHandler.fetches == ["/.well-known/jwks.json"]

        header, _, signature = token.split(".")
        forged = b64url(json.dumps(claims(now, sub="admin")).encode())
        tampered = get(edge, agent, f"{header}.{forged}.{signature}")
        assert tampered.stdout.startswith("HTTP/1.1 401"), tampered.stdout
        assert 'www-authenticate: bearer error="invalid_token"' in tampered.stdout.lower()
        assert "signature is not valid" in tampered.stdout

        anonymous = get(edge, agent, None)
        assert anonymous.stdout.startswith("HTTP/1.1 401"), anonymous.stdout
        assert "www-authenticate: bearer\n" in anonymous.stdout.lower()  # (universal newlines)
    finally:
        agent.kill()


def test_a_hanging_jwks_url_fails_closed_without_holding_requests(
    tmp_path: Path, upstream: HttpUpstream
) -> None:
    # A listener that never accepts: the kernel completes the TCP handshake, then the edge's
    # TLS ClientHello is never answered.
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(8)
    url = f"https://127.0.0.1:{stuck.getsockname()[1]}/jwks"
    edge = make_edge(tmp_path, extra_config="jwks: {fetch_timeout: 1s, retry_interval: 1s}\n")
    edge.start()
    try:
        agent = start_agent(edge, upstream, tmp_path, url)
        try:
            token = sign(key_for("RS256"), "RS256", claims(time.time()), kid="e2e-key")
            started = time.monotonic()
            refused = get(edge, agent, token)
            assert time.monotonic() - started < 5.0  # answered at once, not after a fetch
            assert refused.stdout.startswith("HTTP/1.1 503"), refused.stdout
            assert "retry-after: 5" in refused.stdout.lower()
            assert "ERR_NGROK_7186" in refused.stdout
            # Each try costs one fetch_timeout and a WARNING naming the URL.
            deadline = time.monotonic() + KEYS_DEADLINE
            while "no complete answer within" not in edge.log() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert f"JWKS {url}: no complete answer within jwks.fetch_timeout (1.0s)" in edge.log()
            assert get(edge, agent, token).stdout.startswith("HTTP/1.1 503")  # still closed
        finally:
            agent.kill()
    finally:
        edge.stop()
        stuck.close()


def test_a_token_in_a_posted_form_is_read_from_the_body_which_still_reaches_the_upstream(
    edge: Edge, upstream: HttpUpstream, tmp_path: Path, jwks_server: tuple[str, Path]
) -> None:
    body_token = "{type: id_token, method: body, name: _id_token}"
    agent = start_agent(edge, upstream, tmp_path, jwks_server[0], token=body_token)
    try:
        token = sign(key_for("RS256"), "RS256", claims(time.time()), kid="e2e-key")
        form = f"a=1&_id_token={token}"

        def post(data: str) -> subprocess.CompletedProcess[str]:
            return curl_endpoint(
                edge, agent.host, ["/submit"], "--include", "--http1.1", "--data", data
            )

        deadline = time.monotonic() + KEYS_DEADLINE
        accepted = post(form)
        while accepted.stdout.startswith("HTTP/1.1 503") and time.monotonic() < deadline:
            time.sleep(0.1)
            accepted = post(form)
        head, _, answer = accepted.stdout.partition("\n\n")
        assert head.startswith("HTTP/1.1 200"), accepted.stdout
        # The upstream got the body the edge read, whole (the test upstream hashes POSTs).
        seen = json.loads(answer)
        assert seen["size"] == len(form)
        assert seen["sha256"] == hashlib.sha256(form.encode()).hexdigest()

        missing = post("a=1")
        assert missing.stdout.startswith("HTTP/1.1 401"), missing.stdout
        assert "Token could not be found in request (body field _id_token)" in missing.stdout
    finally:
        agent.kill()
