"""The admin API's body-field parsers, shared by every resource (`edge.admin.routes`,
`edge.admin.cloud_endpoints`): each takes the field's name and its JSON value and returns the
value, or raises `ApiError` 400 ERR_BAD_BODY naming the field and what was wrong with it.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from edge.admin.errors import ERR_BAD_ACL, ERR_BAD_BODY, ApiError
from edge.store import (
    ACL_MAX_RULES,
    CREDENTIAL_LIMIT_MAX,
    DESCRIPTION_MAX_BYTES,
    METADATA_MAX_BYTES,
    NAME_MAX_BYTES,
    UNSET,
    Unset,
)
from edge.tunnels.acl import AclError, parse_acl

__all__ = [
    "acl",
    "boolean",
    "description",
    "display_name",
    "json_type",
    "limit",
    "limit_change",
    "metadata",
    "non_empty_text",
    "optional_id",
    "text",
    "unsupported",
]


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


def display_name(name: str, value: object) -> object:
    return non_empty_text(name, value, NAME_MAX_BYTES)


def optional_id(name: str, value: object) -> object:
    return text(name, value, DESCRIPTION_MAX_BYTES) or None


def acl(name: str, value: object) -> object:
    if not isinstance(value, list):
        raise ApiError(
            400,
            ERR_BAD_BODY,
            f"{name} must be an array of rules, not {json_type(value)}.",
        )
    if len(value) > ACL_MAX_RULES:
        raise ApiError(
            400, ERR_BAD_BODY, f"{name} has {len(value)} rules; the limit is {ACL_MAX_RULES}."
        )
    rules = [text(f"{name}[{i}]", rule, DESCRIPTION_MAX_BYTES) for i, rule in enumerate(value)]
    try:
        parse_acl(rules)
    except AclError as exc:
        raise ApiError(400, exc.code or ERR_BAD_ACL, f"{name}: {exc.message}") from exc
    return rules


def limit(name: str, value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(
            400,
            ERR_BAD_BODY,
            f"{name} must be a whole number (or null for no limit), not {json_type(value)}.",
        )
    if not 1 <= value <= CREDENTIAL_LIMIT_MAX:
        raise ApiError(
            400,
            ERR_BAD_BODY,
            f"{name} must be from 1 to {CREDENTIAL_LIMIT_MAX} (or null for no limit), not {value}.",
        )
    return value


def limit_change(body: Mapping[str, object], name: str) -> int | Unset | None:
    """A limit field of a PATCH body for `update_credential`: absent is `UNSET` (keep the
    stored limit), null is None (remove it), a number sets it."""
    if name not in body:
        return UNSET
    return cast(int | None, body[name])


def unsupported(name: str, value: object) -> object:
    raise ApiError(400, ERR_BAD_BODY, f"{name} is not supported by this edge; leave it out.")
