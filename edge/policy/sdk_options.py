"""ngrok's legacy per-endpoint SDK options (a Bind's `Opts`), turned into a Traffic Policy.

ngrok's SDKs still send the older endpoint "modules" in `Bind.Opts` (reference/ngrok.md §8.7):
ngrok-go's `proto.HTTPEndpoint` / `TCPEndpoint` / `TLSEndpoint` and ngrok-rust's structs of the
same names. Top-level keys are PascalCase (`BasicAuth`, `IPRestriction`); each module object is
a protobuf message of `internal/pb/middleware.proto` encoded with Go's `encoding/json`, so its
fields are the proto's snake_case names (`allow_cidrs`, `cleartext_password`), bytes are base64
strings, and a module that was not asked for is `null` (or left out). ngrok's edge decodes them
with Go's `encoding/json`, which matches keys case-insensitively; so does this module.

What each SDK sends (ngrok-go `config/*.go` before v2, ngrok-rust `config/http.rs`,
`internals/proto.rs`), and what it becomes here (ngrok's own mapping, DOCS
`guides/migration/modules-to-traffic-policy-actions.mdx`, where one exists):

    Auth: "user:pass"                         -> basic-auth credential  (on_http_request)
    BasicAuth: {credentials: [{username,      -> basic-auth             (on_http_request)
               cleartext_password}]}             (one action for Auth and BasicAuth together)
    IPRestriction: {allow_cidrs, deny_cidrs}  -> restrict-ips  (on_tcp_connect for tcp/tls,
                                                               on_http_request for http/https)
    UserAgentFilter: {allow, deny}  (regexes) -> deny 403 when req.user_agent matches no allow
                                                 regex and is empty or matches a deny regex
    RequestHeaders: {add: ["Name:value"],     -> add-headers, remove-headers (on_http_request)
                     remove: [names], addParsed: {name: value}}
    ResponseHeaders: (same shape)             -> the same, on_http_response
    TLSTermination: {cert, key}  (tls only;   -> terminate-tls with server_certificate and
                    base64 of the PEMs)          server_private_key    (on_tcp_connect)
    MutualTLSAtEdge: {mutual_tls_ca}  (tls,   -> that terminate-tls's
                    with TLSTermination)         mutual_tls_certificate_authorities
    WebhookVerification: {provider, secret}   -> verify-webhook with that provider and secret
                                                                        (on_http_request)
    CircuitBreaker: {error_threshold}         -> circuit-breaker with that error_threshold and
                                                 the action's defaults  (on_http_request)
    Compression: {}  ("on"; it has no fields) -> compress-response with its default algorithms
                                                                        (on_http_response)

The SDKs' circuit breaker carries only the ratio (`circuit_breaker(0.5)`): the action's other
fields keep their defaults. A threshold of 0 (Go's encoding/json sends it as `{}`) is refused:
it would trip after ten requests without an error. A webhook secret is taken literally.

The user-agent rule follows ngrok's module documentation (DOCS `cloud-edge/modules/
user-agent-filter.md`): "Requests are allowed if they match any allow rule or fail to match all
deny rules", and "requests without the User-Agent header will be denied by default" (an allow
regex `^$` admits them). Header values keep `${...}` interpolation, as the module documented.

Every other option is refused by name with `UnsupportedOption` (fail closed: an agent that
asked for OAuth believes its endpoint is protected by it). So is an option this module does not
know, and a Bind that carries both a `TrafficPolicy` and legacy options (`UnsupportedCombination`):
ngrok does not document how it orders the two, and guessing could run a user's `deny` after, or
before, the module they meant to come first.

Pure: values in, a `Policy` (built by `load_policy` from a mapping, exactly as a user's document
would be, and checked by `validate` for the endpoint's protocol) or an `SdkOptionError` out.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from typing import Final

import re2  # type: ignore[import-untyped]  # google-re2 ships no type hints

from edge.policy.actions import CATALOGUE
from edge.policy.document import Policy, load_policy
from edge.policy.errors import PolicyError, kind_of
from edge.policy.validate import validate
from protocol.rpc.errcodes import NgrokError

__all__ = [
    "MalformedOption",
    "SdkOptionError",
    "UnsupportedCombination",
    "UnsupportedOption",
    "policy_from_bind_options",
]

#: "Added request header should be in key:value format, got VAL" (and 371 for responses).
ERR_NGROK_370: Final = "ERR_NGROK_370"
ERR_NGROK_371: Final = "ERR_NGROK_371"
#: "The user agent filter regular expression REGEX is an invalid regular expression: ERR."
ERR_NGROK_2090: Final = "ERR_NGROK_2090"

#: Opts fields that are not per-endpoint modules: the URL and its legacy spellings, what the
#: agent does itself, and the Traffic Policy string (loaded by the Bind path, not here).
_NOT_MODULES: Final = frozenset(
    {
        "url",
        "domain",
        "hostname",
        "subdomain",
        "addr",
        "localurlscheme",
        "proxyproto",
        "mutualtlsatagent",
        "trafficpolicy",
    }
)
#: The modules each protocol's options may carry that this module maps, in rule order: IP
#: checks first (cheapest, and before any credentials are read), then the user-agent filter,
#: then authentication and webhook signatures (a refused request never counts against the
#: upstream), then the circuit breaker, then header changes; compression last on the response
#: (after its headers are set); on tls, TLS termination after the IP check (a refused client
#: costs no handshake).
_MAPPED: Final[Mapping[str, tuple[str, ...]]] = {
    "http": ("IPRestriction", "UserAgentFilter", "Auth", "BasicAuth", "WebhookVerification",
             "CircuitBreaker", "RequestHeaders", "ResponseHeaders", "Compression"),
    "https": ("IPRestriction", "UserAgentFilter", "Auth", "BasicAuth", "WebhookVerification",
              "CircuitBreaker", "RequestHeaders", "ResponseHeaders", "Compression"),
    "tcp": ("IPRestriction",),
    "tls": ("IPRestriction", "TLSTermination", "MutualTLSAtEdge"),
}  # fmt: skip
#: Every module of ngrok's options structs, in ngrok-go's field order (HTTPEndpoint, then the
#: TLSEndpoint-only ones): what it is and its Traffic Policy equivalent (None: there is none),
#: for refusals. A refusal names the first module asked for in this order.
_MODULES: Final[Mapping[str, tuple[str, str | None]]] = {
    "Auth": ("basic auth", "basic-auth"),
    "HostHeaderRewrite": ("Host header rewriting", None),
    "Compression": ("compression", "compress-response"),
    "CircuitBreaker": ("a circuit breaker", "circuit-breaker"),
    "IPRestriction": ("IP restrictions", "restrict-ips"),
    "BasicAuth": ("basic auth", "basic-auth"),
    "OAuth": ("OAuth", "oauth"),
    "OIDC": ("OpenID Connect", "openid-connect"),
    "WebhookVerification": ("webhook verification", "verify-webhook"),
    "MutualTLSCA": ("mutual TLS at the edge", "terminate-tls"),
    "RequestHeaders": ("request header changes", "add-headers"),
    "ResponseHeaders": ("response header changes", "add-headers"),
    "WebsocketTCPConverter": ("the WebSocket-to-TCP converter", None),
    "UserAgentFilter": ("a user agent filter", "deny"),
    "Policy": ("a legacy inbound/outbound policy", None),
    "MutualTLSAtEdge": ("mutual TLS at the edge", "terminate-tls"),
    "TLSTermination": ("TLS termination at the edge", "terminate-tls"),
}
#: Modules whose object means "on" however empty: `Compression` and `WebsocketTCPConverter`
#: carry no fields; a `CircuitBreaker` of `{}` is Go's encoding of a threshold of 0 (refused).
_MARKERS: Final = frozenset({"compression", "websockettcpconverter", "circuitbreaker"})
_CANONICAL: Final = {name.lower(): name for name in _MODULES}
_MAPPED_ANYWHERE: Final = frozenset(name.lower() for names in _MAPPED.values() for name in names)
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


class SdkOptionError(NgrokError):
    """A Bind's legacy option that cannot be served; `option` is the Opts field it names."""

    def __init__(self, option: str, message: str, code: str | None = None) -> None:
        super().__init__(message, code)
        self.option = option


