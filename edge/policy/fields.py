"""Strict reading of one action's `config` mapping, field by field.

`ConfigReader` hands out typed fields (`string`, `integer`, `boolean`, `strings`, `mapping`,
`template`) and remembers which keys were read; `finish()` then refuses any key nobody read, so
a misspelt field (`status-code`) is an error naming it rather than a silently ignored setting.
Every error is a `PolicyError` whose place ends in `config.<field>`:

* ERR_NGROK_2203 an unknown field (ngrok: "Failed to parse the configuration for policy action
  type `TYP`");
* ERR_NGROK_2204 a wrong type or a missing required field ("has invalid value: `FIELD`");
* ERR_NGROK_2215 a number out of range; ERR_NGROK_2218 a list or map with too many entries;
  ERR_NGROK_2221 a string over its length limit; ERR_NGROK_2223 an empty list that may not be.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

from edge.policy.errors import (
    ERR_NGROK_2203,
    ERR_NGROK_2204,
    ERR_NGROK_2215,
    ERR_NGROK_2218,
    ERR_NGROK_2221,
    ERR_NGROK_2223,
    Place,
    PolicyError,
    kind_of,
)
from edge.policy.interpolation import Template, compile_template

__all__ = ["ConfigReader"]


class ConfigReader:
    """Reads the fields of one action's config; call `finish()` after the last field."""

    def __init__(self, config: Mapping[str, object], place: Place) -> None:
        self.config = config
        self.place = place
        self.read: set[str] = set()

    @property
    def action(self) -> str:
        return self.place.action_type or "?"

    def at(self, field: str) -> Place:
        """The place of `config.<field>`."""
        return self.place.at_field(f"config.{field}")

    def error(self, code: str, field: str, problem: str) -> PolicyError:
        return PolicyError(code, problem, self.at(field))

    def invalid(self, field: str, why: str) -> PolicyError:
        """ERR_NGROK_2204 for `field`, in ngrok's words, with the reason after them."""
        return self.error(
            ERR_NGROK_2204,
            field,
            f"Configuration for policy action type {self.action} has invalid value: {field}: {why}",
        )

    def raw(self, field: str) -> object:
        """The value as written (None if absent or null), marking the field as read."""
        self.read.add(field)
        return self.config.get(field)

    def present(self, field: str) -> bool:
        return self.config.get(field) is not None

    def string(
        self, field: str, *, required: bool = False, max_length: int | None = None
    ) -> str | None:
        value = self.raw(field)
        if value is None:
            if required:
                raise self.invalid(field, "is required")
            return None
        if not isinstance(value, str):
            raise self.invalid(field, f"must be a string, not {kind_of(value)}")
        if max_length is not None and len(value) > max_length:
            raise self.error(
                ERR_NGROK_2221,
                field,
                f"Invalid configuration for {self.action}: {field} length of {len(value)} "
                f"exceeded limit of {max_length}",
            )
        return value

    def integer(self, field: str, *, default: int, minimum: int, maximum: int) -> int:
        value = self.raw(field)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.invalid(field, f"must be an integer, not {kind_of(value)}")
        if not minimum <= value <= maximum:
            raise self.error(
                ERR_NGROK_2215,
                field,
                f"Failed to parse configuration for {self.action}: {field} must be between "
                f"{minimum} and {maximum} inclusive, was {value}",
            )
        return value

    def boolean(self, field: str, *, default: bool) -> bool:
        value = self.raw(field)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.invalid(field, f"must be true or false, not {kind_of(value)}")
        return value

    def strings(
        self, field: str, *, required: bool = False, max_entries: int | None = None
    ) -> tuple[str, ...]:
        """A list of strings; absent is `()` unless `required` (then absent or empty is 2223)."""
        value = self.raw(field)
        if value is None:
            value = ()
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise self.invalid(field, f"must be a list of strings, not {kind_of(value)}")
        if required and not value:
            raise self.error(
                ERR_NGROK_2223,
                field,
                f"Invalid configuration for {self.action}: {field} cannot be empty",
            )
        self.check_count(field, len(value), max_entries)
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise self.invalid(f"{field}[{index}]", f"must be a string, not {kind_of(item)}")
        return tuple(value)

    def mapping(
        self, field: str, *, required: bool = False, max_entries: int | None = None
    ) -> Mapping[str, object]:
        """A mapping; absent is empty unless `required` (then absent or empty is 2223)."""
        value = self.raw(field)
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise self.invalid(field, f"must be a mapping, not {kind_of(value)}")
        if required and not value:
            raise self.error(
                ERR_NGROK_2223,
                field,
                f"Invalid configuration for {self.action}: {field} cannot be empty",
            )
        self.check_count(field, len(value), max_entries)
        return value

    def check_count(self, field: str, count: int, limit: int | None) -> None:
        if limit is not None and count > limit:
            raise self.error(
                ERR_NGROK_2218,
                field,
                f"Too many entries for {field}. You provided {count} entries, "
                f"but the limit is {limit}",
            )

    def template(self, field: str, text: str) -> Template:
        """`text` (the value of `field`) compiled as a `${...}` template (2224 if invalid)."""
        return compile_template(text, place=self.at(field))

    def finish(self) -> None:
        """Refuse every field that was not read: ERR_NGROK_2203 naming the first one."""
        for key in self.config:
            if key not in self.read:
                known = sorted(self.read)
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                expected = (
                    f"; known fields: {', '.join(known)}" if known else "; it takes no fields"
                )
                raise self.error(
                    ERR_NGROK_2203,
                    key,
                    f"Failed to parse the configuration for policy action type {self.action}: "
                    f"unknown field {key!r}{hint}{expected}",
                )
