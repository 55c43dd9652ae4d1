"""`burrow diagnose`: can this machine reach, trust and authenticate with its edge?

As ngrok's `ngrok diagnose` (reference §2.1) it tests the path to the edge one layer at a time
and prints a verdict for each, so the first failing layer names the problem:

1. **Name resolution**: the `connect_url` host resolves (`.localhost` names are loopback without
   asking the resolver, as when the agent dials). Through a proxy the proxy resolves the name,
   so the step is skipped and says so.
2. **TCP**: a connection opens, through `proxy_url` or the environment's proxy when one applies
   (`agent.proxy_dial.dial_edge_transport`, exactly as the agent dials).
3. **TLS**: the handshake completes and the edge's chain verifies against `connect_cas` and the
   connect host name (`agent.edge_dial.edge_tls_context`, as the agent checks it).
4. **Authentication**: a muxado session opens, Auth with the authtoken is accepted, and the
   session is closed again (GOAWAY): no endpoint is bound.

Each step runs within `connect_timeout`. After a failure the later steps are reported as
skipped. The exit status is 0 if no step failed, else 1; the last line is the verdict. Config
errors (an unreadable file) are raised as they are for every command. Cancellation (Ctrl-C)
closes whatever is open.
"""

from __future__ import annotations

import argparse
import enum
import os
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TextIO, TypeVar

import trio

from agent.config import AgentSettings, Secret
from agent.edge_dial import edge_tls_context, wrap_edge_tls
from agent.errors import AgentError
from agent.proxy_dial import dial_edge_transport
from agent.proxy_url import ProxyURLError, choose_proxy
from agent.requests import HostInfo, ResumeState, build_auth
from agent.upstream import resolve_host
from protocol.adapters import rpc
from protocol.adapters.mux import open_mux_session
from protocol.adapters.tls import TLSStream
from protocol.rpc.codec import Codec
from protocol.rpc.errcodes import parse_wire_error
from protocol.rpc.messages import AuthResp, StreamType
from protocol.wire.session import Role

_ParserT = TypeVar("_ParserT", bound=argparse.ArgumentParser)

__all__ = [
    "STEP_NAMES",
    "StepResult",
    "Verdict",
    "add_diagnose_parser",
    "diagnose",
    "diagnose_command",
    "exit_status",
    "render",
    "run_diagnose",
]

STEP_NAMES = ("Name resolution", "TCP", "TLS", "Authentication")
#: Width of the step-name column in the report.
_NAME_WIDTH = max(map(len, STEP_NAMES)) + 2


class Verdict(enum.Enum):
    OK = "OK"
    FAILED = "FAIL"
    SKIPPED = "SKIP"


@dataclass(frozen=True, slots=True, kw_only=True)
class StepResult:
    name: str  # one of STEP_NAMES
    verdict: Verdict
    detail: str  # what was found, or what is wrong and what to do
    seconds: float | None = None  # how long the step took, when it ran


def exit_status(results: Sequence[StepResult]) -> int:
    """0 if no step failed, else 1."""
    return 1 if any(result.verdict is Verdict.FAILED for result in results) else 0


def render(address: str, results: Sequence[StepResult]) -> list[str]:
    """The report's lines: a heading, one line per step, and the verdict line."""
    lines = [f"Testing the connection to the edge at {address}"]
    for result in results:
        took = f" ({result.seconds * 1000:.1f} ms)" if result.seconds is not None else ""
        verdict = f"[{result.verdict.value:^4}]"
        lines.append(f"  {result.name:<{_NAME_WIDTH}}{verdict}  {result.detail}{took}")
    failed = next((r for r in results if r.verdict is Verdict.FAILED), None)
    if failed is None:
        lines.append(
            f"Diagnosis: OK: the edge at {address} is reachable, trusted and accepts the authtoken"
        )
    else:
        lines.append(f"Diagnosis: FAILED at {failed.name}: {failed.detail}")
    return lines


def add_diagnose_parser(
    commands: argparse._SubParsersAction[_ParserT],
    parents: Sequence[_ParserT],
) -> None:
    commands.add_parser(
        "diagnose",
        parents=list(parents),
        help="test the path to the edge: name, TCP, TLS and authentication",
        description="Resolve the connect_url host, connect (through proxy_url if set), verify "
        "the edge's TLS chain against connect_cas, authenticate with the authtoken, and "
        "report each step. Exit status 0 if every step passed, 1 otherwise.",
    )


