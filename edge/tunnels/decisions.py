"""What the edge answers an agent's Auth and Bind: accepted, or refused with a code and a message.

Theory of operation. The session (`edge.tunnels.session`) gathers the facts (what the store says
about the authtoken, whether the agent resumes, how many sessions and endpoints are live, whether
the URL is online) and asks here; these functions only compare values and build the refusal's
text, so every refusal can be tested without a socket. A refusal is a value, not an exception:
`Refused.code` is the ngrok error code (None for a refusal ngrok has no code for) and
`Refused.wire()` the `Error` string the agent receives.

Auth, in order: a usable authtoken is never refused for its source address; otherwise an
address that spent its failed-login budget (`edge.tunnels.login_throttle`) is told so and when
to retry (ERR_NGROK_5001), else no authtoken (ERR_NGROK_4018), a revoked one (ERR_NGROK_300), an
unknown one (ERR_NGROK_107); then a credential that already runs `max_sessions` sessions
(ERR_NGROK_108; a resuming agent takes its old session's place, so it is not counted). The
first four are login failures (`LOGIN_FAILURES`): they are throttled and audited.

Bind, in the order the session asks: the endpoint cap (ERR_NGROK_324), options this edge would
not enforce (no code), the credential's bind ACL (ERR_NGROK_308), the endpoint's Traffic Policy
(`decide_policy`: the policy's own ERR_NGROK_22xx code, a legacy option's refusal, or a phase
this edge does not run yet), a URL already online without pooling on both sides
(ERR_NGROK_334; with pooling on both, the Bind joins the URL's pool). The URL rules themselves
live in `edge.tunnels.binding`.

Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from edge.policy.actions_tls import holds_private_key, shown_config
from edge.policy.document import Policy, load_policy
from edge.policy.errors import ERR_NGROK_2236, PolicyError, kind_of
from edge.policy.sdk_options import SdkOptionError, policy_from_bind_options
from edge.policy.validate import CompiledPolicy, validate
from edge.store import Credential
from edge.tunnels.acl import AclError, parse_acl
from edge.tunnels.bind_options import refusal_message, unenforced_options
from protocol.rpc import errcodes
from protocol.rpc.messages import Bind

__all__ = [
    "ACCEPTED",
    "ENFORCED_PHASES",
    "LOGIN_FAILURES",
    "Accepted",
    "AuthAccepted",
    "BindPolicy",
    "LoginThrottled",
    "Refused",
    "check_acl",
    "check_endpoint_cap",
    "check_not_bound",
    "check_options",
    "decide_auth",
    "decide_policy",
    "endpoint_cap",
    "port_in_use",
    "store_failed",
]


@dataclass(frozen=True, slots=True)
class Accepted:
    """The request may go ahead."""


#: The one `Accepted` value the Bind checks return.
ACCEPTED = Accepted()


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthAccepted:
    """Auth succeeded with `credential`; `resuming` when the agent takes over its old session."""

    credential: Credential
    resuming: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """A refusal the agent is told about: `code` is ngrok's ERR_NGROK_... (or None)."""

    message: str
    code: str | None = None

    def wire(self) -> str:
        """The response's `Error` string: the message, then the code on its own line."""
        if self.code is None:
            return self.message
        return errcodes.format_wire_error(self.message, self.code)


# ---------------------------------------------------------------------------------------- auth