class UnsupportedOption(SdkOptionError):  # noqa: N818 - names the refusal
    """An option this edge does not enforce (or does not know): the Bind must be refused."""

    def __init__(self, option: str, detail: str = "") -> None:
        known = _MODULES.get(option)
        if known is None:
            super().__init__(
                option,
                f"Opts.{option} is not an option this Burrow edge knows, so the endpoint was "
                "not bound: it may be one that protects the endpoint. Remove it to serve the "
                "endpoint without it.",
            )
            return
        what, equivalent = known
        instead = ""
        if equivalent and option.lower() not in _MAPPED_ANYWHERE:
            instead = (
                f" Its Traffic Policy equivalent, {equivalent}, is not served by this edge yet "
                "either."
                if CATALOGUE[equivalent].parse is None
                else f" Its Traffic Policy equivalent, {equivalent}, is: send a Traffic Policy "
                "with that action instead."
            )
        super().__init__(
            option,
            f"Opts.{option} ({what}) is not supported by this Burrow edge{detail}, so the "
            f"endpoint was not bound: serving it without {what} would not be what was asked "
            f"for.{instead} Remove the option to serve the endpoint without it.",
        )


class MalformedOption(SdkOptionError):  # noqa: N818 - names the refusal
    """An option this edge maps, whose value it cannot read or that maps to an invalid policy.

    `code` is ngrok's where it has one (a bad CIDR's 2217, a short password's 2258, ...)."""

    def __init__(self, option: str, problem: str, code: str | None = None) -> None:
        where = option if option == "Opts" else f"Opts.{option}"
        super().__init__(option, f"{where}: {problem}", code)
        self.problem = problem


