"""`burrow-edge policy test FILE --url ... --header ...`: replay one request through a policy.

Theory of operation. The file is checked exactly as `policy check` does (same lines, exit 1 when
it is not valid), then compiled and run by the edge's own engine (`edge.policy.engine`) on facts
built from the flags: `on_tcp_connect` for every protocol; for http and https endpoints
`on_http_request`, and, if that forwarded the request, `on_http_response` on a made-up upstream
response (`--status`, `--response-header`, `--response-body`). Nothing is sent anywhere; the
clock is the real one (`time.time()`) and the rate-limit state is fresh, so a rate-limit action
sees its first request.

The report shows, per phase, every rule reached with each expression's value (`true`, `false`
or `error: ...`), whether it matched, and each action with its result; then the outcome
(`continue`, `close`, `forward` with the request changes, or `respond STATUS` with its headers and
body) and what `log` actions recorded. `--format json` prints the same as one object. What
terminate-tls, compress-response, response-body-find-replace and an offline jwt-validation do
beyond the phase run is added by `edge.cli.policy_test_effects`.

Exit status: 0 it ran (whatever the outcome), 1 the policy is not valid, 2 the file could not be
read or a flag is wrong (one line on stderr).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import time
import urllib.parse
from dataclasses import dataclass, replace
from typing import Final

from edge.cli.policy import PROTOCOL_CHOICES, CheckResult, check_document, read_document
from edge.cli.policy_test_effects import (
    BodyEffect,
    body_effect,
    body_effect_json,
    body_effect_text,
    jwks_note,
    terminate_tls_json,
    terminate_tls_text,
)
from edge.policy.activation import ConnFacts, EndpointFacts, RequestFacts, ResponseFacts
from edge.policy.document import PolicyLimits
from edge.policy.engine import (
    Close,
    Continue,
    Forward,
    ForwardInternal,
    HeaderChanges,
    LogRecord,
    Respond,
    ResponseChanges,
    Trace,
    run_http_request,
    run_http_response,
    run_tcp_connect,
)
from edge.policy.jwks_fetch import jwks_urls
from edge.policy.ratelimit import PolicyState
from edge.policy.validate import CompiledPolicy, validate

__all__ = [
    "FlagError",
    "Replay",
    "ReplayInput",
    "add_policy_test_parser",
    "build_input",
    "replay",
    "replay_json",
    "replay_text",
    "run_policy_test",
]

_FORMATS: Final = ("text", "json")
_STDIN: Final = "-"
_STDIN_NAME: Final = "<stdin>"
_HTTP: Final = ("http", "https")
_TLS: Final = ("https", "tls")
#: The client when `--client` is not given: a documentation address (RFC 5737).
_DEFAULT_CLIENT: Final = "203.0.113.7:50000"
#: The edge's own address in `conn.server_ip`: a documentation address (RFC 5737), since no
#: real listener takes part.
_SERVER_IP: Final = "192.0.2.1"
#: The endpoint URL when `--url` is not given, per protocol.
_DEFAULT_URLS: Final = {
    "http": "http://app.example.com/",
    "https": "https://app.example.com/",
    "tls": "tls://app.example.com:443",
    "tcp": "tcp://tcp.example.com:10000",
}
_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "tls": 443}
_DEFAULT_STATUS: Final = 200


def add_policy_test_parser(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `test` to `burrow-edge policy`'s actions."""
    testing = actions.add_parser(
        "test",
        help="replay a request through a policy offline: rules matched, values, actions, outcome",
        description=(
            "Check a Traffic Policy as `policy check` does, then run one connection (and, for "
            "http/https, one request and its upstream response) through it with the edge's own "
            "engine, and print each rule reached, each expression's value, each action's result "
            "and the outcome. Exit status: 0 it ran (whatever the outcome), 1 the policy is not "
            "valid, 2 the file could not be read or a flag is wrong."
        ),
    )
    testing.add_argument("file", metavar="FILE", help="the policy file, or - for stdin")
    testing.add_argument(
        "--protocol",
        default=PROTOCOL_CHOICES[0],
        metavar="{" + ",".join(PROTOCOL_CHOICES) + "}",
        help=f"the endpoint's protocol (default: {PROTOCOL_CHOICES[0]})",
    )
    testing.add_argument(
        "--url",
        help="the request URL (http/https) or endpoint URL (tcp/tls); its scheme is "
        "the protocol's (default: https://app.example.com/)",
    )
    testing.add_argument("--method", default="GET", help="the request method (default: GET)")
    testing.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a request header (repeat for more)",
    )
    testing.add_argument(
        "--body",
        default=None,
        help="the request body (UTF-8 text), for verify-webhook and request-body-find-replace",
    )
    testing.add_argument(
        "--client",
        default=_DEFAULT_CLIENT,
        metavar="IP:PORT",
        help=f"the client's address, [v6]:port for IPv6 (default: {_DEFAULT_CLIENT})",
    )
    testing.add_argument(
        "--status",
        default=str(_DEFAULT_STATUS),
        help=f"the upstream response's status (default: {_DEFAULT_STATUS})",
    )
    testing.add_argument(
        "--response-header",
        dest="response_header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="an upstream response header (repeat for more)",
    )
    testing.add_argument(
        "--response-body",
        dest="response_body",
        default=None,
        help="the upstream response's body (UTF-8 text), to show response-body-find-replace",
    )
    testing.add_argument(
        "--format",
        dest="output_format",
        default=_FORMATS[0],
        metavar="{" + ",".join(_FORMATS) + "}",
        help="text (default), or one JSON object",
    )


