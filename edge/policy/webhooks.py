"""Webhook signature checks for the `verify-webhook` action, one function per provider.

Theory of operation. A webhook provider signs each delivery with a secret it shares with the
receiver; `verify(provider, secret, delivery, now=...)` recomputes the signature from the request
exactly as the provider documents it and compares it with the one the request carries, always
with `hmac.compare_digest` (constant time: how far a forged signature matched is not leaked).

| provider | signature header(s)                            | signed bytes        | MAC, tolerance |
| -------- | ---------------------------------------------- | ------------------- | -------------- |
| github   | X-Hub-Signature-256: sha256=<hex>              | body                | SHA256 hex     |
| stripe   | Stripe-Signature: t=<ts>,v1=<hex>[,v1=..]      | `<ts>.` body        | SHA256 hex, 5m |
| slack    | X-Slack-Signature: v0=<hex> (+ ...-Timestamp)  | `v0:<ts>:` body     | SHA256 hex, 5m |
| twilio   | X-Twilio-Signature: <base64>                   | URL + sorted params | SHA1 base64    |
| shopify  | X-Shopify-Hmac-Sha256: <base64>                | body                | SHA256 base64  |
| svix     | svix-id/-timestamp/-signature (or webhook-*)   | `<id>.<ts>.` body   | SHA256 b64, 5m |
| gitlab   | X-Gitlab-Token: <the secret itself>            | (nothing)           | none           |

All but gitlab are HMACs keyed with the secret. GitLab signs nothing: it sends the secret token
configured on the webhook in `X-Gitlab-Token` (docs.gitlab.com, "Webhooks", "Validate requests
with a secret token"; ngrok's example policy for verify-webhook uses `provider: gitlab`), so the
check is that header equal to the secret, compared in constant time like the others.
`svix` is the generic HMAC-SHA256 scheme (the Standard Webhooks specification, which many
providers send): the `webhook-id`, `webhook-timestamp` and `webhook-signature` headers are read
when the `svix-*` ones are absent, and a `whsec_`-prefixed secret is its base64 key.

Twilio signs the URL it called (the public URL, as the edge's `req.url` has it) followed by
each POST parameter's name and value, sorted by name; a JSON delivery instead carries
`bodySHA256=<hex sha256 of the body>` in the URL's query, which is checked too.

Timestamps (replay protection): where the provider signs one, a delivery whose timestamp is
further than the provider's documented tolerance from `now`, in either direction, is refused;
ngrok's default of 180 s applies to a provider that documents none (DOCS
`http/webhook-verification`: "If the webhook provider's documentation suggests a tolerance
value, we will use that. Otherwise, ngrok uses a tolerance of 180 seconds").

Pure: no I/O, no clock (`now` is Unix seconds from the caller), never raises for bad input: a
missing or malformed header is a refusal that says what was wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_TOLERANCE", "PROVIDERS", "Delivery", "Verdict", "verify"]

#: ngrok's tolerance for a provider that documents none (seconds).
DEFAULT_TOLERANCE: Final = 180
#: Stripe's libraries' default tolerance (stripe-python `Webhook.DEFAULT_TOLERANCE`).
STRIPE_TOLERANCE: Final = 300
#: Slack: "more than five minutes from local time" (api.slack.com/authentication/verifying-...).
SLACK_TOLERANCE: Final = 300
#: Svix and Standard Webhooks: five minutes (svix `Webhook.verify`).
SVIX_TOLERANCE: Final = 300


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """The parts of a request a provider's signature covers."""

    method: str
    url: str  # the full public URL, `scheme://host/path?query`
    headers: tuple[tuple[str, str], ...]  # names as sent (matched case-insensitively)
    body: bytes


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether the delivery is authentic; `problem` says why not (empty when verified)."""

    verified: bool
    problem: str = ""


_OK: Final = Verdict(True)


def _refused(problem: str) -> Verdict:
    return Verdict(False, problem)


def _header(delivery: Delivery, name: str) -> str | None:
    """The one value of header `name` (lower-case); None if absent or sent more than once."""
    values = [value for key, value in delivery.headers if key.lower() == name]
    return values[0].strip() if len(values) == 1 else None


def _hmac(key: bytes, data: bytes, digest: str = "sha256") -> bytes:
    return hmac.new(key, data, digest).digest()


def _same(expected: bytes, presented: bytes) -> bool:
    return hmac.compare_digest(expected, presented)


def _hex(text: str) -> bytes | None:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _timestamp(text: str | None, now: float, tolerance: int) -> Verdict | int:
    """The signed timestamp as an int, or the refusal for a missing, bad or stale one."""
    if text is None:
        return _refused("the signature timestamp is missing")
    if not text.isdigit() or len(text) > 12:
        return _refused(f"the signature timestamp {text[:32]!r} is not Unix seconds")
    stamp = int(text)
    if abs(now - stamp) > tolerance:
        return _refused(
            f"the signature timestamp is {abs(int(now) - stamp)}s from now "
            f"(more than the {tolerance}s tolerated)"
        )
    return stamp


# --- providers -------------------------------------------------------------------------------
def _github(secret: str, delivery: Delivery, now: float) -> Verdict:
    signature = _header(delivery, "x-hub-signature-256")
    if signature is None:
        return _refused("no single X-Hub-Signature-256 header")
    scheme, _, text = signature.partition("=")
    presented = _hex(text)
    if scheme != "sha256" or presented is None:
        return _refused("X-Hub-Signature-256 is not sha256=<hex>")
    if _same(_hmac(secret.encode(), delivery.body), presented):
        return _OK
    return _refused("the X-Hub-Signature-256 signature does not match")


def _stripe(secret: str, delivery: Delivery, now: float) -> Verdict:
    header = _header(delivery, "stripe-signature")
    if header is None:
        return _refused("no single Stripe-Signature header")
    stamp_text: str | None = None
    signatures: list[bytes] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            stamp_text = value
        elif key == "v1":
            decoded = _hex(value)
            if decoded is not None:
                signatures.append(decoded)
    stamp = _timestamp(stamp_text, now, STRIPE_TOLERANCE)
    if isinstance(stamp, Verdict):
        return stamp
    if not signatures:
        return _refused("Stripe-Signature has no v1 signature")
    expected = _hmac(secret.encode(), str(stamp).encode() + b"." + delivery.body)
    matched = False
    for presented in signatures:  # no early exit: the same work whichever one matches
        matched |= _same(expected, presented)
    return _OK if matched else _refused("no Stripe-Signature v1 signature matches")


def _slack(secret: str, delivery: Delivery, now: float) -> Verdict:
    signature = _header(delivery, "x-slack-signature")
    if signature is None:
        return _refused("no single X-Slack-Signature header")
    stamp = _timestamp(_header(delivery, "x-slack-request-timestamp"), now, SLACK_TOLERANCE)
    if isinstance(stamp, Verdict):
        return stamp
    version, _, text = signature.partition("=")
    presented = _hex(text)
    if version != "v0" or presented is None:
        return _refused("X-Slack-Signature is not v0=<hex>")
    base = b"v0:" + str(stamp).encode() + b":" + delivery.body
    if _same(_hmac(secret.encode(), base), presented):
        return _OK
    return _refused("the X-Slack-Signature signature does not match")


def _form_params(delivery: Delivery) -> list[tuple[str, str]] | None:
    """A form POST's parameters (None for another content type or method)."""
    media = (_header(delivery, "content-type") or "").partition(";")[0].strip().lower()
    if delivery.method.upper() != "POST" or media != "application/x-www-form-urlencoded":
        return None
    try:
        text = delivery.body.decode("utf-8")
    except UnicodeDecodeError:
        return []
    return urllib.parse.parse_qsl(text, keep_blank_values=True)


