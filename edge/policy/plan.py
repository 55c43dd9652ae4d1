"""The edge's untraced run of a phase: each rule planned once into closures over the phase.

`edge.policy.engine` runs a phase rule by rule, building a trace as it goes when asked (what
`burrow-edge policy test` prints). The edge asks for none, and there a request pays mostly for
layers: an activation looked up per expression, the runner picked per action from a dict, a
`Place` narrowed per rendered string, the request's headers copied per added header. So the
first untraced run of a phase plans it (`plan_phase`, kept in `CompiledPolicy.plans`):

* each expression with its `Compiled.direct` closure (`edge.policy.cel_fast.compile_direct`),
  which reads the phase's facts straight from the `PhaseRun`, where the phase has every root
  variable the expression names; otherwise, and wherever the closure does not answer a boolean
  (it raised, or the value is not one), `Compiled.evaluate` on the activation, which is
  cel-python's answer or error exactly as the traced run gets it;
* each action with its runner, chosen once: add-headers, remove-headers and set-vars get
  planned versions (`_add_headers`, `_remove_headers`, `_set_vars`) that render their strings
  through the direct closures and change headers with `PhaseRun.defer_header`; each falls back
  to the engine's own rendering (`PhaseRun.render`, `PhaseRun.typed`) for a string it cannot
  render, so a failure has the same code, message and place. A header value without `${...}`
  is checked once, here, for what a header may not hold (`fixed_value`), and then used as it
  is; an add-headers whose values are all fixed (and no Host) records its changes in one go
  while the message's view is unbuilt, as `defer_header` would one by one. Every other action
  runs the engine's runner after `PhaseRun.sync_headers`, so it sees the headers as changed
  so far.

`PlannedRule.checks` and `PlannedRule.steps` hold the tests numbered and the actions unpacked,
so the loop reads tuples. `run_planned` then gives the same ending, the same changes, variables,
result variables and log records as the engine's traced loop, and builds a `Place` only on a
failure. The `PhaseRun` it runs on makes its CEL activation only if something asks for it (an
expression or string the direct closures leave to cel-python, or an action reading views).

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from celpy import celtypes

from edge.policy.actions import AddHeadersConfig, RemoveHeadersConfig, SetVarsConfig
from edge.policy.cel import Compiled, to_cel
from edge.policy.cel_facts import BOOLEANS, FALSE, RECIPES, TRUE
from edge.policy.cel_fast import Direct
from edge.policy.errors import ERR_NGROK_2254, Place, PolicyRuntimeError
from edge.policy.forward_internal import Handoff
from edge.policy.interpolation import Template, as_text
from edge.policy.phase import Answer, Hangup, LogRecord, PhaseRun
from edge.policy.validate import CompiledAction, CompiledRule

__all__ = [
    "ERR_NGROK_2300",
    "MISSING",
    "PHASE_VARIABLES",
    "Ending",
    "Failed",
    "PlannedAction",
    "PlannedRule",
    "Runner",
    "evaluate_rule_expression",
    "fail",
    "fixed_value",
    "plan_phase",
    "run_planned",
    "template_renderer",
    "typed_getter",
]

#: ngrok's "internal gateway error" (traffic-policy.md §1): a fault in the engine itself, never
#: expected; the request fails as a runtime error would, and the record says what broke.
ERR_NGROK_2300: Final = "ERR_NGROK_2300"

Runner = Callable[[PhaseRun, Any, Place], Answer | Hangup | Handoff | None]

#: The root variables each phase has (`edge.policy.phase._Activation`): a direct closure runs
#: only where all the variables its expression names are there.
PHASE_VARIABLES: Final[Mapping[str, frozenset[str]]] = {
    "on_tcp_connect": frozenset({"conn", "endpoint", "time", "vars", "actions"}),
    "on_http_request": frozenset({"conn", "endpoint", "time", "vars", "actions", "req"}),
    "on_http_response": frozenset({"conn", "endpoint", "time", "vars", "actions", "req", "res"}),
}
MISSING: Final = object()


@dataclass(frozen=True, slots=True)
class Failed:
    """The phase failed at run time with this code (its log record is already written)."""

    code: str


Ending = Answer | Hangup | Failed | Handoff


def fail(run: PhaseRun, error: PolicyRuntimeError) -> Failed:
    """Record `error` in the run's log records; the phase's ending."""
    run.logs.append(
        LogRecord(
            run.phase,
            str(error.place),
            MappingProxyType({"message": error.message}),
            error_code=error.code,
        )
    )
    return Failed(error.code or ERR_NGROK_2300)


def evaluate_rule_expression(
    run: PhaseRun, rule: CompiledRule, number: int, expression: Compiled
) -> bool:
    """One rule expression's truth; `PolicyRuntimeError` (2254, placed) if it fails."""
    try:
        return expression.evaluate(run.activation, code=ERR_NGROK_2254)
    except PolicyRuntimeError as error:  # placed here, so a passing evaluation builds no Place
        place = rule.place.at_field(f"expressions[{number}]")
        raise PolicyRuntimeError(error.code or ERR_NGROK_2254, error.problem, place) from None


