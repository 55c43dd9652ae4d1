"""`burrow-edge policy check FILE`: validate a Traffic Policy offline, as the edge would.

The checks are the edge's own (`edge.policy.document.load_policy`, then
`edge.policy.validate.check` for the endpoint's protocol), with the same ERR_NGROK_22xx codes
and messages a Bind carrying the policy would be refused with; `check` reports every problem, not
just the first, so one run shows all there is to fix. Each error is printed as
`FILE:LINE: CODE: message` when its line is known: loading errors carry their YAML line, and the
line of a validation error is found by looking its place (phase, rule, action, field) up in the
document's own key lines.

Exit status: 0 valid, 1 not valid (every error printed), 2 the file could not be read or a flag
is wrong (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, TextIO

from edge.policy.document import Policy, PolicyLimits, load_policy
from edge.policy.errors import ERR_NGROK_2236, Place, PolicyError
from edge.policy.validate import PROTOCOLS, check
from protocol.formats.yamldoc import KeyPath, YAMLDocumentError, read_yaml

__all__ = [
    "PROTOCOL_CHOICES",
    "CheckResult",
    "add_policy_parser",
    "check_document",
    "read_document",
    "run_policy",
]

#: `--protocol` values, the default first: an https endpoint has every phase.
PROTOCOL_CHOICES: Final = ("https", *sorted(set(PROTOCOLS) - {"https"}))
_FORMATS: Final = ("text", "json")
_STDIN: Final = "-"
_STDIN_NAME: Final = "<stdin>"
# A field such as `config.headers.x-a` or `expressions[0]`, split into keys and list indexes.
_FIELD_PART: Final = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def add_policy_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Add `policy` and `policy check` to `burrow-edge`'s subcommands; the actions (where
    `policy test`, edge/cli/policy_test.py, adds itself)."""
    policy = commands.add_parser("policy", help="Traffic Policy documents (offline)")
    actions = policy.add_subparsers(dest="action", required=True, metavar="ACTION")
    checking = actions.add_parser(
        "check",
        help="validate a policy as the edge would: every error, with ngrok's codes and lines",
        description=(
            "Validate a Traffic Policy document (YAML or JSON) offline, with the edge's own "
            "checks and ngrok's ERR_NGROK_22xx codes. Exit status: 0 valid, 1 not valid (every "
            "error is printed, one a line), 2 the file could not be read or a flag is wrong."
        ),
    )
    checking.add_argument("file", metavar="FILE", help="the policy file, or - for stdin")
    checking.add_argument(
        "--protocol",
        default=PROTOCOL_CHOICES[0],
        metavar="{" + ",".join(PROTOCOL_CHOICES) + "}",
        help="the protocol of the endpoint it is for: tcp and tls endpoints have only "
        f"on_tcp_connect (default: {PROTOCOL_CHOICES[0]})",
    )
    checking.add_argument(
        "--format",
        dest="output_format",
        default=_FORMATS[0],
        metavar="{" + ",".join(_FORMATS) + "}",
        help='text (default), or JSON: {"valid": ..., "errors": [{"code", "message", "place"}]}',
    )
    return actions


def run_policy(args: argparse.Namespace) -> int:
    """Run `burrow-edge policy ACTION`; the exit status."""
    # The flags are checked here rather than by argparse's `choices`, so that a wrong one is
    # one line on stderr (exit 2) like an unreadable file, not a usage screen.
    if args.protocol not in PROTOCOL_CHOICES:
        return _refuse(
            f"unknown protocol {args.protocol!r} for --protocol: expected one of "
            f"{', '.join(PROTOCOL_CHOICES)}"
        )
    if args.output_format not in _FORMATS:
        return _refuse(
            f"unknown format {args.output_format!r} for --format: expected one of "
            f"{', '.join(_FORMATS)}"
        )
    limits = PolicyLimits()
    name = _STDIN_NAME if args.file == _STDIN else args.file
    try:
        raw = read_document(args.file, limits, sys.stdin)
    except OSError as exc:
        return _refuse(f"cannot read {name}: {exc.strerror or exc}")
    result = check_document(raw, protocol=args.protocol, limits=limits)
    if args.output_format == "json":
        print(json.dumps(result.json(), separators=(",", ":")))  # one object, one line
    elif result.errors:
        for error in result.errors:
            print(error.text(name))
    else:
        print(f"{name}: {result.summary()}")
    return 1 if result.errors else 0


def _refuse(problem: str) -> int:
    print(f"burrow-edge: policy check: {problem}", file=sys.stderr)
    return 2


