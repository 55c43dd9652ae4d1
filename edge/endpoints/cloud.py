"""Cloud endpoints: what may be created, and how one sits in the registry. Pure decisions.

Theory of operation. A cloud endpoint (ngrok.md §3.1) is owned by the edge, not by an agent:
it lives in the store until deleted, and the edge serves it from its Traffic Policy alone. So
the policy must always answer: ngrok refuses one that is "not guaranteed to handle traffic"
with ERR_NGROK_2235. Guaranteed means what ngrok's validator means by a rule that ends its
phase (the check behind ERR_NGROK_2207): the phase's last rule has no expressions and an action
that always terminates (deny, custom-response, close-connection, or forward-internal without
`on_error: continue`; `redirect` answers only when the URL changes, so it is not one). The
phase is the one every connection or request passes: `on_http_request` for http and https
(or, for https, an `on_tcp_connect` that always closes), `on_tcp_connect` for tcp and tls.

The URL goes through the same rules as an agent's Bind (`edge.tunnels.binding`), except that a
cloud endpoint needs a full URL (no random names) and public tcp:// cloud endpoints are not
offered (they would need a listening port of their own). The policy goes through the same
validator as a Bind's (`edge.tunnels.decisions.decide_policy`).

In the registry a cloud endpoint is an `Endpoint` with one `Member` that has no agent session
(`session_id` is `NO_SESSION`): its policy answers, and if it ever did not, opening a proxy
stream fails as for an agent that is gone. A URL that is already online (an agent's endpoint
or another cloud endpoint) is shared only as a pool: when every endpoint on it, old and new,
has pooling enabled, the new one joins (agent and cloud endpoints mix, traffic-policy.md §2;
a request that picks the cloud member is answered by its policy). Otherwise it is refused with
ngrok's codes: 18016 when the new cloud endpoint asks for pooling, 18017 when it does not, 334
for an agent's Bind onto a URL a cloud endpoint holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import trio

from edge.endpoints.registry import AttachedPolicy, Endpoint, Member, PoolRuntime
from edge.events import EventLog
from edge.policy.actions import CATALOGUE
from edge.policy.document import Policy
from edge.store import CloudEndpoint
from edge.tunnels.binding import BindRefused, BindResolver, BindTarget
from edge.tunnels.decisions import BindPolicy, Refused, decide_policy
from protocol.formats.urls import URLError, parse_endpoint_url
from protocol.rpc import errcodes
from protocol.rpc.messages import Bind, BindExtra

__all__ = [
    "ERR_NGROK_2235",
    "ERR_NGROK_18016",
    "ERR_NGROK_18017",
    "NO_SESSION",
    "CloudPlan",
    "agent_bind_conflict",
    "cloud_endpoint",
    "cloud_url_conflict",
    "guaranteed_to_handle",
    "is_cloud",
    "plan_cloud_endpoint",
]

#: "The traffic policy provided is not guaranteed to handle traffic."
ERR_NGROK_2235: Final = "ERR_NGROK_2235"
#: A cloud endpoint with pooling on, where an endpoint without pooling holds the URL.
ERR_NGROK_18016: Final = "ERR_NGROK_18016"
#: A cloud endpoint with pooling off, where another endpoint holds the URL.
ERR_NGROK_18017: Final = "ERR_NGROK_18017"
#: The `Member.session_id` of a cloud endpoint's member: it has no agent session.
NO_SESSION: Final = ""

#: The phases that see every connection or request, by protocol: a policy whose last rule in
#: one of them always terminates handles all traffic.
_HANDLING_PHASES: Final = {
    "http": ("on_http_request",),
    "https": ("on_http_request", "on_tcp_connect"),
    "tcp": ("on_tcp_connect",),
    "tls": ("on_tcp_connect",),
}


@dataclass(frozen=True, slots=True)
class CloudPlan:
    """A cloud endpoint that may go online: where (`target`) and with what policy."""

    target: BindTarget
    policy: BindPolicy


def is_cloud(member: Member) -> bool:
    """True for a cloud endpoint's member (it has no agent session)."""
    return member.session_id == NO_SESSION


