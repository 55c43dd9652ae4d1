"""The edge's light run of a phase that only edits headers and sets variables.

Many policies' phases do no more than add and remove headers (and set variables for them),
under expressions that read the request, the response and the connection. Run planned
(`edge.policy.plan`), such a phase still pays for what nothing can see: a `PhaseRun` with its
dozen containers, a result dict per action, each header's value decoded, a lookup per removed
header to say whether it was there (`actions.ngrok.remove_headers.headers_removed`). So a phase
is also planned light (`light_plan`, kept in `CompiledPolicy.light`) when

* every action is add-headers, remove-headers or set-vars, and none names the Host header in
  `on_http_request` (an added Host also changes `req.host`: left to the full run);
* every expression, header value and variable value reads the facts through direct closures
  (`edge.policy.cel_fast`) and names only `conn`, `req`, `res` and `vars`, so no CEL
  activation should be needed;
* nothing can read the phase's result variables: no expression or string of the phase names
  `actions`, and, for `on_http_request`, the response phase does not read them
  (`CompiledPolicy.response_reads_results`); a light run keeps none.

`run_light` runs such a phase on a `LightRun`, which offers the closures the same reads a
`PhaseRun` does (the facts, `vars`, `header_values` of the headers as changed so far), and
records the header changes exactly as `PhaseRun.defer_header` would (`removed`, `added`). It
gives up (returns False) wherever the planned run would leave anything to cel-python or to
the engine's rendering: a closure that raised or answered no boolean, a string it could not
render or that a header may not hold, a variable the phase lacks. Nothing a light run does is
seen outside it (no state, no log, no breaker), so the caller then runs the phase again, in
full, from the start, and gets exactly the planned run's outcome, error or answer. A phase
that keeps giving up (`GIVE_UP_LIMIT` runs in a row: its closures read a field only the views
have, say) is then run in full only, so it does not pay for both runs on every request.

One function per phase. A light phase is planned once and run on every request, so its rules
are written out as the source of one Python function (`_written_out`), as `dataclasses` writes
out `__init__`: a block per rule, the steps' appends in line, no loop over rules, checks and
step kinds at run time. A check, a variable's value and a header's rendered value call their
closures, unless a closure's recipe (`cel_facts.RECIPES`) is one written out in line, doing
what the closure does without the calls: a fact compared with or tested against a literal, a
request header's presence or first value (when no earlier step of the phase changed it), a
variable, a remembered CIDR answer, `!` of these, a top-level `&&` as two checks, a constant
variable. On the edge, where a request finds little of this code in the CPU's caches, calls
are what a phase costs most: the 10-rule benchmark policy's request phase now runs with none
but C calls. The source is the same skeleton
for every policy: the closures, names and values of the policy are bound as globals of the
function (`_0`, `_1`, ...), never written into its text; operators and attribute paths come
from this module's and `cel_facts`' own tables.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from celpy import celtypes

from edge.policy.actions import AddHeadersConfig, RemoveHeadersConfig, SetVarsConfig
from edge.policy.cel import to_cel
from edge.policy.cel_facts import BOOLEANS, FALSE, RAW_SOURCE, RECIPES, TRUE, cel_string
from edge.policy.cel_fast import Direct
from edge.policy.interpolation import as_text
from edge.policy.phase import current_values
from edge.policy.plan import MISSING, PHASE_VARIABLES, fixed_value, template_renderer, typed_getter

if TYPE_CHECKING:
    from edge.policy.activation import ConnFacts, RequestFacts, ResponseFacts
    from edge.policy.validate import CompiledPolicy, CompiledRule

__all__ = ["LightPhase", "LightRun", "light_plan", "run_light"]


#: (name, fixed text or None, renderer or None) per added header
_Added = tuple[tuple[str, str | None, Callable[[Any], str | None] | None], ...]
#: (name, getter) per variable: the getter gives `MISSING` where it cannot
_Vars = tuple[tuple[str, Callable[[Any], object]], ...]


class LeftToFullRunError(Exception):
    """A light run met what only the full run can do (raised inside the closures)."""


#: The root variables the direct closures read without a CEL activation (`edge.policy.cel_facts`
#: DIRECT, the header getters, `vars.*`): an expression or string naming another (`endpoint`,
#: `time`, `actions`) would make every light run give up, so its phase is not planned light.
_LIGHT_VARIABLES: Final = frozenset({"conn", "req", "res", "vars"})
#: How many light runs of a phase may give up in a row before the policy stops running it
#: light: a phase whose closures read what only the full run has (`req.headers`, say) gives
#: up on every request and would pay for both runs; a few requests a light run cannot answer
#: (a header value with CR/LF) reset nothing for the others.
GIVE_UP_LIMIT: Final = 32


@dataclass(slots=True)
class LightPhase:
    """A phase planned light: per rule, its expressions' direct closures and its steps
    (`("fixed", ((name, value), ...))` for an add-headers of fixed values only,
    `("add", _Added)`, `("remove", names)`, `("vars", _Vars)`), and the same rules as the
    function that runs them. `misses`: its light runs that gave up since the last that did not
    (`GIVE_UP_LIMIT`); the one mutable field."""

    rules: tuple[tuple[tuple[Direct, ...], tuple[tuple[str, Any], ...]], ...]
    #: the policy's light phases (`CompiledPolicy.light`), and this one's name there
    cache: dict[str, LightPhase | None] = field(compare=False, repr=False)
    phase: str
    #: `rules` written out as one function (`_written_out`): True, or False where it gave up
    run: Callable[[LightRun], bool] = field(init=False, compare=False, repr=False)
    misses: int = 0

    def gave_up(self) -> bool:
        """Count a light run that gave up (False, for the run to answer); at `GIVE_UP_LIMIT`
        in a row the phase leaves the cache's light plans: it runs in full from then on."""
        self.misses += 1
        if self.misses >= GIVE_UP_LIMIT:
            self.cache[self.phase] = None
        return False