def _twilio(secret: str, delivery: Delivery, now: float) -> Verdict:
    signature = _header(delivery, "x-twilio-signature")
    if signature is None:
        return _refused("no single X-Twilio-Signature header")
    presented = _b64(signature)
    if presented is None:
        return _refused("X-Twilio-Signature is not base64")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(delivery.url).query)
    body_hash = query.get("bodySHA256")
    data = delivery.url
    params = _form_params(delivery)
    if body_hash is None and params is not None:
        data += "".join(name + value for name, value in sorted(params, key=lambda p: p[0]))
    expected = _hmac(secret.encode(), data.encode("utf-8"), "sha1")
    if not _same(expected, presented):
        return _refused("the X-Twilio-Signature signature does not match")
    if body_hash is not None:
        digest = hashlib.sha256(delivery.body).hexdigest().encode()
        if not _same(digest, body_hash[0].lower().encode()):
            return _refused("the body does not match the URL's bodySHA256")
    return _OK


def _shopify(secret: str, delivery: Delivery, now: float) -> Verdict:
    signature = _header(delivery, "x-shopify-hmac-sha256")
    if signature is None:
        return _refused("no single X-Shopify-Hmac-Sha256 header")
    presented = _b64(signature)
    if presented is None:
        return _refused("X-Shopify-Hmac-Sha256 is not base64")
    if _same(_hmac(secret.encode(), delivery.body), presented):
        return _OK
    return _refused("the X-Shopify-Hmac-Sha256 signature does not match")


