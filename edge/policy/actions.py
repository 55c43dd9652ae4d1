"""The Traffic Policy action catalogue as data, and the config schema of each action Burrow runs.

`CATALOGUE` lists every action type of ngrok's reference (ngrok.md §4.3 and traffic-policy.md
§1) with the phases it may appear in, whether it terminates the phase, and whether it is an
authentication action (only one per endpoint, ERR_NGROK_2239). An entry whose `parse` is None is
an action Burrow does not implement yet: validation refuses it by name (fail closed), never
accepts it and ignores it.

Each `parse_*` reads one action's config strictly (`edge.policy.fields.ConfigReader`) into a
frozen dataclass, compiling `${...}` templates and CEL expressions once, checking CIDRs (2217),
regexes (2261, RE2 syntax as ngrok's Go edge uses, linear-time by construction), and basic-auth
credentials against RFC 7617 §2 (2257, 2258). Passwords are kept only as SHA-256 digests.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final

import re2  # type: ignore[import-untyped]  # google-re2 ships no type hints

from edge.policy.actions_breaker import CircuitBreakerConfig, parse_circuit_breaker
from edge.policy.actions_jwt import JwtValidationConfig, parse_jwt_validation
from edge.policy.actions_tls import TerminateTlsConfig, parse_terminate_tls
from edge.policy.cel import Compiled, compile_expression
from edge.policy.document import freeze
from edge.policy.errors import (
    ERR_NGROK_2203,
    ERR_NGROK_2214,
    ERR_NGROK_2215,
    ERR_NGROK_2217,
    ERR_NGROK_2219,
    ERR_NGROK_2231,
    ERR_NGROK_2252,
    ERR_NGROK_2257,
    ERR_NGROK_2258,
    ERR_NGROK_2261,
)
from edge.policy.fields import ConfigReader
from edge.policy.forward_internal import (
    ForwardInternalConfig,
    falls_through,
    parse_forward_internal,
)
from edge.policy.interpolation import Template
from edge.policy.webhooks import PROVIDERS

__all__ = [
    "CATALOGUE",
    "HTTP_PHASES",
    "ActionSpec",
    "AddHeadersConfig",
    "BasicAuthConfig",
    "CloseConnectionConfig",
    "CompressResponseConfig",
    "Credential",
    "CustomResponseConfig",
    "DenyConfig",
    "ForwardInternalConfig",
    "LogConfig",
    "RateLimitConfig",
    "RedirectConfig",
    "RemoveHeadersConfig",
    "Replacement",
    "RequestBodyFindReplaceConfig",
    "ResponseBodyFindReplaceConfig",
    "RestrictIpsConfig",
    "SetVarsConfig",
    "UrlRewriteConfig",
    "VerifyWebhookConfig",
    "parse_duration",
    "terminates",
]

TCP: Final = "on_tcp_connect"
REQUEST: Final = "on_http_request"
RESPONSE: Final = "on_http_response"
HTTP_PHASES: Final = frozenset({REQUEST, RESPONSE})

# ngrok's per-field caps (DOCS traffic-policy/actions/*): headers 10, credentials 10, bucket
# keys 10, realm 128, rate-limit name under 1024, password 8..128.
MAX_HEADERS: Final = 10
MAX_CREDENTIALS: Final = 10
MAX_BUCKET_KEYS: Final = 10
MAX_REALM: Final = 128
MAX_RATE_LIMIT_NAME: Final = 1023
MIN_PASSWORD, MAX_PASSWORD = 8, 128
MAX_CAPACITY: Final = 2_000_000_000
# request-body-find-replace rules per action: each is a pass over the whole body, so a bound
# keeps one request's work proportional to its size (ngrok documents no cap; 10 as headers).
MAX_REPLACEMENTS: Final = 10
# RFC 9110 §5.1 field-name: a token.
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_CTL: Final = re.compile(r"[\x00-\x1f\x7f]")
# A client's User-Agent is its own; ngrok's browser-warning bypass header is ngrok's (§4.3).
_PROTECTED_ADD: Final = frozenset({"user-agent", "ngrok-skip-browser-warning"})
_PROTECTED_REMOVE: Final = frozenset({"user-agent"})


# --- configs ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RestrictIpsConfig:
    enforce: bool
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network | Template, ...]
    deny: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network | Template, ...]


@dataclass(frozen=True, slots=True)
class DenyConfig:
    status_code: int | None  # None on on_tcp_connect: the connection is closed


@dataclass(frozen=True, slots=True)
class CloseConnectionConfig:
    pass


@dataclass(frozen=True, slots=True)
class CustomResponseConfig:
    status_code: int
    body: Template | None
    headers: tuple[tuple[str, Template], ...]


@dataclass(frozen=True, slots=True)
class AddHeadersConfig:
    headers: tuple[tuple[str, Template], ...]  # names lower-cased, as ngrok adds them


@dataclass(frozen=True, slots=True)
class RemoveHeadersConfig:
    headers: tuple[str, ...]  # lower-cased


@dataclass(frozen=True, slots=True)
class RedirectConfig:
    from_: Template | None  # None: the whole URL
    to: Template
    status_code: int
    headers: tuple[tuple[str, Template], ...]


@dataclass(frozen=True, slots=True)
class UrlRewriteConfig:
    from_: Template | None
    to: Template


@dataclass(frozen=True, slots=True)
class SetVarsConfig:
    vars: tuple[tuple[str, object], ...]  # strings are Templates; other values deep-frozen


@dataclass(frozen=True, slots=True)
class LogConfig:
    metadata: tuple[tuple[str, object], ...]  # strings are Templates; other values deep-frozen


@dataclass(frozen=True, slots=True)
class Credential:
    username: str
    password_sha256: bytes  # never the password itself


@dataclass(frozen=True, slots=True)
class BasicAuthConfig:
    credentials: tuple[Credential, ...]
    realm: str
    enforce: bool


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    name: str
    algorithm: str  # "sliding_window", the only one ngrok has
    capacity: int
    rate_seconds: int
    bucket_key: tuple[Compiled, ...]
    enforce: bool


@dataclass(frozen=True, slots=True)
class VerifyWebhookConfig:
    provider: str  # one of edge.policy.webhooks.PROVIDERS
    secret: Template
    enforce: bool


@dataclass(frozen=True, slots=True)
class Replacement:
    from_: Template  # an RE2 pattern (checked at load unless it has `${...}`)
    to: Template  # `$1`/`${name}` groups; empty deletes the match


@dataclass(frozen=True, slots=True)
class RequestBodyFindReplaceConfig:
    replacements: tuple[Replacement, ...]  # applied in order, each to the previous result


@dataclass(frozen=True, slots=True)
class CompressResponseConfig:
    algorithms: tuple[str, ...]  # of COMPRESSION_ALGORITHMS, in the operator's order


@dataclass(frozen=True, slots=True)
class ResponseBodyFindReplaceConfig:
    replacements: tuple[Replacement, ...]  # applied in order, each to the previous result


ActionConfig = (
    RestrictIpsConfig
    | DenyConfig
    | CloseConnectionConfig
    | CustomResponseConfig
    | AddHeadersConfig
    | RemoveHeadersConfig
    | RedirectConfig
    | UrlRewriteConfig
    | SetVarsConfig
    | LogConfig
    | BasicAuthConfig
    | RateLimitConfig
    | ForwardInternalConfig
    | VerifyWebhookConfig
    | RequestBodyFindReplaceConfig
    | CompressResponseConfig
    | ResponseBodyFindReplaceConfig
    | TerminateTlsConfig
    | JwtValidationConfig
    | CircuitBreakerConfig
)
Parser = Callable[[ConfigReader], ActionConfig]


# --- shared field readers --------------------------------------------------------------------
def _cidrs(
    reader: ConfigReader, field: str
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network | Template, ...]:
    result: list[ipaddress.IPv4Network | ipaddress.IPv6Network | Template] = []
    for index, text in enumerate(reader.strings(field)):
        place = f"{field}[{index}]"
        if "${" in text:
            result.append(reader.template(place, text))  # checked when it is rendered
            continue
        try:
            if "/" not in text:
                raise ValueError("a CIDR needs a prefix length")
            result.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError as exc:
            raise reader.error(
                ERR_NGROK_2217, place, f"Invalid CIDR(s): {text!r} ({exc}; e.g. 203.0.113.7/32)"
            ) from None
    return tuple(result)


def _status(reader: ConfigReader, default: int, low: int = 100, high: int = 599) -> int:
    return reader.integer("status_code", default=default, minimum=low, maximum=high)


def _headers(
    reader: ConfigReader, field: str, *, required: bool, protected: frozenset[str] = frozenset()
) -> tuple[tuple[str, Template], ...]:
    headers = reader.mapping(field, required=required, max_entries=MAX_HEADERS)
    result: list[tuple[str, Template]] = []
    seen: set[str] = set()
    for name, value in headers.items():
        place = f"{field}.{name}"
        if not _TOKEN.match(name):
            raise reader.invalid(place, f"{name!r} is not a valid header name")
        lowered = name.lower()
        if lowered in protected:
            raise reader.error(ERR_NGROK_2219, place, f"{lowered} cannot be user-configured")
        if lowered in seen:
            raise reader.error(
                ERR_NGROK_2231, place, f"{field} contains duplicate values: {lowered}"
            )
        seen.add(lowered)
        if not isinstance(value, str):
            raise reader.invalid(
                place, f"a header value must be a string, not {type(value).__name__}"
            )
        if _CTL.sub("", value.replace("\t", "")) != value.replace("\t", ""):
            raise reader.invalid(place, "a header value may not contain control characters")
        result.append((lowered, reader.template(place, value)))
    return tuple(result)


def _regex(reader: ConfigReader, field: str, text: str) -> Template:
    if "${" not in text:  # a templated pattern is checked after interpolation, per request
        options = re2.Options()
        options.log_errors = False
        try:
            re2.compile(text, options)
        except re2.error as exc:
            detail = (
                exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            )
            raise reader.error(
                ERR_NGROK_2261,
                field,
                f"Failed to parse the configuration for policy action type {reader.action}. "
                f"Field {field} is not a valid regular expression. ERROR: {detail}",
            ) from None
    return reader.template(field, text)


def _templated_values(
    reader: ConfigReader, field: str, items: Mapping[str, object]
) -> list[tuple[str, object]]:
    return [(key, _templated(reader, f"{field}.{key}", value)) for key, value in items.items()]


def _templated(reader: ConfigReader, field: str, value: object) -> object:
    """`value` deep-frozen, with every string in it, at any depth, a `Template` (ngrok's
    set-vars example interpolates a map's member: `sample_map: {pem: ${conn.tls.client.pem}}`)."""
    if isinstance(value, str):
        return reader.template(field, value)
    if isinstance(value, Mapping):
        return freeze(
            {key: _templated(reader, f"{field}.{key}", item) for key, item in value.items()}
        )
    if isinstance(value, tuple | list):
        return tuple(_templated(reader, f"{field}[{i}]", item) for i, item in enumerate(value))
    return freeze(value)


_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS: Final = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}


