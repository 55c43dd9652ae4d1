"""What running a policy's phase gives the shell (`edge.policy.engine`'s outcomes).

Each entry point of the engine answers with one of these frozen values: `Continue` or `Close`
(on_tcp_connect), `Forward`, `Respond`, `Close` or `ForwardInternal` (on_http_request),
`ResponseChanges` or `Respond` (on_http_response), each with its log records and its `Trace`
(what `burrow-edge policy test` prints; empty for the edge's untraced runs). `Carried` is what
a request phase leaves to the response phase; `carried_by` makes it from a finished run without
copying its result variables.

Pure: values only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from edge.policy.phase import LogRecord, PhaseRun

if TYPE_CHECKING:
    from edge.policy.actions_tls import TerminateTlsConfig
    from edge.policy.breaker import Breaker
    from edge.policy.run_response_body import BodyStep

__all__ = [
    "NOTHING_CARRIED",
    "ActionTrace",
    "Carried",
    "Close",
    "Continue",
    "ExpressionTrace",
    "Forward",
    "ForwardInternal",
    "HeaderChanges",
    "RequestChanges",
    "Respond",
    "ResponseChanges",
    "RuleTrace",
    "Trace",
    "carried_by",
]


# --- outcomes --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ExpressionTrace:
    text: str
    value: bool | None  # None: the evaluation failed (see `error`)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ActionTrace:
    index: int
    type: str
    result: str  # "continued", "responded 403", "closed", "failed ERR_NGROK_2238: ..."


@dataclass(frozen=True, slots=True)
class RuleTrace:
    index: int
    name: str
    expressions: tuple[ExpressionTrace, ...]  # only those evaluated (the first false stops)
    matched: bool
    actions: tuple[ActionTrace, ...]


@dataclass(frozen=True, slots=True)
class Trace:
    phase: str
    rules: tuple[RuleTrace, ...]  # the rules reached, in order


@dataclass(frozen=True, slots=True)
class HeaderChanges:
    """Apply as: remove every header named in `removed`, then append `added` in order."""

    removed: tuple[str, ...] = ()  # lower-case names
    added: tuple[tuple[str, str], ...] = ()  # lower-case names; values never hold CR/LF/NUL


@dataclass(frozen=True, slots=True)
class RequestChanges:
    headers: HeaderChanges = HeaderChanges()
    target: str | None = None  # url-rewrite's new `path?query`; None: unchanged
    body: bytes | None = None  # request-body-find-replace's new body; None: unchanged


@dataclass(frozen=True, slots=True)
class Carried:
    """What the request phase leaves to the response phase: action result variables."""

    results: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: the circuit breakers the request passed: the shell reports the upstream's outcome to
    #: them (`edge.policy.breaker.record_outcomes`)
    breakers: tuple[Breaker, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Continue:
    """on_tcp_connect: let the connection through (and if `terminate_tls` is set, the edge
    terminates its TLS with that action's context and forwards plaintext)."""

    logs: tuple[LogRecord, ...]
    trace: Trace
    terminate_tls: TerminateTlsConfig | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Close:
    """Close the client's connection without an answer."""

    reason: str  # the action that closed it, or the failing error code
    logs: tuple[LogRecord, ...]
    trace: Trace


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardInternal:
    """forward-internal: hand the connection (on_tcp_connect) or the request (on_http_request,
    `changes` applied) to the internal endpoint `url`, whose own policy runs next; or, when
    `error` is set (a failed forward with `on_error: halt`), fail with that (code, message)."""

    url: str
    error: tuple[str, str] | None
    logs: tuple[LogRecord, ...]
    trace: Trace
    changes: RequestChanges = RequestChanges()
    carried: Carried = Carried()


@dataclass(frozen=True, slots=True, kw_only=True)
class Forward:
    """on_http_request: forward the request upstream with `changes` applied."""

    changes: RequestChanges
    carried: Carried
    logs: tuple[LogRecord, ...]
    trace: Trace


@dataclass(frozen=True, slots=True, kw_only=True)
class Respond:
    """Answer the client with this response instead of (or in place of) the upstream's."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    logs: tuple[LogRecord, ...]
    trace: Trace
    carried: Carried = Carried()
    error_code: str | None = None  # set when a runtime failure made this answer
    action: str | None = None  # the type of the action that answered (None: a failure)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseChanges:
    """on_http_response: send the upstream's response with `headers` changes applied, and its
    body through `body` (compress-response, response-body-find-replace), in the order they ran."""

    headers: HeaderChanges
    logs: tuple[LogRecord, ...]
    trace: Trace
    body: tuple[BodyStep, ...] = ()


#: What a request phase that set no result variables and passed no breaker carries (one value
#: for them all: it is frozen).
NOTHING_CARRIED: Final = Carried()


def carried_by(run: PhaseRun) -> Carried:
    """What the finished request phase `run` leaves to the response phase. Its result
    variables are shown, not copied: nothing changes a phase's dict once the phase is over."""
    if not run.results and not run.breakers:
        return NOTHING_CARRIED
    return Carried(MappingProxyType(run.results), tuple(run.breakers))