def diagnose_command(
    args: argparse.Namespace, settings: AgentSettings, env: Mapping[str, str], out: TextIO
) -> int:
    """`burrow diagnose`: the config's settings with `--authtoken` applied, then `run_diagnose`."""
    if getattr(args, "authtoken", None):
        settings = replace(settings, authtoken=Secret(args.authtoken))
    return run_diagnose(settings, env, out)


def run_diagnose(settings: AgentSettings, env: Mapping[str, str], out: TextIO) -> int:
    """Run the checks, print the report to `out`, return the exit status (1 if Ctrl-C
    interrupted them)."""
    try:
        results = trio.run(diagnose, settings, env)
    except KeyboardInterrupt:
        print("Diagnosis: interrupted", file=out, flush=True)
        return 1
    for line in render(settings.connect_url, results):
        print(line, file=out)
    out.flush()
    return exit_status(results)


@dataclass
class _Run:
    settings: AgentSettings
    env: Mapping[str, str]
    results: list[StepResult] = field(default_factory=list)
    started: float | None = None  # when the step being run began its I/O

    def begin(self) -> None:
        self.started = time.monotonic()

    def record(self, name: str, verdict: Verdict, detail: str) -> bool:
        """Add one step's result (timed if `begin` was called for it); False if it failed."""
        took = None if self.started is None else time.monotonic() - self.started
        self.started = None
        self.results.append(StepResult(name=name, verdict=verdict, detail=detail, seconds=took))
        return verdict is not Verdict.FAILED

    def skip_rest(self) -> None:
        """Report the steps not run after the one that failed."""
        failed = self.results[-1].name
        for name in STEP_NAMES[len(self.results) :]:
            detail = f"not run: {failed} failed"
            self.results.append(StepResult(name=name, verdict=Verdict.SKIPPED, detail=detail))


async def diagnose(settings: AgentSettings, env: Mapping[str, str]) -> list[StepResult]:
    """Run the four steps against `settings.connect_url`; one result per step, in order."""
    run = _Run(settings, env)
    if not await _resolve(run) or (tcp := await _connect(run)) is None:
        run.skip_rest()
        return run.results
    tls = await _tls(run, tcp)
    if tls is None:
        run.skip_rest()
        return run.results
    await _authenticate(run, tls)
    return run.results


async def _resolve(run: _Run) -> bool:
    name = STEP_NAMES[0]
    host, port = run.settings.connect_address
    try:
        proxy = choose_proxy(run.settings.proxy, run.env, host)
    except ProxyURLError as exc:
        return run.record(name, Verdict.FAILED, str(exc))
    if proxy is not None:
        return run.record(
            name,
            Verdict.SKIPPED,
            f"{host} is resolved by the proxy {proxy.address} ({proxy.source})",
        )
    run.begin()
    target = resolve_host(host)
    try:
        with trio.fail_after(run.settings.connect_timeout):
            found = await trio.socket.getaddrinfo(target, port, type=trio.socket.SOCK_STREAM)
    except trio.TooSlowError:
        return run.record(
            name,
            Verdict.FAILED,
            f"{host}: no answer within {run.settings.connect_timeout:g}s; check the DNS resolver",
        )
    except OSError as exc:
        return run.record(
            name,
            Verdict.FAILED,
            f"{host}: {exc.strerror or exc}; check agent.connect_url and this machine's DNS",
        )
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    return run.record(name, Verdict.OK, f"{host} is {', '.join(addresses)}")


async def _connect(run: _Run) -> trio.abc.Stream | None:
    name = STEP_NAMES[1]
    host, port = run.settings.connect_address
    timeout = run.settings.connect_timeout
    run.begin()
    try:
        with trio.fail_after(timeout):
            stream = await dial_edge_transport(
                host, port, proxy=run.settings.proxy, connect_timeout=timeout, environ=run.env
            )
    except trio.TooSlowError:
        run.record(
            name,
            Verdict.FAILED,
            f"{host}:{port}: no connection within {timeout:g}s; a firewall may drop the packets",
        )
        return None
    except trio.BrokenResourceError as exc:  # through a proxy: the proxy's one-line reason
        run.record(name, Verdict.FAILED, str(exc))
        return None
    except OSError as exc:
        run.record(
            name,
            Verdict.FAILED,
            f"{host}:{port}: {_os_reason(exc)}; is the edge running and agent.connect_url right?",
        )
        return None
    via = ""
    proxy = choose_proxy(run.settings.proxy, run.env, host)
    if proxy is not None:
        via = f" through the proxy {proxy.address} ({proxy.source})"
    run.record(name, Verdict.OK, f"connected to {host}:{port}{via}")
    return stream