def parse_duration(text: str) -> Decimal:
    """A Go duration (`90s`, `1m30s`, `1.5h`) in seconds; ValueError if it is not one."""
    position, total = 0, Decimal(0)
    if not text:
        raise ValueError("empty duration")
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            raise ValueError(f"not a duration: {text!r} (write e.g. 60s, 10m, 1h)")
        try:
            total += Decimal(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        except InvalidOperation:
            raise ValueError(f"not a duration: {text!r}") from None
        position = match.end()
    return total


# --- one parser per action -------------------------------------------------------------------
def parse_restrict_ips(reader: ConfigReader) -> RestrictIpsConfig:
    enforce = reader.boolean("enforce", default=True)
    allow, deny = _cidrs(reader, "allow"), _cidrs(reader, "deny")
    if reader.present("ip_policies"):
        reader.raw("ip_policies")
        raise reader.invalid(
            "ip_policies",
            "IP policy references are not supported by this Burrow edge yet; list CIDRs",
        )
    if not allow and not deny:
        raise reader.invalid("allow", "restrict-ips needs at least one CIDR in allow or deny")
    return RestrictIpsConfig(enforce, allow, deny)


def parse_deny(reader: ConfigReader) -> DenyConfig:
    if reader.place.phase == TCP:
        return DenyConfig(None)  # no fields on tcp/tls: `finish` refuses a status_code
    return DenyConfig(_status(reader, 403))


def parse_close_connection(reader: ConfigReader) -> CloseConnectionConfig:
    return CloseConnectionConfig()


def parse_custom_response(reader: ConfigReader) -> CustomResponseConfig:
    status = _status(reader, 200)
    body = reader.string("body")
    content = reader.string("content")  # the field's name before ngrok renamed it `body`
    if body is not None and content is not None:
        raise reader.invalid("content", "give `body` or its older name `content`, not both")
    text = body if body is not None else content
    field = "body" if body is not None else "content"
    template = reader.template(field, text) if text is not None else None
    return CustomResponseConfig(status, template, _headers(reader, "headers", required=False))


def parse_add_headers(reader: ConfigReader) -> AddHeadersConfig:
    return AddHeadersConfig(_headers(reader, "headers", required=True, protected=_PROTECTED_ADD))


def parse_remove_headers(reader: ConfigReader) -> RemoveHeadersConfig:
    names = reader.strings("headers", required=True, max_entries=MAX_HEADERS)
    result: list[str] = []
    for index, name in enumerate(names):
        place = f"headers[{index}]"
        if not _TOKEN.match(name):
            raise reader.invalid(place, f"{name!r} is not a valid header name")
        if name.lower() in _PROTECTED_REMOVE:
            raise reader.error(ERR_NGROK_2219, place, f"{name.lower()} cannot be user-configured")
        result.append(name.lower())
    return RemoveHeadersConfig(tuple(result))


def _from_to(reader: ConfigReader) -> tuple[Template | None, Template]:
    source = reader.string("from")
    target = reader.string("to", required=True)
    assert target is not None
    return (_regex(reader, "from", source) if source is not None else None), reader.template(
        "to", target
    )


def parse_redirect(reader: ConfigReader) -> RedirectConfig:
    source, target = _from_to(reader)
    status = _status(reader, 302, 300, 399)
    return RedirectConfig(source, target, status, _headers(reader, "headers", required=False))


def parse_url_rewrite(reader: ConfigReader) -> UrlRewriteConfig:
    source, target = _from_to(reader)
    return UrlRewriteConfig(source, target)


def parse_set_vars(reader: ConfigReader) -> SetVarsConfig:
    value = reader.raw("vars")
    shape = "Invalid format for set-vars: vars must be a list of maps of exactly size 1"
    if not isinstance(value, tuple | list) or not value:
        raise reader.error(ERR_NGROK_2252, "vars", shape)
    result: list[tuple[str, object]] = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping) or len(item) != 1:
            raise reader.error(ERR_NGROK_2252, f"vars[{index}]", shape)
        result.extend(_templated_values(reader, f"vars[{index}]", item))
    return SetVarsConfig(tuple(result))


