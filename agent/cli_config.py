"""`burrow config add-authtoken TOKEN` and `burrow config add-connect-url HOST:PORT`.

They set `agent.authtoken` or `agent.connect_url` in the v3 file named by `--config` (exactly one),
else in the default file (`~/.config/burrow/burrow.yml`), as ngrok's commands of the same names
do (reference §2.1; `add-server-addr` is ngrok's alias for `add-connect-url`).

Theory of operation: the file is edited as text, not loaded and dumped again, so that the
comments, key order, quoting and blank lines a person wrote survive (PyYAML's dump would drop
every comment). `set_agent_key` (pure: text in, text out) finds the key with PyYAML's composer,
which knows where each node starts and ends, and then either replaces the one scalar that holds
the old value, or inserts one `key: value` line at the indentation of `agent:`'s other keys, or
appends an `agent:` section (and `version: 3` if the file has none). Whatever it produces is read
back and must hold exactly what the old text held plus the new value; if it does not (a layout
this module does not handle: flow style `agent: {...}`, a block scalar, an alias), nothing is
written and the error says to edit the file by hand.

Writing: a new file is created with mode 0600 (it holds a secret), its directory with 0700; an
existing file is replaced atomically (a 0600 temporary file in the same directory, then rename),
so a crash leaves the old file or the new one, never half of one, and the result is 0600 too.
Errors are `ConfigEditError` (an AgentError: one line, exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

import yaml

from agent.config import ConfigError, default_config_path, validate_connect_url
from agent.errors import AgentError
from protocol.formats.yamldoc import YAMLDocumentError, read_yaml

_ParserT = TypeVar("_ParserT", bound=argparse.ArgumentParser)

__all__ = [
    "CONFIG_EDIT_ACTIONS",
    "CONFIG_FILE_MODE",
    "ConfigEditError",
    "add_config_edit_parsers",
    "config_edit_command",
    "set_agent_key",
    "write_agent_key",
    "yaml_scalar",
]

#: The file holds the authtoken: readable by its owner only, as ngrok writes it.
CONFIG_FILE_MODE = 0o600
#: A directory this command creates for the file (`~/.config/burrow`): its owner's only.
CONFIG_DIR_MODE = 0o700
#: Indentation of the keys under a new `agent:` section (two spaces, as ngrok's files use).
_INDENT = "  "
#: A value written unquoted only if it looks like this (and YAML reads it back as that string).
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-:/]*")


class ConfigEditError(AgentError):
    """Why the config file was not changed; one line naming the file."""


@dataclass(frozen=True, slots=True)
class _Action:
    key: str  # the `agent:` key it sets
    label: str  # what the success line calls it
    metavar: str
    help: str


#: ngrok's actions, by command name.
CONFIG_EDIT_ACTIONS: Mapping[str, _Action] = {
    "add-authtoken": _Action(
        "authtoken", "Authtoken", "TOKEN", "save the authtoken (agent.authtoken) to the config file"
    ),
    "add-connect-url": _Action(
        "connect_url",
        "Connect URL",
        "HOST:PORT",
        "save the edge's address (agent.connect_url) to the config file",
    ),
}
_ALIASES = {"add-connect-url": ["add-server-addr"]}


def add_config_edit_parsers(
    actions: argparse._SubParsersAction[_ParserT],
    parents: Sequence[_ParserT],
) -> None:
    """Add `add-authtoken` and `add-connect-url` (alias `add-server-addr`) under `burrow config`."""
    for name, action in CONFIG_EDIT_ACTIONS.items():
        parser = actions.add_parser(
            name, parents=list(parents), aliases=_ALIASES.get(name, []), help=action.help
        )
        parser.add_argument("value", metavar=action.metavar)


def config_edit_command(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    """Run `burrow config add-*` from parsed arguments; raises ConfigEditError."""
    name = args.config_command
    for canonical, aliases in _ALIASES.items():
        if name in aliases:
            name = canonical
    action = CONFIG_EDIT_ACTIONS[name]
    value = _checked_value(action, args.value)
    path = _target(getattr(args, "config", []), env)
    write_agent_key(path, action.key, value)
    print(f"{action.label} saved to configuration file: {path}", file=out, flush=True)
    return 0


def _checked_value(action: _Action, value: str) -> str:
    if not value or any(ord(char) < 0x20 or char == "\x7f" for char in value):
        raise ConfigEditError(f"{action.label.lower()} must be non-empty text on one line")
    if action.key == "connect_url":
        try:
            validate_connect_url(value)
        except ConfigError as exc:
            raise ConfigEditError(f"connect URL: {exc}") from None
    return value


def _target(given: Sequence[str], env: Mapping[str, str]) -> Path:
    """The one file `--config` names, else the default file."""
    paths = [part for value in given for part in value.split(",") if part not in ("", ".")]
    if len(paths) > 1:
        raise ConfigEditError(
            f"--config names {len(paths)} files ({', '.join(paths)}); name the one to change"
        )
    return Path(paths[0]).expanduser() if paths else default_config_path(env)


def write_agent_key(path: Path, key: str, value: str) -> None:
    """Set `agent.<key>` to `value` in the file at `path` (created if missing), mode 0600.

    Raises ConfigEditError if the file cannot be read, parsed or safely edited, or written;
    the file is then unchanged."""
    target = path.resolve()  # through a symlink: change the file, keep the link
    try:
        old = target.read_text(encoding="utf-8") if target.exists() else None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigEditError(f"{path}: cannot read: {exc}") from None
    try:
        new = set_agent_key(old or "", key, value)
    except ConfigEditError as exc:
        raise ConfigEditError(f"{path}: {exc}") from None
    try:
        if old is None:
            target.parent.mkdir(parents=True, exist_ok=True, mode=CONFIG_DIR_MODE)
        _replace(target, new)
    except OSError as exc:
        raise ConfigEditError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _replace(target: Path, text: str) -> None:
    """Write `text` to a 0600 temporary file beside `target`, then rename it over `target`."""
    # mkstemp creates the file with mode 0600 whatever the umask.
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, CONFIG_FILE_MODE)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def yaml_scalar(value: str) -> str:
    """`value` as a YAML scalar: plain if YAML reads it back as the same string, else a
    double-quoted string (JSON's escapes are YAML's)."""
    if _PLAIN.fullmatch(value):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value)


def set_agent_key(text: str, key: str, value: str) -> str:
    """`text` (a v3 file; "" for none) with `agent.<key>` set to `value`, all else kept.

    Raises ConfigEditError if the text is not YAML, or holds a layout this edit cannot change
    safely (checked by reading the result back)."""
    before = _read(text)
    if before is not None and not isinstance(before, dict):
        raise ConfigEditError("the file does not hold a mapping; start it with `version: 3`")
    line = f"{key}: {yaml_scalar(value)}"
    new = _edit(text, before is None, key, line)
    expected: dict[str, object] = dict(before or {})
    agent = expected.get("agent")
    expected["agent"] = {**(agent if isinstance(agent, dict) else {}), key: value}
    expected.setdefault("version", 3)
    if _read(new) != expected:
        raise ConfigEditError(
            f"cannot change agent.{key} here without disturbing the rest of the file (is "
            f"agent: written in flow style, {{...}}?); set agent.{key} by hand"
        )
    return new


def _read(text: str) -> object:
    try:
        document = read_yaml(text)
    except YAMLDocumentError as exc:
        where = f" (line {exc.line})" if exc.line is not None else ""
        raise ConfigEditError(f"not valid YAML{where}: {exc.problem}; fix it first") from None
    return None if document is None else document.value


def _edit(text: str, empty: bool, key: str, line: str) -> str:
    """The text edit; `_read` of the result is checked by the caller."""
    body = text if not text or text.endswith("\n") else text + "\n"
    if empty:  # nothing but comments, or no file
        return f"{body}version: 3\nagent:\n{_INDENT}{line}\n"
    root = yaml.compose(text)
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        return body  # refused by the caller's check
    keys = {node.value: (node, value) for node, value in root.value}
    if "version" not in keys:
        body = _insert_line(body, root.value[0][0].start_mark.line, "version: 3")
        return _edit(body, False, key, line)
    if "agent" not in keys:
        return f"{body}agent:\n{_INDENT}{line}\n"
    agent_key, agent = keys["agent"]
    if isinstance(agent, yaml.ScalarNode) and agent.tag.endswith(":null"):
        # `agent:` (empty) or `agent: ~`: drop the null, then add the key on the next line.
        body = body[: agent.start_mark.index] + body[agent.end_mark.index :]
        return _insert_line(body, agent_key.start_mark.line + 1, _INDENT + line)
    if not isinstance(agent, yaml.MappingNode) or agent.flow_style or not agent.value:
        return body  # refused by the caller's check
    for node, old in agent.value:
        if node.value == key:
            single_line = old.start_mark.line == old.end_mark.line
            if not isinstance(old, yaml.ScalarNode) or not single_line or old.style in ("|", ">"):
                return body  # refused by the caller's check
            return (
                body[: old.start_mark.index] + line.split(": ", 1)[1] + body[old.end_mark.index :]
            )
    first = agent.value[0][0].start_mark
    return _insert_line(body, first.line, " " * first.column + line)


def _insert_line(text: str, index: int, line: str) -> str:
    """`text` with `line` inserted as line number `index` (0-based)."""
    lines = text.splitlines(keepends=True)
    lines.insert(index, line + "\n")
    return "".join(lines)
