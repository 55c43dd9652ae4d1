"""Tests for agent/config.py: the settings' values (`Secret`'s masking, frozen dataclasses),
the default file's path, connect URLs and durations.

Loading files: test_config_load.py; the endpoints section: test_config_endpoints.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from agent.config import (
    AgentConfig,
    ConfigError,
    Secret,
    default_config_path,
    parse_duration,
    validate_connect_url,
)
from agent.config_load import load_config

HERE = Path(__file__).parent
EXAMPLE = HERE.parent.parent / "deploy" / "agent.example.yml"


def load(*paths: Path, env: dict[str, str] | None = None) -> AgentConfig:
    return load_config(list(paths), env or {})


def test_secret_masks_itself() -> None:
    token = Secret("2abcdefghijklmnopqrstuvwxyz1234")
    assert str(token) == "***1234"
    assert repr(token) == "Secret('***1234')"
    assert f"{token}" == "***1234"
    assert token.reveal() == "2abcdefghijklmnopqrstuvwxyz1234"
    assert str(Secret("short1234")) == "***"
    assert token == Secret("2abcdefghijklmnopqrstuvwxyz1234")
    assert token != Secret("other")
    assert len({token, Secret("2abcdefghijklmnopqrstuvwxyz1234")}) == 1


def test_config_repr_and_asdict_never_show_the_token() -> None:
    config = load(HERE / "configs" / "valid" / "representative.yml")
    assert "2abcdefghijklmnopqrstuvwxyz" not in repr(config)
    assert "2abcdefghijklmnopqrstuvwxyz" not in str(dataclasses.asdict(config.agent))


def test_config_is_frozen() -> None:
    config = load(EXAMPLE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.agent.log = "stdout"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("250ms", 0.25),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("500us", 0.0005),
        ("500µs", 0.0005),
        ("100ns", 1e-7),
        ("0", 0.0),
        (" 2m ", 120.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "s", "10 s", "-1s", "1d", "1.2.3s", "10sec"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_default_config_path() -> None:
    assert default_config_path({"HOME": "/home/ana"}) == Path("/home/ana/.config/burrow/burrow.yml")
    assert default_config_path({"HOME": "/home/ana", "XDG_CONFIG_HOME": "/xdg"}) == Path(
        "/xdg/burrow/burrow.yml"
    )
    # The XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored.
    assert default_config_path({"HOME": "/home/ana", "XDG_CONFIG_HOME": "rel"}) == Path(
        "/home/ana/.config/burrow/burrow.yml"
    )
    assert default_config_path({}) == Path.home() / ".config" / "burrow" / "burrow.yml"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("connect.example.com:443", ("connect.example.com", 443)),
        ("connect.example.com", ("connect.example.com", 443)),
        ("Connect.Burrow.Localhost:8443", ("connect.burrow.localhost", 8443)),
        ("127.0.0.1:8443", ("127.0.0.1", 8443)),
        ("[::1]:8443", ("::1", 8443)),
        ("[::1]", ("::1", 443)),
    ],
)
def test_validate_connect_url(text: str, expected: tuple[str, int]) -> None:
    assert validate_connect_url(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "needs a host name"),
        ("tls://edge.example.com", "has a scheme"),
        ("edge.example.com:99999", "outside the range 1-65535"),
        ("edge.example.com:abc", "is not a number"),
        ("*.example.com:443", "needs a host name"),
        ("::1:443", "write IPv6 addresses in brackets"),
        ("edge.example.com:443/path", "has a path"),
    ],
)
def test_validate_connect_url_rejects(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_connect_url(text)
