"""`burrow config add-authtoken` / `add-connect-url` (agent/cli_config.py): real files in
tmp_path, read back with the agent's own loader."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from agent.cli import run
from agent.cli_config import ConfigEditError, set_agent_key, yaml_scalar
from agent.config_load import load_config


def _run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = run(list(argv), env if env is not None else {"HOME": "/nonexistent"}, out, err)
    return status, out.getvalue(), err.getvalue()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_add_authtoken_creates_the_default_file_0600(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    status, out, err = _run("config", "add-authtoken", "tok_1234567890abcd", env=env)
    path = tmp_path / ".config" / "burrow" / "burrow.yml"
    assert (status, err) == (0, "")
    assert out == f"Authtoken saved to configuration file: {path}\n"
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    config = load_config([path], {})
    assert config.agent.authtoken is not None
    assert config.agent.authtoken.reveal() == "tok_1234567890abcd"
    # and `config check` finds and accepts it without --config
    assert _run("config", "check", env=env)[0] == 0


def test_add_authtoken_follows_xdg_config_home(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert _run("config", "add-authtoken", "t0k", env=env)[0] == 0
    assert (tmp_path / "xdg" / "burrow" / "burrow.yml").is_file()
    assert not (tmp_path / "home").exists()


EXISTING = """\
# Burrow agent config, kept by hand.
version: 3
agent:
  # the edge
  connect_url: edge.example.com:443   # production
  authtoken: old-token
  log: stdout

endpoints:
  - name: web   # the shop
    url: https://shop.example.com
    upstream: {url: 8080}
"""


def test_add_authtoken_replaces_only_the_value_and_keeps_comments(tmp_path: Path) -> None:
    path = tmp_path / "agent.yml"
    path.write_text(EXISTING)
    path.chmod(0o644)
    status, _, _ = _run("config", "add-authtoken", "new-token", "--config", str(path))
    assert status == 0
    assert path.read_text() == EXISTING.replace("old-token", "new-token")
    assert _mode(path) == 0o600  # it holds a secret: tightened
    assert load_config([path], {}).endpoints[0].name == "web"


def test_add_connect_url_inserts_beside_the_other_agent_keys(tmp_path: Path) -> None:
    path = tmp_path / "agent.yml"
    text = EXISTING.replace("  connect_url: edge.example.com:443   # production\n", "")
    path.write_text(text)
    status, out, _ = _run("config", "add-connect-url", "edge.acme.test:8443", "--config", str(path))
    assert status == 0
    assert out == f"Connect URL saved to configuration file: {path}\n"
    assert path.read_text() == text.replace(
        "  # the edge\n", "  # the edge\n  connect_url: edge.acme.test:8443\n"
    )
    assert load_config([path], {}).agent.connect_url == "edge.acme.test:8443"


def test_add_server_addr_is_an_alias(tmp_path: Path) -> None:
    path = tmp_path / "agent.yml"
    assert _run("config", "add-server-addr", "e.test:443", "--config", str(path))[0] == 0
    assert load_config([path], {}).agent.connect_url == "e.test:443"


def test_add_connect_url_refuses_a_bad_address_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "agent.yml"
    status, _, err = _run("config", "add-connect-url", "https://e.test", "--config", str(path))
    assert status == 1
    assert err.startswith("burrow: connect URL: 'https://e.test' has a scheme")
    assert not path.exists()


def test_a_file_with_a_yaml_error_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "agent.yml"
    path.write_text("version: 3\nagent: [\n")
    status, _, err = _run("config", "add-authtoken", "t", "--config", str(path))
    assert status == 1
    assert err.startswith(f"burrow: {path}: not valid YAML")
    assert path.read_text() == "version: 3\nagent: [\n"


def test_flow_style_agent_is_refused_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "agent.yml"
    path.write_text("version: 3\nagent: {log: stdout}  # keep\n")
    status, _, err = _run("config", "add-authtoken", "t", "--config", str(path))
    assert status == 1
    assert "set agent.authtoken by hand" in err
    assert path.read_text() == "version: 3\nagent: {log: stdout}  # keep\n"


def test_two_config_files_are_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yml", tmp_path / "b.yml"
    status, _, err = _run("config", "add-authtoken", "t", "--config", f"{a},{b}")
    assert status == 1
    assert "name the one to change" in err
    assert not a.exists() and not b.exists()


def test_a_symlinked_file_is_changed_through_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real.yml"
    real.write_text("version: 3\nagent:\n  log: stdout\n")
    link = tmp_path / "link.yml"
    link.symlink_to(real)
    assert _run("config", "add-authtoken", "t", "--config", str(link))[0] == 0
    assert link.is_symlink()
    assert "authtoken: t\n" in real.read_text()


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("", "version: 3\nagent:\n  authtoken: T\n"),
        ("# only a comment\n", "# only a comment\nversion: 3\nagent:\n  authtoken: T\n"),
        ("version: 3\n", "version: 3\nagent:\n  authtoken: T\n"),
        ("version: 3\nendpoints: []", "version: 3\nendpoints: []\nagent:\n  authtoken: T\n"),
        (
            "version: 3\nagent:\nendpoints: []\n",
            "version: 3\nagent:\n  authtoken: T\nendpoints: []\n",
        ),
        ("version: 3\nagent:  # c\n", "version: 3\nagent:  # c\n  authtoken: T\n"),
        (
            "# c\nagent:\n    log: stdout\n",
            "# c\nversion: 3\nagent:\n    authtoken: T\n    log: stdout\n",
        ),
        ("version: 3\nagent:\n  authtoken: 'x' # c\n", "version: 3\nagent:\n  authtoken: T # c\n"),
    ],
)
def test_set_agent_key_layouts(before: str, after: str) -> None:
    assert set_agent_key(before, "authtoken", "T") == after


def test_set_agent_key_refuses_a_block_scalar() -> None:
    with pytest.raises(ConfigEditError, match="by hand"):
        set_agent_key("version: 3\nagent:\n  authtoken: |\n    x\n", "authtoken", "T")


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("abc_DEF-1.2", "abc_DEF-1.2"),
        ("edge.example.com:443", "edge.example.com:443"),
        ("12:30", '"12:30"'),  # YAML 1.1 would read 750
        ("true", '"true"'),
        ("123", '"123"'),
        ("a b#c", '"a b#c"'),
        ('quo"te', '"quo\\"te"'),
    ],
)
def test_yaml_scalar_quotes_what_yaml_would_misread(value: str, written: str) -> None:
    assert yaml_scalar(value) == written
    assert set_agent_key("", "authtoken", value).endswith(f"authtoken: {written}\n")


def test_the_result_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        assert _run("config", "add-authtoken", "t", "--config", str(tmp_path / "x.yml"))[0] == 0
    finally:
        os.umask(old)
    assert _mode(tmp_path / "x.yml") == 0o600