def _svix_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        decoded = _b64(secret.removeprefix("whsec_"))
        if decoded is not None:
            return decoded
    return secret.encode()


def _svix(secret: str, delivery: Delivery, now: float) -> Verdict:
    prefix = "svix" if _header(delivery, "svix-signature") is not None else "webhook"
    message_id = _header(delivery, f"{prefix}-id")
    signatures = _header(delivery, f"{prefix}-signature")
    if message_id is None or signatures is None:
        return _refused("no single svix-id/webhook-id and svix-signature/webhook-signature")
    stamp = _timestamp(_header(delivery, f"{prefix}-timestamp"), now, SVIX_TOLERANCE)
    if isinstance(stamp, Verdict):
        return stamp
    signed = f"{message_id}.{stamp}.".encode() + delivery.body
    expected = _hmac(_svix_key(secret), signed)
    matched = False
    for item in signatures.split():  # "v1,<b64> v1,<b64>": several during a key rotation
        version, _, text = item.partition(",")
        presented = _b64(text)
        if version == "v1" and presented is not None:
            matched |= _same(expected, presented)
    return _OK if matched else _refused(f"no {prefix}-signature v1 signature matches")


def _gitlab(secret: str, delivery: Delivery, now: float) -> Verdict:
    token = _header(delivery, "x-gitlab-token")
    if token is None:
        return _refused("no single X-Gitlab-Token header")
    if _same(secret.encode(), token.encode()):
        return _OK
    return _refused("the X-Gitlab-Token does not match the secret")


Check = Callable[[str, Delivery, float], Verdict]
_CHECKS: Final[Mapping[str, Check]] = {
    "github": _github,
    "stripe": _stripe,
    "slack": _slack,
    "twilio": _twilio,
    "shopify": _shopify,
    "svix": _svix,
    "gitlab": _gitlab,
}
#: The provider identifiers this edge verifies (ngrok's names); any other is refused at load.
PROVIDERS: Final = frozenset(_CHECKS)


def verify(provider: str, secret: str, delivery: Delivery, *, now: float) -> Verdict:
    """Whether `delivery` carries `provider`'s valid signature made with `secret`, at `now`
    (Unix seconds). `provider` must be one of `PROVIDERS` (KeyError otherwise: validation
    refuses the others)."""
    return _CHECKS[provider](secret, delivery, now)
