"""A YAML document read into plain values, with the line of every key and list item.

Theory of operation: PyYAML's composer builds the node tree, which still knows where each node
started; a walker then turns nodes into plain values (dicts, lists, scalars) and records, for
every key path such as `("endpoints", 1, "upstream", "url")`, the 1-based line it came from.
Config loaders use those lines to point an error at `file:line`. The walker also refuses what
PyYAML would accept but no config file needs: duplicate keys (which YAML forbids and PyYAML
silently resolves to the last), non-string keys, recursive aliases and alias bombs.

Errors are `YAMLDocumentError`s carrying the line and the problem but no file name and no
wording for a particular file format: each config loader phrases them its own way.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

__all__ = [
    "MAX_YAML_NODES",
    "DuplicateKeyError",
    "KeyPath",
    "NonStringKeyError",
    "YAMLDocument",
    "YAMLDocumentError",
    "YAMLSyntaxError",
    "YAMLValueError",
    "format_key_path",
    "read_yaml",
]

# Config files are a few dozen lines; the cap stops a YAML alias bomb from expanding for ever.
MAX_YAML_NODES = 100_000

KeyPath = tuple[str | int, ...]  # mapping keys and list indexes, outermost first
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YAMLDocumentError(ValueError):
    """The text is not a document a config file may hold; `line` is 1-based, None if unknown.

    Raised as is for the limits (too many nodes, a recursive alias, nesting too deep).
    """

    def __init__(self, problem: str, *, line: int | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = line


class YAMLSyntaxError(YAMLDocumentError):
    """Not YAML. `context` is what the parser was doing, which started at `context_line`."""

    def __init__(
        self,
        problem: str,
        *,
        line: int | None = None,
        context: str | None = None,
        context_line: int | None = None,
    ) -> None:
        super().__init__(problem, line=line)
        self.context = context
        self.context_line = context_line


class YAMLValueError(YAMLDocumentError):
    """Well-formed YAML holding a scalar PyYAML cannot construct (a timestamp in month 13)."""


class DuplicateKeyError(YAMLDocumentError):
    """The key at `path` appears twice in one mapping: on `first_line`, then on `line`."""

    def __init__(self, path: KeyPath, *, line: int, first_line: int) -> None:
        super().__init__(f"{format_key_path(path)}: duplicate key", line=line)
        self.path = path
        self.first_line = first_line


class NonStringKeyError(YAMLDocumentError):
    """The mapping at `path` has a key that is not a string (`key`), on `line`."""

    def __init__(self, path: KeyPath, key: object, *, line: int) -> None:
        super().__init__(f"key {key!r} is not a string", line=line)
        self.path = path
        self.key = key


@dataclass(frozen=True)
class YAMLDocument:
    value: object  # plain dicts (string keys), lists and scalars; None for `~`
    lines: dict[KeyPath, int]  # the line of every key and list item, by key path


def read_yaml(text: str) -> YAMLDocument | None:
    """Read one YAML document from `text`; None if it holds none (empty, or only comments).

    Raises `YAMLDocumentError` (one of its subclasses, or itself for a limit) for anything a
    config file may not hold. Merge keys (`<<: *defaults`) are applied; explicit keys win.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        walker = _NodeWalker(loader)
        return YAMLDocument(value=walker.value(node, ()), lines=walker.lines)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YAMLSyntaxError(
            exc.problem or exc.context or "invalid YAML",
            line=None if mark is None else mark.line + 1,
            context=exc.context if exc.problem else None,
            context_line=exc.context_mark.line + 1 if exc.problem and exc.context_mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise YAMLSyntaxError(str(exc)) from None
    except RecursionError:
        raise YAMLDocumentError("YAML nested too deeply") from None
    except YAMLDocumentError:
        raise
    except ValueError as exc:  # PyYAML's constructors, e.g. a timestamp with month 13
        raise YAMLValueError(str(exc)) from None
    finally:
        loader.dispose()


def format_key_path(path: KeyPath) -> str:
    """`endpoints[1].upstream.url` for `("endpoints", 1, "upstream", "url")`; "" for `()`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


class _NodeWalker:
    """Turns composed YAML nodes into plain values, recording each key's line."""

    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.lines: dict[KeyPath, int] = {}
        self.count = 0
        self.active: set[int] = set()  # ids of nodes being walked: a recursive alias loops
        self.explicit: dict[int, set[int]] = {}  # mapping node id -> its explicit key nodes

    def value(self, node: yaml.Node, path: KeyPath) -> object:
        self.count += 1
        line = node.start_mark.line + 1
        if self.count > MAX_YAML_NODES:
            raise YAMLDocumentError("too many YAML nodes (alias bomb?)", line=line)
        if id(node) in self.active:
            raise YAMLDocumentError("recursive YAML alias", line=line)
        if isinstance(node, yaml.ScalarNode):
            return self.loader.construct_object(node, deep=True)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                items = []
                for index, item in enumerate(node.value):
                    self.lines[(*path, index)] = item.start_mark.line + 1
                    items.append(self.value(item, (*path, index)))
                return items
            assert isinstance(node, yaml.MappingNode)
            return self._mapping(node, path)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, object]:
        # `<<: *anchor` merge keys: flatten_mapping puts the merged pairs first, so the explicit
        # ones override them. Only explicit keys may not repeat. An aliased node is walked
        # again, already flattened, so remember its explicit keys from the start.
        explicit = self.explicit.setdefault(
            id(node), {id(k) for k, _ in node.value if k.tag != _MERGE_TAG}
        )
        self.loader.flatten_mapping(node)
        result: dict[str, object] = {}
        first_lines: dict[str, int] = {}  # explicit key -> the line it was first set on
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise NonStringKeyError(path, key, line=line)
            if id(key_node) in explicit:
                if key in first_lines:
                    raise DuplicateKeyError((*path, key), line=line, first_line=first_lines[key])
                first_lines[key] = line
            self.lines[(*path, key)] = line
            result[key] = self.value(value_node, (*path, key))
        return result
