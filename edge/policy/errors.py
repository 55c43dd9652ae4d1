"""Traffic Policy errors: ngrok's ERR_NGROK_22xx codes, each with the place it points at.

A `PolicyError` is an `NgrokError` (message plus code), so a Bind that carries a bad policy is
refused with the same code ngrok's edge would send (reference/traffic-policy.md, "Validation
errors"; the wording of each message follows ngrok's error pages, DOCS `errors/err_ngrok_22xx`).
Every message starts with the place in the document, e.g.

    on_http_request rule 1 ("block bots") action 0 (deny) config.status_code: ...

so a person can find the line to fix without counting rules. `PolicyRuntimeError` is the one
raised while a request is evaluated (a CEL expression that fails at run time); it also carries
the place, and the caller answers that one request with a coded 500-class error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from protocol.rpc.errcodes import ERR_NGROK_2201, NgrokError

__all__ = [
    "ERR_NGROK_2200",
    "ERR_NGROK_2201",
    "ERR_NGROK_2202",
    "ERR_NGROK_2203",
    "ERR_NGROK_2204",
    "ERR_NGROK_2205",
    "ERR_NGROK_2206",
    "ERR_NGROK_2207",
    "ERR_NGROK_2214",
    "ERR_NGROK_2215",
    "ERR_NGROK_2217",
    "ERR_NGROK_2218",
    "ERR_NGROK_2219",
    "ERR_NGROK_2221",
    "ERR_NGROK_2223",
    "ERR_NGROK_2224",
    "ERR_NGROK_2229",
    "ERR_NGROK_2230",
    "ERR_NGROK_2231",
    "ERR_NGROK_2236",
    "ERR_NGROK_2238",
    "ERR_NGROK_2239",
    "ERR_NGROK_2252",
    "ERR_NGROK_2253",
    "ERR_NGROK_2254",
    "ERR_NGROK_2257",
    "ERR_NGROK_2258",
    "ERR_NGROK_2261",
    "ERR_NGROK_2264",
    "ERR_NGROK_2265",
    "Place",
    "PolicyError",
    "PolicyRuntimeError",
    "kind_of",
]

#: "Invalid policy expression." A rule expression that does not compile (or is too long).
ERR_NGROK_2200: Final = "ERR_NGROK_2200"
#: "Action type `TYP` is not supported for `PHASE` traffic policy rule."
ERR_NGROK_2202: Final = "ERR_NGROK_2202"
#: "Failed to parse the configuration for policy action type `TYP`." (unknown or mistyped field)
ERR_NGROK_2203: Final = "ERR_NGROK_2203"
#: "Configuration for policy action type `TYP` has invalid value: `FIELD`."
ERR_NGROK_2204: Final = "ERR_NGROK_2204"
#: "Action type `TYP` is not supported for `PROTO` endpoints." (protocol unsupported)
ERR_NGROK_2205: Final = "ERR_NGROK_2205"
#: "A policy must define at least one action." (a rule with no actions)
ERR_NGROK_2206: Final = "ERR_NGROK_2206"
#: "Policy action type `TYP` is unreachable due to a prior terminating action."
ERR_NGROK_2207: Final = "ERR_NGROK_2207"
#: "Invalid compression algorithm `ALG`." (compress-response `algorithms`)
ERR_NGROK_2214: Final = "ERR_NGROK_2214"
#: "`CONFIG` must be between `MIN` and `MAX` inclusive, was `ACTUAL`."
ERR_NGROK_2215: Final = "ERR_NGROK_2215"
#: "Invalid CIDR(s): `CIDR`."
ERR_NGROK_2217: Final = "ERR_NGROK_2217"
#: "Too many entries for `FIELD`. You provided `ENTRIES` entries, but the limit is `LIMIT`."
ERR_NGROK_2218: Final = "ERR_NGROK_2218"
#: "`FIELD` cannot be user-configured." (a protected header)
ERR_NGROK_2219: Final = "ERR_NGROK_2219"
#: "`CONFIG` length of `ACTUAL` exceeded limit of `MAX`."
ERR_NGROK_2221: Final = "ERR_NGROK_2221"
#: "`CONFIG` cannot be empty."
ERR_NGROK_2223: Final = "ERR_NGROK_2223"
#: "failed to compile CEL template expressions in `FIELD`." (a bad `${...}` in a config string)
ERR_NGROK_2224: Final = "ERR_NGROK_2224"
#: "Failed to validate Traffic Policy for unknown protocol `PROTO`."
ERR_NGROK_2229: Final = "ERR_NGROK_2229"
#: "Invalid Traffic Policy phase `PHASE` for protocol `PROTO`."
ERR_NGROK_2230: Final = "ERR_NGROK_2230"
#: "`CONFIG` contains duplicate values: `DUPLICATES`."
ERR_NGROK_2231: Final = "ERR_NGROK_2231"
#: "The traffic policy was not able to be parsed: `ERROR`" (syntax, shape, size).
ERR_NGROK_2236: Final = "ERR_NGROK_2236"
#: "Failed to resolve interpolated CEL expression." (a `${...}` failing at run time)
ERR_NGROK_2238: Final = "ERR_NGROK_2238"
#: "Invalid policy: Only one auth action allowed per endpoint."
ERR_NGROK_2239: Final = "ERR_NGROK_2239"
#: "Invalid format for set-vars: vars must be a list of maps of exactly size 1"
ERR_NGROK_2252: Final = "ERR_NGROK_2252"
#: "Failed to evaluate CEL expression on `FIELD` for `ACTION` at runtime: `ERR`"
ERR_NGROK_2253: Final = "ERR_NGROK_2253"
#: "Failed to resolve CEL expression. The expression was: `CEL`" (a rule expression at run time)
ERR_NGROK_2254: Final = "ERR_NGROK_2254"
#: "Invalid basic auth credential. Username `USERNAME` fails ... RFC 7617 #2.1"
ERR_NGROK_2257: Final = "ERR_NGROK_2257"
#: "Invalid basic auth credential. The password of user `USERNAME` fails ... RFC 7617 #2.1"
ERR_NGROK_2258: Final = "ERR_NGROK_2258"
#: "Field `FIELD` is not a valid regular expression."
ERR_NGROK_2261: Final = "ERR_NGROK_2261"
#: "Policy configuration has exceeded its rule per policy limit of `LIMIT`."
ERR_NGROK_2264: Final = "ERR_NGROK_2264"
#: "Policy configuration has exceeded its `TYP` per rule limit of `LIMIT`..."
ERR_NGROK_2265: Final = "ERR_NGROK_2265"


@dataclass(frozen=True, slots=True, kw_only=True)
class Place:
    """Where in a policy document a problem is: phase, rule, action, field (each optional).

    `line` is the 1-based line in a YAML document, when the document was text and the loader
    knew it. `str()` gives the prefix every message starts with.
    """

    phase: str | None = None
    rule_index: int | None = None
    rule_name: str = ""
    action_index: int | None = None
    action_type: str | None = None
    field: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        parts: list[str] = []
        if self.phase is not None:
            parts.append(self.phase)
        if self.rule_index is not None:
            named = f' ("{self.rule_name}")' if self.rule_name else ""
            parts.append(f"rule {self.rule_index}{named}")
        if self.action_index is not None:
            parts.append(f"action {self.action_index} ({self.action_type or '?'})")
        if self.field is not None:
            parts.append(self.field)
        text = " ".join(parts) or "policy"
        return f"{text} (line {self.line})" if self.line is not None else text

    def at_field(self, field: str) -> Place:
        """This place, narrowed to `field` (a dotted path such as `config.headers.x-a`)."""
        return Place(
            phase=self.phase,
            rule_index=self.rule_index,
            rule_name=self.rule_name,
            action_index=self.action_index,
            action_type=self.action_type,
            field=field,
            line=self.line,
        )


class PolicyError(NgrokError):
    """A policy that cannot be accepted: `code` is ngrok's, `message` starts with the place.

    `problem` is the message without the place, `place` the `Place` itself (for tools that
    point at a line, such as `burrow-edge policy check`).
    """

    def __init__(self, code: str, problem: str, place: Place | None = None) -> None:
        self.place = place if place is not None else Place()
        self.problem = problem
        super().__init__(f"{self.place}: {problem}", code)


class PolicyRuntimeError(PolicyError):
    """A policy failed while evaluating one request or connection (codes 2238, 2253, 2254).

    Only that request fails (a logged, coded 500-class answer); the policy stays loaded.
    """


def kind_of(value: object) -> str:
    """A policy value's kind as an error message names it: `a mapping`, `a list`, `null`..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, Sequence):
        return "a list"
    return type(value).__name__
