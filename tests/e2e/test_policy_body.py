"""Traffic Policy actions that read the request body, end to end: a real edge, a real agent
whose config gives the endpoint a policy with verify-webhook and request-body-find-replace, a
real upstream that reports the body it got (its SHA-256, size and framing), and curl."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
from pathlib import Path

from tests.e2e.harness import Agent, Edge, curl_endpoint, make_agent
from tests.e2e.upstreams import HttpUpstream

SECRET = "e2e-webhook-secret"
POLICY = f"""
      on_http_request:
        - expressions: ["req.url.path == '/hook'"]
          actions:
            - type: verify-webhook
              config: {{provider: github, secret: {SECRET}}}
        - expressions: ["req.url.path == '/rewrite'"]
          actions:
            - type: request-body-find-replace
              config:
                replacements:
                  - from: "card=[0-9]+"
                    to: "card=XXXX"
"""


def start_agent(edge: Edge, upstream: HttpUpstream, tmp_path: Path) -> Agent:
    config = tmp_path / "burrow.yml"
    config.write_text(
        "version: 3\n"
        "agent:\n  log: stderr\n"
        "endpoints:\n"
        "  - name: web\n"
        "    url: https://\n"
        "    upstream:\n"
        f"      url: 127.0.0.1:{upstream.port}\n"
        "    traffic_policy:" + POLICY
    )
    agent = make_agent(edge, edge.credential(), "web", tmp_path, "--config", str(config))
    agent.args[0] = "start"
    return agent.start()


def post(
    edge: Edge, agent: Agent, path: str, body: str, *args: str
) -> subprocess.CompletedProcess[str]:
    return curl_endpoint(
        edge, agent.host, [path], "--include", "--http1.1", "--data-binary", body, *args
    )


def upstream_saw(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition("\n\n")
    assert head.startswith("HTTP/1.1 200"), result.stdout
    seen: dict[str, object] = json.loads(body)
    return seen


def test_github_webhook_verified_and_body_rewritten(
    shared_edge: Edge, upstream: HttpUpstream, tmp_path: Path
) -> None:
    agent = start_agent(shared_edge, upstream, tmp_path)
    try:
        payload = '{"ref":"refs/heads/main","after":"abc123"}'
        signature = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
        signed = ("-H", f"X-Hub-Signature-256: sha256={signature}")
        json_type = ("-H", "Content-Type: application/json")
        # A good signature: the upstream gets the body unchanged.
        good = upstream_saw(post(shared_edge, agent, "/hook", payload, *signed, *json_type))
        assert good["sha256"] == hashlib.sha256(payload.encode()).hexdigest()
        # A tampered body (the same signature) is refused at the edge with ngrok's 403.
        tampered = post(
            shared_edge, agent, "/hook", payload.replace("main", "evil"), *signed, *json_type
        )
        assert tampered.stdout.startswith("HTTP/1.1 403"), tampered.stdout
        assert "ngrok-error-code: ERR_NGROK_3204" in tampered.stdout
        unsigned = post(shared_edge, agent, "/hook", payload, *json_type)
        assert unsigned.stdout.startswith("HTTP/1.1 403"), unsigned.stdout
        # A body rewritten as the upstream sees it: new bytes, a Content-Length that fits.
        form = "name=ann&card=4111111111111111&cvv=123"
        rewritten = form.replace("4111111111111111", "XXXX")
        seen = upstream_saw(post(shared_edge, agent, "/rewrite", form))
        assert seen["sha256"] == hashlib.sha256(rewritten.encode()).hexdigest()
        assert seen["size"] == len(rewritten)
        assert seen["transfer_encoding"] == ""
        # Sent chunked by the client: buffered, rewritten and re-framed with a length.
        chunked = post(shared_edge, agent, "/rewrite", form, "-H", "Transfer-Encoding: chunked")
        seen = upstream_saw(chunked)
        assert seen["sha256"] == hashlib.sha256(rewritten.encode()).hexdigest()
        assert seen["transfer_encoding"] == ""
    finally:
        agent.kill()