def parse_log(reader: ConfigReader) -> LogConfig:
    metadata = reader.mapping("metadata", required=True)
    return LogConfig(tuple(_templated_values(reader, "metadata", metadata)))


def _credential(reader: ConfigReader, field: str, text: str) -> Credential:
    if "${" in text:
        raise reader.invalid(field, "CEL in credentials is not supported by this Burrow edge yet")
    username, colon, password = text.partition(":")  # the first colon splits (RFC 7617 §2)
    if not colon:
        raise reader.error(
            ERR_NGROK_2257,
            field,
            f"Invalid basic auth credential. Username {username!r} fails to meet requirements of "
            "RFC 7617 #2.1: expected username:password",
        )
    if not username or _CTL.search(username):
        raise reader.error(
            ERR_NGROK_2257,
            field,
            f"Invalid basic auth credential. Username {username!r} fails to meet requirements of "
            "RFC 7617 #2.1: it must be non-empty with no control characters",
        )
    if _CTL.search(password) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise reader.error(
            ERR_NGROK_2258,
            field,
            f"Invalid basic auth credential. The password of user {username!r} fails to meet "
            f"requirements of RFC 7617 #2.1: {MIN_PASSWORD} to {MAX_PASSWORD} characters, "
            "no control characters",
        )
    return Credential(username, hashlib.sha256(password.encode()).digest())


