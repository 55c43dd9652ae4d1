"""CEL expressions for Traffic Policy, compiled once with cel-python's compiled runner.

Theory of operation. `compile_expression` parses the text with cel-python (`celpy`), then walks
the syntax tree before anything runs:

* every free identifier must be a declared variable (`VARIABLES`) or a variable bound by a
  comprehension macro (`[...].exists(x, ...)`); every function and method must be CEL's or one
  of the macros below. Anything else fails compile with ERR_NGROK_2200 naming the expression,
  so a typo (`req.metod` is fine, it is a map key; `reqs.method` is not) is found at load time.
* calls to Burrow's macros (`inCidrRange(...)`, `base64.encode(...)`) are rewritten into CEL's
  root-scoped call form (`.name(...)`), which the runner resolves through the activation's
  function table. cel-python 0.5's compiled runner cannot call a custom function any other way:
  it writes `module.qualname(...)` into the generated Python and evaluates that where only
  `celpy` is in scope (cloud-custodian/cel-python#145). The header, query and cookie getters
  (`getReqHeader('host')`) also get the map they read as a first argument (`req.headers`).
  The macros beyond CIDRs, headers, base64 and URL escaping live in `edge.policy.cel_macros`
  and `edge.policy.cel_strings`; their method forms (`s.sha256()`) become `.@sha256(s)`, and
  `has(x)` becomes `bool(has(x))` so that `!has(x)` works (`edge.policy.cel_rewrite`).

The result is transpiled to Python and compiled once (`celpy.CompiledRunner`); the rewritten tree
is for that runner only (cel-python's interpreter reads `.name(...)` calls differently).
`Compiled.evaluate` loads only the variables the expression names, so an activation whose values
are costly (the request's cookies, a client certificate) computes nothing the expression does
not ask for; `LazyMap` pushes the same laziness down into each variable's fields.

Runtime failures (a missing field, a type mismatch, a bad base64 string) raise
`PolicyRuntimeError` with the code the caller chooses (2254 for rule expressions, 2238 for
`${...}` interpolation, 2253 for action fields); they never escape as celpy's own exceptions.

Evaluation runs the runner's transpiled code through `edge.policy.cel_run.run`, not
`CompiledRunner.evaluate` (same results, without its per-call copies); evaluations must not
interleave across threads, and the edge evaluates policies on trio's single thread.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import re
import sys
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

import celpy
import lark
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError, CELParser
from celpy.evaluation import CELEvalError, TranspilerTree, base_functions

from edge.policy import cel_macros, cel_strings
from edge.policy.cel_fast import Direct, Fast, compile_direct, compile_fast
from edge.policy.cel_rewrite import method_call, wrap_in_bool
from edge.policy.cel_run import run
from edge.policy.errors import (
    ERR_NGROK_2200,
    ERR_NGROK_2254,
    Place,
    PolicyError,
    PolicyRuntimeError,
)

__all__ = [
    "FUNCTIONS",
    "METHODS",
    "VARIABLES",
    "Compiled",
    "LazyMap",
    "compile_expression",
    "to_cel",
]

#: The root variables an expression may name (reference/ngrok.md §4.4).
VARIABLES: Final = frozenset({"conn", "req", "res", "endpoint", "time", "vars", "actions"})

#: CEL's comprehension macros, whose first argument binds a variable.
_COMPREHENSIONS: Final = frozenset({"all", "exists", "exists_one", "map", "filter"})
#: CEL's built-in global functions (conversions, `size`, `type`) plus the `has`/`dyn` macros.
_CEL_FUNCTIONS: Final = frozenset(
    name for name in base_functions if name.isidentifier()
) | frozenset({"has", "dyn"})
#: Methods CEL defines (`s.startsWith(p)`, `l.size()`, timestamp accessors) and the macros.
METHODS: Final = (
    frozenset(name for name in base_functions if name.isidentifier() and name[0].islower())
    - frozenset({"bool", "bytes", "double", "duration", "int", "list", "map", "string"})
    - frozenset({"timestamp", "uint", "type", "null_type"})
) | _COMPREHENSIONS


# Macros raise ValueError for unusable input: cel-python turns exactly ValueError, TypeError,
# KeyError and a few others (not their subclasses) into a CEL runtime error.
def _text(value: object, macro: str) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"{macro}: expected a string, got {type(value).__name__}")


#: The longest text an IP address is written in (IPv6 with an embedded IPv4 part, RFC 4291
#: §2.2): longer strings are not addresses, and are not kept in the cache below.
_MAX_ADDRESS_TEXT: Final = 45
#: Parsed client addresses kept: the same clients come back request after request.
_PARSED_ADDRESSES: Final = 4096


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if len(text) > _MAX_ADDRESS_TEXT:
        return None
    return _parsed_address(text)


@functools.lru_cache(maxsize=_PARSED_ADDRESSES)
def _parsed_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # Go's IPNet.Contains matches ::ffff:a.b.c.d against a v4 net
    return address


#: How many distinct CIDR strings keep their parsed network: a policy's CIDRs are literals, so
#: a few dozen cover every rule; the bound only stops CIDRs built from request data growing it.
_PARSED_CIDRS: Final = 1024


@functools.lru_cache(maxsize=_PARSED_CIDRS)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The network `cidr` names, or None if it is not a CIDR (parsed once per distinct text)."""
    if "/" not in cidr:
        return None  # Go's ParseCIDR wants a prefix length; an invalid CIDR is "not in range"
    try:
        return ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError:
        return None