@dataclass(frozen=True, slots=True)
class PlannedAction:
    action: CompiledAction
    runner: Runner
    #: False: the runner may read the message's headers, so deferred changes are applied first
    planned: bool


@dataclass(frozen=True, slots=True)
class PlannedRule:
    rule: CompiledRule
    #: each expression with its direct closure (None: it always runs on the activation)
    tests: tuple[tuple[Direct | None, Compiled], ...]
    actions: tuple[PlannedAction, ...]
    #: `tests` numbered, and `actions` unpacked, as `run_planned` reads them (made once here,
    #: not per request): (number, direct, expression); (runner, config, place, planned, type)
    checks: tuple[tuple[int, Direct | None, Compiled], ...] = ()
    steps: tuple[tuple[Runner, Any, Place, bool, str], ...] = ()


def plan_phase(
    rules: tuple[CompiledRule, ...], phase: str, runners: Mapping[type, Runner]
) -> tuple[PlannedRule, ...]:
    """The rules of `phase` planned; `runners` are the engine's, by config type."""
    available = PHASE_VARIABLES[phase]
    planned: list[PlannedRule] = []
    for rule in rules:
        tests = tuple(
            (expression.direct if expression.variables <= available else None, expression)
            for expression in rule.expressions
        )
        actions = tuple(_plan_action(action, runners, available) for action in rule.actions)
        checks = tuple((number, direct, test) for number, (direct, test) in enumerate(tests))
        steps = tuple(
            (step.runner, step.action.config, step.action.place, step.planned, step.action.type)
            for step in actions
        )
        planned.append(PlannedRule(rule, tests, actions, checks, steps))
    return tuple(planned)


def _plan_action(
    action: CompiledAction, runners: Mapping[type, Runner], available: frozenset[str]
) -> PlannedAction:
    config = action.config
    if isinstance(config, AddHeadersConfig):
        return PlannedAction(action, _add_headers(config, available), True)
    if isinstance(config, RemoveHeadersConfig):
        return PlannedAction(action, _remove_headers, True)
    if isinstance(config, SetVarsConfig):
        return PlannedAction(action, _set_vars(config, available), True)
    return PlannedAction(action, runners[type(config)], False)


def run_planned(run: PhaseRun, rules: tuple[PlannedRule, ...]) -> Ending | None:
    """Run the planned rules as the engine's loop runs them (untraced): the ending, or None
    when every rule ran without ending the phase."""
    for planned in rules:
        for number, direct, expression in planned.checks:
            value: object = None
            if direct is not None:
                try:
                    value = direct(run)
                except Exception:  # a case left to cel-python (below)
                    value = None
            if value is TRUE:
                continue
            if value is FALSE:
                break
            if isinstance(value, BOOLEANS):
                truth = bool(value)
            else:
                try:
                    truth = evaluate_rule_expression(run, planned.rule, number, expression)
                except PolicyRuntimeError as error:
                    return fail(run, error)
            if not truth:
                break
        else:
            for runner, config, place, is_planned, action_type in planned.steps:
                if not is_planned:
                    run.sync_headers()
                try:
                    ending = runner(run, config, place)
                except PolicyRuntimeError as error:
                    return fail(run, error)
                except Exception as exc:  # an engine bug must fail one request, not the edge
                    internal = PolicyRuntimeError(ERR_NGROK_2300, f"internal error: {exc!r}", place)
                    return fail(run, internal)
                if ending is not None:
                    run.ended_by = action_type
                    return ending
    return None


# --- planned actions ---------------------------------------------------------------------------
Render = Callable[[PhaseRun], str | None]


def template_renderer(template: Template, available: frozenset[str]) -> Render | None:
    """`template` rendered through direct closures (None from the closure: it could not, and
    `PhaseRun.render` must), or None if some part has no direct closure."""
    parts: list[str | Direct] = []
    for part in template.parts:
        if isinstance(part, str):
            parts.append(part)
        elif part.direct is not None and part.variables <= available:
            parts.append(part.direct)
        else:
            return None
    if all(isinstance(part, str) for part in parts):
        text = "".join(part for part in parts if isinstance(part, str))
        return lambda run: text
    if len(parts) == 1:
        (only,) = parts
        assert not isinstance(only, str)

        def render_one(run: PhaseRun) -> str | None:
            try:
                value = only(run)
                if type(value) is celtypes.StringType:  # as `as_text` gives it, one test
                    return str(value)
                return as_text(value, "", None)
            except Exception:
                return None

        RECIPES[render_one] = ("text_of", only)
        return render_one
    pieces = tuple(parts)

    def render(run: PhaseRun) -> str | None:
        try:
            return "".join(
                piece if isinstance(piece, str) else as_text(piece(run), "", None)
                for piece in pieces
            )
        except Exception:
            return None

    return render