class UnsupportedCombination(SdkOptionError):  # noqa: N818 - names the refusal
    """A Bind with both a `TrafficPolicy` and legacy options: their order is not known."""

    def __init__(self, legacy: Sequence[str]) -> None:
        names = ", ".join(f"Opts.{name}" for name in legacy)
        super().__init__(
            "TrafficPolicy",
            f"Opts.TrafficPolicy and {names} were both given; this Burrow edge does not know "
            "which of them ngrok runs first, so the endpoint was not bound. Write the legacy "
            "options into the Traffic Policy (basic-auth, restrict-ips, add-headers, ...) "
            "and send only the policy.",
        )
        self.legacy = tuple(legacy)


def policy_from_bind_options(proto: str, opts: object) -> Policy | None:
    """The Traffic Policy equivalent of the legacy modules in `opts` (a Bind's `Opts`) for an
    endpoint of protocol `proto` (`http`, `https`, `tcp`, `tls`), or None if it asks for none.

    Null, empty and false options are not asked for (as are objects of only empty fields,
    except `Compression` and `WebsocketTCPConverter`, whose `{}` means "on", and
    `CircuitBreaker`, whose `{}` is a threshold of 0 and is refused). The URL fields,
    `ProxyProto`, `LocalURLScheme`, `MutualTLSAtAgent` and `TrafficPolicy` are not modules and
    are not read here. Raises `UnsupportedOption` for a module that is not mapped or not
    known (the first in ngrok's field order), `MalformedOption` for one whose value cannot be
    read or does not validate, `UnsupportedCombination` for modules beside a `TrafficPolicy`.
    """
    proto = proto.lower()
    if proto not in _MAPPED:
        raise MalformedOption("Proto", f"{proto!r} is not one of {', '.join(_MAPPED)}")
    fields = _folded("", opts)
    asked = {
        key: (name, value)
        for key, (name, value) in fields.items()
        if key not in _NOT_MODULES
        and (_is_set(value) or (key in _MARKERS and isinstance(value, Mapping)))
    }
    if not asked:
        return None
    mapped = {name.lower() for name in _MAPPED[proto]}
    refused = [key for key in _CANONICAL if key in asked and key not in mapped]
    refused += sorted(key for key in asked if key not in _CANONICAL)
    if refused:
        key = refused[0]
        elsewhere = f" on {proto} endpoints" if key in _MAPPED_ANYWHERE else ""
        raise UnsupportedOption(_CANONICAL.get(key, asked[key][0]), elsewhere)
    if _is_set(fields.get("trafficpolicy", ("", None))[1]):
        raise UnsupportedCombination([_CANONICAL[key] for key in _CANONICAL if key in asked])
    return _Builder(proto).build({_CANONICAL[key]: value for key, (_, value) in asked.items()})


