"""`${...}` interpolation in action config strings (ngrok.md §4.2).

`compile_template("Bearer ${req.headers['x-token'][0]}")` splits the text into literal and
expression parts once, compiling each expression with `edge.policy.cel`; `Template.render`
evaluates the parts against an activation and joins them. A rendered value is never scanned for
`${` again, so a client cannot smuggle an expression in through a header it sends. When the
result becomes a header value (`header_value=True`), CR, LF and NUL are refused: they would let a
client's input start a new header or end the head.

The scanner finds the `}` that closes `${` by counting braces outside CEL string literals, so
`${ {'a': '}'}['a'] }` is one expression. A `$` not followed by `{` is literal text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from celpy import celtypes
from celpy.adapter import CELJSONEncoder

from edge.policy.cel import Compiled, compile_expression
from edge.policy.errors import (
    ERR_NGROK_2224,
    ERR_NGROK_2238,
    Place,
    PolicyError,
    PolicyRuntimeError,
)

__all__ = [
    "Expression",
    "Literal",
    "Template",
    "as_text",
    "compile_template",
    "split_template",
]

_FORBIDDEN_IN_HEADERS: Final = ("\r", "\n", "\0")


@dataclass(frozen=True, slots=True)
class Literal:
    """Text copied to the output as it is."""

    text: str


@dataclass(frozen=True, slots=True)
class Expression:
    """The CEL text between `${` and its closing `}` (without them)."""

    text: str


def split_template(text: str) -> tuple[Literal | Expression, ...]:
    """`text` as literal and expression parts, in order; ValueError if a `${` is never closed.

    An empty `${}` is a ValueError too (there is nothing to evaluate).
    """
    parts: list[Literal | Expression] = []
    literal_start = 0
    index = 0
    while True:
        start = text.find("${", index)
        if start < 0:
            break
        end = _closing_brace(text, start + 2)
        if end is None:
            raise ValueError(f"unterminated '${{' at offset {start}")
        body = text[start + 2 : end]
        if not body.strip():
            raise ValueError(f"empty '${{}}' at offset {start}")
        if start > literal_start:
            parts.append(Literal(text[literal_start:start]))
        parts.append(Expression(body))
        literal_start = index = end + 1
    if literal_start < len(text) or not parts:
        parts.append(Literal(text[literal_start:]))
    return tuple(parts)


def _closing_brace(text: str, index: int) -> int | None:
    depth = 0
    quote: str | None = None
    while index < len(text):
        char = text[index]
        if quote is not None:
            if char == "\\":
                index += 1  # skip the escaped character
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            if depth == 0:
                return index
            depth -= 1
        index += 1
    return None


@dataclass(frozen=True, slots=True)
class Template:
    """A config string with its `${...}` parts compiled; render it per request."""

    text: str
    parts: tuple[str | Compiled, ...]

    @property
    def is_static(self) -> bool:
        """True if the string has no `${...}`: `render` always returns `text`."""
        return all(isinstance(part, str) for part in self.parts)

    def render(
        self,
        activation: Mapping[str, object],
        *,
        header_value: bool = False,
        place: Place | None = None,
        field: str | None = None,
    ) -> str:
        """The string with every expression's value in place of its `${...}`.

        Values become text as CEL's `string()` would (`true`, `42`, `1.5`); bytes must be UTF-8;
        lists and maps are written as JSON; null is empty. Raises `PolicyRuntimeError`
        (ERR_NGROK_2238) if an expression fails, or if `header_value` and the result holds CR,
        LF or NUL; the error names `place`, narrowed to `field` if given (narrowed only then,
        so a render that succeeds builds no place).
        """
        parts = self.parts
        if not parts:
            return ""
        if len(parts) == 1 and type(parts[0]) is str:
            result = parts[0]
        else:
            if field is not None and place is not None:
                place = place.at_field(field)
            pieces: list[str] = []
            for part in parts:
                if isinstance(part, str):
                    pieces.append(part)
                    continue
                value = part.value(activation, code=ERR_NGROK_2238, place=place)
                pieces.append(as_text(value, part.text, place))
            result = "".join(pieces)
        if header_value and any(char in result for char in _FORBIDDEN_IN_HEADERS):
            if field is not None and place is not None and place.field != field:
                place = place.at_field(field)
            raise PolicyRuntimeError(
                ERR_NGROK_2238,
                f"Failed to resolve interpolated CEL expression. The expression was: {self.text} "
                "ERROR: the result contains CR, LF or NUL, which a header value may not",
                place,
            )
        return result


def as_text(value: object, expression: str, place: Place | None) -> str:
    """A `${...}` value as text (see `Template.render`); `expression` and `place` only name a
    failure (ERR_NGROK_2238: bytes that are not UTF-8)."""
    if value is None:
        return ""
    if isinstance(value, celtypes.BoolType | bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyRuntimeError(
                ERR_NGROK_2238,
                "Failed to resolve interpolated CEL expression. The expression was: "
                f"{expression} ERROR: bytes that are not UTF-8",
                place,
            ) from None
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, celtypes.TimestampType | celtypes.DurationType):
        return str(value)  # RFC 3339 / "90s", as CEL's string() writes them (no JSON quotes)
    return json.dumps(value, cls=CELJSONEncoder, separators=(",", ":"))


def compile_template(text: str, *, place: Place | None = None) -> Template:
    """Split and compile a config string; `PolicyError(2224)` if a `${...}` is not valid CEL."""
    try:
        pieces = split_template(text)
    except ValueError as exc:
        raise PolicyError(
            ERR_NGROK_2224,
            f"failed to compile CEL template expressions in {text!r}: {exc}",
            place,
        ) from None
    parts: list[str | Compiled] = []
    for piece in pieces:
        if isinstance(piece, Literal):
            parts.append(piece.text)
            continue
        try:
            parts.append(compile_expression(piece.text, place=place))
        except PolicyError as exc:
            raise PolicyError(
                ERR_NGROK_2224,
                f"failed to compile CEL template expressions in {text!r}: {exc.problem}",
                place,
            ) from None
    return Template(text, tuple(parts))
