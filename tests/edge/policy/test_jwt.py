"""edge/policy/jwt.py: tokens signed with real keys of every algorithm family are accepted; a
tampered payload, a wrong key, expired or not-yet-valid tokens, a wrong issuer or audience,
`alg: none` and an algorithm that does not fit the key are refused."""

from __future__ import annotations

import json

import pytest

from edge.policy.jwk import Jwk, jwk_to_key
from edge.policy.jwt import (
    LEEWAY_SECONDS,
    MAX_CANDIDATE_KEYS,
    MAX_TOKEN_BYTES,
    Rules,
    TokenError,
    decode_token,
    key_fits,
    verify_token,
)
from tests.edge.policy.jwt_helpers import (
    AUDIENCE,
    ISSUER,
    b64url,
    claims,
    key_for,
    public_jwk,
    sign,
)

NOW = 1_714_564_800.0
ALL = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


def jwk(alg: str, *, kid: str | None = "k1", variant: int = 0, key_alg: str | None = None) -> Jwk:
    key = jwk_to_key(public_jwk(key_for(alg, variant), kid, key_alg))
    assert key is not None
    return key


def rules(*algorithms: str, audiences: tuple[str, ...] = (AUDIENCE,), kind: str = "jwt") -> Rules:
    return Rules(
        algorithms=frozenset(algorithms or ALL),
        issuers=frozenset({ISSUER}),
        audiences=frozenset(audiences),
        token_type=kind,
    )


@pytest.mark.parametrize("alg", ALL)
def test_a_token_signed_with_each_algorithm_is_accepted(alg: str) -> None:
    token = sign(key_for(alg), alg, claims(NOW))
    verdict = verify_token(token, keys=[jwk(alg)], rules=rules(alg), now=NOW)
    assert verdict.verified, verdict.reason
    assert verdict.decoded is not None and verdict.decoded.payload["sub"] == "user-1"


def test_an_ed448_key_verifies_eddsa() -> None:
    token = sign(key_for("Ed448"), "EdDSA", claims(NOW))
    assert verify_token(token, keys=[jwk("Ed448")], rules=rules("EdDSA"), now=NOW).verified


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "EdDSA"])
def test_a_tampered_payload_is_refused(alg: str) -> None:
    header, _, signature = sign(key_for(alg), alg, claims(NOW)).split(".")
    forged = b64url(json.dumps(claims(NOW, sub="admin")).encode())
    verdict = verify_token(
        f"{header}.{forged}.{signature}", keys=[jwk(alg)], rules=rules(), now=NOW
    )
    assert not verdict.verified
    assert verdict.reason == "the token's signature is not valid"


@pytest.mark.parametrize("alg", ["RS256", "ES384", "EdDSA"])
def test_a_token_signed_by_another_key_is_refused(alg: str) -> None:
    token = sign(key_for(alg, 1), alg, claims(NOW))  # same kid, different key
    verdict = verify_token(token, keys=[jwk(alg)], rules=rules(), now=NOW)
    assert not verdict.verified
    assert verdict.reason == "the token's signature is not valid"


def test_expiry_is_checked_with_the_leeway() -> None:
    key = key_for("ES256")
    expires = int(NOW) - 10
    token = sign(key, "ES256", claims(NOW, exp=expires))
    assert verify_token(token, keys=[jwk("ES256")], rules=rules(), now=NOW).verified  # in leeway
    late = verify_token(token, keys=[jwk("ES256")], rules=rules(), now=expires + LEEWAY_SECONDS)
    assert not late.verified and late.reason == "the token has expired"


def test_a_token_without_exp_is_refused() -> None:
    token = sign(key_for("ES256"), "ES256", claims(NOW, exp=None))
    verdict = verify_token(token, keys=[jwk("ES256")], rules=rules(), now=NOW)
    assert not verdict.verified and verdict.reason == "the token has no exp claim"