def parse_basic_auth(reader: ConfigReader) -> BasicAuthConfig:
    texts = reader.strings("credentials", required=True, max_entries=MAX_CREDENTIALS)
    credentials: list[Credential] = []
    for index, text in enumerate(texts):
        credential = _credential(reader, f"credentials[{index}]", text)
        if any(known.username == credential.username for known in credentials):
            raise reader.error(
                ERR_NGROK_2231,
                f"credentials[{index}]",
                f"credentials contains duplicate values: username {credential.username!r}",
            )
        credentials.append(credential)
    realm = reader.string("realm", max_length=MAX_REALM)
    if realm is not None and (not realm.isascii() or _CTL.search(realm) or '"' in realm):
        raise reader.invalid("realm", "must be printable ASCII without double quotes")
    enforce = reader.boolean("enforce", default=True)
    return BasicAuthConfig(tuple(credentials), "ngrok" if realm is None else realm, enforce)


def parse_rate_limit(reader: ConfigReader) -> RateLimitConfig:
    name = reader.string("name", required=True, max_length=MAX_RATE_LIMIT_NAME)
    algorithm = reader.string("algorithm", required=True)
    if algorithm != "sliding_window":
        raise reader.invalid("algorithm", f"must be sliding_window, was {algorithm!r}")
    if not reader.present("capacity"):
        raise reader.invalid("capacity", "is required")
    capacity = reader.integer("capacity", default=0, minimum=1, maximum=MAX_CAPACITY)
    rate_text = reader.string("rate", required=True)
    assert name is not None and rate_text is not None
    try:
        rate = parse_duration(rate_text)
    except ValueError as exc:
        raise reader.invalid("rate", str(exc)) from None
    if not 60 <= rate <= 86400 or rate % 10:
        raise reader.error(
            ERR_NGROK_2215,
            "rate",
            "Failed to parse configuration for rate-limit: rate must be between 60s and 24h "
            f"inclusive and a multiple of 10s, was {rate_text}",
        )
    keys = reader.strings("bucket_key", required=True, max_entries=MAX_BUCKET_KEYS)
    compiled = tuple(
        compile_expression(key, place=reader.at(f"bucket_key[{index}]"))
        for index, key in enumerate(keys)
    )
    enforce = reader.boolean("enforce", default=True)
    return RateLimitConfig(name, algorithm, capacity, int(rate), compiled, enforce)