class LightRun:
    """What a light run's closures read (as they read a `PhaseRun`) and what it changed.

    `request`/`response`: the facts; `request_lowered`, if known, the request's header names
    folded to lower case, in order. The response's `headers` are not read here (they may be
    left empty): its header values come from `response_headers`, a function giving them
    decoded and their names folded to lower case, called on the first read of a response
    header, if any (`response_lowered` then holds those names)."""

    __slots__ = (
        "_response_headers",
        "_response_known",
        "added",
        "conn",
        "deferred",
        "removed",
        "request",
        "request_lowered",
        "response",
        "vars",
    )

    def __init__(
        self,
        conn: ConnFacts,
        request: RequestFacts,
        request_lowered: tuple[str, ...] | None = None,
        response: ResponseFacts | None = None,
        response_headers: Callable[[], tuple[tuple[tuple[str, str], ...], tuple[str, ...]]]
        | None = None,
    ) -> None:
        self.conn = conn
        self.request = request
        self.request_lowered = request_lowered
        self.response = response
        self.vars: dict[str, object] = {}
        self.added: list[tuple[str, str]] = []
        self.removed: list[str] = []
        # the changes in order, (lower-case name, value or None for a removal), as
        # `PhaseRun.deferred` holds them: what `header_values` shows on top of the message
        self.deferred: list[tuple[str, str | None]] = []
        self._response_headers = response_headers
        # the response's headers and folded names, once a read asked `_response_headers`
        self._response_known: tuple[tuple[tuple[str, str], ...], tuple[str, ...]] | None = None

    @property
    def activation(self) -> object:
        """A light run has none: whatever asks for it is left to the full run."""
        raise LeftToFullRunError("the CEL activation")

    def header_values(self, message: str, name: str) -> Sequence[str]:
        """`PhaseRun.header_values`: the values of the header `name` (lower-case) of `message`
        (`req` or `res`) as the phase has changed them so far; KeyError if the phase has no
        such message."""
        if message == "req":
            headers = self.request.headers
            lowered = self.request_lowered
            if lowered is None:
                lowered = self.request_lowered = tuple([key.lower() for key, _ in headers])
        elif message == "res" and self._response_headers is not None:
            known = self._response_known
            if known is None:
                known = self._response_known = self._response_headers()
            headers, lowered = known
        else:
            raise KeyError(message)
        pending = self.deferred if (message == "res") == (self.response is not None) else ()
        return current_values(headers, lowered, name, pending)

    @property
    def response_lowered(self) -> tuple[str, ...] | None:
        """The response's header names folded to lower case, if a read decoded them."""
        known = self._response_known
        return None if known is None else known[1]

    def remove(self, name: str) -> None:
        """`PhaseRun.defer_header(name, None)`, but for its answer (which nothing reads)."""
        if name not in self.removed:
            self.removed.append(name)
        added = self.added
        for key, _ in added:  # a loop, not a generator: most runs have added a name or none
            if key == name:
                self.added = [(key, kept) for key, kept in added if key != name]
                break
        self.deferred.append((name, None))


