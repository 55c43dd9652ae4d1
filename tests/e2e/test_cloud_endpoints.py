"""Cloud endpoints on a real `burrow-edge serve`: created, changed and deleted through the admin
API (plain HTTP, ngrok's own `ngrok-api` client, and `burrow-edge endpoint`), answered by curl
through the public ports at once, kept across a restart, and refused where ngrok refuses them
(ERR_NGROK_2235 for a policy that may not answer; ERR_NGROK_334 for an agent on a cloud URL).
A cloud endpoint's policy runs as an agent endpoint's: its jwt-validation keys are fetched from
a real JWKS server, and its `log` actions are events in the admin API."""

from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import trustme

from tests.e2e.harness import BIN, CURL_TIMEOUT, Edge, curl_endpoint, make_agent, make_edge
from tests.e2e.test_admin_api import API_PYTHON
from tests.e2e.upstreams import HttpUpstream
from tests.edge.policy.jwt_helpers import AUDIENCE, ISSUER, claims, key_for, public_jwk, sign

CLOUD_API_CLIENT = Path(__file__).with_name("cloud_api_client.py")
#: The issue's bound: a change is live within a second of the API's answer.
LIVE_WITHIN = 1.0


def answer(body: str, status: int = 200) -> str:
    return json.dumps(
        {
            "on_http_request": [
                {
                    "actions": [
                        {
                            "type": "custom-response",
                            "config": {"status_code": status, "body": body},
                        }
                    ]
                }
            ]
        }
    )