def test_a_token_not_valid_yet_is_refused() -> None:
    token = sign(key_for("ES256"), "ES256", claims(NOW, nbf=int(NOW) + LEEWAY_SECONDS + 5))
    verdict = verify_token(token, keys=[jwk("ES256")], rules=rules(), now=NOW)
    assert not verdict.verified and verdict.reason == "the token is not valid yet (nbf)"
    soon = sign(key_for("ES256"), "ES256", claims(NOW, nbf=int(NOW) + 5))
    assert verify_token(soon, keys=[jwk("ES256")], rules=rules(), now=NOW).verified


def test_a_token_issued_in_the_future_is_refused() -> None:
    token = sign(key_for("ES256"), "ES256", claims(NOW, iat=int(NOW) + 3600))
    verdict = verify_token(token, keys=[jwk("ES256")], rules=rules(), now=NOW)
    assert not verdict.verified and "issued in the future" in verdict.reason


def test_a_claim_of_the_wrong_type_is_refused() -> None:
    token = sign(key_for("ES256"), "ES256", claims(NOW, exp="tomorrow"))
    verdict = verify_token(token, keys=[jwk("ES256")], rules=rules(), now=NOW)
    assert not verdict.verified and verdict.reason == "the exp claim is not a number"


@pytest.mark.parametrize("issuer", ["https://issuer.example.com", "https://evil.example/", None])
def test_an_issuer_not_exactly_on_the_list_is_refused(issuer: str | None) -> None:
    token = sign(key_for("ES256"), "ES256", claims(NOW, iss=issuer))
    verdict = verify_token(token, keys=[jwk("ES256")], rules=rules(), now=NOW)
    assert not verdict.verified and verdict.reason == "the token's issuer is not allowed"


def test_audience_string_list_and_unchecked() -> None:
    key = [jwk("ES256")]
    as_list = sign(key_for("ES256"), "ES256", claims(NOW, aud=["other", AUDIENCE]))
    assert verify_token(as_list, keys=key, rules=rules(), now=NOW).verified
    wrong = sign(key_for("ES256"), "ES256", claims(NOW, aud="urn:other"))
    verdict = verify_token(wrong, keys=key, rules=rules(), now=NOW)
    assert not verdict.verified and verdict.reason == "the token's audience is not allowed"
    missing = sign(key_for("ES256"), "ES256", claims(NOW, aud=None))
    assert not verify_token(missing, keys=key, rules=rules(), now=NOW).verified
    # No audience allow list: aud is not checked.
    assert verify_token(wrong, keys=key, rules=rules(audiences=()), now=NOW).verified


def test_alg_none_is_refused_even_if_listed() -> None:
    header = b64url(json.dumps({"alg": "none", "kid": "k1"}).encode())
    body = b64url(json.dumps(claims(NOW)).encode())
    verdict = verify_token(f"{header}.{body}.", keys=[jwk("RS256")], rules=rules("none"), now=NOW)
    assert not verdict.verified  # an empty signature is not a JWS at all
    with_sig = f"{header}.{body}.{b64url(b'x')}"
    verdict = verify_token(with_sig, keys=[jwk("RS256")], rules=rules("none"), now=NOW)
    assert not verdict.verified and "'none' is not allowed" in verdict.reason


def test_an_algorithm_not_allowed_by_the_policy_is_refused() -> None:
    token = sign(key_for("RS256"), "RS256", claims(NOW))
    verdict = verify_token(token, keys=[jwk("RS256")], rules=rules("ES256"), now=NOW)
    assert not verdict.verified and "'RS256' is not allowed" in verdict.reason