def parse_verify_webhook(reader: ConfigReader) -> VerifyWebhookConfig:
    provider = reader.string("provider", required=True)
    assert provider is not None
    if provider not in PROVIDERS:
        raise reader.invalid(
            "provider",
            f"{provider!r} is not a provider this Burrow edge verifies "
            f"(it verifies {', '.join(sorted(PROVIDERS))})",
        )
    secret = reader.string("secret", required=True)
    assert secret is not None
    if not secret:
        raise reader.invalid("secret", f"webhook verification for {provider} requires a secret")
    enforce = reader.boolean("enforce", default=True)
    return VerifyWebhookConfig(provider, reader.template("secret", secret), enforce)


def parse_request_body_find_replace(reader: ConfigReader) -> RequestBodyFindReplaceConfig:
    value = reader.raw("replacements")
    if isinstance(value, str) or not isinstance(value, tuple | list) or not value:
        raise reader.invalid("replacements", "must be a list of at least one {from, to}")
    reader.check_count("replacements", len(value), MAX_REPLACEMENTS)
    result: list[Replacement] = []
    for index, item in enumerate(value):
        place = f"replacements[{index}]"
        if not isinstance(item, Mapping):
            raise reader.invalid(place, "must be a mapping with `from` and `to`")
        unknown = sorted(str(key) for key in item if key not in ("from", "to"))
        if unknown:
            raise reader.error(
                ERR_NGROK_2203,
                f"{place}.{unknown[0]}",
                f"Failed to parse the configuration for policy action type {reader.action}: "
                f"unknown field {unknown[0]!r}; known fields: from, to",
            )
        source, target = item.get("from"), item.get("to")
        if not isinstance(source, str) or not source:
            raise reader.invalid(f"{place}.from", "is required (an RE2 regular expression)")
        if target is None:
            target = ""
        if not isinstance(target, str):
            raise reader.invalid(f"{place}.to", "must be a string")
        result.append(
            Replacement(
                _regex(reader, f"{place}.from", source), reader.template(f"{place}.to", target)
            )
        )
    return RequestBodyFindReplaceConfig(tuple(result))