def light_plan(policy: CompiledPolicy, phase: str) -> LightPhase | None:
    """`phase` of `policy` planned light, or None if it cannot run light (see the module's
    doc); planned on first use, then kept with the policy. None too once its light runs gave
    up `GIVE_UP_LIMIT` times in a row: the phase then runs in full for the policy's life."""
    cache = policy.light
    if phase in cache:
        return cache[phase]
    rules: tuple[CompiledRule, ...] = getattr(policy, phase)
    planned = None
    if phase != "on_http_request" or not policy.response_reads_results:
        steps = _plan(rules, phase)
        if steps is not None:
            planned = LightPhase(steps, cache, phase)
            planned.run = _written_out(steps, planned)
    cache[phase] = planned
    return planned


def _plan(
    rules: tuple[CompiledRule, ...], phase: str
) -> tuple[tuple[tuple[Direct, ...], tuple[tuple[str, Any], ...]], ...] | None:
    available = PHASE_VARIABLES[phase] & _LIGHT_VARIABLES
    in_request = phase == "on_http_request"
    planned: list[tuple[tuple[Direct, ...], tuple[tuple[str, Any], ...]]] = []
    for rule in rules:
        checks: list[Direct] = []
        for expression in rule.expressions:
            if expression.direct is None or not expression.variables <= available:
                return None
            checks.append(expression.direct)
        steps: list[tuple[str, Any]] = []
        for action in rule.actions:
            config = action.config
            if isinstance(config, AddHeadersConfig):
                added = []
                for name, template in config.headers:
                    if in_request and name == "host":
                        return None
                    fixed = fixed_value(template)
                    render = None if fixed is not None else template_renderer(template, available)
                    if fixed is None and render is None:
                        return None
                    added.append((name, fixed, render))
                if all(fixed is not None for _, fixed, _ in added):
                    steps.append(("fixed", tuple((name, fixed) for name, fixed, _ in added)))
                else:
                    steps.append(("add", tuple(added)))
            elif isinstance(config, RemoveHeadersConfig):
                if in_request and "host" in config.headers:
                    return None
                steps.append(("remove", tuple(config.headers)))
            elif isinstance(config, SetVarsConfig):
                values = []
                for name, value in config.vars:
                    get = typed_getter(value, available)
                    if get is None:  # its closures read only `available`, or there are none
                        return None
                    values.append((name, get))
                steps.append(("vars", tuple(values)))
            else:
                return None
        planned.append((tuple(checks), tuple(steps)))
    return tuple(planned)


def run_light(phase: LightPhase, run: LightRun) -> bool:
    """Run `phase` on `run` as the planned run would: True with `run.removed` and `run.added`
    its header changes, or False where it gave up (the caller runs the phase in full)."""
    return phase.run(run)


class _Source:
    """The function `_written_out` is writing: its globals (`bind`), which phase it runs,
    and the header names its steps so far change (a later check of one reads the change)."""

    def __init__(self, in_request: bool, phase: LightPhase) -> None:
        self.in_request = in_request
        self.touched: set[str] = set()
        self.bound: dict[str, Any] = {
            "_phase": phase,
            "_gave_up": phase.gave_up,
            "TRUE": TRUE,
            "FALSE": FALSE,
            "BOOLEANS": BOOLEANS,
            "MISSING": MISSING,
            "to_cel": to_cel,
        }

    def bind(self, value: object) -> str:
        """A new global of the function holding `value`: its name."""
        name = f"_{len(self.bound)}"
        self.bound[name] = value
        return name


def _written_out(
    rules: tuple[tuple[tuple[Direct, ...], tuple[tuple[str, Any], ...]], ...], phase: LightPhase
) -> Callable[[LightRun], bool]:
    """`rules` of `phase` as one function of a `LightRun`: per rule, its checks in order (a
    closure that raised or answered no boolean gives up; false ends the rule), then its steps
    (a rendered value a header may not hold, or a variable whose value cannot be had, gives
    up). Giving up is counted (`LightPhase.gave_up`); a run to the end resets the count.

    Only this skeleton is source text; every closure, name and value of the policy is a global
    of the function, bound by a generated identifier (`_Source.bind`)."""
    source = _Source(phase.phase == "on_http_request", phase)
    lines = ["def light_run(run):"]
    for checks, steps in rules:
        lines.append("    while True:  # one rule: `break` ends it")
        for direct in checks:
            lines += _check_lines(direct, source)
        for kind, items in steps:
            lines += _step_lines(kind, items, source)
        lines.append("        break")
    lines += ["    if _phase.misses:", "        _phase.misses = 0", "    return True"]
    bound = source.bound
    exec(compile("\n".join(lines), "<light run>", "exec"), bound)  # the skeleton only: above
    function: Callable[[LightRun], bool] = bound["light_run"]
    return function