def test_an_algorithm_that_does_not_fit_the_key_is_refused() -> None:
    # An RSA key's bytes "signing" with HS256 (the classic confusion attack) or with ES256.
    token = sign(key_for("ES256"), "ES256", claims(NOW))
    verdict = verify_token(token, keys=[jwk("RS256")], rules=rules(), now=NOW)
    assert not verdict.verified
    assert verdict.reason == "no signing key matches the token's kid and algorithm"
    # ES384 with a P-256 key: the curve must fit the algorithm.
    p256 = jwk("ES256")
    assert not key_fits(p256, "ES384") and key_fits(p256, "ES256")
    # A key whose JWK names RS256 may not verify PS256.
    pinned = jwk("RS256", key_alg="RS256")
    assert key_fits(pinned, "RS256") and not key_fits(pinned, "PS256")
    ps = sign(key_for("RS256"), "PS256", claims(NOW))
    assert not verify_token(ps, keys=[pinned], rules=rules(), now=NOW).verified
    assert not key_fits(p256, "HS256")


def test_keys_are_selected_by_kid() -> None:
    token = sign(key_for("ES256", 1), "ES256", claims(NOW), kid="second")
    keys = [jwk("ES256", kid="first"), jwk("ES256", kid="second", variant=1)]
    assert verify_token(token, keys=keys, rules=rules(), now=NOW).verified
    unknown = sign(key_for("ES256", 1), "ES256", claims(NOW), kid="third")
    verdict = verify_token(unknown, keys=keys, rules=rules(), now=NOW)
    assert not verdict.verified and "kid" in verdict.reason


def test_without_a_kid_every_fitting_key_is_tried_up_to_the_cap() -> None:
    token = sign(key_for("ES256", 1), "ES256", claims(NOW), kid=None)
    keys = [jwk("ES256", kid="a"), jwk("ES256", kid="b", variant=1)]
    assert verify_token(token, keys=keys, rules=rules(), now=NOW).verified
    many = [jwk("ES256", kid=str(i)) for i in range(MAX_CANDIDATE_KEYS)] + keys
    verdict = verify_token(token, keys=many, rules=rules(), now=NOW)
    assert not verdict.verified and "at most" in verdict.reason


def test_at_jwt_tokens_need_the_typ_header() -> None:
    key = [jwk("ES256")]
    plain = sign(key_for("ES256"), "ES256", claims(NOW))
    verdict = verify_token(plain, keys=key, rules=rules(kind="at+jwt"), now=NOW)
    assert not verdict.verified and "at+jwt" in verdict.reason
    typed = sign(key_for("ES256"), "ES256", claims(NOW), header={"typ": "at+jwt"})
    assert verify_token(typed, keys=key, rules=rules(kind="at+jwt"), now=NOW).verified


def test_an_ecdsa_signature_in_der_form_is_refused() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    private = key_for("ES256")
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    good = sign(private, "ES256", claims(NOW))
    head, body, _ = good.split(".")
    der = private.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
    verdict = verify_token(
        f"{head}.{body}.{b64url(der)}", keys=[jwk("ES256")], rules=rules(), now=NOW
    )
    assert not verdict.verified


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("abc", "not a signed JWT"),
        ("a.b.c.d", "not a signed JWT"),
        ("!!.e30.c2ln", "header is not base64url"),
        (b64url(b"[1]") + ".e30.c2ln", "header is not a JSON object"),
        (b64url(b"{") + ".e30.c2ln", "header is not JSON"),
        (b64url(b'{"typ":"JWT"}') + ".e30.c2ln", "no alg"),
        (b64url(b'{"alg":"RS256","crit":["x"]}') + ".e30.c2ln", "critical extensions"),
        (b64url(b'{"alg":"RS256"}') + ".e30.c2l=", "signature is not base64url"),
        ("é.e30.c2ln", "not ASCII"),
    ],
)
def test_malformed_tokens_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(TokenError, match=reason):
        decode_token(text)
    verdict = verify_token(text, keys=[jwk("RS256")], rules=rules(), now=NOW)
    assert not verdict.verified and reason in verdict.reason and verdict.decoded is None


def test_an_oversized_token_is_refused_before_decoding() -> None:
    token = sign(key_for("ES256"), "ES256", claims(NOW, pad="x" * MAX_TOKEN_BYTES))
    with pytest.raises(TokenError, match="longer than"):
        decode_token(token)