async def _tls(run: _Run, tcp: trio.abc.Stream) -> TLSStream[trio.abc.Stream] | None:
    name = STEP_NAMES[2]
    host, _ = run.settings.connect_address
    cas = run.settings.connect_cas
    trust = "the system's CAs" if cas in ("host", "trusted") else cas
    run.begin()
    try:
        context = edge_tls_context(cas)
        with trio.fail_after(run.settings.connect_timeout):
            stream = await wrap_edge_tls(tcp, context, host)
    except AgentError as exc:  # connect_cas unusable
        await trio.aclose_forcefully(tcp)
        run.record(name, Verdict.FAILED, str(exc))
        return None
    except trio.TooSlowError:
        run.record(
            name,
            Verdict.FAILED,
            f"no TLS handshake within "
            f"{run.settings.connect_timeout:g}s; is {host}'s port the edge's TLS port?",
        )
        return None
    except trio.BrokenResourceError as exc:
        run.record(name, Verdict.FAILED, _tls_reason(exc, trust))
        return None
    assert isinstance(stream, TLSStream)
    subject = _common_name(stream.getpeercert(), "subject")
    issuer = _common_name(stream.getpeercert(), "issuer")
    run.record(
        name,
        Verdict.OK,
        f"{stream.version()}, certificate {subject!r} issued by {issuer!r}, verified for "
        f"{host} against {trust}",
    )
    return stream


async def _authenticate(run: _Run, tls: trio.abc.Stream) -> None:
    name = STEP_NAMES[3]
    settings = run.settings
    if settings.authtoken is None:
        await trio.aclose_forcefully(tls)
        run.record(
            name,
            Verdict.FAILED,
            "no authtoken: pass --authtoken TOKEN, set "
            "BURROW_AUTHTOKEN, or run `burrow config add-authtoken TOKEN`",
        )
        return
    run.begin()
    auth = build_auth(settings, ResumeState(), HostInfo.current())
    try:
        async with open_mux_session(tls, Role.CLIENT) as mux:
            with trio.fail_after(settings.connect_timeout):
                response = await rpc.call(mux, StreamType.AUTH, auth, AuthResp, Codec.MSGPACK)
    except trio.TooSlowError:
        run.record(
            name,
            Verdict.FAILED,
            f"the edge did not answer Auth within {settings.connect_timeout:g}s",
        )
        return
    except (rpc.RpcError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        run.record(name, Verdict.FAILED, f"the session failed: {exc}")
        return
    if response.error:
        parsed = parse_wire_error(response.error)
        code = f" ({parsed.code})" if parsed.code else ""
        message = parsed.message or "authentication failed"
        run.record(name, Verdict.FAILED, f"the edge refused the authtoken: {message}{code}")
        return
    run.record(
        name,
        Verdict.OK,
        f"authtoken {settings.authtoken} accepted (client {response.client_id}); session closed",
    )


def _tls_reason(exc: BaseException, trust: str) -> str:
    cause = exc.__cause__ or exc
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (
            f"the edge's certificate is not trusted: {cause.verify_message}; it does not "
            f"chain to {trust} (connect_cas): set connect_cas to the edge's CA, e.g. its ca.pem"
        )
    return f"handshake failed: {cause}"


def _common_name(cert: Mapping[str, Any] | None, part: str) -> str:
    """The CN of the certificate's subject or issuer (`getpeercert()` form), else ""."""
    for rdn in (cert or {}).get(part, ()) or ():
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


def _os_reason(exc: OSError) -> str:
    """The OS's reason (`connection refused`), each address's once for a multi-address dial."""
    errors: list[OSError] = [exc]
    if isinstance(exc.__cause__, BaseExceptionGroup):
        errors = [e for e in exc.__cause__.exceptions if isinstance(e, OSError)] or errors
    reasons = [
        os.strerror(error.errno).lower()
        if error.errno and error.errno > 0
        else str(error.strerror or error)
        for error in errors
    ]
    return "; ".join(dict.fromkeys(reasons))