# compress-response's algorithms, in ngrok's default order but for `compress` (Unix LZW): no
# well-kept Python library writes it and no browser or curl asks for it, so it is refused by
# name rather than accepted and never used.
COMPRESSION_ALGORITHMS: Final = ("gzip", "deflate", "br")


def parse_compress_response(reader: ConfigReader) -> CompressResponseConfig:
    if not reader.present("algorithms"):
        reader.raw("algorithms")
        return CompressResponseConfig(COMPRESSION_ALGORITHMS)
    names = reader.strings("algorithms", required=True, max_entries=4)
    for index, name in enumerate(names):
        place = f"algorithms[{index}]"
        if name == "compress":
            raise reader.error(
                ERR_NGROK_2214,
                place,
                "Invalid compression algorithm 'compress': this Burrow edge does not write Unix "
                "compress (LZW); remove it (gzip, deflate and br are supported)",
            )
        if name not in COMPRESSION_ALGORITHMS:
            raise reader.error(
                ERR_NGROK_2214,
                place,
                f"Invalid compression algorithm {name!r}: must be one of "
                f"{', '.join(COMPRESSION_ALGORITHMS)}",
            )
        if name in names[:index]:
            raise reader.error(
                ERR_NGROK_2231, place, f"algorithms contains duplicate values: {name}"
            )
    return CompressResponseConfig(names)


def parse_response_body_find_replace(reader: ConfigReader) -> ResponseBodyFindReplaceConfig:
    # The same `replacements` as request-body-find-replace (DOCS: the two pages are twins).
    return ResponseBodyFindReplaceConfig(parse_request_body_find_replace(reader).replacements)


# --- the catalogue ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One action type: where it may run and what it does to the phase."""

    type: str
    phases: frozenset[str]
    terminating: bool  # always ends the phase when it runs (2207 for what follows)
    auth: bool  # an authentication action: one per endpoint (2239)
    parse: Parser | None  # None: in ngrok's catalogue, not implemented by Burrow yet
    #: Needs the whole request body: the shells buffer it before the request phase runs.
    request_body: bool = False
    #: The endpoint protocols it may be used on (None: all); others are ERR_NGROK_2205.
    protocols: frozenset[str] | None = None


