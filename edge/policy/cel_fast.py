"""A fast path for the expressions policies are mostly made of, beside cel-python's runner.

Most rule expressions are a few comparisons of request fields with literals, joined by `&&`,
`||` and `!`, and calls of the header, query and CIDR macros:

    req.method == 'GET' && req.url.path.startsWith('/api')
    hasReqHeader('x-api-key') && !inCidrRange(conn.client_ip, '10.0.0.0/8')

cel-python runs each of those through generic wrappers (a result check per operand, a
`functools.wraps` per comparison, error values threaded through every operator), about 5-10 µs
an expression, which ten rules pay on every request. `compile_fast` turns the checked syntax
tree of an expression in that subset into nested Python closures (about 1 µs), and returns None
for anything else (comprehensions, arithmetic, `has()`, `matches()`, escapes in string
literals, ...), which then runs on cel-python alone.

Exactness. A closure never decides a case where CEL's answer could differ from Python's: it
compares only a string with a string, an int with an int or a bool with a bool (CEL has no
`1 == true`), indexes only with a non-negative literal, and takes `&&`, `||`, `!` and `?:` only
over booleans. Literals and field chains are read from the tree by `edge.policy.cel_tree`,
which never takes a one-element list literal for its element. Anything else, and any
exception at all (a missing map key, a macro refusing its input, a lazy field failing), raises
out of the closure, and the caller evaluates the expression with cel-python instead, which
gives the value or the error it always gave. So the fast path can only answer what cel-python
would answer, faster; `tests/edge/policy/test_cel_fast.py` checks that against cel-python
over a few thousand expressions.

Facts, not views. On a running phase (an activation with a `phase_run`: `edge.policy.phase`)
the fields expressions read most (`req.method`, `req.url.path`, `conn.client_ip`,
`res.status_code`, `vars.x`, the header getters) are read straight from the phase's facts, so a
request whose policy only asks those never builds the `req`/`res` views (LazyMaps of CEL values)
at all. `DIRECT` lists them; each gives the value the view would give (same text, same CEL type).
Any other activation (a plain mapping) is read through the views as cel-python reads it.

Over the phase itself. `compile_direct` builds the same closures taking the `PhaseRun` instead
of an activation (the edge's planned runs, `edge.policy.plan`): no activation lookup per leaf,
and where a fact is only compared or tested (`req.method == 'GET'`, `req.url.path.startsWith(
'/api')`, `res.status_code >= 500`, `inCidrRange(conn.client_ip, '10.0.0.0/8')`) it is read as
the facts hold it (`RAW`), with no CEL value made. The header getters read the phase's headers
as changed so far (`PhaseRun.header_values`). `tests/edge/policy/test_cel_fast.py` holds these
to cel-python's answers too.

Pure: no I/O; closures hold no state between evaluations, but for the answers of
`inCidrRange(<fact>, '<literal>')` per address text (a pure function, bounded: `_CIDR_ANSWERS`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any, Final

import lark
from celpy import celtypes

from edge.policy.cel_facts import (
    DIRECT,
    FALSE,
    RAW,
    RECIPES,
    TRUE,
    FastPathError,
    fixed_header_getter,
    header_getter,
    header_value_at,
    phase_run,
    raw_comparison,
    remembered_cidr,
    run_header_getter,
)
from edge.policy.cel_facts import boolean as _boolean
from edge.policy.cel_facts import cel_bool as _cel_bool
from edge.policy.cel_facts import kind as _kind
from edge.policy.cel_tree import PASS_THROUGH as _PASS_THROUGH
from edge.policy.cel_tree import UnsupportedError as _UnsupportedError
from edge.policy.cel_tree import chain as _chain
from edge.policy.cel_tree import literal as _literal
from edge.policy.cel_tree import literal_of as _literal_of
from edge.policy.cel_tree import string_literal as _string_literal

__all__ = ["FALSE", "TRUE", "Direct", "Fast", "FastPathError", "compile_direct", "compile_fast"]

#: One compiled expression: the activation (root variables as CEL values) in, a CEL value out.
Fast = Callable[[Mapping[str, Any]], Any]
#: The same over a running phase (`edge.policy.phase.PhaseRun`) itself: its facts read directly,
#: its views (`PhaseRun.activation`) only for what the facts do not give.
Direct = Callable[[Any], Any]
_Node = Callable[[Any], Any]


_METHODS: Final = frozenset({"startsWith", "endsWith", "contains", "size"})
_COMPARISONS: Final[Mapping[str, Callable[[Any, Any], bool]]] = {
    "relation_eq": operator.eq,  # a == b
    "relation_ne": operator.ne,
    "relation_lt": operator.lt,
    "relation_le": operator.le,
    "relation_gt": operator.gt,
    "relation_ge": operator.ge,
}
#: The same comparisons of two strings (any str subclass) as plain Python text: no CEL operator
#: method in between.
_STRING_COMPARISONS: Final[Mapping[str, Callable[[str, str], bool]]] = {
    "relation_eq": str.__eq__,
    "relation_ne": str.__ne__,
    "relation_lt": str.__lt__,
    "relation_le": str.__le__,
    "relation_gt": str.__gt__,
    "relation_ge": str.__ge__,
}
#: Header getters read straight from the message's header list: (macro, which message, has?).
_HEADER_MACROS: Final = {
    "hasReqHeader": ("req", True),
    "getReqHeader": ("req", False),
    "hasResHeader": ("res", True),
    "getResHeader": ("res", False),
}


def compile_fast(
    tree: lark.Tree[Any],
    functions: Mapping[str, Callable[..., object]],
    variables: frozenset[str],
    convert: Callable[[object], object],
) -> Fast | None:
    """A closure computing the expression `tree` (as `edge.policy.cel` checked and rewrote it),
    or None if it leaves the subset. `functions` are the macros' implementations, by name;
    `variables` the root variables it names (all must be in the activation, as cel-python
    requires, even those a short circuit skips); `convert` makes a plain value a CEL value."""
    try:
        node = _Compiler(functions, convert).node(tree)
    except _UnsupportedError:
        return None
    names = tuple(variables)
    # A running phase always has conn, endpoint, time, vars and actions; only its request (in
    # on_tcp_connect) or its response (before on_http_response) can be missing.
    needs_request, needs_response = "req" in variables, "res" in variables

    def entry(activation: Mapping[str, Any]) -> Any:
        run = phase_run(activation)
        if run is not None:
            if (needs_request and run.request is None) or (needs_response and run.response is None):
                raise FastPathError("a variable this phase does not have")
            return node(activation)
        for name in names:
            if name not in activation:
                raise FastPathError(f"no variable {name!r}")
        return node(activation)

    return entry


def compile_direct(
    tree: lark.Tree[Any],
    functions: Mapping[str, Callable[..., object]],
    convert: Callable[[object], object],
) -> Direct | None:
    """`compile_fast` for a running phase: a closure taking the `PhaseRun` (no activation, no
    per-leaf test of what it was given), or None if the expression leaves the subset.

    The caller must only use it on a phase that has every root variable the expression names
    (`Compiled.variables`: a request phase has no `res`, a connection phase no `req`), since
    cel-python fails on a missing one even where a short circuit skips it. Like the `Fast`
    closure, it raises (and the caller then asks cel-python) wherever it does not answer."""
    try:
        return _Compiler(functions, convert, on_run=True).node(tree)
    except _UnsupportedError:
        return None


class _Compiler:
    """Builds the closures. `on_run`: they take the running phase (`compile_direct`), not an
    activation (`compile_fast`); only the leaves differ."""

    def __init__(
        self,
        functions: Mapping[str, Callable[..., object]],
        convert: Callable[[object], object],
        *,
        on_run: bool = False,
    ) -> None:
        self.functions = functions
        self.convert = convert
        self.on_run = on_run

    def node(self, tree: object) -> _Node:
        if not isinstance(tree, lark.Tree):
            raise _UnsupportedError(repr(tree))
        handler = getattr(self, f"_{tree.data}", None)
        if handler is None:
            raise _UnsupportedError(str(tree.data))
        result: _Node = handler(tree.children)
        return result

    def _single(self, children: list[Any]) -> _Node:
        if len(children) != 1:
            raise _UnsupportedError("operator outside the subset")
        return self.node(children[0])

    _addition = _multiplication = _member = _single

    def _expr(self, children: list[Any]) -> _Node:
        if len(children) == 1:
            return self.node(children[0])
        condition, if_true, if_false = (self.node(child) for child in children)

        def choose(activation: Mapping[str, Any]) -> Any:
            if _boolean(condition(activation)):
                return if_true(activation)
            return if_false(activation)

        return choose

    def _conditionalor(self, children: list[Any]) -> _Node:
        if len(children) == 1:
            return self.node(children[0])
        left, right = self.node(children[0]), self.node(children[1])

        def either(activation: Mapping[str, Any]) -> Any:
            first = left(activation)  # TRUE and FALSE tested by identity first: no type test
            if first is TRUE or (first is not FALSE and _boolean(first)):
                return TRUE
            second = right(activation)
            if second is TRUE or second is FALSE:
                return second
            return _cel_bool(_boolean(second))

        return either

    def _conditionaland(self, children: list[Any]) -> _Node:
        if len(children) == 1:
            return self.node(children[0])
        left, right = self.node(children[0]), self.node(children[1])

        def both(activation: Mapping[str, Any]) -> Any:
            first = left(activation)  # TRUE and FALSE tested by identity first: no type test
            if first is FALSE or (first is not TRUE and not _boolean(first)):
                return FALSE
            second = right(activation)
            if second is TRUE or second is FALSE:
                return second
            return _cel_bool(_boolean(second))

        RECIPES[both] = ("and", left, right)
        return both

    def _relation(self, children: list[Any]) -> _Node:
        if len(children) == 1:
            return self.node(children[0])
        operator_tree, right_tree = children
        if not isinstance(operator_tree, lark.Tree) or len(operator_tree.children) != 1:
            raise _UnsupportedError("relation")
        left = self.node(operator_tree.children[0])
        if operator_tree.data == "relation_in":
            return self._in(left, right_tree)
        compare = _COMPARISONS.get(str(operator_tree.data))
        if compare is None:
            raise _UnsupportedError(str(operator_tree.data))
        try:
            constant = _literal_of(right_tree)
        except _UnsupportedError:
            constant = None
        raw = self._raw(operator_tree.children[0])
        if raw is not None and constant is not None and _kind(constant) in (str, int):
            # `req.method == 'GET'` over a running phase: the fact itself, no CEL value made
            return raw_comparison(raw, compare, constant)
        if constant is not None and _kind(constant) is str:
            # `x == 'GET'`, the commonest shape: one type test, the constant's kind known.
            text = str.__str__(constant)
            compare_text = _STRING_COMPARISONS[str(operator_tree.data)]

            def with_string(activation: Mapping[str, Any]) -> Any:
                a = left(activation)
                if not isinstance(a, str):
                    raise FastPathError("comparison outside the subset")
                return TRUE if compare_text(a, text) else FALSE

            RECIPES[with_string] = ("string_compare", left, compare_text, text)
            return with_string
        right = self.node(right_tree)

        def relation(activation: Mapping[str, Any]) -> Any:
            a, b = left(activation), right(activation)
            kind = _kind(a)
            if kind is None or kind is not _kind(b):
                raise FastPathError("comparison outside the subset")
            return _cel_bool(compare(a, b))

        return relation

    def _raw(self, tree: object) -> _Node | None:
        """Over a running phase (`on_run`), the plain-value reader of `tree` if it is a chain
        `RAW` covers; None otherwise."""
        if not self.on_run:
            return None
        chain = _chain(tree)
        if chain is None:
            return None
        root, *fields = chain
        return RAW.get((root, tuple(fields)))

    def _in(self, item: _Node, container_tree: object) -> _Node:
        values = self._literal_list(container_tree)
        if values is None:
            container = self.node(container_tree)

            def in_map(activation: Mapping[str, Any]) -> Any:
                key, found = item(activation), container(activation)
                if not isinstance(found, celtypes.MapType) or _kind(key) is not str:
                    raise FastPathError("`in` outside the subset")
                return _cel_bool(key in found)

            return in_map
        kinds = {_kind(value) for value in values}
        if len(kinds) != 1 or None in kinds:
            raise _UnsupportedError("a list literal of mixed or unsupported types")
        (kind,) = kinds
        members = frozenset(values)

        def in_list(activation: Mapping[str, Any]) -> Any:
            key = item(activation)
            if _kind(key) is not kind:
                raise FastPathError("`in` outside the subset")
            return _cel_bool(key in members)

        return in_list

    def _literal_list(self, tree: object) -> list[Any] | None:
        """The constants of `[lit, lit, ...]` if `tree` is a list literal, else None."""
        while isinstance(tree, lark.Tree) and tree.data in _PASS_THROUGH:
            if len(tree.children) != 1:
                return None
            tree = tree.children[0]
        if not isinstance(tree, lark.Tree) or tree.data != "list_lit":
            return None
        if not tree.children:
            raise _UnsupportedError("an empty list")
        (exprlist,) = tree.children
        return [_literal_of(element) for element in exprlist.children]

    def _unary(self, children: list[Any]) -> _Node:
        if len(children) == 1:
            return self.node(children[0])
        operator_tree, operand_tree = children
        if not isinstance(operator_tree, lark.Tree) or operator_tree.data != "unary_not":
            raise _UnsupportedError("unary operator")
        operand = self.node(operand_tree)

        def negate(activation: Mapping[str, Any]) -> Any:
            value = operand(activation)
            if value is TRUE:
                return FALSE
            if value is FALSE:
                return TRUE
            return _cel_bool(not _boolean(value))

        RECIPES[negate] = ("not", operand)
        return negate

    def _member_dot(self, children: list[Any]) -> _Node:
        receiver, name_token = children
        direct = self._direct(receiver, (str(name_token),))
        if direct is not None:
            return direct
        receive = self.node(receiver)
        name = str(name_token)

        def field(activation: Mapping[str, Any]) -> Any:
            return receive(activation).get(name)  # as cel-python's transpiled code reads it

        return field

    def _direct(self, receiver: object, path: tuple[str, ...]) -> _Node | None:
        """A closure reading `root.path...` from the running phase's facts (and through the
        views otherwise), if `receiver.path` is a chain `DIRECT` or `vars.NAME` covers."""
        chain = _chain(receiver)
        if chain is None:
            return None
        root, *rest = chain
        fields = (*rest, *path)
        getter = DIRECT.get((root, fields))
        if getter is None and root == "vars" and len(fields) == 1:
            (name,) = fields
            getter = lambda run: run.vars[name]  # noqa: E731  # set_var keeps CEL values
            RECIPES[getter] = ("var", name)
        if getter is None:
            return None
        read = getter
        if self.on_run:
            return read
        through_views = self._view_chain(root, fields)

        def direct(activation: Mapping[str, Any]) -> Any:
            run = phase_run(activation)
            if run is None:
                return through_views(activation)
            return read(run)

        return direct

    def _view_chain(self, root: str, fields: tuple[str, ...]) -> _Node:
        convert = self.convert
        if self.on_run:

            def through_run_views(run: Any) -> Any:
                value: Any = convert(run.activation[root])
                for name in fields:
                    value = value.get(name)  # as cel-python's transpiled code reads it
                return value

            return through_run_views

        def through_views(activation: Mapping[str, Any]) -> Any:
            value: Any = convert(activation[root])
            for name in fields:
                value = value.get(name)  # as cel-python's transpiled code reads it
            return value

        return through_views

    def _member_dot_arg(self, children: list[Any]) -> _Node:
        receiver, name_token, *rest = children
        method = str(name_token)
        if method not in _METHODS:
            raise _UnsupportedError(method)
        raw = self._raw(receiver)
        receive = self.node(receiver) if raw is None else raw
        arguments = [self.node(child) for child in (rest[0].children if rest else ())]
        if method == "size":
            if arguments:
                raise _UnsupportedError("size() with arguments")
            return _size(receive)
        if len(arguments) != 1:
            raise _UnsupportedError(f"{method}() takes one argument")
        (argument,) = arguments
        test: Callable[[str, str], bool] = {
            "startsWith": str.startswith,
            "endsWith": str.endswith,
            "contains": str.__contains__,
        }[method]
        fixed = _string_literal(rest[0].children[0]) if raw is not None else None
        if raw is not None and fixed is not None:
            # `req.url.path.startsWith('/api')` over a running phase: the fact and the text

            def raw_method(run: Any) -> Any:
                text = raw(run)
                if type(text) is not str:
                    raise FastPathError(f"{method}() outside the subset")
                return TRUE if test(text, fixed) else FALSE

            RECIPES[raw_method] = ("method", raw, test, fixed)
            return raw_method

        def string_method(activation: Mapping[str, Any]) -> Any:
            text, fragment = receive(activation), argument(activation)
            if not isinstance(text, str) or not isinstance(fragment, str):
                raise FastPathError(f"{method}() outside the subset")
            return _cel_bool(test(text, fragment))

        return string_method

    def _member_index(self, children: list[Any]) -> _Node:
        receiver, index_tree = children
        literal = _literal_of(index_tree)
        getter = self._fixed_getter(receiver)
        if getter is not None and _kind(literal) is int and literal >= 0:
            # `getReqHeader('x-name')[0]` over a running phase: the one value, no list made
            return header_value_at(getter[0], getter[1], int(literal))
        receive = self.node(receiver)
        if isinstance(literal, celtypes.StringType):
            key: object = literal

            def by_key(activation: Mapping[str, Any]) -> Any:
                container = receive(activation)
                if not isinstance(container, celtypes.MapType):
                    raise FastPathError("a key into something that is not a map")
                return container[key]

            return by_key
        if _kind(literal) is not int or literal < 0:
            raise _UnsupportedError("an index that is not a string or a non-negative int literal")
        position = int(literal)

        def by_position(activation: Mapping[str, Any]) -> Any:
            container = receive(activation)
            if not isinstance(container, celtypes.ListType):
                raise FastPathError("an index into something that is not a list")
            return container[position]

        return by_position

    def _fixed_getter(self, tree: object) -> tuple[str, str] | None:
        """Over a running phase (`on_run`), `(message, lower-case name)` if `tree` is nothing
        but `getReqHeader('<literal>')` or `getResHeader('<literal>')` (as `_call` would
        compile to `fixed_header_getter`); None otherwise."""
        if not self.on_run:
            return None
        while isinstance(tree, lark.Tree) and tree.data != "dot_ident_arg":
            if tree.data not in _PASS_THROUGH or len(tree.children) != 1:
                return None
            tree = tree.children[0]
        if not isinstance(tree, lark.Tree) or len(tree.children) != 2:
            return None
        name = str(tree.children[0])
        header = _HEADER_MACROS.get(name)
        if header is None or header[1] or name not in self.functions:
            return None
        arguments = tree.children[1].children
        if len(arguments) != 2 or _chain(arguments[0]) != (header[0], "headers"):
            return None
        fixed = _string_literal(arguments[1])
        return None if fixed is None else (header[0], fixed.lower())

    def _primary(self, children: list[Any]) -> _Node:
        (child,) = children
        if not isinstance(child, lark.Tree):
            raise _UnsupportedError("primary")
        if child.data == "literal":
            constant = _literal(child.children[0])
            return lambda activation: constant
        if child.data == "ident":
            name = str(child.children[0])
            convert = self.convert
            if self.on_run:
                return lambda run: convert(run.activation[name])
            return lambda activation: convert(activation[name])
        if child.data == "paren_expr":
            return self._single(child.children)
        if child.data == "dot_ident_arg":
            return self._call(child.children)
        if child.data == "ident_arg" and str(child.children[0]) == "size":
            arguments = child.children[1].children if len(child.children) == 2 else []
            if len(arguments) != 1:
                raise _UnsupportedError("size() takes one argument")
            return _size(self.node(arguments[0]))
        raise _UnsupportedError(str(child.data))

    def _call(self, children: list[Any]) -> _Node:
        name = str(children[0])
        function = self.functions.get(name)
        if function is None:
            raise _UnsupportedError(name)
        if name == "inCidrRange" and len(children) == 2 and len(children[1].children) == 2:
            address_tree, cidr_tree = children[1].children
            raw = self._raw(address_tree)
            try:
                cidr = _literal_of(cidr_tree)
            except _UnsupportedError:
                cidr = None
            if raw is not None and isinstance(cidr, str):
                return remembered_cidr(function, raw, cidr)
        header = _HEADER_MACROS.get(name)
        if header is not None and len(children) == 2 and len(children[1].children) == 2:
            source, argument = children[1].children
            if _chain(source) == (header[0], "headers"):
                argument_node = self.node(argument)
                if self.on_run:
                    fixed = _string_literal(argument)
                    if fixed is not None:
                        return fixed_header_getter(header[0], header[1], fixed.lower())
                    return run_header_getter(header[0], header[1], argument_node)
                viewed = self._plain_call(function, children)
                return header_getter(header[0], header[1], argument_node, viewed)
        return self._plain_call(function, children)

    def _plain_call(self, function: Callable[..., object], children: list[Any]) -> _Node:
        arguments = tuple(
            self.node(child) for child in (children[1].children if len(children) == 2 else ())
        )
        if len(arguments) == 1:
            (only,) = arguments
            return lambda activation: function(only(activation))
        if len(arguments) == 2:
            first, second = arguments
            return lambda activation: function(first(activation), second(activation))
        return lambda activation: function(*(argument(activation) for argument in arguments))


def _size(operand: _Node) -> _Node:
    def size(activation: Mapping[str, Any]) -> Any:
        value = operand(activation)
        if not isinstance(value, str | bytes | celtypes.ListType | celtypes.MapType):
            raise FastPathError("size() outside the subset")
        return celtypes.IntType(len(value))

    return size
