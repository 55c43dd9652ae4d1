"""Where the agent's configuration comes from: files merged left to right, then the environment.

Theory of operation: each file is read with `protocol.formats.yamldoc`, so every key and list item
keeps the line it came from; the files then merge as ngrok merges them (later scalars win, a later
list replaces the earlier one, maps merge key by key) and the `BURROW_*` environment overrides go on
top. Each key path remembers its origin (`Where`: file and line, or the environment variable), so
`SourceMap.error` can say

    /etc/burrow/burrow.yml:7: endpoints[1].upstream.urll: unknown key; did you mean url?

Validating the merged values is `agent.config_load`'s job; this module only reads and locates them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from protocol.formats.yamldoc import (
    DuplicateKeyError,
    KeyPath,
    NonStringKeyError,
    YAMLDocumentError,
    YAMLSyntaxError,
    YAMLValueError,
    format_key_path,
    read_yaml,
)

__all__ = [
    "ENV_OVERRIDES",
    "ConfigError",
    "SourceMap",
    "Where",
    "apply_env_overrides",
    "merge_into",
    "read_config_file",
]

# Environment variables that override `agent:` keys, for secrets kept out of files and for
# one-off runs; they win over every file.
ENV_OVERRIDES = {
    "BURROW_AUTHTOKEN": "authtoken",
    "BURROW_CONNECT_URL": "connect_url",
    "BURROW_CONNECT_CAS": "connect_cas",
}


class ConfigError(Exception):
    """A configuration problem: `<file>:<line>: <key path>: <what is wrong>; <what to do>`."""

    def __init__(
        self,
        reason: str,
        *,
        source: str | None = None,
        line: int | None = None,
        key: str | None = None,
        code: str | None = None,
    ) -> None:
        where = f"{source}:{line}" if source and line else source
        super().__init__(": ".join(part for part in (where, key, reason) if part))
        self.reason = reason
        self.source = source
        self.line = line
        self.key = key
        self.code = code


@dataclass(frozen=True)
class Where:
    source: str  # a file path, or "environment variable NAME"
    line: int | None
    directory: Path | None  # what relative paths are relative to; None = working directory


class SourceMap:
    """Where each key path came from, to build errors that point at the right file and line."""

    def __init__(self, origins: dict[KeyPath, Where], sources: Sequence[Path]) -> None:
        self.origins = origins
        self.sources = sources

    def where(self, path: KeyPath) -> Where | None:
        """The origin of `path`, or of its nearest ancestor that has one."""
        for length in range(len(path), -1, -1):
            found = self.origins.get(path[:length])
            if found is not None:
                return found
        return None

    def error(self, path: KeyPath, reason: str, code: str | None = None) -> ConfigError:
        where = self.where(path)
        source = where.source if where else ", ".join(str(p) for p in self.sources) or None
        line = where.line if where else None
        return ConfigError(reason, source=source, line=line, key=format_key_path(path), code=code)

    def resolve_file(self, path: KeyPath, text: str) -> str:
        """An absolute path for `text`, relative to the file that set it; it must exist."""
        where = self.where(path)
        base = where.directory if where and where.directory else Path.cwd()
        resolved = base / Path(text).expanduser()
        if not resolved.is_file():
            raise self.error(
                path,
                f"{str(resolved)!r} is not a readable file; fix the path (relative paths are "
                "relative to the config file's directory)",
            )
        return str(resolved)


def read_config_file(path: Path) -> tuple[object, dict[KeyPath, Where]]:
    """The value one file holds ({} if it holds nothing) and where each key path in it is.

    Raises `ConfigError` naming the file (and line, where known) if it cannot be read or is not
    YAML a config file may hold.
    """
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot read: {reason}; check the path", source=source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text ({exc.reason}); save it as UTF-8", source=source
        ) from None
    directory = path.resolve().parent
    origins: dict[KeyPath, Where] = {(): Where(source, None, directory)}
    try:
        document = read_yaml(text)
    except DuplicateKeyError as exc:
        key = format_key_path(exc.path)
        reason = "duplicate key; remove one of them"
        raise ConfigError(reason, source=source, line=exc.line, key=key) from None
    except YAMLDocumentError as exc:
        raise ConfigError(_yaml_reason(exc, text), source=source, line=exc.line) from None
    if document is None:  # an empty file
        return {}, origins
    for key_path, line in document.lines.items():
        origins[key_path] = Where(source, line, directory)
    return document.value, origins


def _yaml_reason(exc: YAMLDocumentError, text: str) -> str:
    if isinstance(exc, NonStringKeyError):
        where = format_key_path(exc.path) or "top level"
        return f"{where}: key {exc.key!r} is not a string; quote it"
    if isinstance(exc, YAMLValueError):
        return f"invalid YAML value: {exc.problem}"
    if not isinstance(exc, YAMLSyntaxError):  # a limit: too many nodes, a recursive alias
        return exc.problem
    reason = f"invalid YAML: {exc.problem}"
    if exc.context:  # e.g. "while parsing a flow sequence" + the line it started on
        started = f" (line {exc.context_line})" if exc.context_line else ""
        reason = f"invalid YAML: {exc.context}{started}: {exc.problem}"
    lines = text.splitlines()
    if exc.line is not None and exc.line <= len(lines) and "\t" in lines[exc.line - 1]:
        reason += "; YAML does not allow tabs: indent with spaces"
    return reason


def merge_into(
    base: dict[str, object],
    top: Mapping[str, object],
    origins: dict[KeyPath, Where],
    path: KeyPath = (),
) -> None:
    """Merge `top` into `base` in place: maps by key, anything else (lists too) replaced.

    Drops from `origins` the lines of every value replaced; the caller then adds `top`'s.
    """
    for key, value in top.items():
        old = base.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            merge_into(old, value, origins, (*path, key))
            continue
        prefix = (*path, key)
        for stale in [p for p in origins if p[: len(prefix)] == prefix]:
            del origins[stale]  # the replaced value's lines no longer describe anything
        base[key] = value


def apply_env_overrides(
    merged: dict[str, object], origins: dict[KeyPath, Where], env: Mapping[str, str]
) -> None:
    """Set `agent.<key>` from each non-empty `BURROW_*` variable in `ENV_OVERRIDES`, in place.

    If `agent:` is not a mapping the override is skipped; validation reports `agent:` itself.
    """
    for variable, key in ENV_OVERRIDES.items():
        value = env.get(variable, "")
        if value:
            agent = merged.setdefault("agent", {})
            if agent is None:  # `agent:` with nothing under it
                agent = merged["agent"] = {}
            if isinstance(agent, dict):
                agent[key] = value
            origins[("agent", key)] = Where(f"environment variable {variable}", None, None)
