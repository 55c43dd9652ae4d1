"""edge/policy/webhooks.py: each provider's signature, computed here independently from the
provider's documented recipe, is accepted; a tampered body, a wrong secret, a stale or future
timestamp and a missing header are refused with a reason."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse

import pytest

from edge.policy.webhooks import PROVIDERS, Delivery, verify

NOW = 1_714_564_800.0
SECRET = "It's a Secret to Everybody"
BODY = b'{"action":"opened","number":1}'
URL = "https://hooks.example.com/github?x=1"


def delivery(
    headers: dict[str, str], body: bytes = BODY, *, url: str = URL, method: str = "POST"
) -> Delivery:
    return Delivery(method=method, url=url, headers=tuple(headers.items()), body=body)


def hex_mac(key: bytes, data: bytes, digest: str = "sha256") -> str:
    return hmac.new(key, data, digest).hexdigest()


def b64_mac(key: bytes, data: bytes, digest: str = "sha256") -> str:
    return base64.b64encode(hmac.new(key, data, digest).digest()).decode()


def test_providers_are_ngroks_names() -> None:
    assert {"github", "stripe", "slack", "twilio", "shopify", "svix"} <= PROVIDERS


# --- github ----------------------------------------------------------------------------------
def github_headers(body: bytes = BODY, secret: str = SECRET) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hex_mac(secret.encode(), body)}


def test_github_docs_example_signature() -> None:
    # GitHub's documented test vector (docs.github.com, "Validating webhook deliveries").
    body = b"Hello, World!"
    expected = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert hex_mac(SECRET.encode(), body) == expected
    headers = {"X-Hub-Signature-256": f"sha256={expected}"}
    assert verify("github", SECRET, delivery(headers, body), now=NOW).verified


def test_github_tampered_body_and_wrong_secret_refused() -> None:
    headers = github_headers()
    assert verify("github", SECRET, delivery(headers), now=NOW).verified
    tampered = verify("github", SECRET, delivery(headers, BODY + b" "), now=NOW)
    assert not tampered.verified and "does not match" in tampered.problem
    assert not verify("github", "other", delivery(headers), now=NOW).verified


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Hub-Signature-256": "sha1=00"},
        {"X-Hub-Signature-256": "sha256=zz"},
        {"X-Hub-Signature": "sha1=" + hex_mac(SECRET.encode(), BODY, "sha1")},
    ],
)
def test_github_missing_or_malformed_header_refused(headers: dict[str, str]) -> None:
    verdict = verify("github", SECRET, delivery(headers), now=NOW)
    assert not verdict.verified and verdict.problem


# --- stripe ----------------------------------------------------------------------------------
def stripe_header(stamp: int, body: bytes = BODY, secret: str = "whsec_test") -> str:
    signed = f"{stamp}.".encode() + body
    return f"t={stamp},v1={hex_mac(secret.encode(), signed)},v0=deadbeef"


def test_stripe_signature_accepted_within_tolerance() -> None:
    for age in (0, 299, -299):
        headers = {"Stripe-Signature": stripe_header(int(NOW) - age)}
        assert verify("stripe", "whsec_test", delivery(headers), now=NOW).verified


def test_stripe_second_v1_signature_matches_during_rotation() -> None:
    stamp = int(NOW)
    good = stripe_header(stamp).split(",")[1]
    headers = {"Stripe-Signature": f"t={stamp},v1={'00' * 32},{good}"}
    assert verify("stripe", "whsec_test", delivery(headers), now=NOW).verified


def test_stripe_stale_future_tampered_refused() -> None:
    stale = {"Stripe-Signature": stripe_header(int(NOW) - 301)}
    verdict = verify("stripe", "whsec_test", delivery(stale), now=NOW)
    assert not verdict.verified and "tolerated" in verdict.problem
    future = {"Stripe-Signature": stripe_header(int(NOW) + 301)}
    assert not verify("stripe", "whsec_test", delivery(future), now=NOW).verified
    fresh = {"Stripe-Signature": stripe_header(int(NOW))}
    assert not verify("stripe", "whsec_test", delivery(fresh, b"{}"), now=NOW).verified
    no_v1 = {"Stripe-Signature": f"t={int(NOW)}"}
    assert not verify("stripe", "whsec_test", delivery(no_v1), now=NOW).verified


# --- slack -----------------------------------------------------------------------------------
def slack_headers(stamp: int, body: bytes, secret: str) -> dict[str, str]:
    base = b"v0:" + str(stamp).encode() + b":" + body
    return {
        "X-Slack-Request-Timestamp": str(stamp),
        "X-Slack-Signature": "v0=" + hex_mac(secret.encode(), base),
    }


def test_slack_docs_example() -> None:
    # Slack's documented example ("Verifying requests from Slack").
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
        b"channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&"
        b"command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
        b"commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
        b"trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    headers = {
        "X-Slack-Request-Timestamp": "1531420618",
        "X-Slack-Signature": (
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        ),
    }
    assert verify("slack", secret, delivery(headers, body), now=1531420618 + 10).verified
    assert not verify("slack", secret, delivery(headers, body), now=1531420618 + 301).verified


def test_slack_tampered_and_missing_timestamp_refused() -> None:
    secret = "s3cr3t"
    headers = slack_headers(int(NOW), BODY, secret)
    assert verify("slack", secret, delivery(headers), now=NOW).verified
    assert not verify("slack", secret, delivery(headers, BODY + b"x"), now=NOW).verified
    del headers["X-Slack-Request-Timestamp"]
    verdict = verify("slack", secret, delivery(headers), now=NOW)
    assert not verdict.verified and "timestamp" in verdict.problem


# --- twilio ----------------------------------------------------------------------------------
def twilio_signature(token: str, url: str, params: dict[str, str]) -> str:
    data = url + "".join(k + params[k] for k in sorted(params))
    return b64_mac(token.encode(), data.encode(), "sha1")


def test_twilio_form_post_signature() -> None:
    token = "12345"
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234"}
    body = urllib.parse.urlencode(params).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": twilio_signature(token, url, params),
    }
    assert verify("twilio", token, delivery(headers, body, url=url), now=NOW).verified
    tampered = body.replace(b"1234", b"9999")
    assert not verify("twilio", token, delivery(headers, tampered, url=url), now=NOW).verified
    other_url = url.replace("myapp", "other")
    assert not verify("twilio", token, delivery(headers, body, url=other_url), now=NOW).verified


def test_twilio_json_body_uses_body_sha256() -> None:
    token = "12345"
    body = json.dumps({"event": "x"}).encode()
    url = "https://h.example/hook?bodySHA256=" + hashlib.sha256(body).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Twilio-Signature": b64_mac(token.encode(), url.encode(), "sha1"),
    }
    assert verify("twilio", token, delivery(headers, body, url=url), now=NOW).verified
    verdict = verify("twilio", token, delivery(headers, body + b" ", url=url), now=NOW)
    assert not verdict.verified and "bodySHA256" in verdict.problem


# --- shopify ---------------------------------------------------------------------------------
def test_shopify_signature() -> None:
    headers = {"X-Shopify-Hmac-Sha256": b64_mac(b"shpss_x", BODY)}
    assert verify("shopify", "shpss_x", delivery(headers), now=NOW).verified
    assert not verify("shopify", "shpss_x", delivery(headers, BODY[:-1]), now=NOW).verified
    bad = {"X-Shopify-Hmac-Sha256": "not base64!"}
    assert not verify("shopify", "shpss_x", delivery(bad), now=NOW).verified


# --- svix / Standard Webhooks (the generic HMAC-SHA256 provider) -----------------------------
KEY = b"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SVIX_SECRET = "whsec_" + base64.b64encode(KEY).decode()


def svix_headers(stamp: int, body: bytes = BODY, prefix: str = "svix") -> dict[str, str]:
    signed = f"msg_1.{stamp}.".encode() + body
    return {
        f"{prefix}-id": "msg_1",
        f"{prefix}-timestamp": str(stamp),
        f"{prefix}-signature": "v1,AAAA v1," + b64_mac(KEY, signed),
    }


@pytest.mark.parametrize("prefix", ["svix", "webhook"])
def test_svix_and_standard_webhooks(prefix: str) -> None:
    headers = svix_headers(int(NOW), prefix=prefix)
    assert verify("svix", SVIX_SECRET, delivery(headers), now=NOW).verified
    assert not verify("svix", SVIX_SECRET, delivery(headers, b"{}"), now=NOW).verified
    stale = svix_headers(int(NOW) - 301, prefix=prefix)
    assert not verify("svix", SVIX_SECRET, delivery(stale), now=NOW).verified


# --- gitlab (a shared token, not a signature) ------------------------------------------------
def test_gitlab_token_must_equal_the_secret() -> None:
    assert "gitlab" in PROVIDERS
    assert verify("gitlab", "secret!", delivery({"X-Gitlab-Token": "secret!"}), now=NOW).verified
    wrong = verify("gitlab", "secret!", delivery({"X-Gitlab-Token": "secret?"}), now=NOW)
    assert not wrong.verified
    assert wrong.problem == "the X-Gitlab-Token does not match the secret"
    missing = verify("gitlab", "secret!", delivery({}), now=NOW)
    assert (missing.verified, missing.problem) == (False, "no single X-Gitlab-Token header")
    twice = Delivery(
        method="POST",
        url=URL,
        headers=(("X-Gitlab-Token", "secret!"), ("x-gitlab-token", "secret!")),
        body=BODY,
    )
    assert not verify("gitlab", "secret!", twice, now=NOW).verified