def guaranteed_to_handle(policy: Policy, protocol: str) -> bool:
    """True when every connection or request to a `protocol` endpoint ends in a terminating
    action of `policy` (see the module docstring)."""
    for phase in _HANDLING_PHASES.get(protocol, ()):
        rules = dict(policy.phases()).get(phase, ())
        if not rules or rules[-1].expressions:
            continue
        for action in rules[-1].actions:
            spec = CATALOGUE.get(action.type)
            if (
                spec is not None
                and spec.terminating
                and spec.parse is not None
                and action.config.get("on_error") != "continue"
            ):
                return True
    return False


def plan_cloud_endpoint(
    resolver: BindResolver,
    *,
    url: str,
    bindings: Sequence[str],
    traffic_policy: str,
) -> CloudPlan | Refused:
    """Check a cloud endpoint's URL, binding and policy (not yet whether the URL is free).

    Refused: a URL that does not parse or is not full (code as the URL rules give it, or
    none), a public tcp:// URL, more than one binding (ERR_NGROK_15006), a binding that does
    not fit the host; a policy that does not load or validate (its ERR_NGROK_22xx) or that is
    not guaranteed to handle traffic (ERR_NGROK_2235)."""
    try:
        parsed = parse_endpoint_url(url)
    except URLError as exc:
        return Refused(message=f"url: {exc.message}", code=exc.code)
    if parsed.is_random:
        return Refused(
            message=(
                f"url: a cloud endpoint needs a full URL such as https://api.example.com, not "
                f"{url[:200]!r}; cloud endpoints get no random names."
            )
        )
    bind = Bind(
        proto=parsed.scheme,
        opts={"URL": str(parsed), "TrafficPolicy": traffic_policy},
        extra=BindExtra(bindings=tuple(bindings)),
    )
    try:
        target = resolver.resolve(bind)
    except BindRefused as exc:
        return Refused(message=f"url: {exc.message}", code=exc.code)
    if target.scheme == "tcp" and target.binding == "public":
        return Refused(
            message=(
                f"url: this Burrow edge does not offer public tcp:// cloud endpoints yet "
                f"({target.url}); use a tls:// URL, or an internal tcp://NAME.internal:PORT "
                "reached through forward-internal."
            )
        )
    policy = decide_policy(bind, target.scheme)
    if isinstance(policy, Refused):
        return Refused(message=f"traffic_policy: {policy.message}", code=policy.code)
    if policy is None or not guaranteed_to_handle(policy.compiled.source, target.scheme):
        return Refused(message=_not_guaranteed(target.scheme), code=ERR_NGROK_2235)
    return CloudPlan(target=target, policy=policy)


def _not_guaranteed(scheme: str) -> str:
    phase = "on_tcp_connect" if scheme in ("tcp", "tls") else "on_http_request"
    example = (
        "{type: deny}" if phase == "on_tcp_connect" else "{type: custom-response, config: {...}}"
    )
    return (
        "traffic_policy: The traffic policy provided is not guaranteed to handle traffic. "
        "Ensure traffic always results in an action: a cloud endpoint has no agent to send "
        f"traffic to, so the last {phase} rule must have no expressions and end in a "
        f"terminating action (custom-response, deny, close-connection or forward-internal), "
        f"e.g. `{phase}: [{{actions: [{example}]}}]`."
    )


