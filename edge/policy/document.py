"""A Traffic Policy document, read into frozen dataclasses (ngrok.md §4.1).

    on_tcp_connect:   [rule, ...]
    on_http_request:  [rule, ...]
    on_http_response: [rule, ...]
    # rule: {name: str, expressions: [CEL, ...], actions: [{type: str, config: {...}}, ...]}

`load_policy` takes YAML or JSON text (a Bind's `TrafficPolicy` string, a `--traffic-policy-file`)
or an already-parsed mapping (the v3 config's inline `traffic_policy`) and checks the *shape*:
types, unknown keys, and the size limits of `PolicyLimits`. It stops at the first problem and
raises `PolicyError` (ngrok reports one error per refusal, so do we). What the document *means*
(known action types, phases, configs, expressions) is `edge.policy.validate`'s job.

Action configs are kept as read, deep-frozen (mappings become read-only `MappingProxyType`s,
lists become tuples), so a `Policy` can be shared by every connection of an endpoint.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, NoReturn

from edge.policy.errors import (
    ERR_NGROK_2200,
    ERR_NGROK_2236,
    ERR_NGROK_2264,
    ERR_NGROK_2265,
    Place,
    PolicyError,
    kind_of,
)
from protocol.formats.yamldoc import KeyPath, YAMLDocumentError, read_yaml

__all__ = [
    "PHASES",
    "Action",
    "Policy",
    "PolicyLimits",
    "Rule",
    "freeze",
    "load_policy",
]

#: The phases a document may have, in the order traffic meets them.
PHASES: Final = ("on_tcp_connect", "on_http_request", "on_http_response")
# ngrok's SSE phase (AI gateway, `sse-find-replace` only): known, but not served by Burrow.
_UNSUPPORTED_PHASES: Final = frozenset({"on_event_stream_message"})
_RULE_KEYS: Final = ("name", "expressions", "actions")
_ACTION_KEYS: Final = ("type", "config")


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyLimits:
    """Size limits for one policy; each refusal names the limit and the place.

    ngrok's own caps are per plan (ERR_NGROK_2264/2265: the free plan allows 5 rules, paid caps
    are undocumented), so these are Burrow's, chosen to bound the work a hostile Bind can cause.
    """

    # A policy arrives inside a Bind RPC or a config file; ngrok's doc examples are under 4 KiB.
    # 256 KiB admits a generated policy of hundreds of rules and bounds what parsing one costs.
    max_document_bytes: int = 256 * 1024
    # ERR_NGROK_2264. Every request runs each rule's expressions in order, so this bounds the
    # per-request cost (a compiled expression costs tens of microseconds; 100 rules ~ 1-3 ms).
    max_rules_per_phase: int = 100
    # ERR_NGROK_2265. ngrok's examples use 1-3 actions per rule; 20 leaves room for long
    # header lists and log chains while keeping one rule's work small.
    max_actions_per_rule: int = 20
    # ERR_NGROK_2265 ("expressions" per rule): expressions are AND-ed, so a long list is better
    # written as one expression; 20 is far above any documented example.
    max_expressions_per_rule: int = 20
    # ERR_NGROK_2200. The longest expression in ngrok's docs is under 300 characters; 4096
    # bounds the parser's work (the CEL grammar is LALR, linear in the text) and memory.
    max_expression_length: int = 4096

    def __post_init__(self) -> None:
        for name in (
            "max_document_bytes",
            "max_rules_per_phase",
            "max_actions_per_rule",
            "max_expressions_per_rule",
            "max_expression_length",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PolicyLimits.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True, slots=True)
class Action:
    """One action of a rule: its `type` and its `config` as written (deep-frozen)."""

    type: str
    config: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: `expressions` are AND-ed (none means always), `actions` run in order."""

    name: str
    expressions: tuple[str, ...]
    actions: tuple[Action, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """A whole document: the rules of each phase, in order. An empty policy does nothing."""

    on_tcp_connect: tuple[Rule, ...] = ()
    on_http_request: tuple[Rule, ...] = ()
    on_http_response: tuple[Rule, ...] = ()

    def phases(self) -> tuple[tuple[str, tuple[Rule, ...]], ...]:
        """`(phase name, rules)` for every phase, in `PHASES` order (empty phases included)."""
        return (
            ("on_tcp_connect", self.on_tcp_connect),
            ("on_http_request", self.on_http_request),
            ("on_http_response", self.on_http_response),
        )


def freeze(value: object) -> object:
    """`value` with every mapping made a read-only `MappingProxyType` and every list a tuple."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    return value


def load_policy(
    source: str | bytes | Mapping[str, object], *, limits: PolicyLimits | None = None
) -> Policy:
    """Read a policy from YAML/JSON text or a parsed mapping; raise `PolicyError` if malformed.

    Text that is empty or only comments is the empty policy. Errors carry ngrok's codes:
    2236 for syntax, shape, types, unknown keys and an oversized document; 2264 too many rules
    in a phase; 2265 too many actions or expressions in a rule; 2200 an overlong expression.
    The first problem found is raised.
    """
    limits = limits if limits is not None else PolicyLimits()
    lines: Mapping[KeyPath, int] = {}
    document: object
    if isinstance(source, Mapping):
        document = source
    else:
        document, lines = _parse_text(source, limits)
    return _Reader(limits, lines).policy(document)


def _parse_text(source: str | bytes, limits: PolicyLimits) -> tuple[object, Mapping[KeyPath, int]]:
    raw = source.encode() if isinstance(source, str) else source
    if len(raw) > limits.max_document_bytes:
        raise PolicyError(
            ERR_NGROK_2236,
            f"The traffic policy was not able to be parsed: the document is {len(raw)} bytes, "
            f"over the limit of {limits.max_document_bytes} bytes",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(
            ERR_NGROK_2236,
            f"The traffic policy was not able to be parsed: not UTF-8 text ({exc.reason} "
            f"at byte {exc.start})",
        ) from None
    if text.lstrip().startswith("{"):
        # JSON first: ngrok's SDKs send JSON, and JSON's own errors read better than YAML's.
        try:
            return json.loads(text, object_pairs_hook=_json_object), {}
        except _DuplicateJSONKeyError as exc:
            raise PolicyError(
                ERR_NGROK_2236,
                f"The traffic policy was not able to be parsed: duplicate key {exc.key!r}",
            ) from None
        except json.JSONDecodeError as exc:
            raise PolicyError(
                ERR_NGROK_2236,
                f"The traffic policy was not able to be parsed: invalid JSON: {exc.msg} "
                f"(line {exc.lineno}, column {exc.colno})",
            ) from None
        except RecursionError:
            raise PolicyError(
                ERR_NGROK_2236,
                "The traffic policy was not able to be parsed: JSON nested too deeply",
            ) from None
    try:
        parsed = read_yaml(text)
    except YAMLDocumentError as exc:
        where = f" (line {exc.line})" if exc.line is not None else ""
        raise PolicyError(
            ERR_NGROK_2236, f"The traffic policy was not able to be parsed: {exc}{where}"
        ) from None
    if parsed is None:
        return {}, {}
    return parsed.value, parsed.lines


class _DuplicateJSONKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _json_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateJSONKeyError(key)
        result[key] = value
    return result


def _unknown_key(key: object, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}; expected one of {', '.join(known)}"


class _Reader:
    """Walks a parsed document, building dataclasses and raising at the first problem."""

    def __init__(self, limits: PolicyLimits, lines: Mapping[KeyPath, int]) -> None:
        self.limits = limits
        self.lines = lines

    def fail(
        self, place: Place, path: KeyPath, problem: str, code: str = ERR_NGROK_2236
    ) -> NoReturn:
        line = self.lines.get(path)
        if line is not None:
            place = Place(
                phase=place.phase,
                rule_index=place.rule_index,
                rule_name=place.rule_name,
                action_index=place.action_index,
                action_type=place.action_type,
                field=place.field,
                line=line,
            )
        raise PolicyError(code, problem, place)

    def policy(self, document: object) -> Policy:
        if document is None:
            return Policy()
        if not isinstance(document, Mapping):
            self.fail(Place(), (), f"a policy must be a mapping of phases, not {kind_of(document)}")
        phases: dict[str, tuple[Rule, ...]] = {}
        for key, rules in document.items():
            if key in _UNSUPPORTED_PHASES:
                self.fail(
                    Place(phase=str(key)),
                    (key,),
                    f"phase {key} is not supported by this Burrow edge yet",
                )
            if key not in PHASES:
                self.fail(Place(), (key,), _unknown_key(key, PHASES))
            phases[key] = self.rules(key, rules)
        return Policy(**phases)

    def rules(self, phase: str, rules: object) -> tuple[Rule, ...]:
        if rules is None:
            return ()
        if not isinstance(rules, list | tuple):
            self.fail(
                Place(phase=phase), (phase,), f"must be a list of rules, not {kind_of(rules)}"
            )
        if len(rules) > self.limits.max_rules_per_phase:
            self.fail(
                Place(phase=phase),
                (phase,),
                "Policy configuration has exceeded its rule per policy limit of "
                f"{self.limits.max_rules_per_phase} ({len(rules)} rules)",
                ERR_NGROK_2264,
            )
        return tuple(self.rule(phase, index, rule) for index, rule in enumerate(rules))

    def rule(self, phase: str, index: int, rule: object) -> Rule:
        path: KeyPath = (phase, index)
        place = Place(phase=phase, rule_index=index)
        if not isinstance(rule, Mapping):
            self.fail(place, path, f"a rule must be a mapping, not {kind_of(rule)}")
        name = rule.get("name")
        if name is None:
            name = ""
        if not isinstance(name, str):
            self.fail(
                place.at_field("name"), (*path, "name"), f"must be a string, not {kind_of(name)}"
            )
        place = Place(phase=phase, rule_index=index, rule_name=name)
        for key in rule:
            if key not in _RULE_KEYS:
                self.fail(place, (*path, key), _unknown_key(key, _RULE_KEYS))
        return Rule(
            name,
            self.expressions(place, path, rule.get("expressions")),
            self.actions(place, path, rule.get("actions")),
        )

    def expressions(self, place: Place, path: KeyPath, value: object) -> tuple[str, ...]:
        path = (*path, "expressions")
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            self.fail(
                place.at_field("expressions"),
                path,
                f"must be a list of strings, not {kind_of(value)}",
            )
        limit = self.limits.max_expressions_per_rule
        if len(value) > limit:
            self.fail(
                place.at_field("expressions"),
                path,
                f"Policy configuration has exceeded its expressions per rule limit of {limit} "
                f"during {place.phase} at index {place.rule_index} ({len(value)} expressions)",
                ERR_NGROK_2265,
            )
        result: list[str] = []
        for index, expression in enumerate(value):
            field = place.at_field(f"expressions[{index}]")
            if not isinstance(expression, str):
                self.fail(field, (*path, index), f"must be a string, not {kind_of(expression)}")
            if len(expression) > self.limits.max_expression_length:
                self.fail(
                    field,
                    (*path, index),
                    f"Invalid policy expression: {len(expression)} characters, over the limit of "
                    f"{self.limits.max_expression_length}",
                    ERR_NGROK_2200,
                )
            result.append(expression)
        return tuple(result)

    def actions(self, place: Place, path: KeyPath, value: object) -> tuple[Action, ...]:
        path = (*path, "actions")
        if value is None:
            return ()  # a rule with no actions is refused by validation (ERR_NGROK_2206)
        if not isinstance(value, list | tuple):
            self.fail(
                place.at_field("actions"),
                path,
                f"must be a list of actions, not {kind_of(value)}",
            )
        limit = self.limits.max_actions_per_rule
        if len(value) > limit:
            self.fail(
                place.at_field("actions"),
                path,
                f"Policy configuration has exceeded its actions per rule limit of {limit} "
                f"during {place.phase} at index {place.rule_index} ({len(value)} actions)",
                ERR_NGROK_2265,
            )
        return tuple(self.action(place, path, index, action) for index, action in enumerate(value))

    def action(self, rule: Place, path: KeyPath, index: int, action: object) -> Action:
        path = (*path, index)
        place = Place(
            phase=rule.phase,
            rule_index=rule.rule_index,
            rule_name=rule.rule_name,
            action_index=index,
        )
        if not isinstance(action, Mapping):
            self.fail(place, path, f"an action must be a mapping, not {kind_of(action)}")
        kind = action.get("type")
        if not isinstance(kind, str) or not kind:
            self.fail(place.at_field("type"), (*path, "type"), "every action needs a `type` string")
        place = Place(
            phase=rule.phase,
            rule_index=rule.rule_index,
            rule_name=rule.rule_name,
            action_index=index,
            action_type=kind,
        )
        for key in action:
            if key not in _ACTION_KEYS:
                self.fail(place, (*path, key), _unknown_key(key, _ACTION_KEYS))
        config = action.get("config")
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            self.fail(
                place.at_field("config"),
                (*path, "config"),
                f"must be a mapping, not {kind_of(config)}",
            )
        for key in config:
            if not isinstance(key, str):
                self.fail(
                    place.at_field("config"),
                    (*path, "config"),
                    f"config keys must be strings, not {key!r}",
                )
        frozen = freeze(config)
        assert isinstance(frozen, Mapping)
        return Action(kind, frozen)
