"""One phase of a policy as it runs: the working state every action reads and changes.

`PhaseRun` holds what a running phase knows (the facts, `vars.*` set so far, the action result
variables, the header changes and URL rewrite made so far, the log records) and builds the CEL
activation from it lazily: the activation itself when first asked (`PhaseRun.activation`; a
planned phase whose expressions all read the facts directly never makes one), and in it a root
variable (`req`, `conn`, ...) when an expression first names it, rebuilt only after an action
changed what it shows (`add-headers` on the request invalidates `req`, `set-vars` `vars`).

Header lookups. `header_values` (the header getters, remove-headers' "was there one") folds a
message's header names to lower case on first use and keeps them while the message's header
tuple is the same object (every change makes a new tuple, so stale names are never read); a
lookup is then a test of that tuple, and a loop only for a name that is there more than once.
A caller that folded the names while building the facts hands them over (`known_names`).

Deferred header changes. `defer_header` (the planned runs of add-headers and remove-headers,
`edge.policy.plan`) records a change in `added`/`removed` at once but applies it to the
message's header tuple only when something next reads it (`headers()`, a view being built,
`sync_headers()` before any other action), so a phase that changes several headers and reads
none of them back copies the message once, or never. `header_values` answers the header getters
with the deferred changes taken into account. A change that cannot wait (a Host in the request,
or a message whose view is already built) is applied at once, as `add_header` does.

Actions (`edge.policy.run_http`, `edge.policy.run_access`, `edge.policy.engine`) return `None`
to let the phase go on, or an `Answer` (respond with this status, headers and body) or a
`Hangup` (close the connection), which ends the phase. A failing CEL expression or template
raises `PolicyRuntimeError`; the engine turns that into the request's coded error.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from celpy import celtypes
from celpy.adapter import CELJSONEncoder

from edge.policy.activation import (
    NOT_FROM_HEADERS,
    ConnFacts,
    EndpointFacts,
    RequestFacts,
    ResponseFacts,
    conn_view,
    endpoint_view,
    evolve,
    request_view,
    response_view,
    time_view,
)
from edge.policy.cel import LazyMap, to_cel
from edge.policy.errors import ERR_NGROK_2238, Place
from edge.policy.interpolation import Template
from edge.policy.ratelimit import PolicyState

if TYPE_CHECKING:
    from edge.policy.actions_tls import TerminateTlsConfig
    from edge.policy.breaker import Breaker
    from edge.policy.run_response_body import BodyStep

__all__ = ["Answer", "Hangup", "LogRecord", "PhaseRun", "current_values", "plain", "text_of"]


@dataclass(frozen=True, slots=True)
class Answer:
    """End the phase by answering the client directly."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Hangup:
    """End the phase by closing the client's connection (nothing is sent)."""

    reason: str


@dataclass(frozen=True, slots=True)
class LogRecord:
    """What a `log` action (or a runtime failure) asks the shell to emit.

    `metadata` holds plain Python values (str, int, float, bool, None, lists, dicts).
    `error_code` is set on a record that reports a runtime failure (ERR_NGROK_2238/2253/2254).
    """

    phase: str
    place: str
    metadata: Mapping[str, object]
    error_code: str | None = None


