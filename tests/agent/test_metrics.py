"""The agent's metrics: its own registry, rendered in Prometheus' text format."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from agent.metrics import AgentMetrics


def samples(metrics: AgentMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_move_and_parse_with_prometheus_own_parser() -> None:
    metrics = AgentMetrics()
    metrics.session_state("established")
    metrics.reconnecting()
    metrics.stream_opened("web")
    metrics.stream_opened("web")
    metrics.stream_closed("web")
    metrics.upstream_dialled("web", 0.002)
    metrics.upstream_dial_failed("web")
    metrics.relayed("web", inbound=100, outbound=2500)
    seen = samples(metrics)
    assert seen[("burrow_agent_reconnects_total", ())] == 1
    assert seen[("burrow_agent_streams_opened_total", (("endpoint", "web"),))] == 2
    assert seen[("burrow_agent_streams_open", (("endpoint", "web"),))] == 1
    assert seen[("burrow_agent_upstream_dial_errors_total", (("endpoint", "web"),))] == 1
    assert seen[("burrow_agent_upstream_dial_seconds_count", (("endpoint", "web"),))] == 1
    assert (
        seen[("burrow_agent_upstream_dial_seconds_bucket", (("endpoint", "web"), ("le", "0.0025")))]
        == 1
    )
    assert seen[("burrow_agent_bytes_total", (("direction", "in"), ("endpoint", "web")))] == 100
    assert seen[("burrow_agent_bytes_total", (("direction", "out"), ("endpoint", "web")))] == 2500
    state = "burrow_agent_session_state"
    assert seen[(state, ((state, "reconnecting"),))] == 1
    assert seen[(state, ((state, "established"),))] == 0


def test_two_agents_do_not_share_a_registry() -> None:
    first, second = AgentMetrics(), AgentMetrics()
    first.reconnecting()
    assert samples(second)[("burrow_agent_reconnects_total", ())] == 0
    assert samples(first)[("burrow_agent_reconnects_total", ())] == 1