def _spec(
    kind: str,
    phases: set[str],
    parse: Parser | None,
    *,
    terminating: bool = False,
    auth: bool = False,
    request_body: bool = False,
    protocols: set[str] | None = None,
) -> ActionSpec:
    return ActionSpec(
        kind,
        frozenset(phases),
        terminating,
        auth,
        parse,
        request_body,
        None if protocols is None else frozenset(protocols),
    )


_ALL = {TCP, REQUEST, RESPONSE}
CATALOGUE: Final[Mapping[str, ActionSpec]] = {
    spec.type: spec
    for spec in (
        _spec("restrict-ips", _ALL, parse_restrict_ips),
        _spec("deny", {TCP, REQUEST}, parse_deny, terminating=True),
        _spec("close-connection", {TCP, REQUEST}, parse_close_connection, terminating=True),
        _spec("custom-response", {REQUEST, RESPONSE}, parse_custom_response, terminating=True),
        _spec("add-headers", {REQUEST, RESPONSE}, parse_add_headers),
        _spec("remove-headers", {REQUEST, RESPONSE}, parse_remove_headers),
        # redirect answers only when the URL changes, so it is not "always terminating" (and
        # ngrok's list of terminating actions leaves it out, traffic-policy.md §1).
        _spec("redirect", {REQUEST}, parse_redirect),
        _spec("url-rewrite", {REQUEST}, parse_url_rewrite),
        _spec("set-vars", _ALL, parse_set_vars),
        _spec("log", _ALL, parse_log),
        _spec("basic-auth", {REQUEST}, parse_basic_auth, auth=True),
        _spec("rate-limit", {REQUEST}, parse_rate_limit),
        _spec("jwt-validation", {REQUEST}, parse_jwt_validation, auth=True),
        _spec("verify-webhook", {REQUEST}, parse_verify_webhook, request_body=True),
        _spec(
            "request-body-find-replace",
            {REQUEST},
            parse_request_body_find_replace,
            request_body=True,
        ),
        _spec("compress-response", {RESPONSE}, parse_compress_response),
        _spec("response-body-find-replace", {RESPONSE}, parse_response_body_find_replace),
        # tls:// only: on https:// the edge already terminates TLS with its own certificate
        # for the host, and this edge does not let a policy change that yet (ERR_NGROK_2205).
        _spec("terminate-tls", {TCP}, parse_terminate_tls, protocols={"tls"}),
        # Not implemented yet: refused at validation, by name.
        # Terminating but for `on_error: continue` (`terminates`).
        _spec("forward-internal", {TCP, REQUEST}, parse_forward_internal, terminating=True),
        _spec("oauth", {REQUEST}, None, auth=True),
        _spec("openid-connect", {REQUEST}, None, auth=True),
        _spec("saml", {REQUEST}, None, auth=True),
        _spec("http-request", {REQUEST, RESPONSE}, None),
        _spec("circuit-breaker", {REQUEST}, parse_circuit_breaker),
        _spec("sse-find-replace", {"on_event_stream_message"}, None),
        _spec("owasp-crs-request", {REQUEST}, None),
        _spec("owasp-crs-response", {RESPONSE}, None),
        _spec("ai-gateway", {REQUEST}, None),
    )
}


def terminates(action_type: str, config: Mapping[str, object]) -> bool:
    """True when an action of `action_type` with this raw `config` always ends its phase when
    it runs: a terminating type (`ActionSpec.terminating`), except a forward-internal whose
    `on_error: continue` lets a failed forward fall through to the next action."""
    spec = CATALOGUE.get(action_type)
    if spec is None or not spec.terminating:
        return False
    return not (action_type == "forward-internal" and falls_through(config))