def plain(value: object) -> object:
    """A CEL value as plain Python (for log records and result variables)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return str(value)  # timestamps and durations: their text


def text_of(value: object) -> str:
    """A CEL value as text, as `${...}` would write it (bucket keys, log values)."""
    if value is None:
        return ""
    if isinstance(value, celtypes.BoolType | bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, celtypes.TimestampType | celtypes.DurationType):
        return str(value)
    return json.dumps(value, cls=CELJSONEncoder, separators=(",", ":"))


class _Activation(Mapping[str, object]):
    """The root variables, each built on first use and kept until invalidated."""

    def __init__(self, run: PhaseRun) -> None:
        self._run = run
        self._built: dict[str, object] = {}
        self._names_seen: frozenset[str] | None = None

    def _names(self) -> list[str]:
        names = ["conn", "endpoint", "time", "vars", "actions"]
        if self._run.request is not None:
            names.append("req")
        if self._run.response is not None:
            names.append("res")
        return names

    def _available(self) -> frozenset[str]:
        # A phase has its request (and response) from the start, so the names never change.
        names = self._names_seen
        if names is None:
            names = self._names_seen = frozenset(self._names())
        return names

    @property
    def phase_run(self) -> PhaseRun:
        """The running phase (`edge.policy.cel_fast` reads its facts directly)."""
        return self._run

    def __contains__(self, name: object) -> bool:
        return name in self._available()  # without building the view

    def __getitem__(self, name: str) -> object:
        if name not in self._built:
            self._built[name] = self._build(name)
        return self._built[name]

    def _build(self, name: str) -> object:
        run = self._run
        if name in ("req", "res"):
            run.sync_headers()
        if name == "conn":
            return conn_view(run.conn)
        if name == "endpoint":
            return endpoint_view(run.endpoint)
        if name == "time":
            return time_view(run.now)
        if name == "vars":
            return celtypes.MapType({celtypes.StringType(k): v for k, v in run.vars.items()})
        if name == "actions":
            return to_cel({"ngrok": run.results})
        if name == "req" and run.request is not None:
            return request_view(run.request)
        if name == "res" and run.response is not None:
            return response_view(run.response)
        raise KeyError(name)

    def invalidate(self, name: str) -> None:
        self._built.pop(name, None)

    def headers_changed(self, name: str) -> None:
        """`name` (`req` or `res`) changed in its headers only: its view is rebuilt when next
        asked, keeping the fields already computed that do not come from headers."""
        old = self._built.pop(name, None)
        if isinstance(old, LazyMap):
            new = self._build(name)
            assert isinstance(new, LazyMap)
            new.keep_computed(old, NOT_FROM_HEADERS)
            self._built[name] = new

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())



def current_values(
    headers: Sequence[tuple[str, str]],
    lowered: Sequence[str],
    name: str,
    deferred: Sequence[tuple[str, str | None]],
) -> Sequence[str]:
    """The values of the header `name` (lower-case) in `headers` (their names folded in
    `lowered`, in order), with the phase's `deferred` changes to it applied: (name, value)
    added, (name, None) removed, in the order they were made. The caller must not change the
    result."""
    values: Sequence[str]
    if name not in lowered:  # the names tested at C speed: absent headers cost no loop
        values = ()
    elif lowered.count(name) == 1:
        values = (headers[lowered.index(name)][1],)
    else:
        pairs = zip(lowered, headers, strict=True)
        values = [value for key, (_, value) in pairs if key == name]
    if deferred:
        changed: list[str] | None = None  # copied only if a deferred change is this name's
        for key, change in deferred:
            if key == name:
                if change is None:
                    changed = []
                elif changed is None:
                    changed = [*values, change]
                else:
                    changed.append(change)
        if changed is not None:
            return changed
    return values

@dataclass(eq=False, slots=True, init=False)
class PhaseRun:
    """The working state of one phase run (one connection, request or response).

    Made once per phase and request, so its `__init__` is written out (plain assignments and
    literals: about half the cost of the generated one with its default factories); the
    fields below and their defaults are what it sets."""

    phase: str
    conn: ConnFacts
    endpoint: EndpointFacts
    now: float
    state: PolicyState
    request: RequestFacts | None = None
    response: ResponseFacts | None = None
    # action result variables, `actions.ngrok.<type_with_underscores>.*` (plain values)
    results: dict[str, Any] = field(default_factory=dict)
    vars: dict[str, object] = field(default_factory=dict)  # CEL values, `vars.*`
    removed: list[str] = field(default_factory=list)
    added: list[tuple[str, str]] = field(default_factory=list)
    target: str | None = None  # a url-rewrite's new path?query
    logs: list[LogRecord] = field(default_factory=list)
    # on_http_response: what compress-response and response-body-find-replace ask of the body
    # (`edge.policy.run_response_body`), in the order they ran; the shell applies them.
    body_steps: list[BodyStep] = field(default_factory=list)
    # forward-internal's check of a target URL: None (it can take the traffic) or (code,
    # message); the shell's, since only it knows which endpoints are online. None: unchecked.
    forward_check: Callable[[str], tuple[str, str] | None] | None = None
    # the terminate-tls action that ran on this connection (the front door then handshakes)
    terminate_tls: TerminateTlsConfig | None = None
    # circuit breakers this request passed (edge.policy.breaker): the shell reports the
    # upstream's outcome to them
    breakers: list[Breaker] = field(default_factory=list)
    # False on the edge's hot path: the engine then builds no per-rule trace (`policy test`
    # and the tests trace); `ended_by` is the type of the action that ended the phase.
    tracing: bool = True
    ended_by: str | None = None
    # the CEL activation (`activation`), made when first asked: a phase whose expressions all
    # read the facts directly (`edge.policy.plan`) never makes one
    built_activation: _Activation | None = field(init=False, default=None)
    # header changes made by `defer_header` and not yet in the message's headers: (lower-case
    # name, value), a value of None being a removal; applied in order by `sync_headers`
    deferred: list[tuple[str, str | None]] = field(init=False, default_factory=list)
    # `header_values`' lower-case names of a message's headers, by message, with the header
    # tuple they are of: a header change makes a new tuple, so the names are made anew
    lowered_names: dict[str, tuple[tuple[tuple[str, str], ...], tuple[str, ...]]] = field(
        init=False, default_factory=dict
    )

    def __init__(
        self,
        phase: str,
        conn: ConnFacts,
        endpoint: EndpointFacts,
        now: float,
        state: PolicyState,
        request: RequestFacts | None = None,
        response: ResponseFacts | None = None,
        *,
        forward_check: Callable[[str], tuple[str, str] | None] | None = None,
        tracing: bool = True,
    ) -> None:
        self.phase = phase
        self.conn = conn
        self.endpoint = endpoint
        self.now = now
        self.state = state
        self.request = request
        self.response = response
        self.results = {}
        self.vars = {}
        self.removed = []
        self.added = []
        self.target = None
        self.logs = []
        self.body_steps = []
        self.forward_check = forward_check
        self.terminate_tls = None
        self.breakers = []
        self.tracing = tracing
        self.ended_by = None
        self.built_activation = None
        self.deferred = []
        self.lowered_names = {}

    @property
    def activation(self) -> _Activation:
        """The root variables as CEL values, for cel-python and the views."""
        activation = self.built_activation
        if activation is None:
            activation = self.built_activation = _Activation(self)
        return activation

    # --- results and vars ---------------------------------------------------------------------
    def set_result(self, action: str, values: Mapping[str, object]) -> None:
        """Record an action's result variables (the last run of an action type wins)."""
        self.results[action] = dict(values)
        if self.built_activation is not None:
            self.built_activation._built.pop("actions", None)  # invalidate("actions"), inline

    def keep_result(self, action: str, values: dict[str, object]) -> None:
        """`set_result` taking `values` as it is (the caller gives it up): no copy."""
        self.results[action] = values
        if self.built_activation is not None:
            self.built_activation._built.pop("actions", None)

    def set_var(self, name: str, value: object) -> None:
        self.vars[name] = to_cel(value)
        if self.built_activation is not None:
            self.built_activation._built.pop("vars", None)  # invalidate("vars"), inline

    # --- rendering ----------------------------------------------------------------------------
    def render(
        self,
        template: Template,
        place: Place,
        *,
        header_value: bool = False,
        field: str | None = None,
    ) -> str:
        """`template` rendered; a failure names `place` narrowed to `field` (if given)."""
        return template.render(self.activation, header_value=header_value, place=place, field=field)

    def typed(self, value: object, place: Place) -> object:
        """A set-vars/log value: a string that is exactly one `${expr}` keeps the expression's
        type (ngrok: "resolves to the evaluated type"); other strings are rendered; maps and
        lists are taken as written with the strings in them so evaluated; other values as
        written."""
        if isinstance(value, Mapping):
            return {str(key): self.typed(item, place) for key, item in value.items()}
        if isinstance(value, tuple | list):
            return [self.typed(item, place) for item in value]
        if not isinstance(value, Template):
            return value
        if len(value.parts) == 1 and not isinstance(value.parts[0], str):
            return value.parts[0].value(self.activation, code=ERR_NGROK_2238, place=place)
        return self.render(value, place)

    # --- the message the phase works on -------------------------------------------------------
    def headers(self) -> tuple[tuple[str, str], ...]:
        """The headers of the message this phase works on, with every change applied."""
        self.sync_headers()
        if self.response is not None:
            return self.response.headers
        assert self.request is not None
        return self.request.headers

    def _set_headers(self, headers: tuple[tuple[str, str], ...], host: str | None) -> None:
        activation = self.built_activation
        if self.response is not None:
            self.response = evolve(self.response, headers=headers)
            if activation is not None:
                activation.headers_changed("res")
            return
        assert self.request is not None
        if host is None:
            self.request = evolve(self.request, headers=headers)
            if activation is not None:
                activation.headers_changed("req")
        else:
            self.request = evolve(self.request, headers=headers, host=host)
            if activation is not None:
                activation.invalidate("req")

    def sync_headers(self) -> None:
        """Apply the deferred header changes to the message's headers (nothing if none)."""
        deferred = self.deferred
        if not deferred:
            return
        self.deferred = []
        message = self.response if self.response is not None else self.request
        assert message is not None
        headers = list(message.headers)
        for name, value in deferred:
            if value is None:
                headers = [(key, kept) for key, kept in headers if key.lower() != name]
            else:
                headers.append((name, value))
        self._set_headers(tuple(headers), None)

    def known_names(
        self, message: str, headers: tuple[tuple[str, str], ...], lowered: tuple[str, ...]
    ) -> None:
        """Give `header_values` the lower-case names of `message`'s (`req` or `res`) header
        tuple `headers`, in order, as the caller folded them while building the facts: the
        first header lookup then folds none. `lowered` must be `key.lower()` of each name."""
        self.lowered_names[message] = (headers, lowered)

    def header_values(self, message: str, name: str) -> Sequence[str]:
        """The values of the header `name` (lower-case) of `message` (`req` or `res`) as the
        phase has changed them so far, in order (the caller must not change them); KeyError if
        the phase has no such message."""
        facts = self.request if message == "req" else self.response
        if facts is None:
            raise KeyError(message)
        headers = facts.headers
        known = self.lowered_names.get(message)
        if known is not None and known[0] is headers:
            lowered = known[1]
        else:
            lowered = tuple([key.lower() for key, _ in headers])
            self.lowered_names[message] = (headers, lowered)
        pending = self.deferred if (message == "res") == (self.response is not None) else ()
        return current_values(headers, lowered, name, pending)

    def defer_header(self, name: str, value: str | None) -> bool:
        """`add_header(name, value)`, or `remove_header(name)` if `value` is None, with the
        message's headers brought up to date only when next read (see the module's doc).
        Returns what `remove_header` returns (True for an addition)."""
        in_request = self.response is None
        message = "req" if in_request else "res"
        activation = self.built_activation
        if (in_request and name == "host") or (
            activation is not None and message in activation._built
        ):
            if value is None:
                return self.remove_header(name)
            self.add_header(name, value)
            return True
        if value is not None:
            self.added.append((name, value))
            self.deferred.append((name, value))
            return True
        existed = bool(self.header_values(message, name))
        if name not in self.removed:
            self.removed.append(name)
        added = self.added
        if added and any(key == name for key, _ in added):  # else: nothing to drop, no copy
            self.added = [(key, kept) for key, kept in added if key != name]
        self.deferred.append((name, None))
        return existed

    def remove_header(self, name: str) -> bool:
        """Remove every header `name` (lower-case); True if there was one."""
        current = self.headers()
        kept = tuple((key, value) for key, value in current if key.lower() != name)
        if name not in self.removed:
            self.removed.append(name)
        self.added = [(key, value) for key, value in self.added if key != name]
        self._set_headers(kept, None)
        return len(kept) != len(current)

    def add_header(self, name: str, value: str) -> None:
        """Append `name: value` (lower-case name); `host` replaces the Host instead."""
        in_request = self.response is None
        if name == "host" and in_request:
            self.remove_header("host")
        self.added.append((name, value))
        host = value if name == "host" and in_request else None
        self._set_headers((*self.headers(), (name, value)), host)

    def rewrite_target(self, path: str, query: str) -> None:
        self.sync_headers()
        assert self.request is not None
        self.request = replace(self.request, path=path, query=query)
        self.target = self.request.target
        if self.built_activation is not None:
            self.built_activation.invalidate("req")
