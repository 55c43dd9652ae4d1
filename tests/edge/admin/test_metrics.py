"""edge/admin/metrics.py: one registry per edge, the counters, and bounded labels; read back
with prometheus_client's own text parser."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from edge.admin.metrics import (
    MAX_ENDPOINT_LABELS,
    EdgeMetrics,
    answer_code,
    endpoint_label,
    status_class,
    tcp_close_code,
)


def samples(metrics: EdgeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_each_edge_counts_in_its_own_registry() -> None:
    first, second = EdgeMetrics(), EdgeMetrics()
    first.refused("auth", "ERR_NGROK_105")
    assert (
        samples(first)[
            ("burrow_edge_refusals_total", (("code", "ERR_NGROK_105"), ("kind", "auth")))
        ]
        == 1
    )
    assert not any(name == "burrow_edge_refusals_total" for name, _ in samples(second))
    assert (
        REGISTRY.get_sample_value(
            "burrow_edge_refusals_total", {"kind": "auth", "code": "ERR_NGROK_105"}
        )
        is None
    )


def test_sessions_and_endpoints_are_read_when_scraped() -> None:
    metrics = EdgeMetrics()
    online = {"sessions": 2, "endpoints": 5}
    metrics.watch(sessions=lambda: online["sessions"], endpoints=lambda: online["endpoints"])
    assert samples(metrics)[("burrow_edge_sessions", ())] == 2
    online["endpoints"] = 7
    assert samples(metrics)[("burrow_edge_endpoints", ())] == 7


def test_counters_move() -> None:
    metrics = EdgeMetrics()
    metrics.stream_opened("tcp")
    metrics.stream_opened("tcp")
    metrics.stream_closed()
    metrics.to_agent(100)
    metrics.from_agent(250)
    metrics.handshake_failed("https")
    metrics.handshake_failed("agent")
    metrics.handshake_failed("agent")
    metrics.store_call(0.002)
    metrics.refused("bind", "")
    got = samples(metrics)
    assert got[("burrow_edge_streams_opened_total", (("proto", "tcp"),))] == 2
    assert got[("burrow_edge_streams_open", ())] == 1
    assert got[("burrow_edge_bytes_total", (("direction", "to_agent"),))] == 100
    assert got[("burrow_edge_bytes_total", (("direction", "from_agent"),))] == 250
    assert got[("burrow_edge_tls_handshake_failures_total", (("role", "agent"),))] == 2
    assert got[("burrow_edge_store_seconds_count", ())] == 1
    assert got[("burrow_edge_store_seconds_bucket", (("le", "0.0025"),))] == 1
    assert got[("burrow_edge_store_seconds_bucket", (("le", "0.001"),))] == 0
    assert got[("burrow_edge_refusals_total", (("code", "none"), ("kind", "bind")))] == 1


def test_http_requests_by_endpoint_and_status_class() -> None:
    metrics = EdgeMetrics()
    for status in (200, 204, 404, 502):
        metrics.http_response("https://a.example", status)
    metrics.http_response("", 404)
    got = samples(metrics)
    key = "burrow_edge_http_requests_total"
    assert got[(key, (("endpoint", "https://a.example"), ("status", "2xx")))] == 2
    assert got[(key, (("endpoint", "https://a.example"), ("status", "5xx")))] == 1
    assert got[(key, (("endpoint", "none"), ("status", "4xx")))] == 1
    assert [status_class(s) for s in (101, 301, 599, 600, 42)] == [
        "1xx",
        "3xx",
        "5xx",
        "other",
        "other",
    ]


def test_endpoint_labels_are_bounded() -> None:
    metrics = EdgeMetrics()
    for index in range(MAX_ENDPOINT_LABELS + 5):
        metrics.http_response(f"https://e{index}.example", 200)
    metrics.http_response("https://e0.example", 200)  # one with a label keeps it
    endpoints = {
        dict(labels)["endpoint"]
        for (name, labels) in samples(metrics)
        if name == "burrow_edge_http_requests_total"
    }
    assert len(endpoints) == MAX_ENDPOINT_LABELS + 1
    assert "other" in endpoints and "https://e0.example" in endpoints
    got = samples(metrics)
    assert got[("burrow_edge_http_requests_total", (("endpoint", "other"), ("status", "2xx")))] == 5
    assert (
        got[
            (
                "burrow_edge_http_requests_total",
                (("endpoint", "https://e0.example"), ("status", "2xx")),
            )
        ]
        == 2
    )


def test_endpoint_label_is_the_url_without_the_port() -> None:
    assert endpoint_label("https", "app.example:8443") == "https://app.example"
    assert endpoint_label("http", "app.example") == "http://app.example"
    assert endpoint_label("https", "[::1]:8443") == "https://::1"
    assert endpoint_label("https", "odd:port") == "https://odd"
    assert endpoint_label("https", "[::1") == "https://[::1"  # unparseable: kept as it came
    assert endpoint_label("https", None) == endpoint_label("https", "") == ""


def test_answer_code_reads_the_error_code_header() -> None:
    assert (
        answer_code(403, [(b"Content-Type", b"text/html"), (b"Burrow-Error-Code", b"X_1")]) == "X_1"
    )
    assert answer_code(429, [(b"ngrok-error-code", b"ERR_NGROK_123")]) == "ERR_NGROK_123"
    assert answer_code(403, [(b"content-type", b"text/plain")]) == "http_403"


def test_the_endpoint_label_bound_comes_from_the_config() -> None:
    metrics = EdgeMetrics(max_endpoint_labels=2)
    for name in ("a", "b", "c", "d"):
        metrics.http_response(f"https://{name}.example", 200)
    endpoints = {
        dict(labels)["endpoint"]
        for (name, labels) in samples(metrics)
        if name == "burrow_edge_http_requests_total"
    }
    assert endpoints == {"https://a.example", "https://b.example", "other"}


def test_an_on_tcp_connect_refusal_is_counted_under_its_code_or_action() -> None:
    assert tcp_close_code("ERR_NGROK_3200") == "ERR_NGROK_3200"
    assert tcp_close_code("restrict-ips") == "tcp_restrict-ips"
    assert tcp_close_code("close-connection") == "tcp_close-connection"
    # a sentence (the terminate-tls refusal) is no label: one bounded value for all of them
    assert tcp_close_code("terminate-tls before forward-internal is not supported") == "tcp_closed"
    assert tcp_close_code("") == "tcp_closed"
    assert len(tcp_close_code("x" * 500)) <= 64


def test_http_responses_count_per_endpoint_and_class_through_cached_counters() -> None:
    metrics = EdgeMetrics(max_endpoint_labels=1)
    for status in (200, 204, 404, 200, 999):
        metrics.http_response("https://a.example", status)
    metrics.http_response("https://b.example", 200)  # past the label limit: "other"
    metrics.stream_opened("tcp")
    metrics.stream_opened("tcp")
    got = samples(metrics)
    name = "burrow_edge_http_requests_total"
    assert got[(name, (("endpoint", "https://a.example"), ("status", "2xx")))] == 3
    assert got[(name, (("endpoint", "https://a.example"), ("status", "4xx")))] == 1
    assert got[(name, (("endpoint", "https://a.example"), ("status", "other")))] == 1
    assert got[(name, (("endpoint", "other"), ("status", "2xx")))] == 1
    assert got[("burrow_edge_streams_opened_total", (("proto", "tcp"),))] == 2
