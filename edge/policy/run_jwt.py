"""Running `jwt-validation` on one request (DOCS `traffic-policy/actions/jwt-validation`).

Every configured token must be present and valid (ngrok: "all tokens must be present in the
request"). In order:

1. Each token is read from its header (`method: header`: `name`, any case; exactly one such
   header) or its body field (`method: body`: ngrok reads it from a POST, PUT or PATCH whose
   body is a JSON object, the member `name` in any case holding a string, or a form,
   `application/x-www-form-urlencoded`, the one field `name` in any case), and its `prefix`
   stripped (compared without regard to case, as HTTP auth schemes are). A token that is
   missing (another method or content type, a body that does not parse, no such field or two),
   or a value without the prefix: 401 `WWW-Authenticate: Bearer` (no error code: RFC 6750 §3.1
   for a request without credentials), result `error.code` ERR_NGROK_3406 ("Token could not
   be found in request"). A body the shell did not read is the request's coded 500
   (ERR_NGROK_2300), never a token found missing: validation makes the shells read it.
2. The keys: the policy's `PolicyState.jwks`, filled in the background from the JWKS URLs
   (`edge.policy.jwks_fetch`). If no URL has usable keys yet (the edge has just attached the
   policy, or every URL has failed for longer than `jwks.max_stale`), the request is answered
   503 with `Retry-After` and ERR_NGROK_7186 ("did not serve a JWKS"): fail closed, never
   forwarded, and not a 401 that would tell a client its good token is bad.
3. Each token verified (`edge.policy.jwt.verify_token`). One failure: 401 with
   `WWW-Authenticate: Bearer error="invalid_token", error_description="..."` (RFC 6750 §3),
   result `error.code` `invalid_token`.

Result variables, as ngrok documents them: `actions.ngrok.jwt_validation.tokens[i]` with
`header`, `payload`, `signature` (base64url, as sent), `verified`, `location` (`header` or
`body`) and `location_property` (the header or field name); `error.code` and `error.message`
(empty on success).

ngrok's action has no `enforce` field, so a failure always ends the phase.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Final

from edge.policy.actions_jwt import JwtValidationConfig, TokenSource
from edge.policy.errors import Place, PolicyRuntimeError
from edge.policy.jwk import Jwk
from edge.policy.jwt import Rules, Verdict, verify_token
from edge.policy.phase import Answer, PhaseRun

__all__ = [
    "ERR_NGROK_3406",
    "ERR_NGROK_7186",
    "INVALID_TOKEN",
    "KEYS_RETRY_AFTER",
    "run_jwt_validation",
]

#: "Token could not be found in request." (DOCS errors/err_ngrok_3406)
ERR_NGROK_3406: Final = "ERR_NGROK_3406"
#: "The JWT Validation signing key source has an invalid additional jku: JKU did not serve a
#: JWKS." (DOCS errors/err_ngrok_7186): here, at request time, no keys are available yet.
ERR_NGROK_7186: Final = "ERR_NGROK_7186"
#: RFC 6750 §3.1's error code for a token that is malformed, expired, or otherwise invalid.
INVALID_TOKEN: Final = "invalid_token"
#: Seconds a client is told to wait when keys are not available: the first fetch of a JWKS
#: takes well under a second when its server answers, and at most `jwks.fetch_timeout`.
KEYS_RETRY_AFTER: Final = 5

#: The methods whose body ngrok reads a `method: body` token from (DOCS jwt-validation config:
#: "When choosing body, the method must be POST, PUT, or PATCH").
BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
#: ngrok's "internal gateway error": the shell did not read the body a body token needs.
_ERR_NGROK_2300: Final = "ERR_NGROK_2300"
_JSON: Final = "application/json"
_FORM: Final = "application/x-www-form-urlencoded"

_TEXT: Final = ("content-type", "text/plain; charset=utf-8")


def _body_values(run: PhaseRun, name: str, place: Place) -> list[object]:
    """The values of body field `name` (lower-case) in the request's JSON object or form."""
    request = run.request
    assert request is not None
    if request.method.upper() not in BODY_METHODS:
        return []
    if request.body is None:
        raise PolicyRuntimeError(
            _ERR_NGROK_2300,
            "jwt-validation needs the request body for a body token, which was not read for "
            "this request",
            place,
        )
    media = [v for k, v in run.headers() if k.lower() == "content-type"]
    kind = media[0].partition(";")[0].strip().lower() if len(media) == 1 else ""
    try:
        text = request.body.decode("utf-8")
        if kind == _JSON:
            document = json.loads(text)
            if not isinstance(document, dict):
                return []
            return [value for key, value in document.items() if key.lower() == name]
        if kind == _FORM:
            pairs = urllib.parse.parse_qsl(text, keep_blank_values=True)
            return [value for key, value in pairs if key.lower() == name]
    except (UnicodeDecodeError, ValueError, RecursionError):
        return []  # not UTF-8, not JSON (or nested past the parser's depth): no token in it
    return []