def _check_lines(direct: Direct, source: _Source) -> list[str]:
    """The source of one check of a rule, for `_written_out`: on through when true, `break`
    when false, give up (`_gave_up()`) where its closure would raise or answer no boolean.

    The closure is called, unless its recipe (`cel_facts.RECIPES`) is one written out in line
    here, with what the closure does and no call: a top-level `&&` is its two sides checked in
    turn (CEL's `&&` is false if its left is; a side that raises gives up either way)."""
    recipe = RECIPES.get(direct)
    if recipe is not None and recipe[0] == "and":
        return _check_lines(recipe[1], source) + _check_lines(recipe[2], source)
    inline = _condition(direct, source)
    if inline is not None:
        setup, condition = inline
        return [*setup, f"        if not ({condition}):", "            break"]
    return [
        "        try:",
        f"            value = {source.bind(direct)}(run)",
        "        except Exception:",
        "            return _gave_up()",
        "        if value is not TRUE:",
        "            if value is FALSE:",
        "                break",
        "            if not isinstance(value, BOOLEANS):",
        "                return _gave_up()",
        "            if not value:",
        "                break",
    ]


#: The comparisons `raw_comparison` makes, as Python operators.
_OPERATORS: Final[dict[object, str]] = {
    operator.eq: "==",
    operator.ne: "!=",
    operator.lt: "<",
    operator.le: "<=",
    operator.gt: ">",
    operator.ge: ">=",
}
#: The string tests of `startsWith`, `endsWith` and `contains` on a fact, in Python.
_TESTS: Final[dict[object, str]] = {
    str.startswith: "value.startswith({})",
    str.endswith: "value.endswith({})",
    str.__contains__: "{} in value",
}


def _condition(direct: Direct, source: _Source) -> tuple[list[str], str] | None:
    """For a closure whose recipe is written out in line, the lines that set `value` (giving
    up where the closure would raise) and a Python condition, true exactly where the closure
    answers TRUE (each of these answers only TRUE or FALSE); None for any other closure."""
    recipe = RECIPES.get(direct)
    if recipe is None:
        return None
    kind = recipe[0]
    if kind == "not":
        inner = _condition(recipe[1], source)
        return None if inner is None else (inner[0], f"not ({inner[1]})")
    if kind == "compare":
        _, raw, compare, constant, of = recipe
        path, symbol = RAW_SOURCE.get(raw), _OPERATORS.get(compare)
        if path is None or symbol is None or of not in (str, int):
            return None
        return _read(path, of.__name__), f"value {symbol} {source.bind(constant)}"
    if kind == "method":
        _, raw, test, fixed = recipe
        path, form = RAW_SOURCE.get(raw), _TESTS.get(test)
        if path is None or form is None:
            return None
        return _read(path, "str"), form.format(source.bind(fixed))
    if kind == "has_header":
        _, message, name = recipe
        if message == "req" and source.in_request and name not in source.touched:
            # no step of the phase so far changes it: present in the request's names as they
            # came (`request_lowered`; a run without them gives up on the None)
            return _guarded(f"value = {source.bind(name)} in run.request_lowered"), "value"
        read = f"run.header_values({source.bind(message)}, {source.bind(name)})"
        return [*_guarded(f"value = {read}")], "value"
    if kind == "string_compare":
        _, left, compare, text = recipe
        reads = _value(left, source)
        if reads is None:
            return None
        setup = [
            *_guarded(*reads),
            "        if not isinstance(value, str):",
            "            return _gave_up()",
        ]
        return setup, f"{source.bind(compare)}(value, {source.bind(text)})"
    if kind == "cidr":
        _, raw, answers = recipe
        path = RAW_SOURCE.get(raw)
        if path is None:
            return None
        setup = _guarded(
            f"value = {source.bind(answers)}.get(run.{path})",
            "if value is None:",
            f"    value = {source.bind(direct)}(run)",
        )
        return setup, "value is TRUE"
    return None


