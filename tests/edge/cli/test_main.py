"""`edge.cli.main`: `burrow-edge`'s commands through the admin API, against a tiny stdlib HTTP
server on 127.0.0.1 that answers canned ngrok-shaped JSON and records every request
(tests/edge/cli/fake_api.py); and the offline commands on a real store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.cli.api_client import AdminClient
from edge.cli.main import _follow_events, build_parser, main
from edge.store import SQLiteStore
from tests.edge.cli.fake_api import (
    KEY,
    TS,
    Answer,
    FakeApi,
    Seen,
    credential,
    error,
    event,
    listing,
    refused_url,
    user,
)


def run(api: FakeApi, *args: str) -> int:
    return main([*args, "--api-key", KEY, "--api-url", api.url])


# ---------------------------------------------------------------------------------- the CLI


def test_credential_create_prints_the_token_last(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on("POST", "/credentials", (201, credential("cr_1", token="the-token")))
    args = ["credential", "create", "--owner", "service_1", "--acl", "bind:*", "--acl", "bind:x"]
    assert run(api, *args, "--max-sessions", "2", "--max-endpoints", "3", "--metadata", "m") == 0
    assert capsys.readouterr().out.splitlines() == [
        "credential cr_1 created; its authtoken (shown only now):",
        "the-token",
    ]
    assert api.seen[0].body == {
        "description": "",
        "metadata": "m",
        "acl": ["bind:*", "bind:x"],
        "owner_id": "service_1",
        "max_sessions": 2,
        "max_endpoints": 3,
    }


def test_credential_list_revoke_activate_delete(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    limited = credential("cr_2", acl=["bind:a"], max_sessions=2, max_endpoints=5, description="d")
    api.on("GET", "/credentials", listing("credentials", [limited, credential("cr_1")]))
    api.on("PATCH", "/credentials/cr_2", lambda s: (200, {**limited, **s.body}))
    api.on("DELETE", "/credentials/cr_2", (204, b""))
    assert run(api, "credential", "list") == 0
    assert capsys.readouterr().out.splitlines() == [
        f"cr_2  {TS}  active  acl=bind:a  max_sessions=2  max_endpoints=5  d",
        f"cr_1  {TS}  active  acl=-  max_sessions=-  max_endpoints=-  ",
    ]
    assert run(api, "credential", "list", "--json") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["cr_2", "cr_1"]
    assert run(api, "credential", "revoke", "cr_2") == 0
    assert run(api, "credential", "activate", "cr_2") == 0
    assert run(api, "credential", "delete", "cr_2") == 0
    assert capsys.readouterr().out.splitlines() == [
        "credential cr_2 revoked",
        "credential cr_2 activated",
        "credential cr_2 deleted",
    ]
    assert [(s.method, s.body) for s in api.seen[2:]] == [
        ("PATCH", {"active": False}),
        ("PATCH", {"active": True}),
        ("DELETE", None),
    ]
    assert run(api, "credential", "revoke", "cr_2", "--json") == 0
    assert json.loads(capsys.readouterr().out)["active"] is False


def test_service_users_through_the_api(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.on("POST", "/service_users", lambda s: (201, user("service_1", s.body["name"])))
    api.on("GET", "/service_users", listing("service_users", [user("service_1", "a", False)]))
    api.on("PATCH", "/service_users/service_1", lambda s: (200, user("service_1", "a")))
    api.on("DELETE", "/service_users/service_1", (204, b""))
    owned = [credential("cr_1", owner_id="service_1"), credential("cr_2")]
    api.on("GET", "/credentials", listing("credentials", owned))
    api.on("GET", "/api_keys", listing("keys", [{"id": "ak_1", "owner_id": "service_1"}]))
    assert run(api, "service-user", "create", "clinic-a") == 0
    assert run(api, "service-user", "list") == 0
    assert run(api, "service-user", "deactivate", "service_1") == 0
    assert run(api, "service-user", "activate", "service_1") == 0
    assert run(api, "service-user", "delete", "service_1") == 0
    assert capsys.readouterr().out.splitlines() == [
        "service user service_1 (clinic-a) created",
        f"service_1  {TS}  inactive  a",
        "service user service_1 deactivated",
        "service user service_1 activated",
        "service user service_1 deleted with 1 credential(s) and 1 API key(s)",
    ]
    assert api.seen[0].body == {"name": "clinic-a"}
    assert [s.body for s in api.seen if s.method == "PATCH"] == [
        {"active": False},
        {"active": True},
    ]
    assert run(api, "service-user", "create", "b", "--json") == 0
    assert json.loads(capsys.readouterr().out)["name"] == "b"


def test_api_keys_through_the_api(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    made = {"id": "ak_2", "created_at": TS, "description": "ci", "token": "tok", "owner_id": None}
    api.on("POST", "/api_keys", (201, made))
    api.on("GET", "/api_keys", listing("keys", [{**made, "token": None}]))
    api.on("DELETE", "/api_keys/ak_2", (204, b""))
    assert run(api, "api-key", "create", "--description", "ci") == 0
    assert run(api, "api-key", "list") == 0
    assert run(api, "api-key", "delete", "ak_2") == 0
    assert capsys.readouterr().out.splitlines() == [
        "API key ak_2 created; use it as 'Authorization: Bearer <key>'.",
        "Its token (shown only now):",
        "tok",
        f"ak_2  {TS}  owner=-  ci",
        "API key ak_2 deleted",
    ]
    assert api.seen[0].body == {"description": "ci", "metadata": ""}


def test_sessions_list_and_stop(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    session = {
        "id": "ts_1",
        "started_at": TS,
        "credential": {"id": "cr_1", "uri": "x"},
        "ip": "127.0.0.1",
        "agent_version": "0.1.0",
        "os": "linux",
        "metadata": "box",
    }
    api.on("GET", "/tunnel_sessions", listing("tunnel_sessions", [session]))
    endpoint = {"id": "ep_1", "url": "tcp://127.0.0.1:21000", "tunnel_session": {"id": "ts_1"}}
    api.on("GET", "/endpoints", listing("endpoints", [endpoint]))
    api.on("POST", "/tunnel_sessions/ts_1/stop", (204, b""))
    assert run(api, "sessions", "list") == 0
    assert run(api, "sessions", "stop", "ts_1") == 0
    assert capsys.readouterr().out.splitlines() == [
        f"ts_1  {TS}  credential=cr_1  ip=127.0.0.1  agent=0.1.0/linux  "
        "endpoints=tcp://127.0.0.1:21000  box",
        "session ts_1 stopped",
    ]
    assert run(api, "sessions", "list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == session


def test_api_errors_are_one_line_and_exit_1(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on("POST", "/credentials", (400, error(400, "ERR_NGROK_10007", "acl[0]: bad rule")))
    assert run(api, "credential", "create", "--acl", "nope") == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == "burrow-edge: acl[0]: bad rule (ERR_NGROK_10007)\n"


def test_nobody_listening_is_said_plainly(capsys: pytest.CaptureFixture[str]) -> None:
    url = refused_url()
    assert main(["credential", "list", "--api-key", KEY, "--api-url", url]) == 1
    assert capsys.readouterr().err == (
        f"burrow-edge: no edge answers at {url} (is burrow-edge serve running? is admin enabled?)\n"
    )


def test_the_environment_gives_key_and_url(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on("GET", "/credentials", listing("credentials", []))
    monkeypatch.setenv("BURROW_API_KEY", KEY)
    monkeypatch.setenv("BURROW_API_URL", api.url)
    assert main(["credential", "list"]) == 0
    assert api.seen[0].headers["authorization"] == f"Bearer {KEY}"


def test_an_explicit_data_dir_stays_offline_whatever_the_environment_says(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BURROW_API_KEY", KEY)
    monkeypatch.setenv("BURROW_API_URL", api.url)
    assert main(["service-user", "create", "a", "--data-dir", str(tmp_path), "--init"]) == 0
    assert (tmp_path / "burrow.db").exists()
    assert api.seen == []


def test_api_key_and_data_dir_together_are_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["credential", "list", "--api-key", KEY, "--data-dir", str(tmp_path)])
    assert exited.value.code == 2
    assert "give one of them" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [["sessions", "list"], ["sessions", "stop", "ts_1"], ["events", "list", "--follow"]],
)
def test_commands_that_need_the_edge_say_how_to_get_a_key(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    for needed in ("BURROW_API_KEY", "--api-key", "burrow-edge init", "api-key create"):
        assert needed in err


def test_offline_api_key_list_and_delete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    offline = ["--data-dir", str(tmp_path)]
    assert main(["api-key", "create", "--description", "ci", "--init", *offline]) == 0
    key_id = capsys.readouterr().out.split()[2]
    assert main(["api-key", "list", *offline]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith(key_id) and line.endswith("owner=-  ci")
    assert main(["api-key", "delete", key_id, *offline]) == 0
    assert capsys.readouterr().out == f"API key {key_id} deleted\n"
    assert main(["api-key", "delete", key_id, *offline]) == 1
    assert main(["events", "list", "--type", "api_key_deleted.v0", *offline]) == 0
    assert json.loads(capsys.readouterr().out)["object"]["id"] == key_id


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


# ------------------------------------------------------------------------- an empty store


def test_an_empty_store_is_refused_in_one_line_that_names_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "burrow.db").write_bytes(b"")
    assert main(["credential", "list", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"burrow-edge: the store at {tmp_path / 'burrow.db'} is empty (0 bytes)")
    assert err.rstrip().endswith(
        "with `burrow-edge serve --new-store` or `burrow-edge init --new-store`"
    )
    assert (tmp_path / "burrow.db").read_bytes() == b""


def test_init_with_new_store_starts_a_new_store_in_an_empty_files_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "burrow.db").write_bytes(b"")
    assert main(["init", "--data-dir", str(tmp_path)]) == 1  # not without the flag
    capsys.readouterr()
    assert main(["init", "--new-store", "--data-dir", str(tmp_path)]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["api-key", "list", "--data-dir", str(tmp_path)]) == 0
    (listed,) = capsys.readouterr().out.strip().splitlines()
    assert listed.startswith("ak_")
    with SQLiteStore.open(tmp_path / "burrow.db") as store:  # a store now: no flag needed
        assert store.authenticate_api_key(key) is not None
    assert build_parser().parse_args(["serve", "--new-store"]).new_store is True
    assert build_parser().parse_args(["serve"]).new_store is False


# ------------------------------------------------------------------- offline: which store


@pytest.mark.parametrize(
    "args",
    [
        ["credential", "create"],
        ["credential", "list"],
        ["service-user", "create", "a"],
        ["api-key", "create"],
        ["events", "list"],
    ],
)
def test_offline_commands_refuse_to_start_a_store_unless_told(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "typo"
    assert main([*args, "--data-dir", str(data_dir)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"burrow-edge: no store at {data_dir / 'burrow.db'}: ")
    assert "--init" in err and "burrow-edge init" in err
    assert not data_dir.exists()  # nothing was created


def test_offline_commands_name_the_store_they_work_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "burrow.db"
    assert main(["credential", "create", "--data-dir", str(tmp_path), "--init"]) == 0
    made = capsys.readouterr()
    assert made.err == f"burrow-edge: offline, on the store at {store}\n"
    assert made.out.splitlines()[-1]  # the token, on stdout as before
    assert main(["credential", "list", "--data-dir", str(tmp_path)]) == 0  # exists: no --init
    assert capsys.readouterr().err == f"burrow-edge: offline, on the store at {store}\n"
