"""The `endpoints:` section of the agent's configuration: each endpoint's URL, upstream, Traffic
Policy and TLS termination, read and validated into `agent.config`'s `EndpointSettings`.

`agent.config_load.load_config` calls `read_endpoints` with the merged file (and
`agent.legacy_tunnels` calls `read_endpoint` for each deprecated tunnel); every fault is a
`ConfigError` naming the file, line and key path (`agent.config_source.SourceMap`). TLS material
(`agent_tls_termination`, `upstream.tls_verify_cas`) is loaded here, through
`agent.tls_contexts`, so a bad PEM fails `burrow config check` with the key path that names it.
A Traffic Policy is only checked to be one YAML or JSON mapping (`policy_problem`): the edge
validates the policy itself when the endpoint binds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from agent.config import (
    MAX_METADATA_LENGTH,
    AgentTLSTermination,
    EndpointSettings,
    UpstreamSettings,
)
from agent.config_source import SourceMap
from agent.config_values import (
    check_keys,
    check_length,
    describe,
    read_bool,
    read_mapping,
    read_str,
    read_str_list,
)
from agent.tls_contexts import TLSMaterialError, termination_context, upstream_context
from protocol.formats.urls import (
    EndpointURL,
    UpstreamURL,
    URLError,
    infer_binding,
    parse_endpoint_url,
    parse_upstream_url,
    validate_endpoint_url,
)
from protocol.formats.yamldoc import KeyPath, YAMLDocumentError, read_yaml

__all__ = ["policy_problem", "read_endpoint", "read_endpoints", "read_policy_file"]


def policy_problem(text: str) -> str | None:
    """What is wrong with a Traffic Policy document `text` as the agent checks it, or None.

    The agent checks only that it is JSON or YAML holding one mapping (or nothing: the empty
    policy); the edge validates the policy itself when the endpoint is bound (and refuses a bad
    one with ngrok's ERR_NGROK_22xx code), so the two cannot disagree about what is valid."""
    value: object
    try:
        value = json.loads(text)
    except ValueError:
        try:
            document = read_yaml(text)
        except YAMLDocumentError as exc:
            where = f" (line {exc.line})" if exc.line is not None else ""
            return f"is not YAML or JSON{where}: {exc.problem}"
        value = None if document is None else document.value
    if value is not None and not isinstance(value, dict):
        return (
            f"must be a mapping of phases (on_tcp_connect, on_http_request, on_http_response), "
            f"found {describe(value)}"
        )
    return None


def read_policy_file(path: str) -> str | None:
    """What is wrong with the Traffic Policy file at `path` (unreadable, or `policy_problem`),
    or None."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot be read: {exc}"
    return policy_problem(text)


def _traffic_policy(ctx: SourceMap, value: object, p: KeyPath) -> dict[str, object] | str:
    """`traffic_policy` as written: a mapping, or (as ngrok allows) the document as a string."""
    if isinstance(value, str):
        problem = policy_problem(value)
        if problem is not None:
            raise ctx.error(p, problem)
        return value
    return dict(read_mapping(ctx, value, p))


_ENDPOINT_KEYS = (
    "name",
    "url",
    "upstream",
    "traffic_policy",
    "traffic_policy_file",
    "pooling_enabled",
    "bindings",
    "description",
    "metadata",
    "agent_tls_termination",
    "inspect",
)
_ENDPOINT_HINTS = {
    "addr": "v3 endpoints spell it upstream.url",
    "proto": "v3 endpoints put the scheme in url, e.g. url: tcp://",
    "domain": "v3 endpoints put the host in url, e.g. url: https://app.example.com",
    "hostname": "v3 endpoints put the host in url, e.g. url: https://app.example.com",
    "subdomain": "v3 endpoints put the host in url, e.g. url: https://app.example.com",
    "remote_addr": "v3 endpoints put the address in url, e.g. url: tcp://host:12345",
    "policy": "v3 endpoints spell it traffic_policy",
}
_UPSTREAM_KEYS = ("url", "protocol", "proxy_protocol", "tls_verify", "tls_verify_cas")
_TLS_KEYS = (
    "server_certificate",
    "server_private_key",
    "mutual_tls_certificate_authorities",
    "alpn_protocols",
)


def read_endpoints(ctx: SourceMap, value: object) -> tuple[EndpointSettings, ...]:
    """The `endpoints:` list (none if absent); endpoint names must be unique."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ctx.error(("endpoints",), f"expected a list of endpoints, found {describe(value)}")
    endpoints = [read_endpoint(ctx, item, ("endpoints", index)) for index, item in enumerate(value)]
    first_by_name: dict[str, int] = {}
    for index, endpoint in enumerate(endpoints):
        if endpoint.name in first_by_name:
            raise ctx.error(
                ("endpoints", index, "name"),
                f"{endpoint.name!r} is already the name of "
                f"endpoints[{first_by_name[endpoint.name]}]; endpoint names must be unique",
            )
        first_by_name[endpoint.name] = index
    return tuple(endpoints)


def read_endpoint(ctx: SourceMap, value: object, p: KeyPath) -> EndpointSettings:
    """One endpoint, the mapping at key path `p`."""
    data = read_mapping(ctx, value, p)
    check_keys(ctx, data, p, _ENDPOINT_KEYS, _ENDPOINT_HINTS)
    name = read_str(ctx, data, p, "name", "")
    if not name.strip():
        raise ctx.error((*p, "name"), "missing or empty; every endpoint needs a unique name")
    try:
        url = parse_endpoint_url(read_str(ctx, data, p, "url", ""))
    except URLError as exc:
        raise ctx.error((*p, "url"), str(exc), exc.code) from None
    bindings = read_str_list(ctx, data, p, "bindings")
    if bindings is not None and len(bindings) != 1:
        raise ctx.error((*p, "bindings"), "must list exactly one of public, internal or kubernetes")
    binding = bindings[0] if bindings else infer_binding(url)
    try:
        validate_endpoint_url(url, binding=binding)
    except URLError as exc:
        key = "bindings" if exc.code == "ERR_NGROK_15005" else "url"
        raise ctx.error((*p, key), str(exc), exc.code) from None
    upstream = _upstream(ctx, data.get("upstream"), (*p, "upstream"), url)
    raw_policy = data.get("traffic_policy")
    policy = None
    if raw_policy is not None:
        policy = _traffic_policy(ctx, raw_policy, (*p, "traffic_policy"))
    policy_file = read_str(ctx, data, p, "traffic_policy_file", "") or None
    if policy_file is not None:
        if policy is not None:
            raise ctx.error(
                (*p, "traffic_policy_file"),
                "conflicts with traffic_policy; give the policy inline or in a file, not both",
            )
        policy_file = ctx.resolve_file((*p, "traffic_policy_file"), policy_file)
        problem = read_policy_file(policy_file)
        if problem is not None:
            raise ctx.error((*p, "traffic_policy_file"), f"{policy_file}: {problem}")
    termination = None
    if data.get("agent_tls_termination") is not None:
        if url.scheme != "tls":
            raise ctx.error(
                (*p, "agent_tls_termination"),
                f"only tls:// endpoints can terminate TLS at the agent, and url is {url}; "
                "change url to tls://... or remove this section",
            )
        termination = _tls_termination(ctx, data["agent_tls_termination"], p)
        if upstream.target.scheme == "tls":
            raise ctx.error(
                (*p, "upstream", "url"),
                f"{upstream.target} asks for TLS to the upstream, but agent_tls_termination "
                "sends it the decrypted bytes; write the upstream as host:port or tcp://",
            )
    for key in ("description", "metadata"):
        check_length(ctx, (*p, key), read_str(ctx, data, p, key, ""), MAX_METADATA_LENGTH)
    return EndpointSettings(
        name=name,
        url=str(url),
        upstream=upstream,
        pooling_enabled=read_bool(ctx, data, p, "pooling_enabled", False),
        description=read_str(ctx, data, p, "description", ""),
        metadata=read_str(ctx, data, p, "metadata", ""),
        bindings=(binding,),
        traffic_policy=policy,
        traffic_policy_file=policy_file,
        agent_tls_termination=termination,
        inspect=read_bool(ctx, data, p, "inspect", True),
        endpoint_url=url,
    )


def _upstream(ctx: SourceMap, value: object, p: KeyPath, url: EndpointURL) -> UpstreamSettings:
    if value is None:
        raise ctx.error(p, "missing; add `upstream: {url: 8080}` (where to forward traffic)")
    data = read_mapping(ctx, value, p)
    check_keys(ctx, data, p, _UPSTREAM_KEYS)
    raw = data.get("url")
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)  # `url: 8080` is a YAML number
    if raw is None:
        raise ctx.error((*p, "url"), "missing; give a port (8080), host:port or a URL")
    if not isinstance(raw, str):
        raise ctx.error((*p, "url"), f"expected a port, host:port or URL, found {describe(raw)}")
    try:
        target = parse_upstream_url(raw, endpoint_scheme=url.scheme)
    except URLError as exc:
        raise ctx.error((*p, "url"), str(exc), exc.code) from None
    protocol = read_str(ctx, data, p, "protocol", "") or None
    if protocol is not None:
        if protocol not in ("http1", "http2"):
            raise ctx.error((*p, "protocol"), f"{protocol!r} is not http1 or http2")
        if url.scheme not in ("http", "https"):
            raise ctx.error(
                (*p, "protocol"),
                f"only http and https endpoints have an upstream protocol, and url is {url}; "
                "remove it",
            )
        if protocol == "http2":
            raise ctx.error(
                (*p, "protocol"),
                "http2 to the upstream is not supported yet by the Burrow agent; use http1 "
                "(or leave protocol out)",
            )
    proxy = data.get("proxy_protocol")
    if proxy in ("", None):
        proxy_protocol = None
    elif proxy in (1, 2, "1", "2") and not isinstance(proxy, bool):
        proxy_protocol = int(str(proxy))
    else:
        raise ctx.error((*p, "proxy_protocol"), f"expected 1 or 2, found {describe(proxy)}")
    tls_verify, tls_verify_cas = _upstream_tls(ctx, data, p, url, target)
    return UpstreamSettings(
        url=str(target),
        protocol=protocol,
        proxy_protocol=proxy_protocol,
        target=target,
        tls_verify=tls_verify,
        tls_verify_cas=tls_verify_cas,
    )


