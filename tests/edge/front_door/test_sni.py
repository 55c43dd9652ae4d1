"""edge/front_door/sni.py: the SNI decision (agent, passthrough, terminate or refuse)."""

from __future__ import annotations

import pytest
import trio

from edge.endpoints.registry import Endpoint, EndpointRegistry, Member
from edge.front_door.sni import Passthrough, Refuse, Terminate, ToAgent, route_sni

AGENT_NAMES = frozenset({"connect.burrow.localhost", "localhost"})


async def _no_agent(client_addr: str) -> trio.abc.HalfCloseableStream:
    raise trio.BrokenResourceError("no agent in a pure test")


def online(registry: EndpointRegistry, url: str, *, binding: str = "public") -> Endpoint:
    scheme, host = url.split("://")
    member = Member(bind_id="tun", token="t", session_id="ts", client_id="cl", opener=_no_agent)
    endpoint = Endpoint(url=url, proto=scheme, binding=binding, host=host, members=(member,))
    registry.add(endpoint)
    return endpoint


@pytest.fixture
def registry() -> EndpointRegistry:
    registry = EndpointRegistry()
    online(registry, "tls://db.example.com")
    online(registry, "https://app.example.com")
    online(registry, "https://*.apps.example.com")
    online(registry, "tls://both.example.com")
    online(registry, "https://both.example.com")
    online(registry, "https://api.clinic.internal", binding="internal")
    online(registry, "tls://db.clinic.internal", binding="internal")
    return registry


def route(registry: EndpointRegistry, sni: str | None) -> object:
    return route_sni(sni, agent_names=AGENT_NAMES, registry=registry)


def test_the_connect_host_and_localhost_go_to_an_agent_session(registry: EndpointRegistry) -> None:
    assert route(registry, "connect.burrow.localhost") == ToAgent()
    assert route(registry, "localhost") == ToAgent()


def test_a_tls_endpoint_gets_the_bytes_untouched(registry: EndpointRegistry) -> None:
    decided = route(registry, "db.example.com")
    assert isinstance(decided, Passthrough)
    assert decided.endpoint.url == "tls://db.example.com"


def test_an_https_endpoint_is_terminated_for_its_host(registry: EndpointRegistry) -> None:
    assert route(registry, "app.example.com") == Terminate("app.example.com")
    assert route(registry, "x.apps.example.com") == Terminate("x.apps.example.com")


def test_tls_wins_over_https_of_the_same_name(registry: EndpointRegistry) -> None:
    decided = route(registry, "both.example.com")
    assert isinstance(decided, Passthrough)
    assert decided.endpoint.url == "tls://both.example.com"


@pytest.mark.parametrize(
    "sni",
    [None, "nobody.example.com", "api.clinic.internal", "db.clinic.internal", "apps.example.com"],
)
def test_no_sni_unknown_and_internal_names_are_refused(
    registry: EndpointRegistry, sni: str | None
) -> None:
    assert route(registry, sni) == Refuse()
