"""Where a Bind goes: the endpoint URL an agent asked for, checked against ngrok's rules and
this edge's configuration, or a fresh one when it asked for none.

Every endpoint has one canonical URL, its key in the registry: `https://app.example.com`,
`tls://db.clinic.example`, `tcp://burrow.localhost:20417`, `http://api.svc.internal:8080`.
Default ports are left out (parse_endpoint_url drops them), so a URL written with or without
`:443` is the same endpoint. What the agent is told (`BindResp.URL`) may add the port clients
actually dial when the edge listens on a non-standard one (a development edge on 8443).

The agent's request is read as ngrok's agents send it: `Opts.URL` first, then the legacy
`Opts.Hostname`, `Opts.Domain` and `Opts.Subdomain` (http/https/tls) or `Opts.Addr` (tcp). A
request for no URL gets the URL its bind token held before (a resuming agent keeps its name),
else a random one: a random name under the edge's domain, or a free tcp port.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from edge.config import EdgeConfig
from edge.endpoints.registry import EndpointRegistry
from protocol.formats.urls import (
    EndpointURL,
    URLError,
    format_host,
    infer_binding,
    parse_endpoint_url,
    validate_endpoint_url,
)
from protocol.rpc import errcodes
from protocol.rpc.messages import Bind

#: The protocols an agent may bind, as Bind.Proto names them.
BIND_PROTOS = ("http", "https", "tcp", "tls")
#: Random names tried before giving up (each collides with probability ~endpoints / 2^32).
RANDOM_NAME_TRIES = 16


class BindRefused(errcodes.NgrokError):
    """A Bind the edge refuses: `BindRefused(message, code=None)`; `wire()` is the
    `BindResp.Error` the agent is sent.

    `str()` is the message alone: the code travels on the wire, and logs print it beside.
    """

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class BindTarget:
    """A URL the edge will serve for a Bind."""

    url: str  # canonical: the registry key
    scheme: str  # http, https, tcp or tls
    host: str  # what the bind ACL is checked against
    port: int | None  # the tcp port to listen on (public tcp); None for every other endpoint
    binding: str  # "public" or "internal"


def random_label() -> str:
    """A name like ngrok's random ones (`1eb2-181-80`): short, lower-case, DNS-safe."""
    return f"{secrets.token_hex(2)}-{secrets.token_hex(2)}"


