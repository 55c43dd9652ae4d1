"""The edge's light run of a phase that only edits headers and sets variables.

Many policies' phases do no more than add and remove headers (and set variables for them),
under expressions that read the request, the response and the connection. Run planned
(`edge.policy.plan`), such a phase still pays for what nothing can see: a `PhaseRun` with its
dozen containers, a result dict per action, each header's value decoded, a lookup per removed
header to say whether it was there (`actions.ngrok.remove_headers.headers_removed`). So a phase
is also planned light (`light_plan`, kept in `CompiledPolicy.light`) when

* every action is add-headers, remove-headers or set-vars, and none names the Host header in
  `on_http_request` (an added Host also changes `req.host`: left to the full run);
* every expression, header value and variable value reads the facts through direct closures
  (`edge.policy.cel_fast`) and names only `conn`, `req`, `res` and `vars`, so no CEL
  activation should be needed;
* nothing can read the phase's result variables: no expression or string of the phase names
  `actions`, and, for `on_http_request`, the response phase does not read them
  (`CompiledPolicy.response_reads_results`); a light run keeps none.

`LightPhase.run` runs such a phase on a `LightRun`, which offers the closures the same reads a
`PhaseRun` does (the facts, `vars`, `header_values` of the headers as changed so far), and
records the header changes exactly as `PhaseRun.defer_header` would (`removed`, `added`). It
gives up (returns False) wherever the planned run would leave anything to cel-python or to
the engine's rendering: a closure that raised or answered no boolean, a string it could not
render or that a header may not hold, a variable the phase lacks. Nothing a light run does is
seen outside it (no state, no log, no breaker), so the caller then runs the phase again, in
full, from the start, and gets exactly the planned run's outcome, error or answer. A phase
that keeps giving up (`GIVE_UP_LIMIT` runs in a row: its closures read a field only the views
have, say) is then run in full only, so it does not pay for both runs on every request.

Each light phase is written out once as one Python function (`edge.policy.light_source`),
which counts its own misses (`LightPhase.gave_up`): the shell calls `LightPhase.run`.
A response phase whose function reads nothing but the status (add a header on 200s, drop
Server) keeps its changes by status (`LightPhase.by_status`): the shell applies them without
a run for a status it has seen.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from edge.policy.actions import AddHeadersConfig, RemoveHeadersConfig, SetVarsConfig
from edge.policy.cel_fast import Direct
from edge.policy.light_source import Rules, reads_only_status, source, written_out
from edge.policy.phase import current_values
from edge.policy.plan import PHASE_VARIABLES, fixed_value, template_renderer, typed_getter

if TYPE_CHECKING:
    from edge.policy.activation import ConnFacts, RequestFacts, ResponseFacts
    from edge.policy.validate import CompiledPolicy, CompiledRule

__all__ = ["LightPhase", "LightRun", "light_plan"]


#: (name, fixed text or None, renderer or None) per added header
_Added = tuple[tuple[str, str | None, Callable[[Any], str | None] | None], ...]
#: (name, getter) per variable: the getter gives `MISSING` where it cannot
_Vars = tuple[tuple[str, Callable[[Any], object]], ...]


class LeftToFullRunError(Exception):
    """A light run met what only the full run can do (raised inside the closures)."""


#: The root variables the direct closures read without a CEL activation (`edge.policy.cel_facts`
#: DIRECT, the header getters, `vars.*`): an expression or string naming another (`endpoint`,
#: `time`, `actions`) would make every light run give up, so its phase is not planned light.
_LIGHT_VARIABLES: Final = frozenset({"conn", "req", "res", "vars"})
#: How many light runs of a phase may give up in a row before the policy stops running it
#: light: a phase whose closures read what only the full run has (`req.headers`, say) gives
#: up on every request and would pay for both runs; a few requests a light run cannot answer
#: (a header value with CR/LF) reset nothing for the others.
GIVE_UP_LIMIT: Final = 32


@dataclass(slots=True)
class LightPhase:
    """A phase planned light: per rule, its expressions' direct closures and its steps
    (`("fixed", ((name, value), ...))` for an add-headers of fixed values only,
    `("add", _Added)`, `("remove", names)`, `("vars", _Vars)`), and the same rules as the
    function that runs them. `misses`: its light runs that gave up since the last that did not
    (`GIVE_UP_LIMIT`). `by_status`: for a response phase whose function reads nothing but the
    status (`light_source.reads_only_status`), what its runs changed, by status, once a run
    for that status went to the end (`remember`); None for any other phase."""

    rules: Rules
    #: `rules` written out as one function (`light_source.written_out`): True, or False
    #: where it gave up
    run: Callable[[LightRun], bool] = field(init=False, compare=False, repr=False)
    misses: int = 0
    by_status: dict[int, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] | None = field(
        default=None, compare=False, repr=False
    )

    def remember(self, status: int, run: LightRun) -> None:
        """Keep what `run` (which went to the end, for `status`) changed, if this phase's
        changes depend on the status alone: every later run for it would change the same.
        Statuses 100-999 only (all a codec passes): the table stays bounded."""
        if self.by_status is not None and 100 <= status <= 999:
            self.by_status[status] = (tuple(run.removed), tuple(run.added))

    def gave_up(self) -> bool:
        """Count a light run that gave up: False, for the run to answer (`light_plan` stops
        planning the phase light at `GIVE_UP_LIMIT` in a row)."""
        self.misses += 1
        return False


class LightRun:
    """What a light run's closures read (as they read a `PhaseRun`) and what it changed.

    `request`/`response`: the facts; `request_lowered`, if known, the request's header names
    folded to lower case, in order. The response's `headers` are not read here (they may be
    left empty): its header values come from `response_headers`, a function giving them
    decoded and their names folded to lower case, called on the first read of a response
    header, if any (`response_lowered` then holds those names)."""

    __slots__ = (
        "_response_headers",
        "_response_known",
        "added",
        "conn",
        "deferred",
        "removed",
        "request",
        "request_lowered",
        "response",
        "vars",
    )

    def __init__(
        self,
        conn: ConnFacts,
        request: RequestFacts,
        request_lowered: tuple[str, ...] | None = None,
        response: ResponseFacts | None = None,
        response_headers: Callable[[], tuple[tuple[tuple[str, str], ...], tuple[str, ...]]]
        | None = None,
    ) -> None:
        self.conn = conn
        self.request = request
        self.request_lowered = request_lowered
        self.response = response
        self.vars: dict[str, object] = {}
        self.added: list[tuple[str, str]] = []
        self.removed: list[str] = []
        # the changes in order, (lower-case name, value or None for a removal), as
        # `PhaseRun.deferred` holds them: what `header_values` shows on top of the message
        self.deferred: list[tuple[str, str | None]] = []
        self._response_headers = response_headers
        # the response's headers and folded names, once a read asked `_response_headers`
        self._response_known: tuple[tuple[tuple[str, str], ...], tuple[str, ...]] | None = None

    @property
    def activation(self) -> object:
        """A light run has none: whatever asks for it is left to the full run."""
        raise LeftToFullRunError("the CEL activation")

    def header_values(self, message: str, name: str) -> Sequence[str]:
        """`PhaseRun.header_values`: the values of the header `name` (lower-case) of `message`
        (`req` or `res`) as the phase has changed them so far; KeyError if the phase has no
        such message."""
        if message == "req":
            headers = self.request.headers
            lowered = self.request_lowered
            if lowered is None:
                lowered = self.request_lowered = tuple([key.lower() for key, _ in headers])
        elif message == "res" and self._response_headers is not None:
            known = self._response_known
            if known is None:
                known = self._response_known = self._response_headers()
            headers, lowered = known
        else:
            raise KeyError(message)
        pending = self.deferred if (message == "res") == (self.response is not None) else ()
        return current_values(headers, lowered, name, pending)

    @property
    def response_lowered(self) -> tuple[str, ...] | None:
        """The response's header names folded to lower case, if a read decoded them."""
        known = self._response_known
        return None if known is None else known[1]

    def remove(self, name: str) -> None:
        """`PhaseRun.defer_header(name, None)`, but for its answer (which nothing reads)."""
        if name not in self.removed:
            self.removed.append(name)
        added = self.added
        for key, _ in added:  # a loop, not a generator: most runs have added a name or none
            if key == name:
                self.added = [(key, kept) for key, kept in added if key != name]
                break
        self.deferred.append((name, None))


