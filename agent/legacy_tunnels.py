"""The v3 file's deprecated `tunnels:` map, read as endpoints (reference §1.2, §1.8).

ngrok still accepts a v2-style `tunnels:` map (name -> tunnel) in a v3 file, next to or instead of
`endpoints:`; when both define the same name, the endpoint wins. Burrow does the same, and says
so: each tunnel read becomes a note (`burrow config check` and `start` print them) that names
the endpoint it became and asks to move it to `endpoints:`.

A tunnel maps to a v3 endpoint mapping, which `agent.config_endpoints` then validates as any
endpoint (so the same URL and upstream rules, and errors that point at the tunnel's lines):

    proto: http|tcp|tls          the URL's scheme (http: https://, unless schemes/bind_tls say http)
    addr                         upstream.url
    domain | hostname            the URL's host (http, tls)
    remote_addr                  the URL's host:port (tcp)
    schemes: [http] | [https]    the http URL's scheme; bind_tls: true|false likewise
    inspect, metadata            the same keys
    proxy_proto: 1|2             upstream.proxy_protocol
    traffic_policy               the same key
    crt, key [terminate_at: agent]   agent_tls_termination (tls)

Fail closed: a field that cannot be mapped is refused by name with what to write instead
(`subdomain`: the agent does not know the edge's domain; `labels`: v3 files forbid labeled
tunnels; the v2 modules such as `basic_auth` became Traffic Policy actions; `schemes: [http,
https]` would be two endpoints), and an unknown field is an unknown key, as everywhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar

from agent.config_source import SourceMap, Where
from agent.config_values import check_keys, describe, read_mapping
from protocol.formats.yamldoc import KeyPath

__all__ = ["PROTOS", "REFUSED_FIELDS", "tunnel_endpoint", "with_legacy_tunnels"]

PROTOS = ("http", "tcp", "tls")
_POLICY = "define the tunnel under endpoints: with a traffic_policy using the {} action"
#: Tunnel fields Burrow cannot map, and what to write instead.
REFUSED_FIELDS = {
    "subdomain": "the agent does not know the edge's domain; write the whole name as domain: "
    "NAME.<the edge's domain>",
    "labels": "labeled tunnels are not allowed in v3 files; define an endpoint instead",
    "basic_auth": _POLICY.format("basic-auth"),
    "auth": _POLICY.format("basic-auth"),
    "oauth": _POLICY.format("oauth"),
    "oidc": _POLICY.format("openid-connect"),
    "ip_restriction": _POLICY.format("restrict-ips"),
    "request_header": _POLICY.format("add-headers or remove-headers"),
    "response_header": _POLICY.format("add-headers or remove-headers"),
    "compression": _POLICY.format("compress-response"),
    "verify_webhook": _POLICY.format("verify-webhook"),
    "user_agent_filter": _POLICY.format("deny (with an expression on req.user_agent)"),
    "circuit_breaker": "not supported by Burrow",
    "websocket_tcp_converter": "not supported by Burrow",
    "host_header": "not supported by Burrow; the upstream sees the public Host",
    "mutual_tls_cas": "not supported for tunnels; use an endpoint's agent_tls_termination "
    "(tls) or a Traffic Policy",
    "policy": "v3 spells it traffic_policy",
    "app_protocol": "write the tunnel as an endpoint with upstream.protocol",
}
_KEYS = {
    "http": ("domain", "hostname", "schemes", "bind_tls", "inspect"),
    "tcp": ("remote_addr",),
    "tls": ("domain", "hostname", "crt", "key", "terminate_at"),
}
_COMMON_KEYS = ("proto", "addr", "metadata", "proxy_proto", "traffic_policy")


class _Endpoint(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def url(self) -> str: ...


E = TypeVar("E", bound=_Endpoint)


def with_legacy_tunnels(
    ctx: SourceMap,
    value: object,
    endpoints: tuple[E, ...],
    read_endpoint: Callable[[SourceMap, object, KeyPath], E],
) -> tuple[tuple[E, ...], tuple[str, ...]]:
    """`endpoints` plus one endpoint per tunnel of `value` (the merged `tunnels:`), and the
    notes to print. `read_endpoint` validates a v3 endpoint mapping
    (agent.config_endpoints'). Raises ConfigError for a tunnel that cannot be mapped or is
    invalid."""
    tunnels = read_mapping(ctx, value, ("tunnels",))
    taken = {endpoint.name for endpoint in endpoints}
    added: list[E] = []
    notes: list[str] = []
    for name, tunnel in tunnels.items():
        p: KeyPath = ("tunnels", name)
        if name in taken:
            reason = (
                f"an endpoint named {name!r} is defined too and takes precedence, as in ngrok; "
                "this deprecated tunnel is ignored: remove it"
            )
            notes.append(str(ctx.error(p, reason)))
            continue
        data, origins = tunnel_endpoint(ctx, name, tunnel, p)
        endpoint = read_endpoint(SourceMap({**ctx.origins, **origins}, ctx.sources), data, p)
        added.append(endpoint)
        reason = (
            f"deprecated v2-style tunnel, read as the endpoint {name!r} with url "
            f"{endpoint.url}; move it to endpoints: (see deploy/agent.example.yml)"
        )
        notes.append(str(ctx.error(p, reason)))
    return (*endpoints, *added), tuple(notes)


def tunnel_endpoint(
    ctx: SourceMap, name: str, value: object, p: KeyPath
) -> tuple[dict[str, object], dict[KeyPath, Where]]:
    """The v3 endpoint mapping one tunnel stands for, and where each of its keys came from (the
    tunnel field it was made of), so errors point at the tunnel's lines. Raises ConfigError."""
    tunnel = read_mapping(ctx, value, p)
    for key in tunnel:
        if key in REFUSED_FIELDS:
            raise ctx.error((*p, key), f"cannot be read by Burrow; {REFUSED_FIELDS[key]}")
    proto = tunnel.get("proto")
    if proto not in PROTOS:
        raise ctx.error(
            (*p, "proto"),
            f"expected http, tcp or tls, found {describe(proto)}; every tunnel needs one",
        )
    others = [key for other in PROTOS if other != proto for key in _KEYS[other]]
    for key in tunnel:
        if key in others and key not in _KEYS[str(proto)]:
            raise ctx.error(
                (*p, key), f"only applies to {_owner(key)} tunnels, and this is {proto}"
            )
    check_keys(ctx, tunnel, p, (*_COMMON_KEYS, *_KEYS[str(proto)]))
    if tunnel.get("addr") is None:
        raise ctx.error((*p, "addr"), "missing; give the local port (8080) or host:port")

    origins: dict[KeyPath, Where] = {}

    def came_from(target: KeyPath, source: str) -> None:
        where = ctx.where((*p, source))
        if where is not None:
            origins[(*p, *target)] = where

    data: dict[str, object] = {"name": name}
    upstream: dict[str, object] = {"url": tunnel["addr"]}
    came_from(("upstream",), "addr")
    came_from(("upstream", "url"), "addr")
    if tunnel.get("proxy_proto") not in (None, ""):
        upstream["proxy_protocol"] = tunnel["proxy_proto"]
        came_from(("upstream", "proxy_protocol"), "proxy_proto")
    data["upstream"] = upstream
    data["url"], url_source = _url(ctx, tunnel, p, str(proto))
    came_from(("url",), url_source)
    for key in ("inspect", "metadata", "traffic_policy"):
        if key in tunnel:
            data[key] = tunnel[key]
    if proto == "tls":
        termination = _termination(ctx, tunnel, p)
        if termination is not None:
            data["agent_tls_termination"] = termination
            came_from(("agent_tls_termination",), "crt")
            came_from(("agent_tls_termination", "server_certificate"), "crt")
            came_from(("agent_tls_termination", "server_private_key"), "key")
    return data, origins


def _owner(key: str) -> str:
    return " and ".join(proto for proto in PROTOS if key in _KEYS[proto])


def _url(ctx: SourceMap, tunnel: Mapping[str, object], p: KeyPath, proto: str) -> tuple[str, str]:
    """The endpoint URL and the tunnel field it mostly came from."""
    if proto == "tcp":
        address = tunnel.get("remote_addr")
        if address is None:
            return "tcp://", "proto"
        if not isinstance(address, str):
            raise ctx.error((*p, "remote_addr"), f"expected host:port, found {describe(address)}")
        return f"tcp://{address}", "remote_addr"
    if "domain" in tunnel and "hostname" in tunnel:
        raise ctx.error((*p, "hostname"), "domain and hostname both give the host; keep domain")
    source = "domain" if "domain" in tunnel else "hostname" if "hostname" in tunnel else "proto"
    host = tunnel.get(source, "") if source != "proto" else ""
    if not isinstance(host, str):
        raise ctx.error((*p, source), f"expected a host name, found {describe(host)}")
    scheme = "tls" if proto == "tls" else _http_scheme(ctx, tunnel, p)
    return f"{scheme}://{host}", source


def _http_scheme(ctx: SourceMap, tunnel: Mapping[str, object], p: KeyPath) -> str:
    """https (v3 agents open only https by default), or http as `schemes`/`bind_tls` ask."""
    if "schemes" in tunnel and "bind_tls" in tunnel:
        raise ctx.error(
            (*p, "bind_tls"), "schemes and bind_tls both choose the scheme; keep schemes"
        )
    schemes = tunnel.get("schemes")
    if schemes is not None:
        if schemes in (["http"], ["https"]):
            return str(schemes[0])
        raise ctx.error(
            (*p, "schemes"),
            f"expected [http] or [https], found {schemes!r}; a tunnel for both schemes is two "
            "endpoints in v3: define them under endpoints:",
        )
    bind_tls = tunnel.get("bind_tls")
    if bind_tls is None or bind_tls is True:
        return "https"
    if bind_tls is False:
        return "http"
    raise ctx.error(
        (*p, "bind_tls"),
        f"expected true or false, found {describe(bind_tls)}; `both` is two endpoints in v3: "
        "define them under endpoints:",
    )


def _termination(
    ctx: SourceMap, tunnel: Mapping[str, object], p: KeyPath
) -> dict[str, object] | None:
    """agent_tls_termination from crt/key (terminate_at: agent, the default), or None."""
    terminate_at = tunnel.get("terminate_at")
    if terminate_at not in (None, "agent"):
        raise ctx.error(
            (*p, "terminate_at"),
            f"{terminate_at!r} cannot be read by Burrow: only agent (with crt and key) is; for "
            "termination at the edge define an endpoint with a terminate-tls action",
        )
    crt, key = tunnel.get("crt"), tunnel.get("key")
    if crt is None and key is None:
        if terminate_at is not None:
            raise ctx.error((*p, "terminate_at"), "agent needs crt and key; add them")
        return None
    if crt is None or key is None:
        missing = "crt" if crt is None else "key"
        raise ctx.error((*p, missing), "missing; crt and key go together")
    return {"server_certificate": crt, "server_private_key": key}
