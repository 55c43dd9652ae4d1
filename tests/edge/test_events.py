"""`edge.events`: audit events go to the real SQLite store and to `events.jsonl`, in ngrok's
envelope; a store or file error loses the event loudly instead of raising."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from edge.events import (
    EVENTS_FILE,
    POLICY_LOG_EVENT,
    POLICY_LOG_MAX_BYTES,
    EventLog,
    envelope,
    policy_log_object,
)
from edge.store import DEFAULT_ACCOUNT_ID, Event, SQLiteStore

NOW = datetime(2025, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)
PRINCIPAL = {"id": "service_X", "subject": "clinic-a", "source": "API"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore.open(tmp_path / "burrow.db", clock=lambda: NOW) as opened:
        yield opened


def test_envelope_has_ngroks_fields_and_a_z_timestamp() -> None:
    east = NOW.astimezone(timezone(timedelta(hours=-7)))
    event = Event(
        id="ev_A",
        account_id=DEFAULT_ACCOUNT_ID,
        event_type="agent_session_start.v0",
        timestamp=east,
        principal=PRINCIPAL,
        object={"session": {"id": "ts_1"}},
    )
    assert envelope(event) == {
        "event_id": "ev_A",
        "event_type": "agent_session_start.v0",
        "event_timestamp": "2025-03-14T15:09:26.535897Z",
        "account_id": DEFAULT_ACCOUNT_ID,
        "principal": PRINCIPAL,
        "object": {"session": {"id": "ts_1"}},
    }


def test_record_stores_the_event_and_appends_one_json_line(
    store: SQLiteStore, tmp_path: Path
) -> None:
    path = tmp_path / EVENTS_FILE
    log = EventLog(store, path)
    first = log.record("agent_session_start.v0", {"n": 1}, principal=PRINCIPAL)
    second = log.record("agent_session_stop.v0", {"n": 2}, principal=None)
    assert first is not None and second is not None
    assert store.list_events() == [second, first]
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [envelope(first), envelope(second)]
    assert lines[0].startswith('{"event_id":"' + first.id + '","event_type"')  # compact
    assert json.loads(lines[1])["principal"] is None


def test_without_a_file_the_event_is_only_stored(store: SQLiteStore, tmp_path: Path) -> None:
    event = EventLog(store, None).record("a.v0", {}, principal=None)
    assert event is not None and store.list_events() == [event]
    assert list(tmp_path.glob("*.jsonl")) == []


def test_a_store_refusal_is_logged_and_nothing_is_written(
    store: SQLiteStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / EVENTS_FILE
    with caplog.at_level(logging.ERROR, logger="edge.events"):
        assert EventLog(store, path).record("Not A Type", {}, principal=None) is None
    assert "audit event Not A Type not recorded" in caplog.text
    assert store.list_events() == []
    assert not path.exists()


def test_a_closed_store_loses_the_event_without_raising(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    closed = SQLiteStore.open(tmp_path / "burrow.db")
    closed.close()
    with caplog.at_level(logging.ERROR, logger="edge.events"):
        assert EventLog(closed, tmp_path / EVENTS_FILE).record("a.v0", {}, principal=None) is None
    assert "not recorded" in caplog.text


def test_a_file_error_is_logged_and_the_stored_event_returned(
    store: SQLiteStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    unwritable = tmp_path / "no-such-dir" / EVENTS_FILE
    with caplog.at_level(logging.ERROR, logger="edge.events"):
        event = EventLog(store, unwritable).record("a.v0", {"k": "v"}, principal=None)
    assert event is not None and store.list_events() == [event]
    assert f"audit event {event.id} not appended to {unwritable}" in caplog.text


def test_a_policy_log_record_is_an_event_with_its_metadata(store: SQLiteStore) -> None:
    events = EventLog(store, None)
    recorded = events.record_policy_log(
        endpoint_url="https://app.test",
        phase="on_http_request",
        place="on_http_request rule 0 action 0 (log)",
        metadata={"who": "203.0.113.9", "raw": b"\xff", "n": [1, 2]},
    )
    assert recorded is not None
    [stored] = store.list_events(event_type=POLICY_LOG_EVENT, limit=5)
    assert stored.principal is None
    assert stored.object == {
        "endpoint": {"url": "https://app.test"},
        "traffic_policy": {
            "logs": [
                {
                    "phase": "on_http_request",
                    "place": "on_http_request rule 0 action 0 (log)",
                    "metadata": {"who": "203.0.113.9", "raw": "b'\\xff'", "n": [1, 2]},
                }
            ]
        },
    }


def test_oversized_policy_log_metadata_is_replaced_by_a_note(
    store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    huge = "x" * (POLICY_LOG_MAX_BYTES + 1)
    obj = policy_log_object(endpoint_url="u", phase="p", place="q", metadata={"h": huge})
    [entry] = obj["traffic_policy"]["logs"]
    assert entry["metadata"] == {"truncated": True, "bytes": len(huge) + len('{"h":""}')}
    with caplog.at_level(logging.ERROR):
        assert EventLog(store, None).record_policy_log(
            endpoint_url="u", phase="p", place="q", metadata={"h": huge}
        )
    assert not caplog.records  # bounded before the store's own limit: no error per request
    small = policy_log_object(endpoint_url="u", phase="p", place="q", metadata={"h": "x"})
    assert small["traffic_policy"]["logs"][0]["metadata"] == {"h": "x"}
