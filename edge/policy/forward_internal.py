"""The `forward-internal` action: its config, the URLs it may name, and what it does when it runs.

Theory of operation. `forward-internal` hands the request (on_http_request) or the connection
(on_tcp_connect) to an *internal* endpoint (a `.internal` host, reachable no other way), whose
own policy then runs on it (ngrok.md §3.3). The engine stays pure: it never looks an endpoint
up. The shell gives the phase a *check* (`PhaseRun.forward_check`): a function from the target's
canonical URL to None (the target can take it) or `(code, message)` (it cannot: offline, a loop,
a chain past the edge's limit). The runner then

* ends the phase with a `Handoff` naming the target when the check passed (or when no check was
  given: `burrow-edge policy test` has no registry, and the shell checks again anyway);
* with `on_error: halt` (the default), ends the phase with a `Handoff` carrying the error, which
  the shell answers with ngrok's page and code (or, on on_tcp_connect, a close);
* with `on_error: continue`, sets `actions.ngrok.forward_internal.{url,error.code,error.message}`
  and lets the next actions run, so a policy can try another target.

URL rules (checked at load when the URL has no `${...}`, and after interpolation otherwise): an
endpoint URL (`scheme://host[:port]`, no path) whose host ends in `.internal` (at most 5 parts),
not random, not a wildcard; its scheme fits the phase (http/https from on_http_request, tls/tcp
from on_tcp_connect: ngrok forwards only to an endpoint of the same protocol); an internal tcp
target names its port. The legacy `binding` field (ngrok's docs had it in 2024, with only one
accepted value) is accepted only as `internal`, which is always true.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from edge.policy.errors import Place
from edge.policy.fields import ConfigReader
from edge.policy.interpolation import Template
from edge.policy.phase import PhaseRun
from protocol.formats.urls import URLError, parse_endpoint_url, validate_endpoint_url

__all__ = [
    "ERR_NGROK_3200",
    "ERR_NGROK_3501",
    "ERR_NGROK_FORWARD_URL",
    "HTTP_TARGETS",
    "TCP_TARGETS",
    "ForwardCheck",
    "ForwardInternalConfig",
    "Handoff",
    "candidate_urls",
    "chain_check",
    "falls_through",
    "parse_forward_internal",
    "run_forward_internal",
    "target_url",
]

#: The endpoint is offline or not found (ngrok.md §3.4; the likeliest code for a forward to an
#: internal endpoint that is not online, which ngrok leaves unconfirmed).
ERR_NGROK_3200: Final = "ERR_NGROK_3200"
#: "may only forward through MAX endpoints": the forward chain is too long (ngrok.md §3.3).
#: Burrow also answers a loop with it: a loop would only end at the limit.
ERR_NGROK_3501: Final = "ERR_NGROK_3501"
#: A `${...}` URL that rendered into something that is not an internal endpoint URL: ngrok's
#: "invalid value" code for an action field.
ERR_NGROK_FORWARD_URL: Final = "ERR_NGROK_2204"

#: The target schemes each phase may forward to (same protocol only, ngrok.md §3.3).
HTTP_TARGETS: Final = frozenset({"http", "https"})
TCP_TARGETS: Final = frozenset({"tls", "tcp"})
_TARGETS: Final = {"on_http_request": HTTP_TARGETS, "on_tcp_connect": TCP_TARGETS}

#: The check the shell gives the phase: the target's canonical URL -> None (it can take the
#: request or connection) or (code, message) (it cannot).
ForwardCheck = Callable[[str], tuple[str, str] | None]


@dataclass(frozen=True, slots=True)
class ForwardInternalConfig:
    url: Template  # a static one was checked at load
    on_error: str  # "halt" or "continue"


@dataclass(frozen=True, slots=True)
class Handoff:
    """End the phase: hand the traffic to the internal endpoint `url` (canonical), or, when
    `error` is set (`on_error: halt`), fail with that (code, message)."""

    url: str
    error: tuple[str, str] | None = None


def target_url(text: str, phase: str) -> str:
    """The canonical URL (the registry's key) of the internal endpoint `text` names, for a
    forward from `phase`; ValueError saying what is wrong when it may not be a target."""
    try:
        url = parse_endpoint_url(text, default_scheme="https")
        validate_endpoint_url(url, binding="internal")
    except URLError as exc:
        raise ValueError(exc.message) from None
    if url.is_wildcard:
        raise ValueError(f"{text!r} is a wildcard; forward to one internal endpoint's URL")
    allowed = _TARGETS.get(phase, frozenset())
    if url.scheme not in allowed:
        raise ValueError(
            f"{text!r} is a {url.scheme} endpoint; from {phase} forward-internal reaches only "
            f"{' or '.join(sorted(allowed))} internal endpoints (the same protocol)"
        )
    return str(url)


def candidate_urls(url: str) -> Iterator[str]:
    """The registry keys that may serve the canonical target `url`, most specific first: the
    URL itself, then each wildcard above its host (`https://*.clinic-a.internal` for
    `https://api.clinic-a.internal`), as ngrok picks the most specific online endpoint."""
    yield url
    scheme, _, authority = url.partition("://")
    host, colon, port = authority.partition(":")
    suffix = f"{colon}{port}"
    while "." in host:
        host = host.split(".", 1)[1]
        if host == "internal":
            return
        yield f"{scheme}://*.{host}{suffix}"


def falls_through(config: Mapping[str, object]) -> bool:
    """True when a forward-internal action's raw config lets a failed forward fall through to
    the next action (`on_error: continue`), so it does not always end its phase."""
    return config.get("on_error") == "continue"


def parse_forward_internal(reader: ConfigReader) -> ForwardInternalConfig:
    text = reader.string("url", required=True)
    assert text is not None
    template = reader.template("url", text)
    if template.is_static:
        try:
            target_url(text, reader.place.phase or "")
        except ValueError as exc:
            raise reader.invalid("url", str(exc)) from None
    on_error = reader.string("on_error") or "halt"
    if on_error not in ("halt", "continue"):
        raise reader.invalid("on_error", f"must be halt or continue, was {on_error!r}")
    binding = reader.raw("binding")
    if binding is not None and binding != "internal":
        raise reader.invalid(
            "binding",
            f"{binding!r}: forward-internal reaches only internal endpoints; remove the field",
        )
    return ForwardInternalConfig(template, on_error)


def run_forward_internal(
    run: PhaseRun, config: ForwardInternalConfig, place: Place
) -> Handoff | None:
    """Forward to the endpoint `config.url` names (see the module docstring). Raises
    `PolicyRuntimeError` (ERR_NGROK_2238) if its `${...}` fails, as any action field does."""
    text = run.render(config.url, place.at_field("config.url"))
    try:
        url = target_url(text, run.phase)
    except ValueError as exc:
        error: tuple[str, str] | None = (ERR_NGROK_FORWARD_URL, str(exc))
        url = text
    else:
        check = run.forward_check
        error = check(url) if check is not None else None
    if error is None:
        return Handoff(url)
    if config.on_error == "continue":
        code, message = error
        run.set_result(
            "forward_internal", {"url": url, "error": {"code": code, "message": message}}
        )
        return None
    return Handoff(url, error)


def chain_check(
    chain: tuple[str, ...], *, max_hops: int, online: Callable[[str], bool]
) -> ForwardCheck:
    """The check for a forward-internal run by the last endpoint of `chain` (the URLs of the
    endpoints the traffic has passed, the public one first): ERR_NGROK_3501 for a target
    already in the chain (a loop) or a forward past `max_hops` forwards; ERR_NGROK_3200 for a
    target that is not online (`online` is the shell's registry lookup); else None."""

    def check(url: str) -> tuple[str, str] | None:
        path = " -> ".join((*chain, url))
        if url in chain:
            return (
                ERR_NGROK_3501,
                f"forward-internal loop: {path}; an endpoint may not forward to one the "
                "traffic has already passed",
            )
        if len(chain) > max_hops:
            return (
                ERR_NGROK_3501,
                f"Traffic may only forward through {max_hops} endpoints with forward-internal "
                f"({path}); shorten the chain or raise limits.forward_internal_max_hops",
            )
        if not online(url):
            return ERR_NGROK_3200, f"The internal endpoint {url} is offline."
        return None

    return check
