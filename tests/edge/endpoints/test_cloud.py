"""`edge.endpoints.cloud`: which cloud endpoints may exist (URL, policy, ERR_NGROK_2235), the
refusals when a URL is taken (18016, 18017, 334), and the registry entry one becomes."""

from __future__ import annotations

from dataclasses import replace

import pytest
import trio

from edge.config import EdgeConfig, TcpConfig
from edge.endpoints.cloud import (
    ERR_NGROK_2235,
    ERR_NGROK_18016,
    ERR_NGROK_18017,
    NO_SESSION,
    CloudPlan,
    agent_bind_conflict,
    cloud_endpoint,
    cloud_url_conflict,
    guaranteed_to_handle,
    is_cloud,
    plan_cloud_endpoint,
)
from edge.endpoints.registry import Endpoint, EndpointRegistry, Member
from edge.policy.document import load_policy
from edge.store import CloudEndpoint
from edge.tunnels.binding import BindResolver
from edge.tunnels.decisions import Refused
from tests.edge.store.sources import NOW

ANSWER = (
    "on_http_request:\n  - actions:\n      - type: custom-response\n"
    "        config: {status_code: 200, body: hi}\n"
)
DENY_TCP = "on_tcp_connect:\n  - actions:\n      - type: deny\n"


def resolver() -> BindResolver:
    config = EdgeConfig(domain="burrow.localhost", tcp=TcpConfig(port_range=range(20000, 20010)))
    return BindResolver(config, EndpointRegistry())


def plan(url: str, policy: str = ANSWER, bindings: tuple[str, ...] = ()) -> CloudPlan | Refused:
    return plan_cloud_endpoint(resolver(), url=url, bindings=bindings, traffic_policy=policy)


def refused(url: str, policy: str = ANSWER, bindings: tuple[str, ...] = ()) -> Refused:
    result = plan(url, policy, bindings)
    assert isinstance(result, Refused), result
    return result


@pytest.mark.parametrize(
    ("policy", "protocol", "expected"),
    [
        (ANSWER, "https", True),
        (ANSWER, "http", True),
        ("on_http_request:\n  - actions: [{type: deny}]\n", "https", True),
        ("on_http_request:\n  - actions: [{type: close-connection}]\n", "https", True),
        # non-terminating actions first, then a terminating one: still guaranteed
        (
            "on_http_request:\n  - actions:\n      - {type: add-headers, config: {headers: "
            "{a: b}}}\n      - {type: deny}\n",
            "https",
            True,
        ),
        # the last rule has an expression: a request it does not match goes nowhere
        (
            "on_http_request:\n  - expressions: ['req.method == \"GET\"']\n"
            "    actions: [{type: deny}]\n",
            "https",
            False,
        ),
        # the last rule only adds headers
        (
            "on_http_request:\n  - actions: [{type: add-headers, config: {headers: {a: b}}}]\n",
            "https",
            False,
        ),
        # redirect answers only when the URL changes: not a terminating action (ngrok's list)
        (
            "on_http_request:\n  - actions: [{type: redirect, config: {from: '^/a', to: '/b'}}]\n",
            "https",
            False,
        ),
        # a response-phase answer comes after an upstream this endpoint does not have
        ("on_http_response:\n  - actions: [{type: custom-response}]\n", "https", False),
        ("", "https", False),
        (DENY_TCP, "tls", True),
        (DENY_TCP, "https", True),  # https runs on_tcp_connect for every connection
        (DENY_TCP, "http", False),  # http does not (the plain port learns Host per request)
        (ANSWER, "tls", False),
        # a terminating type whose raw config lets a failure fall through does not count
        (
            "on_tcp_connect:\n  - actions: [{type: deny, config: {on_error: continue}}]\n",
            "tls",
            False,
        ),
    ],
)
def test_guaranteed_means_the_last_rule_always_terminates(
    policy: str, protocol: str, expected: bool
) -> None:
    assert guaranteed_to_handle(load_policy(policy), protocol) is expected