def admin(edge: Edge, key: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{edge.admin_url}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Ngrok-Version": "2"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def curl_http(edge: Edge, host: str) -> subprocess.CompletedProcess[str]:
    return curl_endpoint(edge, host, ["/"], "--include", scheme="http")


def https_body(edge: Edge, host: str) -> str:
    done = curl_endpoint(edge, host, ["/"])
    assert done.returncode == 0, done.stderr
    return done.stdout


def timed_https_body(edge: Edge, host: str) -> tuple[str, float]:
    """The first answer after a change, and how long after the change it came: no retries, so
    the change was live when the request arrived."""
    start = time.monotonic()
    body = https_body(edge, host)
    return body, time.monotonic() - start


def test_served_at_once_changed_kept_across_restart_and_removed(
    edge: Edge, upstream: HttpUpstream, tmp_path: Path
) -> None:
    key = edge.api_key("--description", "cloud endpoint tests")
    # An agent endpoint serves throughout: cloud changes must not disturb it.
    agent = make_agent(
        edge,
        edge.credential(),
        str(upstream.port),
        tmp_path,
        "--url",
        "https://agent.burrow.localhost",
        command="http",
    ).start()
    try:
        assert https_body(edge, "agent.burrow.localhost").startswith("hello")

        status, created = admin(
            edge,
            key,
            "POST",
            "/endpoints",
            {"type": "cloud", "url": "https://api.acme.example", "traffic_policy": answer("v1")},
        )
        assert status == 201, created
        body, took = timed_https_body(edge, "api.acme.example")
        assert body == "v1" and took < LIVE_WITHIN
        status, plain = admin(
            edge,
            key,
            "POST",
            "/endpoints",
            {"type": "cloud", "url": "http://api.acme.example", "traffic_policy": answer("plain")},
        )
        assert status == 201, plain
        served = curl_http(edge, "api.acme.example")
        assert served.stdout.startswith("HTTP/1.1 200") and served.stdout.endswith("plain")
        assert https_body(edge, "agent.burrow.localhost").startswith("hello")

        status, updated = admin(
            edge, key, "PATCH", f"/endpoints/{created['id']}", {"traffic_policy": answer("v2")}
        )
        assert status == 200 and updated["traffic_policy"] == answer("v2")
        body, took = timed_https_body(edge, "api.acme.example")
        assert body == "v2" and took < LIVE_WITHIN
        assert https_body(edge, "agent.burrow.localhost").startswith("hello")

        # A policy that may not answer every request is refused; nothing changes.
        for change in (
            ("POST", "/endpoints", {"type": "cloud", "url": "https://b.acme.example"}),
            ("PATCH", f"/endpoints/{created['id']}", {}),
        ):
            method, path, body_fields = change
            refused_status, error = admin(
                edge, key, method, path, {**body_fields, "traffic_policy": "on_http_request: []"}
            )
            assert (refused_status, error["error_code"]) == (400, "ERR_NGROK_2235"), error
            assert "not guaranteed to handle traffic" in error["msg"]
        assert https_body(edge, "api.acme.example") == "v2"

        # An agent asking for the cloud endpoint's URL is told 334, naming the fix.
        late = make_agent(
            edge,
            edge.credential(),
            str(upstream.port),
            tmp_path,
            "--url",
            "https://api.acme.example",
            command="http",
            name="late",
        ).run_to_exit()
        out = late.stdout + late.stderr
        assert late.returncode != 0 and "ERR_NGROK_334" in out, out
        assert f"already online as cloud endpoint {created['id']}" in out
        assert f"burrow-edge endpoint delete {created['id']}" in out
    finally:
        agent.kill()

    edge.stop()
    edge.start()
    assert https_body(edge, "api.acme.example") == "v2"
    assert curl_http(edge, "api.acme.example").stdout.endswith("plain")
    status, listed = admin(edge, key, "GET", "/endpoints")
    assert status == 200
    assert {e["id"] for e in listed["endpoints"]} == {created["id"], plain["id"]}

    for endpoint in (created, plain):
        status, _ = admin(edge, key, "DELETE", f"/endpoints/{endpoint['id']}")
        assert status == 204
    gone = curl_http(edge, "api.acme.example")
    assert gone.stdout.startswith("HTTP/1.1 404"), gone.stdout
    assert "ERR_NGROK_3200" in gone.stdout
    offline = curl_endpoint(edge, "api.acme.example", ["/"])
    assert offline.returncode != 0  # no endpoint: the TLS port has no certificate to offer
    events, types = admin(edge, key, "GET", "/events?limit=100")
    assert events == 200
    names = [e["event_type"] for e in types["events"]]
    assert names.count("endpoint_created.v0") == 2 and names.count("endpoint_deleted.v0") == 2
    assert names.count("endpoint_updated.v0") == 1


def cloud_api(edge: Edge, key: str, *args: str) -> Any:
    assert API_PYTHON.exists(), f"{API_PYTHON} is missing: run ./dev test once to create it"
    done = subprocess.run(
        [str(API_PYTHON), str(CLOUD_API_CLIENT), edge.admin_url, key, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"cloud_api_client.py {args[0]} failed:\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_ngrok_api_client_manages_a_cloud_endpoint(shared_edge: Edge, tmp_path: Path) -> None:
    edge = shared_edge
    key = edge.api_key("--description", "ngrok-api")
    v1, v2 = tmp_path / "v1.json", tmp_path / "v2.yml"
    v1.write_text(answer("from ngrok-api"))
    v2.write_text(
        "on_http_request:\n  - actions:\n      - type: deny\n        config: {status_code: 451}\n"
    )
    host = "ngrok-api.acme.example"
    created = cloud_api(edge, key, "create", f"https://{host}", str(v1), "made by ngrok-api")
    assert created["id"].startswith("ep_") and created["type"] == "cloud"
    assert created["url"] == f"https://{host}" and created["description"] == "made by ngrok-api"
    assert created["metadata"] == '{"owner": "acme"}' and created["bindings"] == ["public"]
    assert created["tunnel_session"] is None
    assert https_body(edge, host) == "from ngrok-api"

    assert cloud_api(edge, key, "get", created["id"]) == created
    listed = cloud_api(edge, key, "list", f"https://{host}")
    assert [e["id"] for e in listed["all"]] == [created["id"]]
    assert listed["first_page"]["next_page_uri"] is None

    updated = cloud_api(edge, key, "update", created["id"], str(v2))
    assert updated["traffic_policy"] == v2.read_text()
    denied = curl_endpoint(edge, host, ["/"], "--include")
    assert denied.stdout.startswith("HTTP/1.1 451") or denied.stdout.startswith("HTTP/2 451")

    empty = tmp_path / "empty.yml"
    empty.write_text("on_http_request: []\n")
    refused = cloud_api(edge, key, "refused", "https://nope.acme.example", str(empty))
    assert refused["error"]["error_code"] == "ERR_NGROK_2235"
    assert refused["error"]["status"] == 400

    deleted = cloud_api(edge, key, "delete", created["id"])
    assert deleted["deleted"] is True and deleted["get_after"]["status"] == 404
    assert curl_endpoint(edge, host, ["/"]).returncode != 0


def test_burrow_edge_endpoint_commands(shared_edge: Edge, tmp_path: Path) -> None:
    edge = shared_edge
    key = edge.api_key("--description", "cli")
    policy = tmp_path / "policy.yml"
    policy.write_text(
        "on_http_request:\n  - actions:\n      - type: custom-response\n"
        "        config: {status_code: 200, body: from the cli}\n"
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "burrow-edge"), "endpoint", *args, "--api-url", edge.admin_url],
            capture_output=True,
            text=True,
            timeout=CURL_TIMEOUT,
            check=False,
            env={"BURROW_API_KEY": key, "PATH": "/usr/bin:/bin"},
        )

    made = cli(
        "create",
        "--url",
        "https://cli.acme.example",
        "--traffic-policy-file",
        str(policy),
        "--json",
    )
    assert made.returncode == 0, made.stderr
    endpoint = json.loads(made.stdout)
    assert https_body(edge, "cli.acme.example") == "from the cli"
    listed = cli("list", "--url", "https://cli.acme.example")
    assert listed.stdout.startswith(f"{endpoint['id']}  cloud  https://cli.acme.example")
    deleted = cli("delete", endpoint["id"])
    assert deleted.returncode == 0 and deleted.stdout == f"endpoint {endpoint['id']} deleted\n"
    assert curl_endpoint(edge, "cli.acme.example", ["/"]).returncode != 0


def test_a_tls_cloud_endpoint_closes_what_its_policy_denies(shared_edge: Edge) -> None:
    """A tls:// cloud endpoint runs its on_tcp_connect policy in the front door: a deny closes
    the connection before any handshake bytes come back, and the edge logs no failure."""
    edge = shared_edge
    key = edge.api_key("--description", "tls")
    mark = edge.log_size()
    status, created = admin(
        edge,
        key,
        "POST",
        "/endpoints",
        {
            "type": "cloud",
            "url": "tls://db.acme.example",
            "traffic_policy": "on_tcp_connect:\n  - actions: [{type: deny}]\n",
        },
    )
    assert status == 201, created
    assert created["proto"] == "tls" and created["port"] == 443
    done = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{edge.agents_port}",
            "-servername",
            "db.acme.example",
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "BEGIN CERTIFICATE" not in done.stdout  # no server ever answered the hello
    status, _ = admin(edge, key, "DELETE", f"/endpoints/{created['id']}")
    assert status == 204
    log = edge.log_since(mark)
    assert f"cloud endpoint {created['id']} serves tls://db.acme.example" in log
    assert "Traceback" not in log


class _CountingJwks(http.server.BaseHTTPRequestHandler):
    """A JWKS document (the RS256 test key, kid `cloud-key`); counts what it serves."""

    protocol_version = "HTTP/1.1"
    body = json.dumps({"keys": [public_jwk(key_for("RS256"), "cloud-key")]}).encode()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.fetches += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/jwk-set+json")
        self.send_header("Cache-Control", "max-age=300")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


def test_a_cloud_endpoint_fetches_its_jwks_keys_and_logs_events(tmp_path: Path) -> None:
    """A cloud endpoint whose policy logs each request, validates a JWT against keys at a JWKS
    URL, then answers: the edge fetches the keys (until then: 503 ERR_NGROK_7186), a token
    signed with the key is accepted and an unsigned request refused, and each request's `log`
    record is a traffic_policy_log.v0 event naming the cloud endpoint's URL."""
    ca = trustme.CA()
    ca_file = tmp_path / "jwks-ca.pem"
    ca_file.write_bytes(ca.cert_pem.bytes())
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    jwks = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CountingJwks)
    jwks.fetches = 0  # type: ignore[attr-defined]
    jwks.daemon_threads = True
    jwks.socket = context.wrap_socket(jwks.socket, server_side=True)
    threading.Thread(target=jwks.serve_forever, daemon=True).start()
    jwks_url = f"https://127.0.0.1:{jwks.server_address[1]}/jwks.json"
    policy = {
        "on_http_request": [
            {
                "actions": [
                    {"type": "log", "config": {"metadata": {"path": "${req.url.path}"}}},
                    {
                        "type": "jwt-validation",
                        "config": {
                            "issuer": {"allow_list": [{"value": ISSUER}]},
                            "audience": {"allow_list": [{"value": AUDIENCE}]},
                            "http": {
                                "tokens": [
                                    {
                                        "type": "access_token",
                                        "method": "header",
                                        "name": "Authorization",
                                        "prefix": "Bearer ",
                                    }
                                ]
                            },
                            "jws": {
                                "allowed_algorithms": ["RS256"],
                                "keys": {"sources": {"additional_jkus": [jwks_url]}},
                            },
                        },
                    },
                    {"type": "custom-response", "config": {"status_code": 200, "body": "in"}},
                ]
            }
        ]
    }
    edge = make_edge(tmp_path, extra_config=f"jwks: {{ca_file: {ca_file}}}\n").start()
    try:
        key = edge.api_key("--description", "cloud jwt")
        status, created = admin(
            edge,
            key,
            "POST",
            "/endpoints",
            {
                "type": "cloud",
                "url": "https://jwt.acme.example",
                "traffic_policy": json.dumps(policy),
            },
        )
        assert status == 201, created
        token = sign(key_for("RS256"), "RS256", claims(time.time()), kid="cloud-key")

        def get(path: str, *args: str) -> subprocess.CompletedProcess[str]:
            done = curl_endpoint(edge, "jwt.acme.example", [path], "--include", "--http1.1", *args)
            assert done.returncode == 0, done.stderr
            return done

        bearer = ("--header", f"Authorization: Bearer {token}")
        deadline = time.monotonic() + 30  # keys arrive well within a second on loopback
        accepted = get("/first", *bearer)
        while accepted.stdout.startswith("HTTP/1.1 503") and time.monotonic() < deadline:
            assert "ERR_NGROK_7186" in accepted.stdout  # keys not fetched yet: fail closed
            time.sleep(0.1)
            accepted = get("/first", *bearer)
        assert accepted.stdout.startswith("HTTP/1.1 200"), accepted.stdout
        assert accepted.stdout.endswith("\n\nin")
        assert jwks.fetches == 1  # type: ignore[attr-defined]
        anonymous = get("/second")
        assert anonymous.stdout.startswith("HTTP/1.1 401"), anonymous.stdout

        status, listed = admin(edge, key, "GET", "/events?type=traffic_policy_log.v0&limit=100")
        assert status == 200, listed
        paths = [
            event["object"]["traffic_policy"]["logs"][0]["metadata"]["path"]
            for event in listed["events"]
            if event["object"]["endpoint"]["url"] == "https://jwt.acme.example"
        ]
        assert "/first" in paths and "/second" in paths
        status, _ = admin(edge, key, "DELETE", f"/endpoints/{created['id']}")
        assert status == 204
    finally:
        edge.stop()
        jwks.shutdown()
        jwks.server_close()