def _add_headers(config: AddHeadersConfig, available: frozenset[str]) -> Runner:
    # (name, template, renderer, the text itself if the template is a fixed one a header may
    # hold: checked here once, not per request)
    items = tuple(
        (name, template, template_renderer(template, available), fixed_value(template))
        for name, template in config.headers
    )

    def add_headers(run: PhaseRun, config: AddHeadersConfig, place: Place) -> None:
        added: dict[str, str] = {}
        for name, template, render, fixed in items:
            value: str | None
            if fixed is not None:
                value = fixed
            else:
                value = render(run) if render is not None else None
                if value is None or "\r" in value or "\n" in value or "\0" in value:
                    # the engine's rendering: its error, if it fails, with its place
                    field = f"config.headers.{name}"
                    value = run.render(template, place, field=field, header_value=True)
            run.defer_header(name, value)
            added[name] = value
        run.keep_result("add_headers", {"headers_added": added})

    fixed = tuple((name, value) for name, _, _, value in items if value is not None)
    if len(fixed) != len(items) or any(name == "host" for name, _ in fixed):
        return add_headers

    def add_fixed(run: PhaseRun, config: AddHeadersConfig, place: Place) -> None:
        # Every value fixed, no Host: while the message's view is not built, each
        # `defer_header` would only record its change, so the changes are recorded at once.
        activation = run.built_activation
        if activation is not None and ("req" if run.response is None else "res") in (
            activation._built
        ):
            return add_headers(run, config, place)
        run.added.extend(fixed)
        run.deferred.extend(fixed)
        run.keep_result("add_headers", {"headers_added": dict(fixed)})
        return None

    return add_fixed


def _constant(value: object) -> Callable[[PhaseRun], object]:
    """A getter of `value` (a CEL value) whatever the run."""

    def constant(run: PhaseRun) -> object:
        return value

    RECIPES[constant] = ("constant", value)
    return constant


def fixed_value(template: Template) -> str | None:
    """The text of a template without `${...}` if a header value may hold it (no CR, LF or
    NUL: the engine's rendering refuses those, so they are left to it), else None."""
    if not template.is_static:
        return None
    text = template.render({})
    return None if "\r" in text or "\n" in text or "\0" in text else text


def _remove_headers(run: PhaseRun, config: RemoveHeadersConfig, place: Place) -> None:
    removed = [name for name in config.headers if run.defer_header(name, None)]
    run.keep_result("remove_headers", {"headers_removed": removed})


def _set_vars(config: SetVarsConfig, available: frozenset[str]) -> Runner:
    items: list[tuple[str, object, Callable[[PhaseRun], object] | None]] = []
    for name, value in config.vars:
        items.append((name, value, typed_getter(value, available)))

    def set_vars(run: PhaseRun, config: SetVarsConfig, place: Place) -> None:
        for name, value, get in items:
            result = get(run) if get is not None else MISSING
            if result is MISSING:
                result = run.typed(value, place.at_field(f"config.vars.{name}"))
            run.set_var(name, result)

    return set_vars


def typed_getter(value: object, available: frozenset[str]) -> Callable[[PhaseRun], object] | None:
    """`PhaseRun.typed(value)` as a closure giving `MISSING` where it cannot, or None if it
    never can (maps and lists, strings with an expression that has no direct closure)."""
    if isinstance(value, Mapping | tuple | list):
        return None
    if not isinstance(value, Template):
        converted = to_cel(value)  # what `PhaseRun.set_var` stores: made once here
        return _constant(converted)
    parts = value.parts
    if len(parts) == 1 and isinstance(parts[0], Compiled):
        expression = parts[0]
        direct = expression.direct
        if direct is None or not expression.variables <= available:
            return None

        def one(run: PhaseRun) -> object:
            try:
                return direct(run)
            except Exception:
                return MISSING

        RECIPES[one] = ("or_missing", direct)
        return one
    if value.is_static:
        converted = to_cel(value.render({}))  # its text, as `PhaseRun.set_var` stores it
        return _constant(converted)
    render = template_renderer(value, available)
    if render is None:
        return None

    def rendered(run: PhaseRun) -> object:
        text = render(run)
        return MISSING if text is None else text

    return rendered
