"""The actions that change the response body: compress-response and response-body-find-replace
(DOCS `traffic-policy/actions/compress-response`, `.../response-body-find-replace`).

They run on the response head, before any of the body has arrived, so they cannot change the
body themselves: each records a `BodyStep` on the running phase (`PhaseRun.body_steps`), in
the order the actions ran, and `ResponseChanges.body` hands them to the shell, which applies
them to the upstream's body as it streams (`edge.http.response_body`).

* compress-response records the algorithms it may use (`CompressStep`); whether the response
  is compressed, and how, is decided on the final response head (the client's Accept-Encoding,
  the response's own Content-Encoding, its type and length).
* response-body-find-replace renders each replacement's `from` and `to` (`${...}`) for this
  response now, while the phase's variables are at hand, and compiles `from` as RE2
  (ERR_NGROK_2253 if the rendered text is not a regular expression): `FindReplaceStep` holds the
  concrete patterns.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge.policy.actions import CompressResponseConfig, ResponseBodyFindReplaceConfig
from edge.policy.errors import Place
from edge.policy.phase import PhaseRun
from edge.policy.run_http import pattern_for

__all__ = [
    "BodyStep",
    "CompressStep",
    "FindReplaceStep",
    "run_compress_response",
    "run_response_body_find_replace",
]


@dataclass(frozen=True, slots=True)
class CompressStep:
    """Compress the body with one of `algorithms` (in the operator's order of preference)."""

    algorithms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FindReplaceStep:
    """Replace every match of each pattern in turn (RE2, compiled for text), each applied to
    the previous result; `to` may name groups (`$1`, `${name}`)."""

    replacements: tuple[tuple[Any, str], ...]  # (compiled RE2 pattern, rendered `to`)


BodyStep = CompressStep | FindReplaceStep


def run_compress_response(run: PhaseRun, config: CompressResponseConfig, place: Place) -> None:
    run.body_steps.append(CompressStep(config.algorithms))


def run_response_body_find_replace(
    run: PhaseRun, config: ResponseBodyFindReplaceConfig, place: Place
) -> None:
    concrete: list[tuple[Any, str]] = []
    for index, replacement in enumerate(config.replacements):
        where = f"config.replacements[{index}]"
        to = run.render(replacement.to, place.at_field(f"{where}.to"))
        pattern = pattern_for(run, replacement.from_, place.at_field(f"{where}.from"))
        concrete.append((pattern, to))
    run.body_steps.append(FindReplaceStep(tuple(concrete)))