def _upstream_tls(
    ctx: SourceMap, data: Mapping[str, object], p: KeyPath, url: EndpointURL, target: UpstreamURL
) -> tuple[bool, str | None]:
    """`tls_verify` and `tls_verify_cas` (Burrow extensions): only for an https:// upstream of
    an http(s) endpoint; the CA file is loaded here so a bad one fails `config check`."""
    for key in ("tls_verify", "tls_verify_cas"):
        if data.get(key) is not None and (
            url.scheme not in ("http", "https") or target.scheme != "https"
        ):
            raise ctx.error(
                (*p, key),
                f"applies only to an https:// upstream of an http or https endpoint, and this "
                f"is {target} for {url}; remove it",
            )
    verify = read_bool(ctx, data, p, "tls_verify", True)
    cas = read_str(ctx, data, p, "tls_verify_cas", "") or None
    if cas is None:
        return verify, None
    if not verify:
        raise ctx.error(
            (*p, "tls_verify_cas"),
            "has no effect with tls_verify: false (nothing is verified); remove one of them",
        )
    cas = ctx.resolve_file((*p, "tls_verify_cas"), cas)
    try:
        upstream_context(verify=verify, cas=cas)
    except TLSMaterialError as exc:
        raise ctx.error((*p, "tls_verify_cas"), str(exc)) from None
    return verify, cas


