"""What the fast closures (`edge.policy.cel_fast`) read from a running phase, and answer with.

A closure over a running phase (`edge.policy.phase.PhaseRun`) reads the fields expressions ask
most straight from the phase's facts: as the CEL value the view would give (`DIRECT`), or, where
it only compares or tests them, as the facts hold them (`RAW`). The header getters read the
phase's headers as changed so far (`PhaseRun.header_values`). The closures answer booleans with
`TRUE` and `FALSE`, and raise `FastPathError` for any case they leave to cel-python.

Pure: no I/O; nothing kept between evaluations but the answers of `inCidrRange(<fact>,
'<literal>')` per address text (a pure function, bounded by `_CIDR_ANSWERS`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from celpy import celtypes

__all__ = [
    "BOOLEANS",
    "DIRECT",
    "FALSE",
    "RAW",
    "RAW_PATHS",
    "RAW_SOURCE",
    "RECIPES",
    "TRUE",
    "FastPathError",
    "boolean",
    "cel_bool",
    "cel_string",
    "fixed_header_getter",
    "header_getter",
    "header_value_at",
    "kind",
    "phase_run",
    "raw_comparison",
    "remembered_cidr",
    "run_header_getter",
]

_Node = Callable[[Any], Any]


class FastPathError(Exception):
    """Raised by a closure for a case it leaves to cel-python (a type it does not compare)."""


_TRUE: Final = celtypes.BoolType(True)
_FALSE: Final = celtypes.BoolType(False)
#: The CEL booleans the operators, comparisons and macros of the subset answer with (these two
#: objects: a caller may test `is TRUE`; a leaf such as `vars.flag` may give another BoolType).
TRUE: Final = _TRUE
FALSE: Final = _FALSE


def kind(value: object) -> type | None:
    """The comparison class of a value: str, int or bool; None for anything else.

    bool is tested first: CEL's bool is a Python int subclass, and `true == 1` has no overload
    in CEL. An unsigned int (`UintType`) is not an int here, nor is a double."""
    if isinstance(value, bool | celtypes.BoolType):
        return bool
    if isinstance(value, str):
        return str
    if isinstance(value, int) and not isinstance(value, celtypes.UintType):
        return int
    return None


#: What CEL answers as a boolean: a Python bool from the direct closures, or cel-python's.
BOOLEANS: Final = (bool, celtypes.BoolType)


def boolean(value: object) -> bool:
    if isinstance(value, BOOLEANS):
        return bool(value)
    raise FastPathError("not a boolean")


def cel_bool(value: bool) -> celtypes.BoolType:
    return _TRUE if value else _FALSE


_STRING: Final = celtypes.StringType
_new_string: Final = str.__new__


def cel_string(value: str) -> celtypes.StringType:
    """`celtypes.StringType(value)`: for a str (what the facts hold), the str made directly as
    that constructor makes it, without its Python-level type tests (a third of the cost)."""
    if type(value) is str:
        return _new_string(_STRING, value)
    return celtypes.StringType(value)


def _strings(values: Iterable[str]) -> celtypes.ListType:
    """A CEL list of CEL strings (`getReqHeader`'s answer), each made as `cel_string` makes it."""
    return celtypes.ListType(
        [
            _new_string(_STRING, value) if type(value) is str else cel_string(value)
            for value in values
        ]
    )


#: CEL ints for ports and status codes, made once each: building a celpy IntType wraps a
#: range check in a new function every time, about as costly as the rest of a comparison.
_SMALL_INTS: dict[int, celtypes.IntType] = {}
_SMALL_INT_RANGE: Final = range(65536)


def _int(value: int) -> celtypes.IntType:
    known = _SMALL_INTS.get(value)
    if known is not None:
        return known
    made = celtypes.IntType(value)
    if value in _SMALL_INT_RANGE:
        _SMALL_INTS[value] = made
    return made


#: (root, field path) -> how to read it from a running phase (`PhaseRun`) directly. Each must
#: equal what the view (`edge.policy.activation`) gives for the same facts.
DIRECT: Final[Mapping[tuple[str, tuple[str, ...]], Callable[[Any], Any]]] = {
    ("req", ("method",)): lambda run: cel_string(run.request.method),
    ("req", ("host",)): lambda run: cel_string(run.request.host),
    ("req", ("version",)): lambda run: cel_string(run.request.version),
    ("req", ("url", "path")): lambda run: cel_string(run.request.path),
    ("req", ("url", "raw_path")): lambda run: cel_string(run.request.path),
    ("req", ("url", "query")): lambda run: cel_string(run.request.query),
    ("req", ("url", "scheme")): lambda run: cel_string(run.request.scheme),
    ("req", ("url", "uri")): lambda run: cel_string(run.request.target),
    ("conn", ("client_ip",)): lambda run: cel_string(run.conn.client_ip),
    ("conn", ("client_port",)): lambda run: _int(run.conn.client_port),
    ("conn", ("server_ip",)): lambda run: cel_string(run.conn.server_ip),
    ("conn", ("server_port",)): lambda run: _int(run.conn.server_port),
    ("res", ("status_code",)): lambda run: _int(run.response.status),
}
#: The fields of `DIRECT` as the facts hold them (a Python str or int, not yet a CEL value):
#: each one's attribute path on a running phase (`run.<path>`).
RAW_PATHS: Final[Mapping[tuple[str, tuple[str, ...]], str]] = {
    ("req", ("method",)): "request.method",
    ("req", ("host",)): "request.host",
    ("req", ("version",)): "request.version",
    ("req", ("url", "path")): "request.path",
    ("req", ("url", "raw_path")): "request.path",
    ("req", ("url", "query")): "request.query",
    ("req", ("url", "scheme")): "request.scheme",
    ("req", ("url", "uri")): "request.target",
    ("conn", ("client_ip",)): "conn.client_ip",
    ("conn", ("client_port",)): "conn.client_port",
    ("conn", ("server_ip",)): "conn.server_ip",
    ("conn", ("server_port",)): "conn.server_port",
    ("res", ("status_code",)): "response.status",
}


def _reader(path: str) -> Callable[[Any], Any]:
    """`lambda run: run.<path>`, written out for a path of `RAW_PATHS` (never input): the
    attribute loads themselves, cheaper than `operator.attrgetter` with the caches cold."""
    reader: Callable[[Any], Any] = eval(f"lambda run: run.{path}")
    return reader


#: `RAW_PATHS` as readers, for the closures over a running phase that only compare or test
#: the fields (`compile_direct`).
RAW: Final[Mapping[tuple[str, tuple[str, ...]], Callable[[Any], Any]]] = {
    key: _reader(path) for key, path in RAW_PATHS.items()
}
#: The `RAW` readers, each to its attribute path.
RAW_SOURCE: Final[Mapping[Callable[[Any], Any], str]] = {
    RAW[key]: path for key, path in RAW_PATHS.items()
}
#: How some closures over a running phase compute their answer, for code that writes a check
#: out in line instead of calling its closure (`edge.policy.light`); weak, so a policy's
#: closures go with it. Each recipe is a tuple whose first item names its kind:
#:
#: * `("compare", raw, op, constant, kind)`: `_TRUE if op(raw(run), constant) else _FALSE`
#:   where `type(raw(run)) is kind` (str or int), else it raises (`raw_comparison`);
#: * `("method", raw, test, fixed)`: the same with `test(text, fixed)` of a str (`startsWith`,
#:   `endsWith`, `contains` of a fact: `edge.policy.cel_fast`);
#: * `("cidr", raw, answers)`: `answers.get(raw(run))` when remembered (`remembered_cidr`);
#: * `("has_header", message, name)`: `_TRUE if run.header_values(message, name) else _FALSE`;
#: * `("header_at", message, name, position)`: `run.header_values(message, name)[position]`
#:   as a CEL string (`header_value_at`);
#: * `("and", left, right)`, `("not", operand)`: CEL's `&&` and `!` of two closures; `("var",
#:   name)`: `run.vars[name]`; `("string_compare", left, compare, text)`: `_TRUE if compare(
#:   left(run), text) else _FALSE` where `left(run)` is a str, else it raises
#:   (`edge.policy.cel_fast`);
#: * `("constant", value)`: `value`, a CEL value; `("or_missing", direct)`: `direct(run)`,
#:   MISSING where it raises; `("text_of", direct)`: `direct(run)` as a header's text, None
#:   where it raises (`edge.policy.plan`'s set-vars and template closures).
RECIPES: Final[weakref.WeakKeyDictionary[Callable[[Any], Any], tuple[Any, ...]]] = (
    weakref.WeakKeyDictionary()
)
#: How many client addresses each `inCidrRange(conn.client_ip, '<literal>')` remembers its
#: answer for (a pure function of the address text): the same clients come back request after
#: request; past the bound, new addresses are computed and not kept.
_CIDR_ANSWERS: Final = 1024


def phase_run(activation: Mapping[str, Any]) -> Any:
    """The running phase behind `activation`, or None for a plain mapping."""
    return getattr(activation, "phase_run", None)


def raw_comparison(raw: _Node, compare: Callable[[Any, Any], bool], constant: Any) -> _Node:
    """`fact <op> literal` over a running phase, for a string or int literal: the fact as the
    facts hold it, compared with the literal as plain Python (as CEL compares the two)."""
    if kind(constant) is str:
        text = str.__str__(constant)

        def raw_string(run: Any) -> Any:
            a = raw(run)
            if type(a) is not str:
                raise FastPathError("comparison outside the subset")
            return _TRUE if compare(a, text) else _FALSE

        RECIPES[raw_string] = ("compare", raw, compare, text, str)
        return raw_string
    number = int(constant)

    def raw_int(run: Any) -> Any:
        a = raw(run)
        if type(a) is not int:
            raise FastPathError("comparison outside the subset")
        return _TRUE if compare(a, number) else _FALSE

    RECIPES[raw_int] = ("compare", raw, compare, number, int)
    return raw_int


def remembered_cidr(function: Callable[..., object], raw: _Node, cidr: str) -> _Node:
    """`inCidrRange(<fact>, '<cidr>')` over a running phase: the macro's answer, remembered
    for up to `_CIDR_ANSWERS` distinct addresses."""
    answers: dict[str, Any] = {}

    def in_range(run: Any) -> Any:
        address = raw(run)
        answer = answers.get(address)
        if answer is None:
            answer = cel_bool(boolean(function(address, cidr)))
            if type(address) is str and len(answers) < _CIDR_ANSWERS:
                answers[address] = answer
        return answer

    RECIPES[in_range] = ("cidr", raw, answers)
    return in_range


def fixed_header_getter(message: str, has: bool, wanted: str) -> _Node:
    """`hasReqHeader('name')`/`getReqHeader('name')` (and the Res ones) over a running phase,
    for a literal name (`wanted`, lower-cased once)."""
    if has:

        def has_header(run: Any) -> Any:
            return _TRUE if run.header_values(message, wanted) else _FALSE

        RECIPES[has_header] = ("has_header", message, wanted)
        return has_header
    return lambda run: _strings(run.header_values(message, wanted))


def header_value_at(message: str, wanted: str, position: int) -> _Node:
    """`getReqHeader('name')[position]` (or the Res one) over a running phase, for a literal
    name (`wanted`, lower-cased once) and a non-negative literal position: the value the list
    would hold there, without the list; IndexError (left to cel-python) past its end."""

    def value_at(run: Any) -> Any:
        value = run.header_values(message, wanted)[position]
        return _new_string(_STRING, value) if type(value) is str else cel_string(value)

    RECIPES[value_at] = ("header_at", message, wanted, position)
    return value_at


def header_getter(message: str, has: bool, argument: _Node, viewed: _Node) -> _Node:
    """`hasReqHeader(n)`/`getReqHeader(n)` (and the Res ones) over the message's header list:
    names fold case, values in arrival order, as `header_map` groups them."""
    on_run = run_header_getter(message, has, argument)

    def header(activation: Mapping[str, Any]) -> Any:
        run = phase_run(activation)
        if run is None:
            return viewed(activation)
        return on_run(run)

    return header


def run_header_getter(message: str, has: bool, argument: _Node) -> _Node:
    """The header getter over a running phase: its message's headers as changed so far
    (`PhaseRun.header_values`, which raises for a message the phase lacks)."""

    def header(run: Any) -> Any:
        name = argument(run)
        if not isinstance(name, str):
            raise FastPathError("a header name that is not a string")
        values = run.header_values(message, name.lower())
        if has:
            return _TRUE if values else _FALSE
        return _strings(values)

    return header