def _contains(address: ipaddress.IPv4Address | ipaddress.IPv6Address, cidr: str) -> bool:
    network = _network(str(cidr))
    return network is not None and address.version == network.version and address in network


def in_cidr_range(ip: object, cidr: object) -> celtypes.BoolType:
    """`inCidrRange(ip, cidr)`: true if `ip` is in `cidr`; false for an invalid IP or CIDR."""
    address = _address(_text(ip, "inCidrRange"))
    return celtypes.BoolType(address is not None and _contains(address, _text(cidr, "inCidrRange")))


def in_cidr_ranges(ip: object, cidrs: object) -> celtypes.BoolType:
    """`inCidrRanges(ip, [cidr, ...])`: true if `ip` is in any valid CIDR of the list."""
    address = _address(_text(ip, "inCidrRanges"))
    if not isinstance(cidrs, list):
        raise TypeError("inCidrRanges: expected a list of CIDR strings")
    return celtypes.BoolType(
        address is not None
        and any(_contains(address, _text(cidr, "inCidrRanges")) for cidr in cidrs)
    )


def base64_encode(data: object) -> celtypes.StringType:
    """`base64.encode(bytes)`: standard base64 with padding (strings are taken as UTF-8)."""
    if isinstance(data, str):
        data = data.encode()
    if not isinstance(data, bytes):
        raise TypeError("base64.encode: expected bytes or a string")
    return celtypes.StringType(base64.b64encode(data).decode("ascii"))


def base64_decode(text: object) -> celtypes.BytesType:
    """`base64.decode(string)`: the bytes; an error if the text is not padded base64."""
    try:
        return celtypes.BytesType(base64.b64decode(_text(text, "base64.decode"), validate=True))
    except binascii.Error as exc:
        raise ValueError(f"base64.decode: not base64: {exc}") from None


_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")


def url_escape(text: object) -> celtypes.StringType:
    """`url.escape(string)`: Go's `url.QueryEscape` (space becomes `+`, `-_.~` kept)."""
    return celtypes.StringType(urllib.parse.quote_plus(_text(text, "url.escape"), safe=""))


def url_unescape(text: object) -> celtypes.StringType:
    """`url.unescape(string)`: Go's `url.QueryUnescape`; an error for a malformed `%` escape."""
    value = _text(text, "url.unescape")
    if _BAD_ESCAPE.search(value):
        raise ValueError(f"url.unescape: invalid escape in {value!r}")
    return celtypes.StringType(urllib.parse.unquote_plus(value, errors="strict"))


def _values(container: object, key: object, macro: str, *, fold_case: bool) -> list[Any]:
    if not isinstance(container, Mapping):
        raise TypeError(f"{macro}: expected a map")
    name = _text(key, macro)
    name = name.lower() if fold_case else name
    values = container.get(name, [])
    if not isinstance(values, list):
        raise TypeError(f"{macro}: expected a list of values for {name!r}")
    return values


def get_header(headers: object, name: object) -> celtypes.ListType:
    """`getReqHeader(name)` / `getResHeader(name)`: the header's values (names fold case)."""
    return celtypes.ListType(_values(headers, name, "getReqHeader", fold_case=True))


