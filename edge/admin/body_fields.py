"""The admin API's body-field parsers, shared by every resource (`edge.admin.routes`,
`edge.admin.cloud_endpoints`): each takes the field's name and its JSON value and returns the
value, or raises `ApiError` 400 ERR_BAD_BODY naming the field and what was wrong with it.

Pure: no I/O.
"""

from __future__ import annotations

from edge.admin.errors import ERR_BAD_BODY, ApiError
from edge.store import DESCRIPTION_MAX_BYTES, METADATA_MAX_BYTES

__all__ = ["boolean", "description", "json_type", "metadata", "non_empty_text", "text"]


def json_type(value: object) -> str:
    """How an error message names a JSON value's type: `a string`, `an object`, `null`..."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return "an object" if isinstance(value, dict) else "null"


def text(name: str, value: object, max_bytes: int) -> str:
    """A string of at most `max_bytes` bytes of UTF-8."""
    if not isinstance(value, str):
        raise ApiError(400, ERR_BAD_BODY, f"{name} must be a string, not {json_type(value)}.")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ApiError(400, ERR_BAD_BODY, f"{name} is {size} bytes; the limit is {max_bytes}.")
    return value


def non_empty_text(name: str, value: object, max_bytes: int) -> str:
    """`text`, and not only whitespace."""
    result = text(name, value, max_bytes)
    if not result.strip():
        raise ApiError(400, ERR_BAD_BODY, f"{name} must not be empty.")
    return result


def description(name: str, value: object) -> object:
    return text(name, value, DESCRIPTION_MAX_BYTES)


def metadata(name: str, value: object) -> object:
    return text(name, value, METADATA_MAX_BYTES)


def boolean(name: str, value: object) -> object:
    if not isinstance(value, bool):
        raise ApiError(400, ERR_BAD_BODY, f"{name} must be true or false, not {json_type(value)}.")
    return value
