"""The `jwt-validation` action's config (DOCS `traffic-policy/actions/jwt-validation`), strictly.

The fields, as ngrok documents them:

    issuer:   {allow_list: [{value: ISSUER}, ...]}          required, at least one (7172)
    audience: {allow_list: [{value: AUDIENCE}, ...]}        optional; if given, at least one
    http:     {tokens: [{type, method, name, prefix}, ...]} required, at least one (7178)
    jws:
      allowed_algorithms: [RS256, ES256, ...]               required, at least one (7176)
      keys:
        sources: {additional_jkus: [https://...]}           required, at least one (7184)
        identification: [{token_claims: [kid]}]             optional; only `kid` exists (7183)

Codes are ngrok's ERR_NGROK_71xx for this action (DOCS `errors/err_ngrok_7172` ... `7192`):
7173 an issuer that is not a URL, 7175 an empty audience, 7177 an algorithm this edge does not
verify (`none`, the HMAC ones, anything unknown), 7179 a bad token `type`, 7180 a token `name`
that is not a header name, 7181 a prefix with control characters, 7185 a JWKS URL that is not
an `https://` URL, and 7187/7188/7190/7192 a duplicate issuer, audience, algorithm or JWKS
URL. Unknown keys at any depth are ERR_NGROK_2203, as everywhere.

A token with `method: body` is a field of the request body (JSON object or form), so a policy
with one reads request bodies (`JwtValidationConfig.reads_body`, which makes the shells buffer
the body as for verify-webhook); `edge.policy.run_jwt` reads it.

Fail closed, refused by name: a JWKS URL that is not `https://` (keys fetched in the clear
could be swapped by anyone on the path).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from edge.policy.errors import ERR_NGROK_2203, kind_of
from edge.policy.fields import ConfigReader
from edge.policy.jwt import ALGORITHMS

__all__ = [
    "MAX_ALLOW_LIST",
    "MAX_JKUS",
    "MAX_TOKENS",
    "JwtValidationConfig",
    "TokenSource",
    "parse_jwt_validation",
]

# ngrok's messages for this action, by code (DOCS errors/err_ngrok_71xx).
ERR_NGROK_7172: Final = "ERR_NGROK_7172"  # at least one issuer in the allow list
ERR_NGROK_7173: Final = "ERR_NGROK_7173"  # issuer is not a valid URL
ERR_NGROK_7174: Final = "ERR_NGROK_7174"  # at least one audience in the allow list
ERR_NGROK_7175: Final = "ERR_NGROK_7175"  # audience is invalid
ERR_NGROK_7176: Final = "ERR_NGROK_7176"  # at least one allowed algorithm
ERR_NGROK_7177: Final = "ERR_NGROK_7177"  # the algorithm is invalid
ERR_NGROK_7178: Final = "ERR_NGROK_7178"  # at least one token configuration
ERR_NGROK_7179: Final = "ERR_NGROK_7179"  # http token is invalid
ERR_NGROK_7180: Final = "ERR_NGROK_7180"  # http token name is invalid
ERR_NGROK_7181: Final = "ERR_NGROK_7181"  # http token prefix is invalid
ERR_NGROK_7183: Final = "ERR_NGROK_7183"  # signing key identification is invalid
ERR_NGROK_7184: Final = "ERR_NGROK_7184"  # signing key must have at least one source
ERR_NGROK_7185: Final = "ERR_NGROK_7185"  # additional jku is not a valid URL
ERR_NGROK_7187: Final = "ERR_NGROK_7187"  # issuer must be unique
ERR_NGROK_7188: Final = "ERR_NGROK_7188"  # audience must be unique
ERR_NGROK_7190: Final = "ERR_NGROK_7190"  # algorithm must be unique
ERR_NGROK_7192: Final = "ERR_NGROK_7192"  # additional jku must be unique

#: Issuers and audiences per allow list: real policies name one to a few; the bound keeps a
#: policy's size and the per-request set lookups small.
MAX_ALLOW_LIST: Final = 100
#: Tokens per action: ngrok's examples use one or two (an access token and an ID token); all
#: must be present and each is verified, so the count bounds per-request work.
MAX_TOKENS: Final = 10
#: JWKS URLs per action: each is fetched and refreshed for as long as the policy is attached,
#: so the count bounds the background fetching one policy can cause.
MAX_JKUS: Final = 10
#: The longest issuer, audience or JWKS URL: 2 KiB is the practical URL length limit.
MAX_VALUE_LENGTH: Final = 2048
#: ngrok's token types (DOCS config: tokens[*].type).
TOKEN_TYPES: Final = frozenset({"id_token", "access_token", "at+jwt", "it+jwt", "plain", "jwt"})

_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")  # RFC 9110 token
_CTL: Final = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class TokenSource:
    """Where one token is: the header or body field `name` (any case), the `prefix` to strip,
    its type."""

    type: str
    method: str  # "header" | "body"
    name: str
    prefix: str


@dataclass(frozen=True, slots=True)
class JwtValidationConfig:
    issuers: tuple[str, ...]
    audiences: tuple[str, ...]  # empty: `aud` is not checked (no `audience` given)
    tokens: tuple[TokenSource, ...]
    algorithms: tuple[str, ...]
    jkus: tuple[str, ...]

    @property
    def reads_body(self) -> bool:
        """A token is in the request body: the shells must read the body for this action."""
        return any(token.method == "body" for token in self.tokens)


def _keys(
    reader: ConfigReader, field: str, value: object, known: Sequence[str]
) -> Mapping[str, object]:
    """`value` as a mapping whose keys are all in `known` (2203 naming an unknown one)."""
    if not isinstance(value, Mapping):
        raise reader.invalid(field, f"must be a mapping, not {kind_of(value)}")
    for key in value:
        if key not in known:
            raise reader.error(
                ERR_NGROK_2203,
                f"{field}.{key}",
                f"Failed to parse the configuration for policy action type {reader.action}: "
                f"unknown field {key!r} in {field}; known fields: {', '.join(known)}",
            )
    return value


def _list(reader: ConfigReader, field: str, value: object, limit: int) -> Sequence[object]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise reader.invalid(field, f"must be a list, not {kind_of(value)}")
    reader.check_count(field, len(value), limit)
    return value


def _text(reader: ConfigReader, field: str, value: object, code: str, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_VALUE_LENGTH:
        raise reader.error(
            code,
            field,
            f"The JWT Validation {what} is invalid: {value!r} must be a non-empty string of at "
            f"most {MAX_VALUE_LENGTH} characters.",
        )
    return value


def _allow_list(
    reader: ConfigReader, field: str, *, empty: str, invalid: str, duplicate: str, what: str
) -> tuple[str, ...]:
    section = _keys(reader, field, reader.raw(field), ["allow_list"])
    entries = _list(reader, f"{field}.allow_list", section.get("allow_list"), MAX_ALLOW_LIST)
    if not entries:
        raise reader.error(
            empty,
            f"{field}.allow_list",
            f"The JWT Validation configuration must have at least one {what} in the allow list.",
        )
    values: list[str] = []
    for index, entry in enumerate(entries):
        place = f"{field}.allow_list[{index}]"
        item = _keys(reader, place, entry, ["value"])
        value = _text(reader, f"{place}.value", item.get("value"), invalid, what)
        if what == "issuer":
            parts = urlsplit(value)
            if not parts.scheme or not (parts.netloc or parts.scheme == "urn"):
                raise reader.error(
                    invalid,
                    f"{place}.value",
                    f"The JWT Validation issuer is invalid: {value!r} is not a valid URL.",
                )
        if value in values:
            raise reader.error(
                duplicate,
                f"{place}.value",
                f"The JWT Validation {what} {value!r} must be unique. Make sure to include it "
                "only once in the allow list.",
            )
        values.append(value)
    return tuple(values)


def _token(reader: ConfigReader, place: str, entry: object) -> TokenSource:
    item = _keys(reader, place, entry, ["type", "method", "name", "prefix"])
    kind = item.get("type")
    if kind not in TOKEN_TYPES:
        raise reader.error(
            ERR_NGROK_7179,
            f"{place}.type",
            f"The JWT Validation http token is invalid: type {kind!r} must be one of "
            f"{', '.join(sorted(TOKEN_TYPES))}.",
        )
    method = item.get("method")
    if method not in ("header", "body"):
        raise reader.error(
            ERR_NGROK_7179,
            f"{place}.method",
            f"The JWT Validation http token is invalid: method {method!r} must be header or body.",
        )
    name = item.get("name")
    if not isinstance(name, str) or not _HEADER_NAME.match(name):
        raise reader.error(
            ERR_NGROK_7180,
            f"{place}.name",
            f"The JWT Validation http token name {name!r} is invalid.",
        )
    prefix = item.get("prefix", "")
    if prefix is None:
        prefix = ""
    if not isinstance(prefix, str) or _CTL.search(prefix) or len(prefix) > MAX_VALUE_LENGTH:
        raise reader.error(
            ERR_NGROK_7181,
            f"{place}.prefix",
            f"The JWT Validation http token prefix {prefix!r} is invalid.",
        )
    assert isinstance(kind, str)
    return TokenSource(kind, method, name, prefix)


def _tokens(reader: ConfigReader) -> tuple[TokenSource, ...]:
    section = _keys(reader, "http", reader.raw("http"), ["tokens"])
    entries = _list(reader, "http.tokens", section.get("tokens"), MAX_TOKENS)
    if not entries:
        raise reader.error(
            ERR_NGROK_7178,
            "http.tokens",
            "The JWT Validation configuration must have at least one token configuration.",
        )
    return tuple(_token(reader, f"http.tokens[{i}]", entry) for i, entry in enumerate(entries))


def _algorithms(reader: ConfigReader, jws: Mapping[str, object]) -> tuple[str, ...]:
    field = "jws.allowed_algorithms"
    entries = _list(reader, field, jws.get("allowed_algorithms"), len(ALGORITHMS))
    if not entries:
        raise reader.error(
            ERR_NGROK_7176,
            field,
            "The JWT Validation configuration must have at least one allowed algorithm.",
        )
    names: list[str] = []
    for index, entry in enumerate(entries):
        place = f"{field}[{index}]"
        if not isinstance(entry, str) or entry not in ALGORITHMS:
            raise reader.error(
                ERR_NGROK_7177,
                place,
                f"The {entry!r} algorithm is invalid. Consult the documentation for valid "
                f"algorithms: this edge verifies {', '.join(ALGORITHMS)} (never none, and no "
                "HMAC algorithms: they need a shared secret, not a public key).",
            )
        if entry in names:
            raise reader.error(
                ERR_NGROK_7190,
                place,
                f"The JWT Validation signing key algorithm {entry} must be unique. Make sure to "
                "include it only once in the allowed algorithms list.",
            )
        names.append(entry)
    return tuple(names)


def _identification(reader: ConfigReader, value: object) -> None:
    field = "jws.keys.identification"
    for index, entry in enumerate(_list(reader, field, value, MAX_TOKENS)):
        place = f"{field}[{index}]"
        item = _keys(reader, place, entry, ["token_claims"])
        claims = item.get("token_claims")
        if (
            isinstance(claims, str)
            or not isinstance(claims, Sequence)
            or not claims
            or any(claim != "kid" for claim in claims)
        ):
            raise reader.error(
                ERR_NGROK_7183,
                f"{place}.token_claims",
                "The JWT Validation signing key must have a valid identification mechanism "
                "such as the 'kid' token claim (the only one there is).",
            )


def _jkus(reader: ConfigReader, jws: Mapping[str, object]) -> tuple[str, ...]:
    keys = _keys(reader, "jws.keys", jws.get("keys"), ["sources", "identification"])
    _identification(reader, keys.get("identification"))
    sources_value = keys.get("sources")
    if sources_value is None:
        sources_value = {}
    sources = _keys(reader, "jws.keys.sources", sources_value, ["additional_jkus"])
    field = "jws.keys.sources.additional_jkus"
    entries = _list(reader, field, sources.get("additional_jkus"), MAX_JKUS)
    if not entries:
        raise reader.error(
            ERR_NGROK_7184, field, "The JWT Validation signing key must have at least one source."
        )
    urls: list[str] = []
    for index, entry in enumerate(entries):
        place = f"{field}[{index}]"
        parts = urlsplit(entry) if isinstance(entry, str) else None
        valid = (
            isinstance(entry, str)
            and len(entry) <= MAX_VALUE_LENGTH
            and parts is not None
            and parts.scheme == "https"
            and bool(parts.hostname)
            and not _CTL.search(entry)
            and " " not in entry
        )
        if not valid:
            raise reader.error(
                ERR_NGROK_7185,
                place,
                f"The JWT Validation signing key source has an invalid additional jku: "
                f"{entry!r} is not a valid URL (an https:// URL is required: keys fetched in "
                "the clear could be replaced on the way).",
            )
        assert isinstance(entry, str) and parts is not None
        try:
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError:
            raise reader.error(
                ERR_NGROK_7185,
                place,
                f"The JWT Validation signing key source has an invalid additional jku: "
                f"{entry!r} is not a valid URL (bad port).",
            ) from None
        if entry in urls:
            raise reader.error(
                ERR_NGROK_7192,
                place,
                f"The JWT Validation signing key source additional jku {entry} must be unique. "
                "Make sure to include it only once in the additional jku list.",
            )
        urls.append(entry)
    return tuple(urls)


def parse_jwt_validation(reader: ConfigReader) -> JwtValidationConfig:
    if not reader.present("issuer"):
        reader.raw("issuer")
        raise reader.error(
            ERR_NGROK_7172,
            "issuer.allow_list",
            "The JWT Validation configuration must have at least one issuer in the allow list.",
        )
    issuers = _allow_list(
        reader,
        "issuer",
        empty=ERR_NGROK_7172,
        invalid=ERR_NGROK_7173,
        duplicate=ERR_NGROK_7187,
        what="issuer",
    )
    audiences: tuple[str, ...] = ()
    if reader.present("audience"):
        audiences = _allow_list(
            reader,
            "audience",
            empty=ERR_NGROK_7174,
            invalid=ERR_NGROK_7175,
            duplicate=ERR_NGROK_7188,
            what="audience",
        )
    else:
        reader.raw("audience")
    if not reader.present("http"):
        reader.raw("http")
        raise reader.error(
            ERR_NGROK_7178,
            "http.tokens",
            "The JWT Validation configuration must have at least one token configuration.",
        )
    tokens = _tokens(reader)
    jws_value = reader.raw("jws")
    if jws_value is None:
        raise reader.invalid("jws", "is required")
    jws = _keys(reader, "jws", jws_value, ["allowed_algorithms", "keys"])
    algorithms = _algorithms(reader, jws)
    if jws.get("keys") is None:
        raise reader.error(
            ERR_NGROK_7184,
            "jws.keys",
            "The JWT Validation signing key must have at least one source.",
        )
    jkus = _jkus(reader, jws)
    return JwtValidationConfig(issuers, audiences, tokens, algorithms, jkus)