def light_plan(policy: CompiledPolicy, phase: str) -> LightPhase | None:
    """`phase` of `policy` planned light, or None if it cannot run light (see the module's
    doc); planned on first use, then kept with the policy. None too once its light runs gave
    up `GIVE_UP_LIMIT` times in a row: the phase then runs in full for the policy's life."""
    cache = policy.light
    if phase in cache:
        known = cache[phase]
        if known is not None and known.misses >= GIVE_UP_LIMIT:
            known = cache[phase] = None
        return known
    rules: tuple[CompiledRule, ...] = getattr(policy, phase)
    planned = None
    if phase != "on_http_request" or not policy.response_reads_results:
        steps = _plan(rules, phase)
        if steps is not None:
            planned = LightPhase(steps)
            text, bound = source(steps, planned, in_request=phase == "on_http_request")
            planned.run = written_out(text, bound)
            if phase == "on_http_response" and reads_only_status(text):
                planned.by_status = {}
    cache[phase] = planned
    return planned


def _plan(rules: tuple[CompiledRule, ...], phase: str) -> Rules | None:
    available = PHASE_VARIABLES[phase] & _LIGHT_VARIABLES
    in_request = phase == "on_http_request"
    planned: list[tuple[tuple[Direct, ...], tuple[tuple[str, Any], ...]]] = []
    for rule in rules:
        checks: list[Direct] = []
        for expression in rule.expressions:
            if expression.direct is None or not expression.variables <= available:
                return None
            checks.append(expression.direct)
        steps: list[tuple[str, Any]] = []
        for action in rule.actions:
            config = action.config
            if isinstance(config, AddHeadersConfig):
                added = []
                for name, template in config.headers:
                    if in_request and name == "host":
                        return None
                    fixed = fixed_value(template)
                    render = None if fixed is not None else template_renderer(template, available)
                    if fixed is None and render is None:
                        return None
                    added.append((name, fixed, render))
                if all(fixed is not None for _, fixed, _ in added):
                    steps.append(("fixed", tuple((name, fixed) for name, fixed, _ in added)))
                else:
                    steps.append(("add", tuple(added)))
            elif isinstance(config, RemoveHeadersConfig):
                if in_request and "host" in config.headers:
                    return None
                steps.append(("remove", tuple(config.headers)))
            elif isinstance(config, SetVarsConfig):
                values = []
                for name, value in config.vars:
                    get = typed_getter(value, available)
                    if get is None:  # its closures read only `available`, or there are none
                        return None
                    values.append((name, get))
                steps.append(("vars", tuple(values)))
            else:
                return None
        planned.append((tuple(checks), tuple(steps)))
    return tuple(planned)