def test_a_valid_cloud_endpoint_is_planned_as_a_bind_would_be() -> None:
    result = plan("https://API.Acme.example:443")
    assert isinstance(result, CloudPlan)
    target = result.target
    assert (target.url, target.scheme, target.host, target.binding) == (
        "https://api.acme.example",
        "https",
        "api.acme.example",
        "public",
    )
    assert result.policy.text == ANSWER
    assert len(result.policy.compiled.on_http_request) == 1
    internal = plan("tls://db.clinic-a.internal", DENY_TCP)
    assert isinstance(internal, CloudPlan) and internal.target.binding == "internal"
    assert isinstance(plan("tcp://db.clinic-a.internal:5432", DENY_TCP), CloudPlan)


def test_a_policy_that_may_not_answer_is_refused_with_2235_and_the_fix() -> None:
    response_only = "on_http_response:\n  - actions: [{type: custom-response}]"
    for policy in ("", "on_http_request: []", response_only):
        refusal = refused("https://api.acme.example", policy)
        assert refusal.code == ERR_NGROK_2235, policy
        assert "not guaranteed to handle traffic" in refusal.message
        assert "last on_http_request rule must have no expressions" in refusal.message
    conditional = (
        "on_tcp_connect:\n  - expressions: ['conn.client_ip == \"192.0.2.1\"']\n"
        "    actions: [{type: deny}]\n"
    )
    refusal = refused("tls://db.acme.example", conditional)
    assert refusal.code == ERR_NGROK_2235
    assert "last on_tcp_connect rule must have no expressions" in refusal.message


def test_a_policy_is_checked_by_the_bind_validator() -> None:
    bad_type = refused("https://a.example", "on_http_request:\n  - actions: [{type: nope}]\n")
    assert bad_type.code == "ERR_NGROK_2201"
    assert bad_type.message.startswith("traffic_policy: ")
    unparsable = refused("https://a.example", "on_http_request: [")
    assert unparsable.code == "ERR_NGROK_2236"
    wrong_phase = refused("tls://a.example", ANSWER)
    assert wrong_phase.code == "ERR_NGROK_2230"


@pytest.mark.parametrize(
    ("url", "bindings", "code", "text"),
    [
        ("https://", (), None, "needs a full URL"),
        ("tcp://burrow.localhost:20001", (), None, "does not offer public tcp://"),
        ("https://api.acme.example", ("public", "internal"), "ERR_NGROK_15006", "exactly one"),
        ("https://api.acme.example", ("internal",), None, "internal"),
        ("https://connect.burrow.localhost", (), None, "this edge's own name"),
        ("https://bad_name.example", (), None, "url: "),
    ],
)
def test_urls_a_cloud_endpoint_may_not_have(
    url: str, bindings: tuple[str, ...], code: str | None, text: str
) -> None:
    refusal = refused(url, DENY_TCP if url.startswith("tcp") else ANSWER, bindings)
    assert refusal.message.startswith("url: ")
    assert text in refusal.message
    if code is not None:
        assert refusal.code == code


async def _agent(client_addr: str) -> trio.abc.HalfCloseableStream:
    raise trio.BrokenResourceError("no agent in these tests")


def agent_endpoint(url: str) -> Endpoint:
    member = Member(bind_id="tun_1", token="t", session_id="ts_1", client_id="c", opener=_agent)
    return Endpoint(url=url, proto="https", host=url.split("://")[1], members=(member,))


def record(endpoint_id: str = "ep_ONE", url: str = "https://api.acme.example") -> CloudEndpoint:
    return CloudEndpoint(
        id=endpoint_id,
        account_id="acct_default",
        created_at=NOW,
        updated_at=NOW,
        url=url,
        binding="public",
        pooling_enabled=False,
        traffic_policy=ANSWER,
        description="",
        metadata="",
    )


def test_a_taken_url_is_refused_with_18016_or_18017() -> None:
    url = "https://api.acme.example"
    assert cloud_url_conflict(None, url=url, pooling_enabled=False) is None
    taken = agent_endpoint(url)
    pooled = cloud_url_conflict(taken, url=url, pooling_enabled=True)
    assert pooled is not None and pooled.code == ERR_NGROK_18016
    assert "pooling was set to enabled" in pooled.message and "agent endpoint" in pooled.message
    assert "does not have pooling enabled" in pooled.message
    assert "--pooling-enabled" in pooled.message  # the fix: restart it with pooling
    plain = cloud_url_conflict(taken, url=url, pooling_enabled=False)
    assert plain is not None and plain.code == ERR_NGROK_18017
    assert "Stop or delete the other endpoint first" in plain.message


