"""What `burrow-edge policy test` says about actions whose effect lands outside the phase run.

Theory of operation. The engine's outcome is not the whole story for three kinds of action:

* terminate-tls (on_tcp_connect) only hands the edge a TLS context (`Continue.terminate_tls`);
  the report says which certificate the edge would terminate with (its subject, e.g.
  `CN=db.example.com`), the TLS versions and whether client certificates are required.
* compress-response and response-body-find-replace (on_http_response) record body steps that
  the HTTP shell applies as the body streams. The report runs the shell's own pure decision,
  `edge.http.response_body.plan_body`, on the final response head (the upstream's headers from
  `--response-header` with the phase's header changes applied) and the request's headers: the
  coding chosen for the request's Accept-Encoding (or why none was), and, when a
  `--response-body` is given, the body after the replacements (`replace_all`).
* jwt-validation answers 503 ERR_NGROK_7186 when its JWKS keys have not been fetched. Offline,
  nothing is fetched, so a request with a token always gets that answer; the report explains it
  and names the URLs the edge would fetch.

Pure: values in, values out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from edge.http.response_body import MIN_COMPRESS_LENGTH, plan_body, replace_all
from edge.policy.actions_tls import TerminateTlsConfig
from edge.policy.engine import HeaderChanges, Respond
from edge.policy.run_jwt import ERR_NGROK_7186
from edge.policy.run_response_body import BodyStep, CompressStep, FindReplaceStep

__all__ = [
    "BodyEffect",
    "body_effect",
    "body_effect_json",
    "body_effect_text",
    "jwks_note",
    "terminate_tls_json",
    "terminate_tls_text",
]


def terminate_tls_text(config: TerminateTlsConfig) -> str:
    """One line: the certificate the edge terminates TLS with, and how."""
    versions = (
        f"TLS {config.min_version}"
        if config.min_version == config.max_version
        else f"TLS {config.min_version} to {config.max_version}"
    )
    clients = (
        f"client certificates required, checked against {config.client_cas} CA(s)"
        if config.verification is not None
        else "no client certificate asked for"
    )
    return (
        f"terminate-tls: the edge terminates TLS with certificate {config.subject} ({versions}; "
        f"{clients}) and forwards plaintext"
    )


def terminate_tls_json(config: TerminateTlsConfig) -> dict[str, object]:
    return {
        "certificate_subject": config.subject,
        "min_version": config.min_version,
        "max_version": config.max_version,
        "client_certificates": config.verification,
        "client_cas": config.client_cas,
    }


@dataclass(frozen=True, slots=True)
class BodyEffect:
    """What the body steps of one response do (see the module's doc)."""

    offered: tuple[str, ...] | None  # the last compress-response's algorithms; None: none ran
    coding: str | None  # the Content-Encoding the edge adds
    why_not: str | None  # why nothing was compressed, when compress-response ran
    replacements: int  # find-replace patterns applied (0: none ran, or they were skipped)
    body: str | None  # the body after the replacements, when --response-body was given
    notes: tuple[str, ...]  # steps skipped, and why (as the edge logs them)


def _applied(
    headers: tuple[tuple[str, str], ...], changes: HeaderChanges
) -> list[tuple[bytes, bytes]]:
    removed = set(changes.removed)
    kept = [(name, value) for name, value in headers if name.lower() not in removed]
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in kept] + [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in changes.added
    ]


def body_effect(
    steps: tuple[BodyStep, ...],
    *,
    method: str,
    status: int,
    request_headers: tuple[tuple[str, str], ...],
    response_headers: tuple[tuple[str, str], ...],
    changes: HeaderChanges,
    body: str | None,
) -> BodyEffect | None:
    """What `steps` do to the upstream's response (`status`, `response_headers` with the
    response phase's header `changes` applied; `body` from `--response-body`, None if not
    given) to a `method` request with `request_headers`; None when there are no steps."""
    if not steps:
        return None
    plan = plan_body(
        steps,
        method=method,
        status=status,
        request_headers=request_headers,
        headers=_applied(response_headers, changes),
    )
    compress = [step for step in steps if isinstance(step, CompressStep)]
    offered = compress[-1].algorithms if compress else None
    why_not: str | None = None
    if offered is not None and plan.coding is None:
        accept = [value for name, value in request_headers if name.lower() == "accept-encoding"]
        eligible = any(
            name.lower() == b"vary" and b"accept-encoding" in value.lower()
            for name, value in plan.headers
        )
        if not eligible:
            why_not = (
                "the response is not compressed: it is an answer to HEAD or has no body, is "
                "already Content-Encoded, says Cache-Control: no-transform, is of a compressed "
                f"media type, or declares fewer than {MIN_COMPRESS_LENGTH} bytes"
            )
        elif not accept:
            why_not = (
                "the request has no Accept-Encoding, so the response is sent as it is (try "
                "--header 'Accept-Encoding: gzip')"
            )
        else:
            why_not = (
                f"the request's Accept-Encoding ({', '.join(accept)}) allows none of "
                f"{', '.join(offered)}"
            )
    finds = any(isinstance(step, FindReplaceStep) for step in steps)
    result = None
    if body is not None and finds:
        result = replace_all(body, plan.replacements)
    return BodyEffect(offered, plan.coding, why_not, len(plan.replacements), result, plan.notes)


def body_effect_text(effect: BodyEffect, *, steps: tuple[BodyStep, ...]) -> list[str]:
    """The report's lines for `effect`, indented under the response."""
    lines: list[str] = []
    if effect.offered is not None:
        offered = ", ".join(effect.offered)
        if effect.coding is not None:
            lines.append(
                f"  compress-response: {effect.coding} (of {offered}, for the request's "
                "Accept-Encoding); Content-Encoding added, Content-Length dropped"
            )
        else:
            lines.append(f"  compress-response: none ({effect.why_not})")
    finds = sum(1 for step in steps if isinstance(step, FindReplaceStep))
    if finds and effect.body is not None:
        lines.append(f"  response body after find-replace: {json.dumps(effect.body)}")
    elif finds and effect.replacements:
        lines.append(
            f"  response-body-find-replace: {effect.replacements} replacement(s) ready; give "
            "--response-body to see the result"
        )
    lines += [f"  note: {note}" for note in effect.notes]
    return lines


def body_effect_json(effect: BodyEffect) -> dict[str, object]:
    return {
        "compression": None
        if effect.offered is None
        else {"offered": list(effect.offered), "coding": effect.coding, "why_not": effect.why_not},
        "replacements": effect.replacements,
        "body": effect.body,
        "notes": list(effect.notes),
    }


def jwks_note(outcome: Respond, urls: tuple[str, ...]) -> str | None:
    """Why a jwt-validation answered 503 offline, or None if `outcome` is not that answer."""
    if outcome.status != 503 or not urls or not outcome.body.startswith(ERR_NGROK_7186.encode()):
        return None
    return (
        f"jwt-validation answered 503 {ERR_NGROK_7186} because `policy test` runs offline and "
        f"fetches no keys from its JWKS URLs ({', '.join(urls)}); the edge fetches them in the "
        "background once the endpoint is online, and then checks the token against them"
    )
