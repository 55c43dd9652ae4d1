"""agent/config_source.py: reading files, merging them, the BURROW_* overrides, and errors that
name the file and line a value came from.

The first tests load through `agent.config_load.load_config`, the way the agent reads its files; the
rest call this module's functions directly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import AgentConfig, Secret
from agent.config_load import load_config
from agent.config_source import (
    ENV_OVERRIDES,
    ConfigError,
    SourceMap,
    Where,
    apply_env_overrides,
    merge_into,
    read_config_file,
)
from protocol.formats.yamldoc import KeyPath


def load(*paths: Path, env: dict[str, str] | None = None) -> AgentConfig:
    return load_config(list(paths), env or {})


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_merge_scalars_lists_and_maps(tmp_path: Path) -> None:
    base = write(
        tmp_path,
        "base.yml",
        "version: 3\n"
        "agent:\n  authtoken: tok_base_0123456789\n  log: stdout\n  web_addr: 127.0.0.1:4040\n"
        "endpoints:\n  - {name: a, upstream: {url: 1}}\n  - {name: b, upstream: {url: 2}}\n",
    )
    site = write(
        tmp_path,
        "site.yml",
        "agent:\n  log: stderr\n  update_check: false\n"
        "endpoints:\n  - {name: c, upstream: {url: 3}}\n",
    )
    config = load(base, site)
    assert config.sources == (base, site)
    assert config.agent.authtoken == Secret("tok_base_0123456789")  # map merged by key
    assert config.agent.log == "stderr"  # later scalar wins
    assert config.agent.ngrok_options == {"update_check": False}
    assert config.agent.web_addr == ("127.0.0.1", 4040)
    assert [e.name for e in config.endpoints] == ["c"]  # later list replaces


def test_merged_error_names_the_file_that_set_the_key(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yml", "version: 3\nagent:\n  log_level: loud\n")
    site = write(tmp_path, "site.yml", "agent:\n  log: stdout\n")
    with pytest.raises(ConfigError) as caught:
        load(base, site)
    assert str(caught.value).startswith(f"{base}:3: agent.log_level: 'loud' is not one of")
    assert caught.value.source == str(base)
    assert caught.value.line == 3
    assert caught.value.key == "agent.log_level"


def test_replaced_list_does_not_keep_old_line_numbers(tmp_path: Path) -> None:
    base = write(
        tmp_path,
        "base.yml",
        "version: 3\nagent: {}\nendpoints:\n  - name: a\n    upstream: {url: 1}\n",
    )
    site = write(tmp_path, "site.yml", "endpoints:\n  - name: b\n")
    with pytest.raises(ConfigError) as caught:
        load(base, site)
    assert str(caught.value).startswith(f"{site}:2: endpoints[0].upstream: missing")


def test_environment_overrides_win(tmp_path: Path) -> None:
    ca = write(tmp_path, "edge-ca.pem", "-----BEGIN CERTIFICATE-----\n")
    path = write(
        tmp_path,
        "burrow.yml",
        "version: 3\nagent:\n  authtoken: tok_file_0123456789\n  connect_url: a.example.com:443\n",
    )
    env = {
        "BURROW_AUTHTOKEN": "tok_env_9876543210",
        "BURROW_CONNECT_URL": "edge.example.com",
        "BURROW_CONNECT_CAS": str(ca),
    }
    agent = load(path, env=env).agent
    assert agent.authtoken == Secret("tok_env_9876543210")
    assert agent.connect_url == "edge.example.com:443"
    assert agent.connect_cas == str(ca)


def test_empty_environment_values_are_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "burrow.yml", "version: 3\nagent:\n  authtoken: tok_file_0123456\n")
    agent = load(path, env={"BURROW_AUTHTOKEN": ""}).agent
    assert agent.authtoken == Secret("tok_file_0123456")


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "burrow.yml", "version: 3\nagent: {}\n")
    with pytest.raises(ConfigError) as caught:
        load(path, env={"BURROW_CONNECT_URL": "tls://edge.example.com"})
    assert str(caught.value).startswith(
        "environment variable BURROW_CONNECT_URL: agent.connect_url: 'tls://edge.example.com' "
        "has a scheme"
    )


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    with pytest.raises(ConfigError) as caught:
        load(missing)
    assert str(caught.value) == f"{missing}: cannot read: No such file or directory; check the path"


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yml"
    path.write_bytes(b"version: 3\nagent:\n  metadata: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load(path)


def test_recursive_alias_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "loop.yml", "version: 3\nagent:\n  dns_resolver_ips: &a [*a]\n")
    with pytest.raises(ConfigError, match="recursive YAML alias"):
        load(path)


def test_alias_bomb_is_rejected(tmp_path: Path) -> None:
    lines = ["version: 3", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    path = write(tmp_path, "bomb.yml", "\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="too many YAML nodes"):
        load(path)


def test_invalid_timestamp_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "date.yml", "version: 3\nagent:\n  metadata: 2024-13-45\n")
    with pytest.raises(ConfigError, match="invalid YAML value"):
        load(path)


# --- ConfigError ------------------------------------------------------------------------------


def test_config_error_formats_file_line_key_and_reason() -> None:
    error = ConfigError(
        "unknown key; did you mean url?",
        source="/etc/burrow/burrow.yml",
        line=7,
        key="endpoints[1].upstream.urll",
        code="ERR_NGROK_1234",
    )
    assert str(error) == (
        "/etc/burrow/burrow.yml:7: endpoints[1].upstream.urll: unknown key; did you mean url?"
    )
    assert (error.reason, error.source, error.line, error.key, error.code) == (
        "unknown key; did you mean url?",
        "/etc/burrow/burrow.yml",
        7,
        "endpoints[1].upstream.urll",
        "ERR_NGROK_1234",
    )


def test_config_error_leaves_out_what_it_does_not_know() -> None:
    assert str(ConfigError("cannot read", source="a.yml")) == "a.yml: cannot read"
    assert str(ConfigError("bad", source="a.yml", key="agent")) == "a.yml: agent: bad"
    assert str(ConfigError("bad", line=3, key="agent")) == "agent: bad"  # a line needs a file
    assert str(ConfigError("bad")) == "bad"


# --- SourceMap --------------------------------------------------------------------------------


def source_map(directory: Path | None = None) -> SourceMap:
    origins: dict[KeyPath, Where] = {
        (): Where("a.yml", None, directory),
        ("endpoints",): Where("a.yml", 3, directory),
        ("endpoints", 0): Where("a.yml", 4, directory),
        ("agent", "authtoken"): Where("environment variable BURROW_AUTHTOKEN", None, None),
    }
    return SourceMap(origins, [Path("a.yml"), Path("b.yml")])


def test_where_falls_back_to_the_nearest_ancestor() -> None:
    sources = source_map()
    assert sources.where(("endpoints", 0)) == Where("a.yml", 4, None)
    assert sources.where(("endpoints", 0, "upstream", "url")) == Where("a.yml", 4, None)
    assert sources.where(("endpoints", 5)) == Where("a.yml", 3, None)
    assert sources.where(("version",)) == Where("a.yml", None, None)
    assert SourceMap({}, []).where(("agent",)) is None


def test_error_points_at_the_origin() -> None:
    sources = source_map()
    error = sources.error(("endpoints", 0, "name"), "missing", code="ERR_NGROK_1")
    assert str(error) == "a.yml:4: endpoints[0].name: missing"
    assert error.code == "ERR_NGROK_1"
    from_env = sources.error(("agent", "authtoken"), "too short")
    assert str(from_env) == "environment variable BURROW_AUTHTOKEN: agent.authtoken: too short"


def test_error_without_any_origin_names_every_source() -> None:
    assert str(SourceMap({}, [Path("a.yml"), Path("b.yml")]).error(("x",), "bad")) == (
        "a.yml, b.yml: x: bad"
    )
    assert str(SourceMap({}, []).error(("x",), "bad")) == "x: bad"


def test_resolve_file_is_relative_to_the_file_that_set_it(tmp_path: Path) -> None:
    write(tmp_path, "ca.pem", "pem")
    sources = source_map(tmp_path)
    assert sources.resolve_file(("endpoints", 0, "cas"), "ca.pem") == str(tmp_path / "ca.pem")
    absolute = str(tmp_path / "ca.pem")
    assert SourceMap({}, []).resolve_file(("x",), absolute) == absolute


def test_resolve_file_without_a_directory_uses_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "ca.pem", "pem")
    sources = source_map()  # directory None: e.g. an environment variable
    assert sources.resolve_file(("agent", "authtoken"), "ca.pem") == str(tmp_path / "ca.pem")


def test_resolve_file_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        source_map(tmp_path).resolve_file(("endpoints", 0, "cas"), "nope.pem")
    assert str(caught.value).startswith("a.yml:4: endpoints[0].cas: ")
    assert f"{str(tmp_path / 'nope.pem')!r} is not a readable file" in caught.value.reason
    with pytest.raises(ConfigError, match="is not a readable file"):  # a directory is no file
        source_map(tmp_path).resolve_file(("endpoints", 0, "cas"), ".")


# --- read_config_file -------------------------------------------------------------------------


def test_read_config_file_returns_the_value_and_each_keys_line(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yml", "version: 3\nagent:\n  log: stdout\nendpoints:\n  - name: x\n")
    value, origins = read_config_file(path)
    assert value == {"version": 3, "agent": {"log": "stdout"}, "endpoints": [{"name": "x"}]}
    directory = path.resolve().parent
    assert origins[()] == Where(str(path), None, directory)
    assert origins[("agent", "log")] == Where(str(path), 3, directory)
    assert origins[("endpoints", 0, "name")] == Where(str(path), 5, directory)


def test_an_empty_file_holds_an_empty_mapping(tmp_path: Path) -> None:
    value, origins = read_config_file(write(tmp_path, "empty.yml", "# nothing yet\n"))
    assert value == {}
    assert list(origins) == [()]


def test_a_duplicate_key_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "dup.yml", "version: 3\nagent:\n  log: stdout\n  log: stderr\n")
    with pytest.raises(ConfigError) as caught:
        read_config_file(path)
    assert str(caught.value) == f"{path}:4: agent.log: duplicate key; remove one of them"


def test_a_tab_in_the_failing_line_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "tab.yml", "version: 3\nagent:\n\tlog: stdout\n")
    with pytest.raises(ConfigError) as caught:
        read_config_file(path)
    assert str(caught.value).startswith(f"{path}:3: invalid YAML")
    assert caught.value.reason.endswith("; YAML does not allow tabs: indent with spaces")


def test_a_syntax_error_says_where_the_construct_began(tmp_path: Path) -> None:
    path = write(tmp_path, "flow.yml", "version: 3\nagent: {log: stdout\nendpoints: []\n")
    with pytest.raises(ConfigError) as caught:
        read_config_file(path)
    assert caught.value.source == str(path)
    assert caught.value.reason.startswith("invalid YAML: while parsing a flow mapping (line 2): ")


def test_a_non_string_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "key.yml", "version: 3\nagent:\n  1: x\n")
    with pytest.raises(ConfigError, match=r"agent: key 1 is not a string; quote it"):
        read_config_file(path)


# --- merge_into -------------------------------------------------------------------------------


def test_merge_into_merges_maps_and_replaces_everything_else() -> None:
    base: dict[str, object] = {"a": {"x": 1, "y": [1, 2]}, "b": [1], "c": "keep"}
    origins: dict[KeyPath, Where] = {
        ("a", "x"): Where("base", 2, None),
        ("a", "y"): Where("base", 3, None),
        ("a", "y", 0): Where("base", 4, None),
        ("b",): Where("base", 5, None),
        ("b", 0): Where("base", 6, None),
        ("c",): Where("base", 7, None),
    }
    merge_into(base, {"a": {"y": [9], "z": 3}, "b": {"now": "a map"}}, origins)
    assert base == {"a": {"x": 1, "y": [9], "z": 3}, "b": {"now": "a map"}, "c": "keep"}
    # The replaced values' lines are gone (the caller adds the new file's); the rest stay.
    assert set(origins) == {("a", "x"), ("c",)}


def test_merge_into_a_map_over_a_scalar_replaces_it() -> None:
    base: dict[str, object] = {"agent": None}
    origins: dict[KeyPath, Where] = {("agent",): Where("base", 2, None)}
    merge_into(base, {"agent": {"log": "stdout"}}, origins)
    assert base == {"agent": {"log": "stdout"}}
    assert origins == {}


# --- apply_env_overrides ----------------------------------------------------------------------


def test_every_override_sets_its_agent_key() -> None:
    merged: dict[str, object] = {"version": 3}
    origins: dict[KeyPath, Where] = {}
    env = {name: f"value of {name}" for name in ENV_OVERRIDES}
    apply_env_overrides(merged, origins, env | {"BURROW_OTHER": "ignored"})
    assert merged["agent"] == {key: f"value of {name}" for name, key in ENV_OVERRIDES.items()}
    for name, key in ENV_OVERRIDES.items():
        assert origins[("agent", key)] == Where(f"environment variable {name}", None, None)
    assert set(ENV_OVERRIDES) == {"BURROW_AUTHTOKEN", "BURROW_CONNECT_URL", "BURROW_CONNECT_CAS"}


def test_an_override_fills_an_empty_agent_section() -> None:
    merged: dict[str, object] = {"agent": None}
    apply_env_overrides(merged, {}, {"BURROW_AUTHTOKEN": "tok"})
    assert merged == {"agent": {"authtoken": "tok"}}


def test_an_override_leaves_a_bad_agent_section_for_validation_to_report() -> None:
    merged: dict[str, object] = {"agent": ["not", "a", "mapping"]}
    origins: dict[KeyPath, Where] = {}
    apply_env_overrides(merged, origins, {"BURROW_AUTHTOKEN": "tok"})
    assert merged == {"agent": ["not", "a", "mapping"]}


def test_no_overrides_change_nothing() -> None:
    merged: dict[str, object] = {"agent": {"authtoken": "file"}}
    origins: dict[KeyPath, Where] = {}
    apply_env_overrides(merged, origins, {"BURROW_AUTHTOKEN": "", "HOME": "/root"})
    assert merged == {"agent": {"authtoken": "file"}}
    assert origins == {}
