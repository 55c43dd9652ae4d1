"""Which of a Bind's endpoint options this edge enforces, and which it must refuse.

Fail closed: an agent that asks for OAuth, OpenID Connect or Host header rewriting believes
its endpoint is protected (or changed) by it. An edge that bound the endpoint without enforcing
the option would leave it open, so every option this edge does not act on is refused by name
instead.

Enforced, so not refused here: `TrafficPolicy` and the legacy modules that become a Traffic
Policy (`POLICY_OPTIONS`, mapped by `edge.policy.sdk_options`); the Bind path loads and
validates them (`edge.tunnels.decisions.decide_policy`) and refuses those it cannot enforce.

ngrok's clients send the per-protocol options object (`Bind.Opts`, reference §8.7) with every
field present, most of them null or empty; a field only counts as asked for when it carries a
value (recursively: an object of empty fields is empty). Pure: values in, names out.
"""

from __future__ import annotations

from collections.abc import Mapping

from protocol.rpc.messages import Bind

#: Opts fields the edge reads for every protocol (the URL and its legacy spellings).
_NAMING = frozenset({"URL", "Domain", "Hostname", "Subdomain", "Addr"})
#: Opts fields that describe what the agent itself does, which the edge needs not act on.
_AGENT_SIDE: dict[str, frozenset[str]] = {
    # Where the agent's upstream lives (ngrok uses it for Host rewriting only).
    "http": frozenset({"LocalURLScheme"}),
    "https": frozenset({"LocalURLScheme"}),
    # The agent terminates TLS and checks client certificates itself.
    "tls": frozenset({"MutualTLSAtAgent"}),
    "tcp": frozenset(),
}
#: Opts fields that become the endpoint's Traffic Policy, by protocol: the policy itself, and
#: the legacy modules `edge.policy.sdk_options` maps (its `_MAPPED`; keep the two in step).
POLICY_OPTIONS: dict[str, frozenset[str]] = {
    "http": frozenset(
        {"TrafficPolicy", "IPRestriction", "UserAgentFilter", "Auth", "BasicAuth",
         "WebhookVerification", "CircuitBreaker", "RequestHeaders", "ResponseHeaders",
         "Compression"}
    ),
    "https": frozenset(
        {"TrafficPolicy", "IPRestriction", "UserAgentFilter", "Auth", "BasicAuth",
         "WebhookVerification", "CircuitBreaker", "RequestHeaders", "ResponseHeaders",
         "Compression"}
    ),
    "tcp": frozenset({"TrafficPolicy", "IPRestriction"}),
    "tls": frozenset({"TrafficPolicy", "IPRestriction", "TLSTermination", "MutualTLSAtEdge"}),
}  # fmt: skip
#: Options ngrok's SDKs turn on by sending an empty object (`"Compression": {}`) and off with
#: null: for these any object is a request, however empty.
_SWITCHES = frozenset({"Compression", "WebsocketTCPConverter"})
#: What the user most likely meant by each option, for the refusal's message.
_DESCRIPTIONS = {
    "Auth": "basic auth",
    "BasicAuth": "basic auth",
    "IPRestriction": "IP restrictions (allow/deny CIDRs)",
    "OAuth": "OAuth",
    "OIDC": "OpenID Connect",
    "WebhookVerification": "webhook verification",
    "MutualTLSCA": "mutual TLS at the edge",
    "MutualTLSAtEdge": "mutual TLS at the edge",
    "TLSTermination": "TLS termination at the edge",
    "RequestHeaders": "request header changes",
    "ResponseHeaders": "response header changes",
    "UserAgentFilter": "user agent filters",
    "Compression": "compression",
    "CircuitBreaker": "a circuit breaker",
    "HostHeaderRewrite": "Host header rewriting",
    "WebsocketTCPConverter": "the WebSocket-to-TCP converter",
    "Policy": "a (legacy) traffic policy",
    "TrafficPolicy": "a Traffic Policy",
    "ProxyProto": "PROXY protocol headers written by the edge",
}


def _is_set(value: object) -> bool:
    """Whether an option carries a value: null, "", false, 0 and empty containers do not, and
    neither does an object whose every field is empty."""
    if isinstance(value, Mapping):
        return any(_is_set(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_is_set(item) for item in value)
    return value not in (None, "", False, 0)


def unenforced_options(bind: Bind, *, agent_writes_proxy_headers: bool) -> list[str]:
    """The options of `bind` this edge would not enforce, as `Opts.Name (what it is)` strings,
    in a stable order; empty when the Bind may go ahead. `POLICY_OPTIONS` are not listed: the
    policy path decides about them (and refuses a bad one with its own code).

    `agent_writes_proxy_headers`: Burrow's agent writes the PROXY header to its upstream itself
    and reports the version in `Opts.ProxyProto`; for any other client a non-zero ProxyProto
    asks the edge to write it, which this edge does not do."""
    proto = bind.proto.lower()
    accepted = (
        _NAMING | _AGENT_SIDE.get(proto, frozenset()) | POLICY_OPTIONS.get(proto, frozenset())
    )
    refused = []
    for key, value in sorted(bind.opts.items()):
        if key in accepted:
            continue
        if not (_is_set(value) or (key in _SWITCHES and value is not None)):
            continue
        if key == "ProxyProto" and agent_writes_proxy_headers:
            continue
        what = _DESCRIPTIONS.get(key, "an option this edge does not know")
        refused.append(f"Opts.{key} ({what})")
    if bind.extra.ip_policy_ref:
        refused.append("Extra.IPPolicyRef (an IP policy)")
    if proto in ("http", "https") and bind.forwards_proto not in ("", "http1"):
        refused.append(f"ForwardsProto {bind.forwards_proto} (only http1 upstreams are served)")
    return refused


def refusal_message(url_or_proto: str, refused: list[str]) -> str:
    """The Bind error for `unenforced_options`: what was refused, why nothing was bound, and
    what to do."""
    return (
        f"This Burrow edge does not enforce {'; '.join(refused)} yet, so it did not bind "
        f"{url_or_proto}: serving it without them would leave it open. Remove the option to "
        "serve the endpoint without it."
    )