def _where(source: TokenSource) -> str:
    return f"{'body field' if source.method == 'body' else 'header'} {source.name}"


def _find(run: PhaseRun, source: TokenSource, place: Place) -> str | None:
    name = source.name.lower()
    values: list[object]
    if source.method == "body":
        values = _body_values(run, name, place)
    else:
        values = [value for key, value in run.headers() if key.lower() == name]
    if len(values) != 1 or not isinstance(values[0], str):
        return None  # none, or two that disagree about who the client is
    value = values[0].strip()
    if source.prefix:
        if not value.lower().startswith(source.prefix.lower()):
            return None
        value = value[len(source.prefix) :].strip()
    return value or None


def _keys(run: PhaseRun, config: JwtValidationConfig) -> tuple[Jwk, ...] | None:
    found: list[Jwk] = []
    available = False
    for url in config.jkus:
        keys = run.state.jwks.keys(url, now=run.now)
        if keys is not None:
            available = True
            found.extend(keys)
    return tuple(found) if available else None


def _token_var(verdict: Verdict, source: TokenSource) -> dict[str, object]:
    decoded = verdict.decoded
    return {
        "header": dict(decoded.header) if decoded is not None else {},
        "payload": dict(decoded.payload) if decoded is not None else {},
        "signature": decoded.signature_text if decoded is not None else "",
        "verified": verdict.verified,
        "location": source.method,
        "location_property": source.name,
    }


def _record(
    run: PhaseRun, tokens: list[dict[str, object]], code: str = "", message: str = ""
) -> None:
    run.set_result(
        "jwt_validation", {"tokens": tokens, "error": {"code": code, "message": message}}
    )


def _quoted(text: str) -> str:
    """`text` safe inside a quoted-string of a header value (RFC 9110 §5.6.4)."""
    return "".join(c for c in text if c.isprintable() and c.isascii() and c not in '"\\')


def run_jwt_validation(run: PhaseRun, config: JwtValidationConfig, place: Place) -> Answer | None:
    texts: list[str] = []
    for source in config.tokens:
        text = _find(run, source, place)
        if text is None:
            message = f"Token could not be found in request ({_where(source)})."
            _record(run, [], ERR_NGROK_3406, message)
            body = f"{ERR_NGROK_3406}: {message}\n".encode()
            return Answer(401, (("www-authenticate", "Bearer"), _TEXT), body)
        texts.append(text)
    keys = _keys(run, config)
    if keys is None:
        message = (
            "The signing keys of this endpoint's jwt-validation (its JWKS URLs) are not "
            "available yet; retry shortly."
        )
        _record(run, [], ERR_NGROK_7186, message)
        headers = (("retry-after", str(KEYS_RETRY_AFTER)), _TEXT)
        return Answer(503, headers, f"{ERR_NGROK_7186}: {message}\n".encode())
    variables: list[dict[str, object]] = []
    failure: str | None = None
    for source, text in zip(config.tokens, texts, strict=True):
        rules = Rules(
            algorithms=frozenset(config.algorithms),
            issuers=frozenset(config.issuers),
            audiences=frozenset(config.audiences),
            token_type=source.type,
        )
        verdict = verify_token(text, keys=keys, rules=rules, now=run.now)
        variables.append(_token_var(verdict, source))
        if not verdict.verified and failure is None:
            failure = f"{verdict.reason} ({_where(source)})"
    if failure is None:
        _record(run, variables)
        return None
    _record(run, variables, INVALID_TOKEN, failure)
    challenge = f'Bearer error="{INVALID_TOKEN}", error_description="{_quoted(failure)}"'
    body = f"{INVALID_TOKEN}: {failure}\n".encode("utf-8", errors="replace")
    return Answer(401, (("www-authenticate", challenge), _TEXT), body)
