"""agent/config_values.py: typed readers whose errors point at file:line and the key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config_source import ConfigError, SourceMap, Where
from agent.config_values import (
    check_keys,
    check_length,
    describe,
    read_bool,
    read_choice,
    read_duration,
    read_mapping,
    read_str,
    read_str_list,
)
from protocol.formats.yamldoc import KeyPath

FILE = "/etc/burrow/burrow.yml"
P = ("agent",)


def ctx() -> SourceMap:
    """As if read from FILE: `agent:` on line 2, each key of it on its own line from 3."""
    here = Path("/etc/burrow")
    origins: dict[KeyPath, Where] = {(): Where(FILE, None, here), ("agent",): Where(FILE, 2, here)}
    for line, key in enumerate(("log", "authtoken", "heartbeat_interval", "names"), start=3):
        origins[("agent", key)] = Where(FILE, line, here)
    return SourceMap(origins, [Path(FILE)])


def error_of(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    return str(exc.value)


def test_check_keys_accepts_known_keys() -> None:
    check_keys(ctx(), {"log": "stdout", "authtoken": "t"}, P, ["log", "authtoken", "log_level"])


def test_check_keys_suggests_the_closest_key() -> None:
    with pytest.raises(ConfigError) as caught:
        check_keys(ctx(), {"log": "stdout", "log_levle": "info"}, P, ["log", "log_level"])
    assert str(caught.value) == f"{FILE}:2: agent.log_levle: unknown key; did you mean log_level?"
    assert caught.value.key == "agent.log_levle"


def test_check_keys_suggests_a_key_it_is_a_prefix_of() -> None:
    with pytest.raises(ConfigError, match=r"agent\.heartbeat: unknown key; did you mean "):
        check_keys(ctx(), {"heartbeat": 1}, P, ["heartbeat_interval", "heartbeat_tolerance"])


def test_check_keys_lists_the_known_keys_when_nothing_is_close() -> None:
    with pytest.raises(ConfigError) as caught:
        check_keys(ctx(), {"zzz": 1}, P, ["log", "authtoken"])
    assert caught.value.reason == "unknown key; known keys: log, authtoken"


def test_check_keys_prefers_an_explicit_hint() -> None:
    hints = {"tunnels": "version 2 `tunnels:` became `endpoints:` in version 3"}
    with pytest.raises(ConfigError) as caught:
        check_keys(ctx(), {"tunnels": {}}, (), ["version", "agent", "endpoints"], hints)
    assert caught.value.reason == f"unknown key; {hints['tunnels']}"


def test_read_mapping() -> None:
    assert read_mapping(ctx(), None, P) == {}
    assert read_mapping(ctx(), {"log": "stdout"}, P) == {"log": "stdout"}
    with pytest.raises(ConfigError) as caught:
        read_mapping(ctx(), ["a"], P)
    assert str(caught.value) == (
        f"{FILE}:2: agent: expected a mapping (key: value lines), found a list"
    )


def test_read_str() -> None:
    assert read_str(ctx(), {"log": "stdout"}, P, "log", "false") == "stdout"
    assert read_str(ctx(), {}, P, "log", "false") == "false"
    assert read_str(ctx(), {"log": None}, P, "log", "false") == "false"  # `log:` alone
    with pytest.raises(ConfigError) as caught:
        read_str(ctx(), {"authtoken": 12345}, P, "authtoken", "")
    assert str(caught.value) == (
        f"{FILE}:4: agent.authtoken: expected a string, found a number (12345); quote it"
    )


def test_read_bool() -> None:
    assert read_bool(ctx(), {"x": False}, P, "x", True) is False
    assert read_bool(ctx(), {}, P, "x", True) is True
    with pytest.raises(ConfigError, match=r"agent\.x: expected true or false, found the string"):
        read_bool(ctx(), {"x": "yes please"}, P, "x", True)
    with pytest.raises(ConfigError, match=r"found a number \(1\)"):
        read_bool(ctx(), {"x": 1}, P, "x", True)


def test_read_choice() -> None:
    choices = ("stdout", "stderr", "false")
    assert read_choice(ctx(), {"log": "stderr"}, P, "log", choices, "false") == "stderr"
    assert read_choice(ctx(), {}, P, "log", choices, "false") == "false"
    with pytest.raises(ConfigError) as caught:
        read_choice(ctx(), {"log": "syslog"}, P, "log", choices, "false")
    assert str(caught.value) == f"{FILE}:3: agent.log: 'syslog' is not one of stdout, stderr, false"


@pytest.mark.parametrize(("value", "seconds"), [("10s", 10.0), ("1m30s", 90.0), ("250ms", 0.25)])
def test_read_duration(value: str, seconds: float) -> None:
    data = {"heartbeat_interval": value}
    assert read_duration(ctx(), data, P, "heartbeat_interval", 1.0) == pytest.approx(seconds)


def test_read_duration_default() -> None:
    assert read_duration(ctx(), {}, P, "heartbeat_interval", 10.0) == 10.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "expected a duration such as 10s, found a boolean (true)"),
        (["10s"], "expected a duration such as 10s, found a list"),
        (10, "10 has no unit; write e.g. 10s or 10ms"),  # Go would read it as nanoseconds
        ("ten seconds", "duration"),
        ("0s", "must be longer than zero, found '0s'"),
    ],
)
def test_read_duration_rejects(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read_duration(ctx(), {"heartbeat_interval": value}, P, "heartbeat_interval", 1.0)
    assert str(caught.value).startswith(f"{FILE}:5: agent.heartbeat_interval: ")
    assert message in caught.value.reason


def test_read_str_list() -> None:
    assert read_str_list(ctx(), {"names": ["a", "b"]}, P, "names") == ("a", "b")
    assert read_str_list(ctx(), {"names": []}, P, "names") == ()
    assert read_str_list(ctx(), {}, P, "names") is None  # missing is not the same as empty
    with pytest.raises(ConfigError) as caught:
        read_str_list(ctx(), {"names": "a"}, P, "names")
    assert caught.value.reason == "expected a list such as [a, b], found the string 'a'"
    with pytest.raises(ConfigError) as caught:
        read_str_list(ctx(), {"names": ["a", 2]}, P, "names")
    assert caught.value.key == "agent.names[1]"  # the item, not the list
    assert caught.value.reason == "expected a string, found a number (2)"
    assert caught.value.line == 6  # the list's line: the item has none of its own here


def test_check_length() -> None:
    check_length(ctx(), ("agent", "log"), "x" * 10, 10)
    with pytest.raises(ConfigError) as caught:
        check_length(ctx(), ("agent", "log"), "x" * 11, 10)
    assert str(caught.value) == (
        f"{FILE}:3: agent.log: is 11 characters long; the limit is 10; shorten it"
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "nothing (null)"),
        (True, "a boolean (true)"),
        (False, "a boolean (false)"),
        (3, "a number (3)"),
        (1.5, "a number (1.5)"),
        ("x", "the string 'x'"),
        ([1], "a list"),
        ({"a": 1}, "a mapping"),
        (b"\x00", "bytes (b'\\x00')"),
    ],
)
def test_describe(value: object, text: str) -> None:
    assert describe(value) == text