def _value(direct: Direct, source: _Source) -> list[str] | None:
    """For a closure whose CEL value can be read in line, the statements setting `value` to
    it (raising where the closure raises; the caller guards them); None otherwise."""
    recipe = RECIPES.get(direct)
    if recipe is None:
        return None
    if recipe[0] == "var":
        return [f"value = run.vars[{source.bind(recipe[1])}]"]
    if recipe[0] == "header_at":
        _, message, name, position = recipe
        if message != "req" or not source.in_request or name in source.touched or position:
            return None
        # the first value of a header no step changed: as the request's names came
        first = f"run.request.headers[run.request_lowered.index({source.bind(name)})][1]"
        made = source.bind(str.__new__), source.bind(celtypes.StringType)
        return [
            f"value = {first}",
            f"value = {made[0]}({made[1]}, value) if type(value) is str"
            f" else {source.bind(cel_string)}(value)",
        ]
    return None


def _read(path: str, of: str) -> list[str]:
    """Lines setting `value` to `run.<path>` (a `RAW` reader's), giving up unless its type is
    exactly `of` (what the closures compare)."""
    return [
        *_guarded(f"value = run.{path}"),
        f"        if type(value) is not {of}:",
        "            return _gave_up()",
    ]


def _guarded(*statements: str) -> list[str]:
    """`statements` giving up (`_gave_up()`) on any exception, as a raising closure does."""
    body = [f"            {statement}" for statement in statements]
    return ["        try:", *body, "        except Exception:", "            return _gave_up()"]


def _step_lines(kind: str, items: Any, source: _Source) -> list[str]:
    """The source of one step of a matched rule (`LightPhase.rules`), for `_written_out`."""
    if kind == "fixed":  # add-headers of fixed values only: recorded at once
        source.touched.update(name for name, _ in items)
        pairs = source.bind(items)
        return [f"        run.added.extend({pairs})", f"        run.deferred.extend({pairs})"]
    lines: list[str] = []
    if kind == "add":
        for name, fixed, render in items:
            source.touched.add(name)
            if fixed is not None:
                pair = source.bind((name, fixed))
                lines.append(f"        run.added.append({pair})")
                lines.append(f"        run.deferred.append({pair})")
                continue
            text_lines = _text(render, source)
            lines += [
                *text_lines,
                # the engine's rendering, and its error: the full run's
                '        if text is None or "\\r" in text or "\\n" in text or "\\0" in text:',
                "            return _gave_up()",
                f"        pair = ({source.bind(name)}, text)",
                "        run.added.append(pair)",
                "        run.deferred.append(pair)",
            ]
    elif kind == "remove":
        source.touched.update(items)
        lines += [f"        run.remove({source.bind(name)})" for name in items]
    else:
        for name, get in items:
            lines += _set_var_lines(name, get, source)
    return lines


def _text(render: Callable[[Any], str | None], source: _Source) -> list[str]:
    """Lines setting `text` to what `render` (a header value's renderer) gives, None where it
    cannot; in line for a renderer of one expression whose value can be read in line."""
    recipe = RECIPES.get(render)
    read = _value(recipe[1], source) if recipe is not None and recipe[0] == "text_of" else None
    if read is None:
        return [f"        text = {source.bind(render)}(run)"]
    string, as_text_of = source.bind(celtypes.StringType), source.bind(as_text)
    return [
        "        try:",
        *[f"            {statement}" for statement in read],
        f"            if type(value) is {string}:",  # as the renderer: one test, else as_text
        "                text = str(value)",
        "            else:",
        f'                text = {as_text_of}(value, "", None)',
        "        except Exception:",
        "            text = None",
    ]


def _set_var_lines(name: str, get: Callable[[Any], object], source: _Source) -> list[str]:
    """The source of one variable of a set-vars step: in line where its getter is a constant
    or one expression whose value can be read in line (a CEL value: `to_cel` keeps it)."""
    target = f"run.vars[{source.bind(name)}]"
    recipe = RECIPES.get(get)
    if recipe is not None and recipe[0] == "constant":
        return [f"        {target} = {source.bind(to_cel(recipe[1]))}"]
    if recipe is not None and recipe[0] == "or_missing":
        inner = RECIPES.get(recipe[1])
        reads = _value(recipe[1], source)
        if reads is not None and inner is not None and inner[0] == "header_at":  # a CEL string
            return [*_guarded(*reads), f"        {target} = value"]
    return [
        f"        result = {source.bind(get)}(run)",
        "        if result is MISSING:",
        "            return _gave_up()",
        f"        {target} = to_cel(result)",
    ]