class FlagError(ValueError):
    """A flag's value is wrong; the message says which and why."""


@dataclass(frozen=True, slots=True)
class ReplayInput:
    """What the flags describe: the endpoint, the connection, the request and the response."""

    endpoint: EndpointFacts
    conn: ConnFacts
    request: RequestFacts | None  # None for tcp and tls endpoints
    response: ResponseFacts
    response_body: str | None = None  # --response-body, for response-body-find-replace


@dataclass(frozen=True, slots=True)
class Replay:
    """What each phase run did; `request`/`response` are None for phases that did not run."""

    input: ReplayInput
    tcp: Continue | Close | ForwardInternal
    request: Forward | Respond | Close | ForwardInternal | None
    response: ResponseChanges | Respond | None
    jwks_urls: tuple[str, ...] = ()  # the policy's JWKS URLs (nothing is fetched offline)

    def traces(self) -> tuple[Trace, ...]:
        return tuple(o.trace for o in (self.tcp, self.request, self.response) if o is not None)

    def logs(self) -> tuple[LogRecord, ...]:
        return tuple(
            record
            for outcome in (self.tcp, self.request, self.response)
            if outcome is not None
            for record in outcome.logs
        )


def replay(policy: CompiledPolicy, given: ReplayInput, *, now: float) -> Replay:
    """Run the phases in the edge's order on `given`, with a fresh `PolicyState`; pure."""
    state = PolicyState()
    endpoint = given.endpoint
    urls = jwks_urls(policy)
    tcp = run_tcp_connect(policy, given.conn, endpoint=endpoint, now=now, state=state)
    if isinstance(tcp, Close | ForwardInternal) or given.request is None:
        return Replay(given, tcp, None, None, urls)
    request = run_http_request(
        policy, given.conn, given.request, endpoint=endpoint, now=now, state=state
    )
    if not isinstance(request, Forward):
        return Replay(given, tcp, request, None, urls)
    response = run_http_response(
        policy,
        given.conn,
        given.request,
        given.response,
        endpoint=endpoint,
        now=now,
        state=state,
        carried=request.carried,
    )
    return Replay(given, tcp, request, response, urls)