def has_header(headers: object, name: object) -> celtypes.BoolType:
    """`hasReqHeader(name)` / `hasResHeader(name)`: true if the header is present."""
    return celtypes.BoolType(bool(_values(headers, name, "hasReqHeader", fold_case=True)))


def get_query_param(params: object, name: object) -> celtypes.ListType:
    """`getQueryParam(name)`: the query parameter's values (names are case-sensitive)."""
    return celtypes.ListType(_values(params, name, "getQueryParam", fold_case=False))


def has_query_param(params: object, name: object) -> celtypes.BoolType:
    """`hasQueryParam(name)`: true if the query parameter is present."""
    return celtypes.BoolType(bool(_values(params, name, "hasQueryParam", fold_case=False)))


#: Getters that read a map of the request or response. A function cannot see variables, so
#: `getReqHeader(n)` is rewritten to `getReqHeader(req.headers, n)`: the map passed in.
_GETTERS: Final[Mapping[str, str]] = {
    "getReqHeader": "req.headers",
    "hasReqHeader": "req.headers",
    "getResHeader": "res.headers",
    "hasResHeader": "res.headers",
    "getQueryParam": "req.url.query_params",
    "hasQueryParam": "req.url.query_params",
    **cel_macros.GETTERS,
}

#: Burrow's macros by the name used in the runner's function table. Global ones are called as
#: written (`inCidrRange(...)`); namespaced ones (`base64.encode(...)`) are in `_NAMESPACES`.
FUNCTIONS: Final[Mapping[str, Callable[..., object]]] = {
    "inCidrRange": in_cidr_range,
    "inCidrRanges": in_cidr_ranges,
    "base64.encode": base64_encode,
    "base64.decode": base64_decode,
    "url.escape": url_escape,
    "url.unescape": url_unescape,
    "getReqHeader": get_header,
    "hasReqHeader": has_header,
    "getResHeader": get_header,
    "hasResHeader": has_header,
    "getQueryParam": get_query_param,
    "hasQueryParam": has_query_param,
    **cel_macros.FUNCTIONS,
    **cel_strings.FUNCTIONS,
}
#: Macros written as methods (`s.sha256()`, `s.decodeJson()`): the checker rewrites
#: `recv.name(args)` into a call of `_METHOD_PREFIX + name` with `recv` as first argument.
_METHOD_MACROS: Final[Mapping[str, Callable[..., object]]] = {
    **cel_macros.METHODS,
    **cel_strings.METHODS,
    "escapeUrl": url_escape,
    "unescapeUrl": url_unescape,
}
_METHOD_PREFIX: Final = "@"  # no CEL name starts with it: these never clash with a function
#: The runner's function table: the macros, and the method macros under their prefixed names.
_RUNNER_FUNCTIONS: Final[Mapping[str, Callable[..., object]]] = {
    **FUNCTIONS,
    **{_METHOD_PREFIX + name: function for name, function in _METHOD_MACROS.items()},
}
_GLOBAL_MACROS: Final = frozenset(name for name in FUNCTIONS if "." not in name)
_NAMESPACES: Final = frozenset(name.split(".")[0] for name in FUNCTIONS if "." in name)


def to_cel(value: object) -> object:
    """`value` as a CEL value: plain str/int/float/bool/None/list/dict become celpy types.

    `LazyMap`s and values that already are CEL values are returned as they are.
    """
    if type(value) in _CEL_VALUE_TYPES:  # the common case, one set lookup
        return value
    if isinstance(value, LazyMap | celtypes.BoolType | celtypes.StringType | celtypes.IntType):
        return value
    if isinstance(value, celtypes.DoubleType | celtypes.BytesType | celtypes.ListType):
        return value
    if isinstance(value, celtypes.MapType | celtypes.TimestampType | celtypes.DurationType):
        return value
    if isinstance(value, bytes):
        return celtypes.BytesType(value)
    if isinstance(value, Mapping) and not isinstance(value, dict):
        value = dict(value)
    return json_to_cel(value)  # type: ignore[arg-type]  # celpy's JSON alias is narrower