#: The refusals that are failed logins (a missing, unknown or revoked authtoken, or one more
#: from an address already throttled): each is charged to its source address and audited.
LOGIN_FAILURES = frozenset(
    {
        errcodes.ERR_NGROK_4018,
        errcodes.ERR_NGROK_107,
        errcodes.ERR_NGROK_300,
        errcodes.ERR_NGROK_5001,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginThrottled:
    """The Auth's source `address` has spent its budget of `failures_per_window` failed logins
    per `window` seconds, and may fail again (be told why) in `retry_after` seconds."""

    address: str
    retry_after: float
    failures_per_window: int
    window: float


def decide_auth(
    *,
    token: str,
    credential: Credential | None,
    revoked_id: str | None,
    resuming: bool,
    live_sessions: int,
    throttled: LoginThrottled | None = None,
) -> AuthAccepted | Refused:
    """Whether an Auth with `token` is accepted.

    `credential` is what the store authenticated the token as (None: not usable); `revoked_id`
    the id of the revoked credential the token belonged to, if any; `resuming` whether the agent
    resumes an earlier session of that credential; `live_sessions` how many sessions of the
    credential are live (only read when the credential has `max_sessions` and is not resuming);
    `throttled` set when the source address may not fail again yet (only read when the token
    is not usable: a valid authtoken is accepted from a throttled address).
    """
    if credential is None:
        if throttled is not None:
            wait = max(1, math.ceil(throttled.retry_after))
            return Refused(
                message=(
                    f"Too many failed logins from {throttled.address}: it is rate limited to "
                    f"{throttled.failures_per_window} failed agent logins per "
                    f"{throttled.window:g}s. Try again in {wait}s with a valid authtoken "
                    "(a valid one is accepted at any time)."
                ),
                code=errcodes.ERR_NGROK_5001,
            )
        if not token:
            return Refused(
                message=(
                    "Usage of Burrow requires an authtoken. "
                    "Pass --authtoken or set BURROW_AUTHTOKEN."
                ),
                code=errcodes.ERR_NGROK_4018,
            )
        if revoked_id is not None:
            return Refused(
                message=(
                    f"The authtoken credential {revoked_id} has been revoked. "
                    "Ask the edge's operator for a new one."
                ),
                code=errcodes.ERR_NGROK_300,
            )
        return Refused(
            message=(
                "The authtoken you specified is invalid. "
                "Ask the edge's operator for a new one (burrow-edge credential create)."
            ),
            code=errcodes.ERR_NGROK_107,
        )
    limit = credential.max_sessions
    if limit is not None and not resuming and live_sessions >= limit:
        return Refused(
            message=(
                f"This authtoken is limited to {limit} simultaneous agent "
                f"sessions and {live_sessions} are running. Stop one of them, or ask the edge's "
                "operator to raise the credential's max_sessions."
            ),
            code=errcodes.ERR_NGROK_108,
        )
    return AuthAccepted(credential=credential, resuming=resuming)


def store_failed() -> Refused:
    """ERR_NGROK_10000 (internal server error) when the edge's store failed while checking the
    authtoken: the token may be fine, so the message says the fault is the edge's."""
    return Refused(
        message=(
            "The edge could not check your authtoken: its credential store failed. This is not "
            "a problem with your authtoken; ask the edge's operator to check the edge's log, "
            "and try again later."
        ),
        code=errcodes.ERR_NGROK_10000,
    )


# ---------------------------------------------------------------------------------------- bind


def endpoint_cap(session_limit: int, credential_limit: int | None) -> int:
    """How many endpoints one session may serve: the edge's limit, or the credential's if lower."""
    return session_limit if credential_limit is None else min(session_limit, credential_limit)


def check_endpoint_cap(
    *, bound: int, session_limit: int, credential_limit: int | None
) -> Accepted | Refused:
    """ERR_NGROK_324 when a session already serving `bound` endpoints may serve no more."""
    cap = endpoint_cap(session_limit, credential_limit)
    if bound >= cap:
        return Refused(
            message=f"Your session may serve at most {cap} endpoints.",
            code=errcodes.ERR_NGROK_324,
        )
    return ACCEPTED


def check_options(bind: Bind, *, agent_writes_proxy_headers: bool) -> Accepted | Refused:
    """Refused (no code) when `bind` asks for options this edge would not enforce: serving the
    endpoint without them would leave it open (`edge.tunnels.bind_options`)."""
    refused = unenforced_options(bind, agent_writes_proxy_headers=agent_writes_proxy_headers)
    if refused:
        asked = bind.opts.get("URL") or f"this {bind.proto or 'unnamed'} endpoint"
        return Refused(message=refusal_message(str(asked), refused))
    return ACCEPTED


def check_acl(acl: Sequence[str], *, url: str, host: str) -> Accepted | Refused:
    """ERR_NGROK_308 when the credential's bind ACL (its rule strings, validated when the
    credential was created) does not allow `host`."""
    try:
        allowed = parse_acl(acl).allows(host)
    except AclError as exc:
        # A rule stored before the host-name rule tightened (an underscore, an all-digit last
        # label) no longer parses: refuse the Bind, naming it, rather than fail the session.
        return Refused(
            message=(
                f"Your authtoken's ACL has a rule this edge no longer accepts ({exc}); ask the "
                "edge's operator to update the credential's ACL."
            ),
            code=errcodes.ERR_NGROK_308,
        )
    if allowed:
        return ACCEPTED
    rules = ", ".join(acl)
    return Refused(
        message=(
            f"Your authtoken may not bind '{url}': its ACL allows only {rules}. Use a "
            f"credential whose ACL includes bind:{host}."
        ),
        code=errcodes.ERR_NGROK_308,
    )


def check_not_bound(
    url: str, *, online: bool, pooling_enabled: bool = False, pool_open: bool = False
) -> Accepted | Refused:
    """ERR_NGROK_334 when `url` is already online (served by another session), unless this
    Bind and every endpoint serving the URL have pooling enabled (`pool_open`): then it joins
    their pool (ngrok.md §5). The message names the fix, as ngrok's does."""
    if not online or (pooling_enabled and pool_open):
        return ACCEPTED
    if pooling_enabled:
        fix = (
            "It has pooling enabled but the endpoint already online does not: stop that "
            "endpoint, or restart it with pooling enabled too (--pooling-enabled, "
            "`pooling_enabled: true`), so that they load balance between them."
        )
    else:
        fix = (
            "Either stop the existing endpoint first, or start both endpoints with "
            "`--pooling-enabled` (`pooling_enabled: true` in the config file) to load balance "
            "between them."
        )
    return Refused(
        message=f"The tunnel '{url}' is already bound to another tunnel session. {fix}",
        code=errcodes.ERR_NGROK_334,
    )


def port_in_use(port: int, reason: str) -> Refused:
    """The refusal when another program holds a tcp endpoint's port. It says 334 (already
    bound) so that an agent reconnecting after an outage backs off and retries instead of
    giving up."""
    return Refused(
        message=(
            f"tcp port {port} is in use on the edge's host ({reason}); "
            "ask for another port, or free this one."
        ),
        code=errcodes.ERR_NGROK_334,
    )


# -------------------------------------------------------------------------------------- policy

#: The Traffic Policy phases this edge runs, by endpoint protocol. A policy with rules in any
#: other phase is refused (fail closed: accepting it would leave those rules unenforced).
#: on_tcp_connect runs in the front door (`edge.front_door.connect_policy`) for tcp, tls and
#: https endpoints, whose endpoint is known when the connection arrives (its port or SNI); the
#: plain-HTTP port learns the endpoint per request, from Host, so http:// endpoints do not run
#: it. on_http_request and on_http_response run in `edge.http.seam` (HTTP/1.1 and HTTP/2).
_HTTP_PHASES: Final = frozenset({"on_http_request", "on_http_response"})
ENFORCED_PHASES: Final[Mapping[str, frozenset[str]]] = {
    "tcp": frozenset({"on_tcp_connect"}),
    "tls": frozenset({"on_tcp_connect"}),
    "https": frozenset({"on_tcp_connect"}) | _HTTP_PHASES,
    "http": _HTTP_PHASES,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class BindPolicy:
    """An endpoint's Traffic Policy, validated for its protocol; `text` is the document as the
    agent sent it (or, for legacy SDK options, the policy they became, as JSON)."""

    compiled: CompiledPolicy
    text: str


def decide_policy(
    bind: Bind,
    proto: str,
    *,
    enforced: Mapping[str, frozenset[str]] = ENFORCED_PHASES,
    binding: str = "public",
) -> BindPolicy | Refused | None:
    """The Traffic Policy a Bind for a `proto` endpoint (its resolved URL's scheme) carries, or
    None when it carries none.

    The policy is `Opts.TrafficPolicy` (YAML or JSON text) or the legacy SDK options mapped by
    `edge.policy.sdk_options`. Refused, with the error's code: a policy that does not load or
    validate (ERR_NGROK_22xx), a legacy option that is unknown, unmapped or malformed, both a
    TrafficPolicy and legacy options; and (no code) a policy with rules in a phase that this
    edge does not run for `proto` (`enforced`), naming the phase; ERR_NGROK_2262 an internal
    http/https endpoint (`binding`) with on_tcp_connect rules, which would never run (traffic
    reaches it only as requests forwarded by forward-internal, over no new connection).
    """
    raw = bind.opts.get("TrafficPolicy")
    try:
        legacy = policy_from_bind_options(proto, bind.opts)
    except SdkOptionError as exc:
        return Refused(message=exc.message, code=exc.code)
    text: str
    source = "Opts.TrafficPolicy"
    try:
        if raw is not None and raw != "":
            if not isinstance(raw, str):
                return Refused(
                    message=(
                        "Opts.TrafficPolicy must be the policy document as a string (YAML or "
                        f"JSON), not {kind_of(raw)}."
                    ),
                    code=ERR_NGROK_2236,
                )
            text = raw
            compiled = validate(load_policy(raw), protocol=proto)
            if holds_private_key(compiled.source):  # the admin API must not show the key
                text = policy_json(compiled.source)
        elif legacy is not None:
            source = "the Traffic Policy of the endpoint options"
            text = policy_json(legacy)
            compiled = validate(legacy, protocol=proto)
        else:
            return None
    except PolicyError as exc:
        return Refused(message=f"{source}: {exc.message}", code=exc.code)
    if binding == "internal" and proto in ("http", "https") and compiled.on_tcp_connect:
        return Refused(
            message=(
                f"{source}: an internal {proto} endpoint cannot have on_tcp_connect rules: "
                "requests reach it through forward-internal, with no new connection, so they "
                "would never run. Move them to the public endpoint that forwards here."
            ),
            code="ERR_NGROK_2262",
        )
    allowed = enforced.get(proto, frozenset())
    unenforced = [name for name, rules in compiled.source.phases() if rules and name not in allowed]
    if unenforced:
        phases = " and ".join(unenforced)
        return Refused(
            message=(
                f"This Burrow edge does not run {phases} rules for {proto} endpoints yet, so the "
                f"endpoint was not bound: its policy would not be enforced. Remove the {phases} "
                "rules to serve the endpoint without them."
            )
        )
    return BindPolicy(compiled=compiled, text=text)


def policy_json(policy: Policy) -> str:
    """`policy` as the JSON document it would be written as (empty phases left out), with a
    terminate-tls private key redacted (`edge.policy.actions_tls.shown_config`)."""
    document = {
        phase: [
            {
                "name": rule.name,
                "expressions": list(rule.expressions),
                "actions": [
                    {
                        "type": action.type,
                        "config": _thawed(shown_config(action.type, action.config)),
                    }
                    for action in rule.actions
                ],
            }
            for rule in rules
        ]
        for phase, rules in policy.phases()
        if rules
    }
    return json.dumps(document, sort_keys=False)


def _thawed(value: object) -> object:
    """A frozen config (read-only mappings, tuples) as plain dicts and lists, for JSON."""
    if isinstance(value, Mapping):
        return {str(key): _thawed(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_thawed(item) for item in value]
    return value