def test_an_update_keeps_its_own_url() -> None:
    planned = plan("https://api.acme.example")
    assert isinstance(planned, CloudPlan)
    own = cloud_endpoint(record("ep_ONE"), planned)
    url = own.url
    assert cloud_url_conflict(own, url=url, pooling_enabled=False, endpoint_id="ep_ONE") is None
    other = cloud_url_conflict(own, url=url, pooling_enabled=False, endpoint_id="ep_TWO")
    assert other is not None and other.code == ERR_NGROK_18017
    assert "cloud endpoint ep_ONE" in other.message


def test_an_agent_bind_onto_a_cloud_url_gets_334_naming_the_fix() -> None:
    planned = plan("https://api.acme.example")
    assert isinstance(planned, CloudPlan)
    cloud = cloud_endpoint(record("ep_ONE"), planned)
    refusal = agent_bind_conflict(cloud, url=cloud.url, pooling_enabled=False)
    assert refusal is not None and refusal.code == "ERR_NGROK_334"
    assert "already online as cloud endpoint ep_ONE" in refusal.message
    assert "burrow-edge endpoint delete ep_ONE" in refusal.message
    pooled = agent_bind_conflict(cloud, url=cloud.url, pooling_enabled=True)
    assert pooled is not None and pooled.code == "ERR_NGROK_334"
    assert "does not have pooling enabled" in pooled.message
    assert "pooling_enabled: true" in pooled.message  # the fix
    agent = agent_endpoint(cloud.url)
    assert agent_bind_conflict(agent, url=cloud.url, pooling_enabled=False) is None


def pooled_record(endpoint_id: str = "ep_ONE") -> CloudEndpoint:
    return replace(record(endpoint_id), pooling_enabled=True)


def test_an_agent_with_pooling_joins_a_pooling_cloud_endpoint() -> None:
    planned = plan("https://api.acme.example")
    assert isinstance(planned, CloudPlan)
    cloud = cloud_endpoint(pooled_record(), planned)
    assert cloud.members[0].pooling
    assert agent_bind_conflict(cloud, url=cloud.url, pooling_enabled=True) is None
    refused = agent_bind_conflict(cloud, url=cloud.url, pooling_enabled=False)
    assert refused is not None and refused.code == "ERR_NGROK_334"
    assert "--pooling-enabled" in refused.message


def test_a_pooling_cloud_endpoint_joins_a_pooling_agent_endpoint_only() -> None:
    url = "https://api.acme.example"
    member = Member(
        bind_id="tun_1", token="t", session_id="ts_1", client_id="c", opener=_agent, pooling=True
    )
    pooled_agent = Endpoint(url=url, proto="https", host="api.acme.example", members=(member,))
    assert cloud_url_conflict(pooled_agent, url=url, pooling_enabled=True) is None
    plain = cloud_url_conflict(pooled_agent, url=url, pooling_enabled=False)
    assert plain is not None and plain.code == ERR_NGROK_18017
    # An update of a pooled cloud endpoint keeps its place while its peers still pool.
    planned = plan(url)
    assert isinstance(planned, CloudPlan)
    own = cloud_endpoint(pooled_record("ep_ONE"), planned)
    pool = replace(pooled_agent, members=(member, own.members[0]))
    assert cloud_url_conflict(pool, url=url, pooling_enabled=True, endpoint_id="ep_ONE") is None
    left = cloud_url_conflict(pool, url=url, pooling_enabled=False, endpoint_id="ep_ONE")
    assert left is not None and left.code == ERR_NGROK_18017


async def test_the_registry_entry_has_one_member_without_an_agent() -> None:
    planned = plan("https://api.acme.example")
    assert isinstance(planned, CloudPlan)
    endpoint = cloud_endpoint(record("ep_ONE"), planned)
    (member,) = endpoint.members
    assert is_cloud(member) and member.session_id == NO_SESSION
    assert member.bind_id == "ep_ONE" and member.token == ""
    assert member.policy is not None and member.policy.text == ANSWER
    assert (endpoint.url, endpoint.proto, endpoint.host, endpoint.port) == (
        "https://api.acme.example",
        "https",
        "api.acme.example",
        None,
    )
    assert not is_cloud(agent_endpoint(endpoint.url).members[0])
    with trio.fail_after(5), pytest.raises(trio.BrokenResourceError, match="has no agent"):
        await endpoint.open_proxy("192.0.2.1:5000")
