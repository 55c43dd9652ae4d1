"""Builders shared by test_engine.py and test_run_access.py: facts, a compiled policy, one
request-phase run, and unwrapping an outcome that must be a `Respond` or a `Forward`.

Not a test module (no `test_` prefix): pytest collects nothing here.
"""

from __future__ import annotations

from edge.policy.activation import ConnFacts, EndpointFacts, RequestFacts
from edge.policy.document import load_policy
from edge.policy.engine import Close, Forward, Respond, run_http_request
from edge.policy.ratelimit import PolicyState
from edge.policy.validate import CompiledPolicy, validate

__all__ = [
    "CONN",
    "ENDPOINT",
    "NOW",
    "forward",
    "on_request",
    "policy",
    "request",
    "respond",
]

NOW = 1_714_564_800.0  # 2024-05-01T12:00:00Z
ENDPOINT = EndpointFacts(
    url="https://api.example.com", host="api.example.com", port=443, protocol="https", id="ep_1"
)
CONN = ConnFacts(
    client_ip="203.0.113.9",
    client_port=50123,
    server_ip="192.0.2.1",
    server_port=443,
    sni="api.example.com",
    tls_version="1.3",
    tls_cipher="TLS_AES_128_GCM_SHA256",
    started_at=NOW - 5,
)


def policy(text: str, protocol: str = "https") -> CompiledPolicy:
    return validate(load_policy(text), protocol=protocol)


def request(
    path: str = "/",
    *,
    query: str = "",
    method: str = "GET",
    headers: tuple[tuple[str, str], ...] = (),
) -> RequestFacts:
    return RequestFacts(
        method=method,
        scheme="https",
        host="api.example.com",
        path=path,
        query=query,
        headers=(("Host", "api.example.com"), ("User-Agent", "curl/8.5"), *headers),
    )


def on_request(
    text: str,
    req: RequestFacts | None = None,
    *,
    conn: ConnFacts = CONN,
    now: float = NOW,
    state: PolicyState | None = None,
) -> Forward | Respond | Close:
    return run_http_request(
        policy(text),
        conn,
        req or request(),
        endpoint=ENDPOINT,
        now=now,
        state=state if state is not None else PolicyState(),
    )


def respond(outcome: object) -> Respond:
    assert isinstance(outcome, Respond), outcome
    return outcome


def forward(outcome: object) -> Forward:
    assert isinstance(outcome, Forward), outcome
    return outcome
