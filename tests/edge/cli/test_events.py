"""`edge.cli.events`: `burrow-edge events list`, paging and `--follow`, through the fake admin API
on 127.0.0.1 (tests/edge/cli/fake_api.py)."""

from __future__ import annotations

import json

import pytest

from edge.cli.api_client import AdminClient
from edge.cli.events import _follow_events
from edge.cli.main import build_parser, main
from tests.edge.cli.fake_api import (
    KEY,
    Answer,
    FakeApi,
    Seen,
    event,
    listing,
)


def run(api: FakeApi, *args: str) -> int:
    return main([*args, "--api-key", KEY, "--api-url", api.url])


def test_events_list_pages_through_the_api(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    def events(seen: Seen) -> Answer:
        assert seen.query["type"] == ["agent_session_stop.v0"]
        if "before_id" not in seen.query:
            return listing("events", [event(f"ev_{i}") for i in range(150, 50, -1)], more=True)
        assert seen.query["before_id"] == ["ev_51"]
        return listing("events", [event(f"ev_{i}") for i in range(50, 0, -1)])

    api.on("GET", "/events", events)
    assert run(api, "events", "list", "--type", "agent_session_stop.v0", "--limit", "150") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["event_id"] for line in lines] == [
        f"ev_{i}" for i in range(150, 0, -1)
    ]
    assert [s.query["limit"] for s in api.seen] == [["100"], ["50"]]


def test_follow_prints_new_events_oldest_first_until_interrupted(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    # What the edge holds at each poll (newest first): two events, then two more, then one.
    history = [["ev_2", "ev_1"], ["ev_4", "ev_3", "ev_2", "ev_1"], ["ev_5", "ev_4", "ev_3"]]
    polls: list[int] = [0]

    def events(seen: Seen) -> Answer:
        now = history[min(polls[0], len(history) - 1)]
        return listing("events", [event(i) for i in now][: int(seen.query["limit"][0])])

    def sleep(seconds: float) -> None:
        assert seconds == 1.0
        polls[0] += 1
        if polls[0] == len(history):
            raise KeyboardInterrupt

    api.on("GET", "/events", events)
    args = build_parser().parse_args(["events", "list", "--follow", "--limit", "1"])
    assert _follow_events(args, AdminClient(api.url, KEY), sleep) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["event_id"] for line in lines] == ["ev_2", "ev_3", "ev_4", "ev_5"]


def test_follow_from_an_empty_log_prints_everything_that_arrives(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    history: list[list[str]] = [[], ["ev_2", "ev_1"]]
    polls: list[int] = [0]
    api.on(
        "GET",
        "/events",
        lambda _: listing("events", [event(i) for i in history[min(polls[0], 1)]]),
    )

    def sleep(seconds: float) -> None:
        polls[0] += 1
        if polls[0] == 3:
            raise KeyboardInterrupt

    args = build_parser().parse_args(["events", "list", "--follow"])
    assert _follow_events(args, AdminClient(api.url, KEY), sleep) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["event_id"] for line in lines] == ["ev_1", "ev_2"]