def cloud_url_conflict(
    existing: Endpoint | None, *, url: str, pooling_enabled: bool, endpoint_id: str | None = None
) -> Refused | None:
    """The refusal when `url` is already online (and not as cloud endpoint `endpoint_id`,
    which an update may keep): 18016 if the new endpoint asks for pooling and the endpoints
    there do not all have it, else 18017. None when the URL is free, or when the new endpoint
    and every one already there have pooling enabled (it joins their pool)."""
    if existing is None:
        return None
    others = [m for m in existing.members if not (is_cloud(m) and m.bind_id == endpoint_id)]
    if endpoint_id is not None and len(others) < len(existing.members):
        if not others or (pooling_enabled and all(m.pooling for m in others)):
            return None  # only itself, or a pool it may stay in
    elif pooling_enabled and existing.pooling:
        return None  # joins the pool
    holder = _holder(existing)
    if pooling_enabled:
        return Refused(
            message=(
                f"The provided cloud endpoint was invalid because pooling was set to enabled "
                f"when another endpoint exists for this url ({url}, {holder}) that does not "
                "have pooling enabled. Restart that endpoint with pooling enabled (an agent: "
                "--pooling-enabled; a cloud endpoint: pooling_enabled: true), stop or delete "
                "it, or choose another url."
            ),
            code=ERR_NGROK_18016,
        )
    return Refused(
        message=(
            f"The provided cloud endpoint was invalid because pooling was set to disabled when "
            f"another endpoint exists for this url ({url}, {holder}). Stop or delete the other "
            "endpoint first, or choose another url."
        ),
        code=ERR_NGROK_18017,
    )


def agent_bind_conflict(existing: Endpoint, *, url: str, pooling_enabled: bool) -> Refused | None:
    """ERR_NGROK_334 for an agent's Bind onto `url` while a cloud endpoint holds it, with the
    fix; None when `existing` is not a cloud endpoint (the agent rules apply then) or when the
    Bind and every endpoint there have pooling enabled (the agent joins their pool)."""
    cloud = [m for m in existing.members if is_cloud(m)]
    if not cloud:
        return None
    endpoint_id = cloud[0].bind_id
    if pooling_enabled and existing.pooling:
        return None  # the agent endpoint joins the cloud endpoint's pool
    if pooling_enabled:
        detail = (
            f"The cloud endpoint does not have pooling enabled: update it with "
            f"pooling_enabled: true to pool with it, or delete the cloud endpoint first "
            f"(burrow-edge endpoint delete {endpoint_id}), or start the agent on another URL."
        )
    else:
        detail = (
            f"Either delete the cloud endpoint first (burrow-edge endpoint delete "
            f"{endpoint_id}), start the agent endpoint on another URL, or enable pooling on "
            "both (--pooling-enabled, and pooling_enabled: true on the cloud endpoint) to load "
            "balance between them."
        )
    return Refused(
        message=f"The endpoint '{url}' is already online as cloud endpoint {endpoint_id}. {detail}",
        code=errcodes.ERR_NGROK_334,
    )


async def _no_agent(client_addr: str) -> trio.abc.HalfCloseableStream:
    raise trio.BrokenResourceError(
        "a cloud endpoint has no agent: its traffic policy must answer every request"
    )


def cloud_endpoint(
    record: CloudEndpoint,
    plan: CloudPlan,
    *,
    events: EventLog | None = None,
    runtime: PoolRuntime | None = None,
) -> Endpoint:
    """The registry entry for `record`, planned as `plan`: one member without an agent
    session, carrying the compiled policy (its rate-limit state starts empty; its `log`
    actions write to `events` besides the log), choosing members with `runtime` (the
    registry's) should it become a pool."""
    target = plan.target
    member = Member(
        bind_id=record.id,
        token="",  # nothing resumes a cloud endpoint: the registry remembers no URL for it
        session_id=NO_SESSION,
        client_id="",
        opener=_no_agent,
        policy=AttachedPolicy(plan.policy.compiled, plan.policy.text, events=events),
        pooling=record.pooling_enabled,
    )
    return Endpoint(
        url=target.url,
        proto=target.scheme,
        binding=target.binding,
        host=target.host,
        port=None,
        members=(member,),
        runtime=runtime if runtime is not None else PoolRuntime(),
    )


def _holder(existing: Endpoint) -> str:
    cloud = [m.bind_id for m in existing.members if is_cloud(m)]
    if cloud:
        return f"held by cloud endpoint {cloud[0]}"
    return "held by an agent endpoint"
