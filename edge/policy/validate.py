"""What a loaded policy means, checked once: the result is a compiled policy ready to run.

`validate(policy, protocol=...)` checks, for the endpoint's protocol (`http`, `https`, `tcp`,
`tls`), in document order:

* ERR_NGROK_2229 an unknown protocol; ERR_NGROK_2230 an HTTP phase on a tcp/tls endpoint;
* per rule: ERR_NGROK_2206 no action; ERR_NGROK_2200 an expression that does not compile;
  ERR_NGROK_2207 a rule that can never run because an earlier rule of the phase has no
  expressions and a terminating action, or an action after a terminating one in its rule;
* per action: ERR_NGROK_2201 an unknown type, or a known one this edge does not implement yet
  (refused by name, never ignored); ERR_NGROK_2202 a type not allowed in the phase;
  ERR_NGROK_2205 a type not served for the endpoint's protocol (terminate-tls off tls); the config
  schema's own codes (2203, 2204, 2215, 2217, 2218, 2224, 2252, 2257, 2258, 2261, ...);
  ERR_NGROK_2239 a second authentication action anywhere in the policy.

ngrok refuses a policy with the first error it finds, and so does `validate` (it raises that
`PolicyError`). `check` runs the same checks and returns every error, for `burrow-edge policy
check`, which should show them all at once. Both are pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from edge.policy.actions import (
    CATALOGUE,
    ActionConfig,
    ActionSpec,
    AddHeadersConfig,
    RemoveHeadersConfig,
    terminates,
)
from edge.policy.actions_jwt import JwtValidationConfig
from edge.policy.cel import Compiled, compile_expression
from edge.policy.document import Action, Policy, Rule
from edge.policy.errors import (
    ERR_NGROK_2201,
    ERR_NGROK_2202,
    ERR_NGROK_2205,
    ERR_NGROK_2206,
    ERR_NGROK_2207,
    ERR_NGROK_2229,
    ERR_NGROK_2230,
    ERR_NGROK_2239,
    Place,
    PolicyError,
)
from edge.policy.fields import ConfigReader

if TYPE_CHECKING:
    from edge.policy.light import LightPhase
    from edge.policy.plan import PlannedRule

__all__ = [
    "PROTOCOLS",
    "CompiledAction",
    "CompiledPolicy",
    "CompiledRule",
    "check",
    "validate",
]

#: Endpoint protocols and the phases each has (ngrok.md §4.1).
PROTOCOLS: Final = {
    "http": ("on_tcp_connect", "on_http_request", "on_http_response"),
    "https": ("on_tcp_connect", "on_http_request", "on_http_response"),
    "tcp": ("on_tcp_connect",),
    "tls": ("on_tcp_connect",),
}


@dataclass(frozen=True, slots=True)
class CompiledAction:
    type: str
    spec: ActionSpec
    config: ActionConfig
    place: Place


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    expressions: tuple[Compiled, ...]  # AND-ed; empty means the rule always applies
    actions: tuple[CompiledAction, ...]
    place: Place


@dataclass(frozen=True, slots=True, kw_only=True)
class CompiledPolicy:
    """A validated policy for one protocol: every expression and template compiled once."""

    protocol: str
    source: Policy
    on_tcp_connect: tuple[CompiledRule, ...] = ()
    on_http_request: tuple[CompiledRule, ...] = ()
    on_http_response: tuple[CompiledRule, ...] = ()
    #: An `on_http_request` action needs the whole request body (`ActionSpec.request_body`, or
    #: a jwt-validation token in the body): the shells buffer it first. False keeps the body
    #: streaming, at no cost.
    reads_request_body: bool = False
    #: `on_http_response` may read the request phase's result variables (`actions.ngrok.*`),
    #: so the shell carries them to it. False when it cannot: it is empty, or it only adds and
    #: removes headers and no expression or header value of it names `actions`
    #: (`_response_reads_results`); the shell then carries none (they could not be seen).
    response_reads_results: bool = True
    #: The phases as the edge's untraced runs execute them (`edge.policy.plan`), by phase
    #: name: planned on first use by `edge.policy.engine`, then kept with the policy.
    plans: dict[str, tuple[PlannedRule, ...]] = field(
        init=False, default_factory=dict, compare=False, repr=False
    )
    #: The phases planned light (`edge.policy.light`: header edits only), by phase name, None
    #: for a phase that cannot run light: planned on first use by the shell, then kept.
    light: dict[str, LightPhase | None] = field(
        init=False, default_factory=dict, compare=False, repr=False
    )


def validate(policy: Policy, *, protocol: str) -> CompiledPolicy:
    """The compiled policy, or raise the first `PolicyError` (as ngrok reports one)."""
    checker = _Checker(protocol, stop_at_first=True)
    compiled = checker.run(policy)
    assert compiled is not None  # stop_at_first raised otherwise
    return compiled


def check(policy: Policy, *, protocol: str) -> tuple[PolicyError, ...]:
    """Every problem of `policy` for `protocol`, in document order (empty if it is valid)."""
    checker = _Checker(protocol, stop_at_first=False)
    checker.run(policy)
    return tuple(checker.errors)


def _response_reads_results(rules: tuple[CompiledRule, ...]) -> bool:
    """Whether a response phase of `rules` may read `actions.ngrok.*`: True unless every
    action of it is add-headers or remove-headers (whose runs read no other variables) and
    neither its expressions nor its header values name `actions`. (Any other action may read
    them through templates of its own: it is assumed to.)"""
    named: set[str] = set()
    for rule in rules:
        for expression in rule.expressions:
            named |= expression.variables
        for action in rule.actions:
            config = action.config
            if isinstance(config, RemoveHeadersConfig):
                continue
            if not isinstance(config, AddHeadersConfig):
                return True
            for _, template in config.headers:
                for part in template.parts:
                    if not isinstance(part, str):
                        named |= part.variables
    return "actions" in named


class _Checker:
    def __init__(self, protocol: str, *, stop_at_first: bool) -> None:
        self.protocol = protocol
        self.stop_at_first = stop_at_first
        self.errors: list[PolicyError] = []
        self.auth: Place | None = None  # where the first authentication action is

    def report(self, error: PolicyError) -> None:
        if self.stop_at_first:
            raise error
        self.errors.append(error)

    def run(self, policy: Policy) -> CompiledPolicy | None:
        allowed = PROTOCOLS.get(self.protocol)
        if allowed is None:
            self.report(
                PolicyError(
                    ERR_NGROK_2229,
                    f"Failed to validate Traffic Policy for unknown protocol {self.protocol!r} "
                    f"(expected one of {', '.join(PROTOCOLS)})",
                )
            )
            return None
        phases: dict[str, tuple[CompiledRule, ...]] = {}
        for phase, rules in policy.phases():
            if rules and phase not in allowed:
                self.report(
                    PolicyError(
                        ERR_NGROK_2230,
                        f"Invalid Traffic Policy phase {phase} for protocol {self.protocol}",
                        Place(phase=phase),
                    )
                )
                continue
            phases[phase] = self.phase(phase, rules)
        if self.errors:
            return None
        reads_body = any(
            action.spec.request_body
            or (isinstance(action.config, JwtValidationConfig) and action.config.reads_body)
            for rule in phases.get("on_http_request", ())
            for action in rule.actions
        )
        return CompiledPolicy(
            protocol=self.protocol,
            source=policy,
            reads_request_body=reads_body,
            response_reads_results=_response_reads_results(phases.get("on_http_response", ())),
            **phases,
        )

    def phase(self, phase: str, rules: tuple[Rule, ...]) -> tuple[CompiledRule, ...]:
        compiled: list[CompiledRule] = []
        ended_by: Place | None = None  # the rule whose actions always end this phase
        for index, rule in enumerate(rules):
            place = Place(phase=phase, rule_index=index, rule_name=rule.name)
            if ended_by is not None:
                first = rule.actions[0].type if rule.actions else None
                self.report(
                    PolicyError(
                        ERR_NGROK_2207,
                        f"Policy action type {first or '(none)'} is unreachable due to a prior "
                        f"terminating action (in {ended_by}, which has no expressions)",
                        Place(
                            phase=phase,
                            rule_index=index,
                            rule_name=rule.name,
                            action_index=0 if first else None,
                            action_type=first,
                        ),
                    )
                )
            result = self.rule(place, rule)
            if result is not None:
                compiled.append(result)
            if not rule.expressions and any(
                terminates(action.type, action.config) for action in rule.actions
            ):
                ended_by = ended_by or place
        return tuple(compiled)

    def rule(self, place: Place, rule: Rule) -> CompiledRule | None:
        ok = True
        if not rule.actions:
            self.report(
                PolicyError(ERR_NGROK_2206, "A policy must define at least one action.", place)
            )
            ok = False
        expressions: list[Compiled] = []
        for index, text in enumerate(rule.expressions):
            try:
                expressions.append(
                    compile_expression(text, place=place.at_field(f"expressions[{index}]"))
                )
            except PolicyError as error:
                self.report(error)
                ok = False
        actions: list[CompiledAction] = []
        terminated_by: str | None = None
        for index, action in enumerate(rule.actions):
            action_place = Place(
                phase=place.phase,
                rule_index=place.rule_index,
                rule_name=place.rule_name,
                action_index=index,
                action_type=action.type,
            )
            if terminated_by is not None:
                self.report(
                    PolicyError(
                        ERR_NGROK_2207,
                        f"Policy action type {action.type} is unreachable due to a prior "
                        f"terminating action ({terminated_by} earlier in this rule)",
                        action_place,
                    )
                )
                ok = False
            compiled = self.action(action_place, action)
            if compiled is None:
                ok = False
            else:
                actions.append(compiled)
            if terminates(action.type, action.config):
                terminated_by = terminated_by or action.type
        if not ok:
            return None
        return CompiledRule(rule.name, tuple(expressions), tuple(actions), place)

    def action(self, place: Place, action: Action) -> CompiledAction | None:
        spec = CATALOGUE.get(action.type)
        if spec is None:
            self.report(
                PolicyError(ERR_NGROK_2201, f"Invalid policy action type {action.type!r}.", place)
            )
            return None
        if place.phase not in spec.phases:
            self.report(
                PolicyError(
                    ERR_NGROK_2202,
                    f"Action type {action.type} is not supported for {place.phase} traffic policy "
                    f"rule (it runs in {', '.join(sorted(spec.phases))})",
                    place,
                )
            )
            return None
        if spec.protocols is not None and self.protocol not in spec.protocols:
            self.report(
                PolicyError(
                    ERR_NGROK_2205,
                    f"Action type {action.type} is not supported for {self.protocol} endpoints "
                    f"by this Burrow edge (it runs on {', '.join(sorted(spec.protocols))} "
                    "endpoints)",
                    place,
                )
            )
            return None
        if spec.auth:
            if self.auth is not None:
                self.report(
                    PolicyError(
                        ERR_NGROK_2239,
                        "Invalid policy: Only one auth action allowed per endpoint "
                        f"(the first is {self.auth})",
                        place,
                    )
                )
                return None
            self.auth = place
        if spec.parse is None:
            self.report(
                PolicyError(
                    ERR_NGROK_2201,
                    f"Policy action type {action.type} is not supported by this Burrow edge yet; "
                    "remove it or serve this endpoint elsewhere",
                    place,
                )
            )
            return None
        reader = ConfigReader(action.config, place)
        try:
            config = spec.parse(reader)
            reader.finish()
        except PolicyError as error:
            self.report(error)
            return None
        return CompiledAction(action.type, spec, config, place)


_UNKNOWN: Final = ActionSpec("", frozenset(), terminating=False, auth=False, parse=None)
