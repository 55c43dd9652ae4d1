"""The actions that read the request body: verify-webhook and request-body-find-replace
(DOCS `traffic-policy/actions/verify-webhook`, `.../request-body-find-replace`).

Both need the whole body, which the shells read before the request phase runs when the
endpoint's policy has one of them (`ActionSpec.request_body`, `CompiledPolicy.reads_request_body`);
it arrives as `RequestFacts.body`. A request with no body has `b""`; a body the shell did not read
(None) fails the request with a coded 500 (ERR_NGROK_2300) rather than be taken as empty.

verify-webhook checks the provider's signature (`edge.policy.webhooks`) with the `secret`
rendered (`${...}`) for this request. It records `actions.ngrok.verify_webhook.verified` and,
when not verified, `error.code` (ERR_NGROK_3204, ngrok's "Request failed webhook verification")
and `error.message`; with `enforce` (the default) a failed check ends the phase with 403, as
ngrok answers, carrying the code in `ngrok-error-code`. With `enforce: false` it only records.

request-body-find-replace applies its replacements in order, each to the previous result,
every match replaced (RE2, `$1`/`${name}` groups as url-rewrite's `to`), on the body as UTF-8
text. A body that is not UTF-8, or that has a Content-Encoding (gzip, ...), is left as it is:
its bytes are not text the patterns could match, and rewriting them would corrupt it. The shell
forwards the changed body with a Content-Length that fits it.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from edge.policy.actions import RequestBodyFindReplaceConfig, VerifyWebhookConfig
from edge.policy.activation import full_url
from edge.policy.errors import Place, PolicyRuntimeError
from edge.policy.phase import Answer, PhaseRun
from edge.policy.run_http import pattern_for, replace_every
from edge.policy.webhooks import Delivery, verify

__all__ = ["ERR_NGROK_3204", "run_request_body_find_replace", "run_verify_webhook"]

#: ngrok's code for a request that failed webhook verification (ngrok.md §6).
ERR_NGROK_3204: Final = "ERR_NGROK_3204"
#: ngrok's "internal gateway error": the shell did not read the body this action needs.
_ERR_NGROK_2300: Final = "ERR_NGROK_2300"


def _body(run: PhaseRun, place: Place) -> bytes:
    """The request body the shell read; a runtime failure (that request's coded 500, never a
    check passed or failed on a body nobody read) if it read none."""
    request = run.request
    assert request is not None
    if request.body is None:
        raise PolicyRuntimeError(
            _ERR_NGROK_2300,
            f"{place.action_type} needs the request body, which was not read for this request",
            place,
        )
    return request.body


def run_verify_webhook(run: PhaseRun, config: VerifyWebhookConfig, place: Place) -> Answer | None:
    body = _body(run, place)
    request = run.request
    assert request is not None
    secret = run.render(config.secret, place.at_field("config.secret"))
    delivery = Delivery(
        method=request.method, url=full_url(request), headers=request.headers, body=body
    )
    verdict = verify(config.provider, secret, delivery, now=run.now)
    error = (
        {"code": "", "message": ""}
        if verdict.verified
        else {"code": ERR_NGROK_3204, "message": f"{config.provider}: {verdict.problem}"}
    )
    run.set_result("verify_webhook", {"verified": verdict.verified, "error": error})
    if verdict.verified or not config.enforce:
        return None
    body = f"{ERR_NGROK_3204}: Request failed webhook verification\n".encode()
    headers = (
        ("content-type", "text/plain; charset=utf-8"),
        ("ngrok-error-code", ERR_NGROK_3204),
    )
    return Answer(403, headers, body)


def _encoded(headers: tuple[tuple[str, str], ...]) -> bool:
    return any(
        name.lower() == "content-encoding" and value.strip().lower() not in ("", "identity")
        for name, value in headers
    )


def run_request_body_find_replace(
    run: PhaseRun, config: RequestBodyFindReplaceConfig, place: Place
) -> None:
    body = _body(run, place)
    request = run.request
    assert request is not None
    if not body or _encoded(request.headers):
        return
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return
    for index, replacement in enumerate(config.replacements):
        where = f"config.replacements[{index}]"
        to = run.render(replacement.to, place.at_field(f"{where}.to"))
        pattern = pattern_for(run, replacement.from_, place.at_field(f"{where}.from"))
        text = replace_every(text, pattern, to)
    changed = text.encode("utf-8")
    if changed != body:
        run.request = replace(request, body=changed, content_length=len(changed))
        run.activation.invalidate("req")