class BindResolver:
    """Turns Bind requests into `BindTarget`s for one edge (pure: no I/O)."""

    def __init__(
        self,
        config: EdgeConfig,
        registry: EndpointRegistry,
        *,
        new_label: Callable[[], str] = random_label,
    ) -> None:
        self.config = config
        self.registry = registry
        self._new_label = new_label
        # Names that route to the edge itself on the TLS port: no endpoint may take them.
        self._reserved = {config.connect_host.lower(), "localhost"}

    def resolve(self, bind: Bind) -> BindTarget:
        proto = bind.proto.lower()
        if proto not in BIND_PROTOS:
            raise BindRefused(
                f"This Burrow edge does not serve '{bind.proto}' endpoints; bind an http://, "
                "https://, tcp:// or tls:// URL."
            )
        if proto == "tcp":
            return self._tcp(bind)
        return self._named(bind, proto)

    # ------------------------------------------------------------------ http, https, tls

    def _named(self, bind: Bind, proto: str) -> BindTarget:
        text = self._requested_name(bind, proto)
        if not text:
            text = self.registry.recent_url(bind.extra.token) or ""
        url = self._parse(text or f"{proto}://", proto)
        if url.scheme != proto:
            raise BindRefused(
                f"A {proto} endpoint cannot have the URL '{url}'; use {proto}:// or bind "
                f"with Proto {url.scheme}."
            )
        binding = self._binding(bind, url)
        if url.is_random:
            if binding != "public":
                raise BindRefused(
                    f"An {binding} endpoint needs a host name; random names are only for "
                    "public endpoints.",
                    "ERR_NGROK_9028",
                )
            url = self._random_url(proto)
        try:
            validate_endpoint_url(url, binding=binding)
        except URLError as exc:
            raise BindRefused(exc.message, exc.code) from exc
        if url.host in self._reserved:
            raise BindRefused(
                f"'{url.host}' is this edge's own name (agents connect there); choose another "
                "host for the endpoint."
            )
        return BindTarget(str(url), proto, url.host, None, binding)

    def _requested_name(self, bind: Bind, proto: str) -> str:
        opts = bind.opts
        for key in ("URL", "Hostname", "Domain"):
            value = opts.get(key)
            if value in (None, ""):
                continue
            if not isinstance(value, str):
                raise BindRefused(f"Bind Opts.{key} must be a string.")
            return value if "://" in value else f"{proto}://{value}"
        subdomain = opts.get("Subdomain")
        if isinstance(subdomain, str) and subdomain:
            return f"{proto}://{subdomain}.{self.config.domain}"
        return ""

    def _random_url(self, proto: str) -> EndpointURL:
        for _ in range(RANDOM_NAME_TRIES):
            url = EndpointURL(proto, f"{self._new_label()}.{self.config.domain}", None)
            if self.registry.lookup(str(url)) is None:
                return url
        raise BindRefused("Could not find a free random name; try again.")

    # ---------------------------------------------------------------------------------- tcp

    def _tcp(self, bind: Bind) -> BindTarget:
        """A `.internal` host is an internal endpoint (it must name its port); any other host
        must be this edge's public host, on a port from the range (a free one if none is asked
        for)."""
        requested = self._requested_tcp_url(bind)
        if requested is not None:
            binding = self._binding(bind, requested)
            if binding == "internal":
                try:
                    validate_endpoint_url(requested, binding="internal")
                except URLError as exc:
                    raise BindRefused(exc.message, exc.code) from exc
                return BindTarget(str(requested), "tcp", requested.host, requested.port, "internal")
        tcp = self.config.tcp
        port = requested.port if requested is not None else None
        if port is None:
            port = self.registry.allocate_port(tcp.port_range)
            if port is None:
                raise BindRefused(
                    f"Every tcp port in this edge's range {_span(tcp.port_range)} is in use."
                )
        elif port not in tcp.port_range:
            raise BindRefused(
                f"tcp port {port} is outside this edge's range {_span(tcp.port_range)}; "
                "ask for a port in that range, or for tcp:// to get a free one."
            )
        url = f"tcp://{format_host(tcp.public_host)}:{port}"
        return BindTarget(url, "tcp", tcp.public_host, port, "public")

    def _requested_tcp_url(self, bind: Bind) -> EndpointURL | None:
        text = bind.opts.get("URL") or bind.opts.get("Addr") or ""
        if not isinstance(text, str):
            raise BindRefused("Bind Opts.URL and Opts.Addr must be strings.")
        if text in ("", "tcp://"):
            text = self.registry.recent_url(bind.extra.token) or ""
        if not text:
            return None
        if "://" not in text:
            text = f"tcp://{text}"
        url = self._parse(text, "tcp")
        if url.scheme != "tcp":
            raise BindRefused(f"A tcp endpoint cannot have the URL '{text}'.")
        tcp = self.config.tcp
        allowed = {"", tcp.public_host.lower(), self.config.domain.lower()}
        if not url.is_internal and url.host not in allowed:
            raise BindRefused(
                f"public tcp endpoints on this edge live at {tcp.public_host}; ask for "
                f"tcp://{format_host(tcp.public_host)}:PORT, tcp:// for any port, or an "
                "internal address such as tcp://db.example.internal:5432."
            )
        return url

    # ------------------------------------------------------------------------------ shared

    @staticmethod
    def _parse(text: str, proto: str) -> EndpointURL:
        try:
            return parse_endpoint_url(text, default_scheme=proto)
        except URLError as exc:
            raise BindRefused(exc.message, exc.code) from exc

    @staticmethod
    def _binding(bind: Bind, url: EndpointURL) -> str:
        """The binding asked for in Extra.Bindings (exactly one), else inferred from the host."""
        bindings = bind.extra.bindings
        if not bindings:
            return infer_binding(url)
        if len(bindings) != 1:
            raise BindRefused(
                f"An endpoint has exactly one binding; got {', '.join(bindings)}.",
                "ERR_NGROK_15006",
            )
        return bindings[0].lower()


def _span(ports: range) -> str:
    return f"{ports.start}-{ports.stop - 1}"
