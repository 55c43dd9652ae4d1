"""A light phase (`edge.policy.light`) written out as the source of one Python function.

A light phase is planned once and run on every request, so its rules are written out as one
function (`written_out`), as `dataclasses` writes out `__init__`: a block per rule, the steps'
appends in line, no loop over rules, checks and step kinds at run time. A check, a variable's
value and a header's rendered value call their closures, unless a closure's recipe
(`cel_facts.RECIPES`) is one written out in line, doing what the closure does without the
calls: a fact compared with or tested against a literal, a request header's presence or first
value (when no earlier step of the phase changed it), a variable, a remembered CIDR answer, `!`
of these, a top-level `&&` as two checks, a constant variable. On the edge, where a request
finds little of this code in the CPU's caches, calls are what a phase costs most (stop 20 in
benchmarks/README.md): the 10-rule benchmark policy's request phase runs with none but C calls.

The function gives up where its closures would raise or answer no boolean, as `light` says,
counting it (`LightPhase.gave_up`); a run to the end resets the count. Its text also says what
it reads (`reads_only_status`): a response phase that reads nothing but the status changes the
same for every response of a status, so the shell reuses its changes (`LightPhase.by_status`).

Safe by construction: the source is the same skeleton for every policy. The closures, names
and values of the policy are bound as globals of the function (`_0`, `_1`, ...), never written
into its text; operators and attribute paths come from this module's and `cel_facts`' own
tables. `tests/edge/policy/test_light_source.py` holds that to policies written to break out.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from celpy import celtypes

from edge.policy.cel import to_cel
from edge.policy.cel_facts import BOOLEANS, FALSE, RAW_SOURCE, RECIPES, TRUE, cel_string
from edge.policy.cel_fast import Direct
from edge.policy.interpolation import as_text
from edge.policy.plan import MISSING

if TYPE_CHECKING:
    from edge.policy.light import LightPhase, LightRun

__all__ = ["Rules", "reads_only_status", "source", "written_out"]

#: A light phase's rules: per rule, its expressions' direct closures and its steps
#: (`LightPhase.rules`).
Rules = tuple[tuple[tuple[Direct, ...], tuple[tuple[str, Any], ...]], ...]


class _Source:
    """The function `written_out` is writing: its globals (`bind`), which phase it runs,
    and the header names its steps so far change (a later check of one reads the change)."""

    def __init__(self, phase: LightPhase, *, in_request: bool) -> None:
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


def written_out(text: str, bound: dict[str, Any]) -> Callable[[LightRun], bool]:
    """The function of `source` text `text` with its globals `bound`."""
    exec(compile(text, "<light run>", "exec"), bound)  # the skeleton only: see the module doc
    function: Callable[[LightRun], bool] = bound["light_run"]
    return function


def source(rules: Rules, phase: LightPhase, *, in_request: bool) -> tuple[str, dict[str, Any]]:
    """`rules` of `phase` (`on_http_request` if `in_request`) as the source of one function
    of a `LightRun`, `light_run`, and the globals it runs with (every closure, name and value
    of the policy is one of them, bound by a generated identifier, `_Source.bind`; none is
    written into the text). Per rule, its checks in order (a closure that raised or answered
    no boolean gives up; false ends the rule), then its steps (a rendered value a header may
    not hold, or a variable whose value cannot be had, gives up). Giving up is counted
    (`LightPhase.gave_up`); a run to the end resets the count."""
    written = _Source(phase, in_request=in_request)
    lines = ["def light_run(run):"]
    for checks, steps in rules:
        lines.append("    while True:  # one rule: `break` ends it")
        for direct in checks:
            lines += _check_lines(direct, written)
        for kind, items in steps:
            lines += _step_lines(kind, items, written)
        lines.append("        break")
    lines += ["    if _phase.misses:", "        _phase.misses = 0", "    return True"]
    return "\n".join(lines), written.bound


#: What a written-out function may do with its run and still read nothing but the response's
#: status: read that, record its changes (`added`, `deferred`, `remove`), and set variables
#: (a line starting `run.vars[...] = `, from a constant: any read shows as another `run.`).
_STATUS_ONLY: Final = frozenset(
    {
        "run.response.status",
        "run.added.append",
        "run.added.extend",
        "run.deferred.append",
        "run.deferred.extend",
        "run.remove",
    }
)


def reads_only_status(text: str) -> bool:
    """Whether the function of `source` text `text` reads nothing of its run but the
    response's status, and calls none of the policy's closures (which could read anything):
    its changes are then a function of the status. Read from the text itself, so a form
    written out later that reads more cannot be missed."""
    for line in text.splitlines()[1:]:  # past `def light_run(run):`
        statement = line.strip()
        if re.search(r"\(run\)", statement):
            return False
        for read in re.findall(r"\brun\.[\w.]+", statement):
            if read in _STATUS_ONLY:
                continue
            if read == "run.vars" and statement.startswith("run.vars[") and "run." not in (
                statement.partition("=")[2]
            ):
                continue  # a variable set to a constant
            return False
    return True


def _check_lines(direct: Direct, source: _Source) -> list[str]:
    """The source of one check of a rule, for `written_out`: on through when true, `break`
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
    """The source of one step of a matched rule (`LightPhase.rules`), for `written_out`."""
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