def _tls_termination(ctx: SourceMap, value: object, endpoint: KeyPath) -> AgentTLSTermination:
    p = (*endpoint, "agent_tls_termination")
    data = read_mapping(ctx, value, p)
    check_keys(ctx, data, p, _TLS_KEYS)

    def pem(path: KeyPath, text: str) -> str:
        return text if text.lstrip().startswith("-----BEGIN") else ctx.resolve_file(path, text)

    found = {}
    for key in ("server_certificate", "server_private_key"):
        text = read_str(ctx, data, p, key, "")
        if not text:
            raise ctx.error((*p, key), "missing; give a PEM file path or inline PEM")
        found[key] = pem((*p, key), text)
    cas = read_str_list(ctx, data, p, "mutual_tls_certificate_authorities") or ()
    termination = AgentTLSTermination(
        server_certificate=found["server_certificate"],
        server_private_key=found["server_private_key"],
        mutual_tls_certificate_authorities=tuple(
            pem((*p, "mutual_tls_certificate_authorities", i), ca) for i, ca in enumerate(cas)
        ),
        alpn_protocols=tuple(read_str_list(ctx, data, p, "alpn_protocols") or ()),
    )
    try:  # load it now, so that `config check` reports a bad PEM rather than the first client
        termination_context(
            termination.server_certificate,
            termination.server_private_key,
            termination.mutual_tls_certificate_authorities,
            alpn=termination.alpn_protocols,
        )
    except TLSMaterialError as exc:
        where: KeyPath = (*p, exc.field) if exc.index is None else (*p, exc.field, exc.index)
        raise ctx.error(where, str(exc)) from None
    return termination