class LazyMap(celtypes.MapType):
    """A CEL map whose values are computed on first access, then kept.

    `LazyMap({"method": lambda: "GET", "headers": read_headers})`: `req.method` calls only the
    first function. Values are converted with `to_cel`; a function may return another `LazyMap`
    for nested laziness. Iterating gives the keys without computing values; `items()`,
    `values()` and equality compute everything. A function that raises makes the expression
    that asked for it fail at run time (the caller's coded error), nothing else.
    """

    def __init__(self, fields: Mapping[str, Callable[[], object]]) -> None:
        super().__init__()
        self._pending: dict[str, Callable[[], object]] = dict(fields)

    def _force(self, key: str) -> None:
        # Removed from `_pending` only once computed: a field whose function raised raises
        # again when asked again (the fast path's failed try, then cel-python's), never reads
        # as missing.
        value = to_cel(self._pending[key]())
        del self._pending[key]
        dict.__setitem__(self, celtypes.StringType(key), cast(celtypes.Value, value))

    def keep_computed(self, old: LazyMap, names: frozenset[str]) -> None:
        """Take over `old`'s already computed values of the fields `names` (those that did not
        change between the two views), so they are not computed again."""
        for name in names:
            if name in self._pending and dict.__contains__(old, name):
                del self._pending[name]
                value: Any = dict.__getitem__(old, cast(Any, name))
                dict.__setitem__(self, celtypes.StringType(name), value)

    def _force_all(self) -> None:
        for key in list(self._pending):
            self._force(key)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str) and key in self._pending:
            self._force(key)
        return super().__getitem__(key)

    def get(self, key: object, default: object = None) -> object:  # type: ignore[override]
        # celpy reads `req.method` as `req.get("method")`; like MapType.get, a missing key with
        # no default raises KeyError, which CEL reports as "no such member" (never null).
        if isinstance(key, str) and key in self._pending:
            self._force(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._pending or dict.__contains__(self, key)

    def __iter__(self) -> Iterator[Any]:
        yield from list(dict.keys(self))
        yield from (celtypes.StringType(key) for key in list(self._pending))

    def __len__(self) -> int:
        return dict.__len__(self) + len(self._pending)

    def items(self) -> object:  # type: ignore[override]
        self._force_all()
        return dict.items(self)

    def values(self) -> object:  # type: ignore[override]
        self._force_all()
        return dict.values(self)

    def keys(self) -> object:  # type: ignore[override]
        self._force_all()
        return dict.keys(self)

    def __eq__(self, other: object) -> bool:
        self._force_all()
        return bool(super().__eq__(other))

    __hash__ = None  # type: ignore[assignment]  # a mutable mapping, as dict

    def __repr__(self) -> str:
        return f"LazyMap(computed={dict(dict.items(self))!r}, pending={sorted(self._pending)!r})"


#: Types `to_cel` returns unchanged without looking further (exact types, not subclasses).
_CEL_VALUE_TYPES: Final = frozenset(
    {
        LazyMap,
        celtypes.BoolType,
        celtypes.StringType,
        celtypes.IntType,
        celtypes.DoubleType,
        celtypes.ListType,
        celtypes.MapType,
    }
)


@dataclass(frozen=True, slots=True, eq=False)
class Compiled:
    """One compiled expression: evaluate it as often as needed with different activations."""

    text: str
    variables: frozenset[str]  # the root variables it names: only these are read per evaluation
    _runner: celpy.Runner = field(repr=False)
    # The same expression as closures (`edge.policy.cel_fast`), or None: cel-python runs it.
    _fast: Fast | None = field(default=None, repr=False)
    #: The same over a running phase itself (`edge.policy.cel_fast.compile_direct`), or None;
    #: `edge.policy.plan` runs it, and this `value` whenever it does not answer.
    direct: Direct | None = field(default=None, repr=False)

    def value(
        self,
        activation: Mapping[str, object],
        *,
        code: str = ERR_NGROK_2254,
        place: Place | None = None,
    ) -> object:
        """The expression's CEL value; raises `PolicyRuntimeError(code)` if evaluation fails.

        Only `self.variables` are read from `activation` (each once); a variable the activation
        lacks is a runtime error, as is anything cel-python reports (a missing map key, a type
        mismatch, a macro given bad input).
        """
        fast = self._fast
        if fast is not None:
            try:
                return fast(activation)
            except Exception:  # a case the fast path leaves to cel-python (below)
                pass
        context: dict[str, object] = {}
        for name in self.variables:
            try:
                context[name] = to_cel(activation[name])
            except KeyError:
                raise self._failure(code, place, f"no variable {name!r} in this phase") from None
            except Exception as exc:  # a lazy field's function failed: this evaluation fails
                raise self._failure(code, place, f"computing {name!r} failed: {exc!r}") from exc
        try:
            result = run(self._runner, context)
        except CELEvalError as exc:
            raise self._failure(code, place, _describe(exc)) from None
        except Exception as exc:  # cel-python's own bugs must not take the edge down
            raise self._failure(code, place, f"evaluation failed: {exc!r}") from exc
        if isinstance(result, CELEvalError):
            raise self._failure(code, place, _describe(result))
        return result

    def evaluate(
        self,
        activation: Mapping[str, object],
        *,
        code: str = ERR_NGROK_2254,
        place: Place | None = None,
    ) -> bool:
        """The expression's truth; a non-boolean result is a runtime error (`code`)."""
        result = self.value(activation, code=code, place=place)
        if not isinstance(result, celtypes.BoolType | bool):
            raise self._failure(
                code, place, f"expected a boolean result, got {type(result).__name__}"
            )
        return bool(result)

    def _failure(self, code: str, place: Place | None, why: str) -> PolicyRuntimeError:
        return PolicyRuntimeError(
            code,
            f"Failed to resolve CEL expression. The expression was: {self.text} ERROR: {why}",
            place,
        )


def _describe(error: CELEvalError) -> str:
    args = error.args
    if len(args) >= 3 and isinstance(args[2], tuple) and args[2]:
        return f"{args[0]}: {args[2][0]}"
    return str(args[0]) if args else "evaluation error"


def compile_expression(text: str, *, place: Place | None = None) -> Compiled:
    """Parse, check and compile one CEL expression; `PolicyError(2200)` if it is not valid.

    Invalid means: a syntax error, an undeclared variable, an unknown function or method, a
    protobuf message literal (Burrow has no message types), or nesting deeper than Python's
    recursion limit allows (about 100 parentheses; CEL implementations need only 32). The
    message names the expression.
    """
    previous_limit = sys.getrecursionlimit()
    environment = celpy.Environment(runner_class=celpy.CompiledRunner)
    # celpy.Environment sets the process's recursion limit to 2500; never lower it for others.
    sys.setrecursionlimit(max(previous_limit, sys.getrecursionlimit()))
    try:
        ast = environment.compile(text)
    except CELParseError as exc:
        where = f" at line {exc.line} column {exc.column}" if exc.line is not None else ""
        raise _invalid(text, f"syntax error{where}", place) from None
    except RecursionError:
        raise _invalid(text, "nested too deeply", place) from None
    if not isinstance(ast, TranspilerTree):
        # celpy builds its parser once per process with the first runner's tree class; an
        # interpreted Environment created first would leave us trees the transpiler cannot use.
        raise _invalid(
            text, "cel-python's parser was initialised for the interpreted runner", place
        )
    checker = _Checker(text, place)
    try:
        checker.visit(ast, frozenset())
        runner = environment.program(ast, functions=dict(_RUNNER_FUNCTIONS))  # type: ignore[arg-type]
    except (
        CELEvalError,
        celpy.evaluation.CELSyntaxError,
        celpy.evaluation.CELUnsupportedError,
    ) as exc:
        raise _invalid(text, str(exc.args[0]) if exc.args else "cannot compile", place) from None
    except RecursionError:
        raise _invalid(text, "nested too deeply", place) from None
    variables = frozenset(checker.variables)
    return Compiled(
        text,
        variables,
        runner,
        compile_fast(ast, FUNCTIONS, variables, to_cel),
        compile_direct(ast, FUNCTIONS, to_cel),
    )


def _invalid(text: str, why: str, place: Place | None) -> PolicyError:
    return PolicyError(ERR_NGROK_2200, f"Invalid policy expression {text!r}: {why}", place)


def _token(value: object) -> str:
    return str(value.value) if isinstance(value, lark.Token) else ""


def _bare_identifier(tree: object) -> str | None:
    """The name if `tree` (an `expr`) is nothing but one identifier, as macro binders are."""
    while isinstance(tree, lark.Tree) and len(tree.children) == 1:
        if tree.data == "ident":
            return _token(tree.children[0])
        tree = tree.children[0]
    return None


class _Checker:
    """Walks a parsed expression: declared names only, and Burrow's macros rewritten."""

    def __init__(self, text: str, place: Place | None) -> None:
        self.text = text
        self.place = place
        self.variables: set[str] = set()

    def fail(self, why: str) -> PolicyError:
        return _invalid(self.text, why, self.place)

    def visit(self, tree: lark.Tree[Any], bound: frozenset[str]) -> None:
        kind = tree.data
        if kind in {"ident", "dot_ident"}:
            self.name(_token(tree.children[0]), bound)
            return
        if kind in {"ident_arg", "dot_ident_arg"}:
            self.call(tree, bound)
            return
        if kind == "member_dot_arg":
            self.method(tree, bound)
            return
        if kind == "member_object":
            raise self.fail("message literals are not supported")
        for child in tree.children:
            if isinstance(child, lark.Tree):
                self.visit(child, bound)

    def name(self, name: str, bound: frozenset[str]) -> None:
        if name in bound:
            return
        if name not in VARIABLES:
            known = ", ".join(sorted(VARIABLES))
            raise self.fail(f"undeclared reference to {name!r} (variables are {known})")
        self.variables.add(name)

    def call(self, tree: lark.Tree[Any], bound: frozenset[str]) -> None:
        name = _token(tree.children[0])
        if name in _GETTERS:
            arguments = tree.children[1] if len(tree.children) == 2 else None
            if not isinstance(arguments, lark.Tree) or len(arguments.children) != 1:
                raise self.fail(f"{name}() takes one argument")
            source = CELParser(tree_class=TranspilerTree).parse(_GETTERS[name])
            arguments.children.insert(0, source)
        if name in _GLOBAL_MACROS:
            tree.data = "dot_ident_arg"  # resolved through the activation's function table
        elif name not in _CEL_FUNCTIONS:
            raise self.fail(f"undeclared reference to function {name!r}")
        for child in tree.children[1:]:
            if isinstance(child, lark.Tree):
                self.visit(child, bound)
        if name == "has":
            wrap_in_bool(tree)  # a CEL bool, so that `!has(...)` works

    def method(self, tree: lark.Tree[Any], bound: frozenset[str]) -> None:
        receiver, method_token, *rest = tree.children
        method = _token(method_token)
        namespace = _bare_member(receiver)
        if namespace is not None and namespace in _NAMESPACES and namespace not in bound:
            qualified = f"{namespace}.{method}"
            if qualified not in FUNCTIONS:
                raise self.fail(f"undeclared reference to function {qualified!r}")
            # member_dot_arg(base64, encode, args) -> primary(dot_ident_arg("base64.encode", args))
            children: list[Any] = [lark.Token("IDENT", qualified), *rest]
            call = TranspilerTree("dot_ident_arg", children, tree.meta)
            tree.data = "primary"
            tree.children = [call]
            for child in rest:
                if isinstance(child, lark.Tree):
                    self.visit(child, bound)
            return
        if method not in METHODS and method in _METHOD_MACROS:
            self.method_macro(tree, bound)
            return
        if method not in METHODS:
            raise self.fail(f"undeclared reference to method {method!r}")
        assert isinstance(receiver, lark.Tree)
        self.visit(receiver, bound)
        arguments = rest[0].children if rest and isinstance(rest[0], lark.Tree) else []
        if method in _COMPREHENSIONS:
            binder = _bare_identifier(arguments[0]) if arguments else None
            if binder is None or len(arguments) != 2:
                raise self.fail(f"{method}() takes a variable name and an expression")
            body = arguments[1]
            assert isinstance(body, lark.Tree)
            self.visit(body, bound | {binder})
            return
        for argument in arguments:
            if isinstance(argument, lark.Tree):
                self.visit(argument, bound)

    def method_macro(self, tree: lark.Tree[Any], bound: frozenset[str]) -> None:
        """`recv.name(args)` -> `.@name(recv, args)`, resolved through the function table."""
        receiver, method_token, *rest = tree.children
        assert isinstance(receiver, lark.Tree)
        self.visit(receiver, bound)
        arguments = rest[0].children if rest and isinstance(rest[0], lark.Tree) else []
        for argument in arguments:
            if isinstance(argument, lark.Tree):
                self.visit(argument, bound)
        method_call(tree, _METHOD_PREFIX + _token(method_token))


def _bare_member(tree: object) -> str | None:
    """The identifier if `tree` (a `member`) is just `primary(ident(NAME))`."""
    if isinstance(tree, lark.Tree) and tree.data == "member" and len(tree.children) == 1:
        primary = tree.children[0]
        if isinstance(primary, lark.Tree) and primary.data == "primary":
            ident = primary.children[0]
            if isinstance(ident, lark.Tree) and ident.data == "ident":
                return _token(ident.children[0])
    return None