# --- flags -> facts ---------------------------------------------------------------------------
def _header(text: str, flag: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    name = name.strip()
    if not colon or not name or any(c.isspace() for c in name):
        raise FlagError(f"{flag} {text!r} is not 'Name: value'")
    if any(c in value for c in "\r\n\0"):
        raise FlagError(f"{flag} {text!r} holds a line break or NUL")
    return name, value.strip()


def _client(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise FlagError(f"--client {text!r} is not IP:PORT (or [IPv6]:PORT)") from None
    if not (port.isascii() and port.isdigit() and 0 < int(port) <= 65535):
        raise FlagError(f"--client {text!r} has no port from 1 to 65535")
    return str(ip), int(port)


def _status(text: str) -> int:
    if not (text.isascii() and text.isdigit() and 100 <= int(text) <= 599):
        raise FlagError(f"--status {text!r} is not an HTTP status from 100 to 599")
    return int(text)


def build_input(args: argparse.Namespace) -> ReplayInput:
    """The facts the flags describe; raises FlagError naming the wrong flag."""
    protocol: str = args.protocol
    url = args.url or _DEFAULT_URLS[protocol]
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != protocol or not parts.hostname:
        raise FlagError(f"--url {url!r} is not a {protocol}:// URL with a host")
    try:
        port = parts.port or _DEFAULT_PORTS.get(protocol)
    except ValueError:
        port = None
    if port is None:
        raise FlagError(f"--url {url!r} needs a port from 1 to 65535")
    host = parts.hostname
    endpoint = EndpointFacts(
        url=f"{protocol}://{parts.netloc}", host=host, port=port, protocol=protocol
    )
    client_ip, client_port = _client(args.client)
    now = time.time()
    conn = ConnFacts(
        client_ip=client_ip,
        client_port=client_port,
        server_ip=_SERVER_IP,
        server_port=port,
        sni=host if protocol in _TLS else None,
        tls_version="1.3" if protocol in _TLS else None,
        started_at=now,
    )
    headers = tuple(_header(h, "--header") for h in args.header)
    response = ResponseFacts(
        status=_status(args.status),
        headers=tuple(_header(h, "--response-header") for h in args.response_header),
    )
    method: str = args.method
    if not method or not method.isascii() or not method.isalpha():
        raise FlagError(f"--method {method!r} is not an HTTP method")
    request = None
    if protocol in _HTTP:
        request = RequestFacts(
            method=method.upper(),
            scheme=protocol,
            host=parts.netloc,
            path=parts.path or "/",
            query=parts.query,
            headers=headers,
        )
        # What the shells give a policy that reads bodies: the body, b"" when there is none.
        body = (args.body or "").encode("utf-8")
        request = replace(request, body=body)
        if args.body is not None:
            request = replace(request, content_length=len(body))
    return ReplayInput(endpoint, conn, request, response, args.response_body)


# --- the command ------------------------------------------------------------------------------
def run_policy_test(args: argparse.Namespace) -> int:
    """Run `burrow-edge policy test`; the exit status."""
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
    try:
        given = build_input(args)
    except FlagError as exc:
        return _refuse(str(exc))
    limits = PolicyLimits()
    name = _STDIN_NAME if args.file == _STDIN else args.file
    try:
        raw = read_document(args.file, limits, sys.stdin)
    except OSError as exc:
        return _refuse(f"cannot read {name}: {exc.strerror or exc}")
    checked: CheckResult = check_document(raw, protocol=args.protocol, limits=limits)
    if checked.errors or checked.policy is None:
        if args.output_format == "json":
            print(json.dumps(checked.json(), separators=(",", ":")))
        else:
            for error in checked.errors:
                print(error.text(name))
        return 1
    compiled = validate(checked.policy, protocol=args.protocol)
    result = replay(compiled, given, now=time.time())
    if args.output_format == "json":
        print(json.dumps(replay_json(result), separators=(",", ":"), default=str))
    else:
        for line in replay_text(result):
            print(line)
    return 0


def _refuse(problem: str) -> int:
    print(f"burrow-edge: policy test: {problem}", file=sys.stderr)
    return 2


# --- the report -------------------------------------------------------------------------------
def _value(value: bool | None, error: str | None) -> str:
    if value is None:
        return f"error: {error}"
    return "true" if value else "false"


def _trace_text(trace: Trace) -> list[str]:
    if not trace.rules:
        return [f"{trace.phase}: no rules"]
    lines = [f"{trace.phase}:"]
    for rule in trace.rules:
        label = f"rule {rule.index}" + (f" ({json.dumps(rule.name)})" if rule.name else "")
        lines.append(f"  {label}: {'matched' if rule.matched else 'not matched'}")
        for expression in rule.expressions:
            lines.append(f"    {expression.text} => {_value(expression.value, expression.error)}")
        for action in rule.actions:
            lines.append(f"    action {action.index} {action.type}: {action.result}")
    return lines


def _changes_text(changes: HeaderChanges) -> list[str]:
    return [f"  remove header {name}" for name in changes.removed] + [
        f"  add header {name}: {value}" for name, value in changes.added
    ]


def _respond_text(label: str, outcome: Respond) -> list[str]:
    code = f" ({outcome.error_code})" if outcome.error_code else ""
    lines = [f"{label}: respond {outcome.status}{code}"]
    lines += [f"  header {name}: {value}" for name, value in outcome.headers]
    lines.append(f"  body: {json.dumps(outcome.body.decode('utf-8', 'replace'))}")
    return lines


def replay_text(result: Replay) -> list[str]:
    """The text report, one line an item."""
    lines: list[str] = []
    for trace in result.traces():
        lines += _trace_text(trace)
    request = result.input.request
    if isinstance(result.tcp, Close):
        lines.append(f"outcome: close ({result.tcp.reason})")
    elif isinstance(result.tcp, ForwardInternal):
        lines.append(_forward_internal_text(result.tcp))
    elif request is None and isinstance(result.tcp, Continue) and result.tcp.terminate_tls:
        lines.append(f"outcome: continue; {terminate_tls_text(result.tcp.terminate_tls)}")
    elif request is None:
        lines.append("outcome: continue (the connection is let through)")
    elif isinstance(result.request, Close):
        lines.append(f"outcome: close ({result.request.reason})")
    elif isinstance(result.request, ForwardInternal):
        lines.append(_forward_internal_text(result.request))
    elif isinstance(result.request, Respond):
        lines += _respond_text("outcome", result.request)
        note = jwks_note(result.request, result.jwks_urls)
        if note is not None:
            lines.append(f"  note: {note}")
    elif isinstance(result.request, Forward):
        changes = result.request.changes
        target = changes.target or request.target
        rewritten = f" (rewritten from {request.target})" if changes.target else ""
        lines.append(f"outcome: forward {request.method} {target}{rewritten}")
        lines += _changes_text(changes.headers)
        if changes.body is not None:
            lines.append(f"  body rewritten: {json.dumps(changes.body.decode('utf-8', 'replace'))}")
        if isinstance(result.response, ResponseChanges):
            lines.append(f"response: {result.input.response.status} from the upstream")
            lines += _changes_text(result.response.headers)
            effect = _body_effect(result, result.response)
            if effect is not None:
                lines += body_effect_text(effect, steps=result.response.body)
        elif isinstance(result.response, Respond):
            lines += _respond_text("response", result.response)
    for record in result.logs():
        code = f" {record.error_code}" if record.error_code else ""
        metadata = json.dumps(dict(record.metadata), default=str, sort_keys=True)
        lines.append(f"log {record.place}{code}: {metadata}")
    return lines


def _body_effect(result: Replay, response: ResponseChanges) -> BodyEffect | None:
    request = result.input.request
    assert request is not None  # a response phase ran, so a request did
    return body_effect(
        response.body,
        method=request.method,
        status=result.input.response.status,
        request_headers=request.headers,
        response_headers=result.input.response.headers,
        changes=response.headers,
        body=result.input.response_body,
    )


def _forward_internal_text(outcome: ForwardInternal) -> str:
    # Offline there is no registry: the target is named, not looked up.
    if outcome.error is not None:
        code, message = outcome.error
        return f"outcome: forward-internal to {outcome.url} failed ({code}: {message})"
    return f"outcome: forward-internal to {outcome.url} (its own policy runs next)"


def _forward_internal_json(outcome: ForwardInternal) -> dict[str, object]:
    error = outcome.error
    return {
        "type": "forward-internal",
        "url": outcome.url,
        "error": None if error is None else {"code": error[0], "message": error[1]},
    }


def _trace_json(trace: Trace) -> dict[str, object]:
    return {
        "phase": trace.phase,
        "rules": [
            {
                "index": rule.index,
                "name": rule.name or None,
                "matched": rule.matched,
                "expressions": [
                    {"text": e.text, "value": e.value, "error": e.error} for e in rule.expressions
                ],
                "actions": [
                    {"index": a.index, "type": a.type, "result": a.result} for a in rule.actions
                ],
            }
            for rule in trace.rules
        ],
    }


def _changes_json(changes: HeaderChanges) -> dict[str, object]:
    return {"removed": list(changes.removed), "added": [list(pair) for pair in changes.added]}


def _respond_json(outcome: Respond) -> dict[str, object]:
    return {
        "type": "respond",
        "status": outcome.status,
        "headers": [list(pair) for pair in outcome.headers],
        "body": outcome.body.decode("utf-8", "replace"),
        "error_code": outcome.error_code,
    }


def _outcome_json(result: Replay) -> dict[str, object]:
    request = result.input.request
    if isinstance(result.tcp, Close):
        return {"type": "close", "reason": result.tcp.reason}
    if isinstance(result.tcp, ForwardInternal):
        return _forward_internal_json(result.tcp)
    if request is None or result.request is None:
        tls = result.tcp.terminate_tls if isinstance(result.tcp, Continue) else None
        if tls is not None:
            return {"type": "continue", "terminate_tls": terminate_tls_json(tls)}
        return {"type": "continue"}
    if isinstance(result.request, Close):
        return {"type": "close", "reason": result.request.reason}
    if isinstance(result.request, Respond):
        note = jwks_note(result.request, result.jwks_urls)
        return {**_respond_json(result.request), **({"note": note} if note else {})}
    if isinstance(result.request, ForwardInternal):
        return _forward_internal_json(result.request)
    changes = result.request.changes
    response: dict[str, object] | None = None
    if isinstance(result.response, ResponseChanges):
        response = {
            "type": "upstream",
            "status": result.input.response.status,
            "headers": _changes_json(result.response.headers),
        }
        effect = _body_effect(result, result.response)
        if effect is not None:  # compress-response or response-body-find-replace ran
            response["body"] = body_effect_json(effect)
    elif isinstance(result.response, Respond):
        response = _respond_json(result.response)
    outcome: dict[str, object] = {
        "type": "forward",
        "method": request.method,
        "target": changes.target or request.target,
        "rewritten": changes.target is not None,
        "headers": _changes_json(changes.headers),
        "response": response,
    }
    if changes.body is not None:  # request-body-find-replace changed it
        outcome["body"] = changes.body.decode("utf-8", "replace")
    return outcome


def replay_json(result: Replay) -> dict[str, object]:
    """The report as one JSON-ready object: `phases`, `outcome`, `logs`."""
    return {
        "phases": [_trace_json(trace) for trace in result.traces()],
        "outcome": _outcome_json(result),
        "logs": [
            {
                "phase": record.phase,
                "place": record.place,
                "metadata": dict(record.metadata),
                "error_code": record.error_code,
            }
            for record in result.logs()
        ],
    }