def _is_set(value: object) -> bool:
    """Whether an option carries a value: null, "", false, 0 and empty containers do not, and
    neither does an object whose every field is empty (as edge.tunnels.bind_options reads)."""
    if isinstance(value, Mapping):
        return any(_is_set(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_is_set(item) for item in value)
    return value not in (None, "", False, 0)


def _folded(option: str, value: object) -> dict[str, tuple[str, object]]:
    """`value`'s fields by lower-cased key (Go's encoding/json matches keys case-insensitively),
    each with its key as sent; two keys that differ only in case are refused, not guessed."""
    where = option or "Opts"
    if not isinstance(value, Mapping):
        raise MalformedOption(where, f"must be an object, not {kind_of(value)}")
    result: dict[str, tuple[str, object]] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise MalformedOption(where, f"has a non-string key {key!r}")
        folded = key.lower()
        if folded in result:
            raise MalformedOption(
                where, f"has both {result[folded][0]!r} and {key!r}; send the field once"
            )
        result[folded] = (key, item)
    return result


class _Option:
    """Strict reading of one module object: known fields only, each of the expected type."""

    def __init__(self, option: str, value: object, known: Sequence[str]) -> None:
        self.option = option
        self.fields = _folded(option, value)
        folded = {name.lower() for name in known}
        for key, (name, item) in self.fields.items():
            if key not in folded and _is_set(item):
                fields = f"known: {', '.join(known)}" if known else "it takes no fields"
                raise MalformedOption(option, f"unknown field {name!r} ({fields})")

    def fail(self, problem: str, code: str | None = None) -> MalformedOption:
        return MalformedOption(self.option, problem, code)

    def raw(self, field: str) -> object:
        """The value of `field` (matched case-insensitively), None if it was not sent."""
        return self.fields.get(field.lower(), (field, None))[1]

    def strings(self, field: str) -> list[str]:
        value = self.raw(field)
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            raise self.fail(f"{field} must be a list of strings, not {kind_of(value)}")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise self.fail(f"{field}[{index}] must be a string, not {kind_of(item)}")
        return list(value)

    def string_map(self, field: str) -> dict[str, str]:
        value = self.raw(field)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(f"{field} must be an object of strings, not {kind_of(value)}")
        for name, item in value.items():
            if not isinstance(item, str):
                raise self.fail(f"{field}.{name} must be a string, not {kind_of(item)}")
        return dict(value)


class _Builder:
    """Collects the rules of each phase, remembering which option each rule came from."""

    def __init__(self, proto: str) -> None:
        self.proto = proto
        self.phases: dict[str, list[dict[str, object]]] = {}
        self.origin: dict[tuple[str, int], str] = {}  # (phase, rule index) -> option name

    def add(self, option: str, phase: str, rule: Mapping[str, object]) -> None:
        rules = self.phases.setdefault(phase, [])
        self.origin[(phase, len(rules))] = option
        rules.append({"name": f"SDK option {option}", **rule})

    def build(self, options: Mapping[str, object]) -> Policy:
        credentials: list[tuple[str, str]] = []  # (option, "user:password")
        if "Auth" in options:
            credentials.append(("Auth", _auth_string(options["Auth"])))
        if "BasicAuth" in options:
            credentials += [("BasicAuth", text) for text in _basic_auth(options["BasicAuth"])]
        for option in _MAPPED[self.proto]:
            if option not in options:
                continue
            value = options[option]
            if option == "IPRestriction":
                self.ip_restriction(value)
            elif option == "UserAgentFilter":
                self.user_agent_filter(value)
            elif option == "TLSTermination":
                self.tls_termination(value, options.get("MutualTLSAtEdge"))
            elif option == "MutualTLSAtEdge":
                if "TLSTermination" not in options:
                    raise UnsupportedOption(
                        "MutualTLSAtEdge",
                        " without termination(cert, key) (ngrok would serve its own certificate "
                        "for the endpoint; this edge has none to serve)",
                    )
                # folded into the TLSTermination rule: one handshake checks both
            elif option == "WebhookVerification":
                self.webhook_verification(value)
            elif option == "CircuitBreaker":
                self.circuit_breaker(value)
            elif option == "Compression":
                self.compression(value)
            elif option in ("Auth", "BasicAuth"):
                if credentials and option == credentials[0][0]:
                    # One action for both: only one auth action per endpoint (ERR_NGROK_2239).
                    texts = [text for _, text in credentials]
                    action = {"type": "basic-auth", "config": {"credentials": texts}}
                    self.add(option, "on_http_request", {"actions": [action]})
            else:
                self.headers(option, value)
        try:
            policy = load_policy(self.phases)
            validate(policy, protocol=self.proto)
        except PolicyError as error:
            raise self.blame(error, [option for option, _ in credentials]) from None
        return policy

    def blame(self, error: PolicyError, credential_origins: Sequence[str]) -> MalformedOption:
        """The option whose rule `error` is about, as a MalformedOption with ngrok's code."""
        place = error.place
        option = self.origin.get((place.phase or "", place.rule_index or 0), "Opts")
        field = place.field or ""
        index = re.match(r"config\.credentials\[(\d+)\]", field)
        if index and int(index.group(1)) < len(credential_origins):
            option = credential_origins[int(index.group(1))]  # Auth or BasicAuth, as sent
        where = f"{place.action_type} {field}: " if field else ""
        return MalformedOption(option, f"{where}{error.problem}", error.code)

    def ip_restriction(self, value: object) -> None:
        reader = _Option("IPRestriction", value, ("allow_cidrs", "deny_cidrs"))
        config: dict[str, object] = {}
        for field, target in (("allow_cidrs", "allow"), ("deny_cidrs", "deny")):
            cidrs = reader.strings(field)
            if cidrs:
                config[target] = cidrs
        phase = "on_http_request" if self.proto in ("http", "https") else "on_tcp_connect"
        self.add("IPRestriction", phase, {"actions": [{"type": "restrict-ips", "config": config}]})

    def webhook_verification(self, value: object) -> None:
        """`WebhookVerification{provider, secret, sealed_secret}` (the SDK's
        `webhook_verification(provider, secret)`): a verify-webhook action. The provider is
        checked by the action's validation (an unknown one names the providers served); a
        `sealed_secret` (encrypted for ngrok's own KMS) cannot be opened here and is refused.
        Error messages never quote the secret."""
        reader = _Option("WebhookVerification", value, ("provider", "secret", "sealed_secret"))
        if _is_set(reader.raw("sealed_secret")):
            raise UnsupportedOption(
                "WebhookVerification", " with a sealed_secret (send the secret itself)"
            )
        provider, secret = reader.raw("provider"), reader.raw("secret")
        if not isinstance(provider, str) or not provider:
            raise reader.fail("provider must be a non-empty string (github, stripe, ...)")
        if not isinstance(secret, str) or not secret:
            raise reader.fail(f"secret must be a non-empty string (the {provider} signing secret)")
        # The action's secret is a `${...}` template; the SDK's is plain text, so a `${` in it
        # becomes an expression that yields "$" followed by a literal "{".
        config = {"provider": provider, "secret": secret.replace("${", "${'$'}{")}
        action = {"type": "verify-webhook", "config": config}
        self.add("WebhookVerification", "on_http_request", {"actions": [action]})

    def circuit_breaker(self, value: object) -> None:
        """`CircuitBreaker{error_threshold}` (the SDK's `circuit_breaker(ratio)`): a
        circuit-breaker action with that threshold and the action's defaults otherwise."""
        reader = _Option("CircuitBreaker", value, ("error_threshold",))
        threshold = reader.raw("error_threshold")
        if threshold is None or threshold == 0:
            raise reader.fail(
                "error_threshold is 0 or missing: a breaker with threshold 0 would trip after "
                "ten requests without any error, so the endpoint was not bound; send the share "
                "of errors (more than 0, at most 1) that should trip it"
            )
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise reader.fail(f"error_threshold must be a number, not {kind_of(threshold)}")
        action = {"type": "circuit-breaker", "config": {"error_threshold": threshold}}
        self.add("CircuitBreaker", "on_http_request", {"actions": [action]})

    def compression(self, value: object) -> None:
        """`Compression{}` (the SDK's `compression()`): compress-response with its default
        algorithms (gzip, deflate, br), chosen by the client's Accept-Encoding."""
        _Option("Compression", value, ())  # no fields: any that carries a value is refused
        self.add("Compression", "on_http_response", {"actions": [{"type": "compress-response"}]})

    def tls_termination(self, value: object, mutual: object | None) -> None:
        """`TLSTermination{cert, key, sealed_key}`: the SDK's `termination(cert, key)`, the
        agent's certificate and key for the edge to terminate TLS with (Go `[]byte`, so base64
        of the PEM in JSON; plain PEM text is taken too). A `sealed_key` (a key encrypted for
        ngrok's own KMS) cannot be opened here and is refused. `mutual` is the Bind's
        `MutualTLSAtEdge{mutual_tls_ca}` (the SDK's `mutual_tlsca(ca)`): the CAs client
        certificates must chain to, checked in the same handshake. Error messages never quote
        a value."""
        reader = _Option("TLSTermination", value, ("cert", "key", "sealed_key"))
        if _is_set(reader.raw("sealed_key")):
            raise UnsupportedOption("TLSTermination", " with a sealed_key (send the key itself)")
        config: dict[str, object] = {
            "server_certificate": _pem_text(reader, "cert"),
            "server_private_key": _pem_text(reader, "key"),
        }
        if mutual is not None:
            cas = _Option("MutualTLSAtEdge", mutual, ("mutual_tls_ca",))
            config["mutual_tls_certificate_authorities"] = [_pem_text(cas, "mutual_tls_ca")]
        action = {"type": "terminate-tls", "config": config}
        self.add("TLSTermination", "on_tcp_connect", {"actions": [action]})

    def user_agent_filter(self, value: object) -> None:
        reader = _Option("UserAgentFilter", value, ("allow", "deny"))
        allow, deny = reader.strings("allow"), reader.strings("deny")
        for field, patterns in (("allow", allow), ("deny", deny)):
            for index, pattern in enumerate(patterns):
                _check_regex(reader, f"{field}[{index}]", pattern)
        expressions = []
        if allow:
            matches = " || ".join(f"req.user_agent.matches({_cel_string(p)})" for p in allow)
            expressions.append(f"!({matches})")
        refused = ["req.user_agent == ''"]
        refused += [f"req.user_agent.matches({_cel_string(p)})" for p in deny]
        expressions.append(" || ".join(refused))
        rule = {
            "expressions": expressions,
            "actions": [{"type": "deny", "config": {"status_code": 403}}],
        }
        self.add("UserAgentFilter", "on_http_request", rule)

    def headers(self, option: str, value: object) -> None:
        reader = _Option(option, value, ("add", "remove", "addParsed"))
        code = ERR_NGROK_370 if option == "RequestHeaders" else ERR_NGROK_371
        which = "request" if option == "RequestHeaders" else "response"
        added: dict[str, tuple[str, str]] = {}  # lower-cased name -> (name, value)
        pairs: list[tuple[str, str, str]] = []  # (where, name, value)
        if isinstance(reader.raw("add"), Mapping):  # tolerated: a map, as ngrok's edge API
            pairs += [(f"add.{k}", k, v) for k, v in reader.string_map("add").items()]
        else:
            for index, entry in enumerate(reader.strings("add")):
                name, colon, text = entry.partition(":")
                if not colon or not name.strip():
                    raise reader.fail(
                        f"add[{index}]: Added {which} header should be in key:value format, "
                        f"got {entry!r}",
                        code,
                    )
                pairs.append((f"add[{index}]", name.strip(), text.strip()))
        pairs += [(f"addParsed.{k}", k, v) for k, v in reader.string_map("addParsed").items()]
        for where, name, text in pairs:
            if name.lower() in added:
                raise reader.fail(f"{where}: header {name!r} is added twice; send it once")
            added[name.lower()] = (name, text)
        removed = reader.strings("remove")
        both = sorted(set(added) & {name.lower() for name in removed})
        if both:
            # ngrok does not document whether its module removed before or after adding.
            raise reader.fail(f"header {both[0]!r} is both added and removed; send one of them")
        actions: list[dict[str, object]] = []
        items = list(added.values())
        for start in range(0, len(items), _HEADERS_PER_ACTION):
            chunk = dict(items[start : start + _HEADERS_PER_ACTION])
            actions.append({"type": "add-headers", "config": {"headers": chunk}})
        for start in range(0, len(removed), _HEADERS_PER_ACTION):
            chunk_names = removed[start : start + _HEADERS_PER_ACTION]
            actions.append({"type": "remove-headers", "config": {"headers": chunk_names}})
        if actions:
            phase = "on_http_request" if option == "RequestHeaders" else "on_http_response"
            self.add(option, phase, {"actions": actions})


#: add-headers and remove-headers take at most 10 headers each (ngrok's documented maximum,
#: edge.policy.actions.MAX_HEADERS); a longer legacy list becomes several actions in order.
_HEADERS_PER_ACTION: Final = 10


def _pem_text(reader: _Option, field: str) -> str:
    """A PEM sent as Go's `[]byte` (base64 in JSON), as a list of byte values, or as text."""
    value = reader.raw(field)
    if value is None or value == "":
        raise reader.fail(f"{field} is missing (a PEM is needed there)")
    data: bytes
    if isinstance(value, list | tuple) and all(
        isinstance(item, int) and 0 <= item <= 255 for item in value
    ):
        data = bytes(value)
    elif isinstance(value, str) and value.lstrip().startswith("-----BEGIN"):
        data = value.encode()
    elif isinstance(value, str):
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise reader.fail(f"{field} is neither PEM nor base64 of a PEM") from None
    else:
        raise reader.fail(f"{field} must be the PEM as bytes (base64), not {kind_of(value)}")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise reader.fail(f"{field} is not a PEM (it is not ASCII text)") from None
    if not text.lstrip().startswith("-----BEGIN"):
        raise reader.fail(f"{field} is not a PEM (no -----BEGIN line)")
    return text


def _auth_string(value: object) -> str:
    """ngrok-go's `HTTPEndpoint.Auth`: the agent's old `auth: "user:password"` option."""
    if not isinstance(value, str):
        raise MalformedOption("Auth", f'must be a "user:password" string, not {kind_of(value)}')
    if ":" not in value:
        raise MalformedOption("Auth", 'must be "user:password" (no colon was found)')
    return value


def _basic_auth(value: object) -> list[str]:
    reader = _Option("BasicAuth", value, ("credentials",))
    entries = reader.raw("credentials")
    if entries is None:
        return []
    if not isinstance(entries, list | tuple):
        raise reader.fail(f"credentials must be a list, not {kind_of(entries)}")
    result: list[str] = []
    for index, entry in enumerate(entries):
        where = f"BasicAuth.credentials[{index}]"
        item = _Option(where, entry, ("username", "cleartext_password", "hashed_password"))
        username, password = item.raw("username"), item.raw("cleartext_password")
        hashed = item.raw("hashed_password")
        if not isinstance(username, str) or not username:
            raise item.fail("username must be a non-empty string")
        if ":" in username:
            raise item.fail(f"username {username!r} contains a colon (RFC 7617 §2)")
        if hashed not in (None, ""):
            # ngrok does not document the hash; a password this edge cannot check is refused.
            raise UnsupportedOption(
                "BasicAuth", " with a hashed_password (send cleartext_password)"
            )
        if not isinstance(password, str) or not password:
            raise item.fail("cleartext_password must be a non-empty string")
        result.append(f"{username}:{password}")
    return result


def _check_regex(reader: _Option, field: str, pattern: str) -> None:
    """ngrok's module used Go's RE2; CEL's `matches` here runs Python's `re`, so a pattern is
    accepted only if both compile it (RE2 never backtracks; neither dialect is a superset)."""
    if _CONTROL.search(pattern):
        raise reader.fail(f"{field}: a regular expression may not contain control characters")
    options = re2.Options()
    options.log_errors = False
    try:
        re2.compile(pattern, options)
        re.compile(pattern)
    except (re2.error, re.error) as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise reader.fail(
            f"{field}: The user agent filter regular expression {pattern!r} is an invalid "
            f"regular expression: {detail}",
            ERR_NGROK_2090,
        ) from None


def _cel_string(text: str) -> str:
    """`text` as a single-quoted CEL string literal (control characters were refused)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