def read_document(file: str, limits: PolicyLimits, stdin: TextIO | None) -> bytes:
    """The document's bytes: at most one byte over the size limit, so that an oversized one is
    refused by the loader (ERR_NGROK_2236, naming the limit) without reading all of it.

    Raises OSError if the file cannot be read (or there is no stdin); stdin at EOF is an empty
    document."""
    budget = limits.max_document_bytes + 1
    if file == _STDIN:
        if stdin is None:
            raise OSError("there is no standard input")
        return stdin.buffer.read(budget)
    with Path(file).open("rb") as stream:
        return stream.read(budget)


@dataclass(frozen=True, slots=True)
class FoundError:
    """One error of a checked document, with the line it points at (None if unknown)."""

    error: PolicyError
    line: int | None

    def text(self, name: str) -> str:
        """`FILE:LINE: CODE: place: problem` (`FILE: CODE: ...` when the line is unknown)."""
        where = f"{name}:{self.line}" if self.line is not None else name
        place = replace(self.error.place, line=None)  # the line is in front already
        return f"{where}: {self.error.code}: {place}: {self.error.problem}"

    def json(self) -> dict[str, object]:
        place = self.error.place
        return {
            "code": self.error.code,
            "message": self.error.message,
            "place": {
                "phase": place.phase,
                "rule_index": place.rule_index,
                "rule_name": place.rule_name or None,
                "action_index": place.action_index,
                "action_type": place.action_type,
                "field": place.field,
                "line": self.line,
            },
        }


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What `check_document` found: the policy if it loaded, and every error, in order."""

    protocol: str
    policy: Policy | None
    errors: tuple[FoundError, ...]

    def summary(self) -> str:
        """One line for a valid policy: how many rules each phase has."""
        counts = [
            f"{len(rules)} {'rule' if len(rules) == 1 else 'rules'} in {phase}"
            for phase, rules in (self.policy.phases() if self.policy is not None else ())
            if rules
        ]
        what = ", ".join(counts) or "no rules (it changes nothing)"
        return f"valid Traffic Policy for {self.protocol} endpoints: {what}"

    def json(self) -> dict[str, object]:
        return {"valid": not self.errors, "errors": [error.json() for error in self.errors]}


def check_document(raw: bytes, *, protocol: str, limits: PolicyLimits | None = None) -> CheckResult:
    """Load and check a policy document's bytes for `protocol`, as the edge would; pure.

    A document that does not load has one error (the loader stops at the first); one that loads
    has every validation error. `protocol` must be one of `PROTOCOLS` (else ERR_NGROK_2229)."""
    limits = limits if limits is not None else PolicyLimits()
    try:
        policy = load_policy(raw, limits=limits)
    except PolicyError as error:
        lines, syntax_line = _document_lines(raw, limits)
        line = _line_of(error.place, lines)
        if line is None and error.code == ERR_NGROK_2236 and error.place == Place():
            line = syntax_line
        return CheckResult(protocol, None, (FoundError(error, line),))
    errors = check(policy, protocol=protocol)
    if not errors:
        return CheckResult(protocol, policy, ())
    lines, _ = _document_lines(raw, limits)
    return CheckResult(
        protocol, policy, tuple(FoundError(e, _line_of(e.place, lines)) for e in errors)
    )


def _document_lines(raw: bytes, limits: PolicyLimits) -> tuple[Mapping[KeyPath, int], int | None]:
    """The line of every key and list item of the document, and the line of its syntax error
    if it has one; both best effort ({} and None when unknown). JSON is read as YAML (JSON is
    YAML's flow style) for its lines, and by `json` for the line of a syntax error."""
    if len(raw) > limits.max_document_bytes:
        return {}, None
    text = raw.decode("utf-8", errors="replace")
    is_json = text.lstrip().startswith("{")
    if is_json:
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            return {}, exc.lineno
        except (ValueError, RecursionError):
            return {}, None
    try:
        parsed = read_yaml(text)
    except YAMLDocumentError as exc:
        return {}, None if is_json else exc.line
    return ({} if parsed is None else parsed.lines), None


def _line_of(place: Place, lines: Mapping[KeyPath, int]) -> int | None:
    """The line `place` points at: its own, else that of the deepest part of its key path the
    document has a line for (a field's key, else its action's item, its rule's, its phase's)."""
    if place.line is not None:
        return place.line
    path = _key_path(place)
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def _key_path(place: Place) -> KeyPath:
    """`("on_http_request", 1, "actions", 0, "config", "status_code")` for the place of
    `on_http_request rule 1 action 0 config.status_code`."""
    if place.phase is None:
        return ()
    path: list[str | int] = [place.phase]
    if place.rule_index is not None:
        path.append(place.rule_index)
        if place.action_index is not None:
            path += ["actions", place.action_index]
    if place.field is not None:
        for index, key in _FIELD_PART.findall(place.field):
            path.append(int(index) if index else key)
    return tuple(path)
