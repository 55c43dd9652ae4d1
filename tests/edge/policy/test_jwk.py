"""edge/policy/jwk.py: JWKS documents with real public keys of each kind, the keys a verifier
skips, malformed documents and keys refused with a reason, and the per-policy key cache."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from edge.policy.jwk import (
    MAX_KEYS,
    JwksCache,
    JwksError,
    b64url_decode,
    jwk_to_key,
    parse_jwks,
)
from tests.edge.policy.jwt_helpers import b64url, key_for, public_jwk


def document(*keys: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


def test_a_jwks_with_every_kind_of_key() -> None:
    keys = parse_jwks(
        document(
            public_jwk(key_for("RS256"), "rsa", "RS256"),
            public_jwk(key_for("ES256"), "p256"),
            public_jwk(key_for("ES384"), "p384"),
            public_jwk(key_for("ES512"), "p521"),
            public_jwk(key_for("EdDSA"), "ed25519"),
            public_jwk(key_for("Ed448"), "ed448"),
        )
    )
    assert [(k.kid, k.kty, k.crv, k.alg) for k in keys] == [
        ("rsa", "RSA", None, "RS256"),
        ("p256", "EC", "P-256", None),
        ("p384", "EC", "P-384", None),
        ("p521", "EC", "P-521", None),
        ("ed25519", "OKP", "Ed25519", None),
        ("ed448", "OKP", "Ed448", None),
    ]
    assert isinstance(keys[0].key, rsa.RSAPublicKey)
    assert isinstance(keys[1].key, ec.EllipticCurvePublicKey)
    assert isinstance(keys[4].key, ed25519.Ed25519PublicKey)
    assert isinstance(keys[5].key, ed448.Ed448PublicKey)


def test_keys_a_verifier_cannot_use_are_skipped() -> None:
    usable = public_jwk(key_for("ES256"), "sig")
    keys = parse_jwks(
        document(
            {"kty": "oct", "k": b64url(b"secret"), "kid": "hmac"},
            {**public_jwk(key_for("RS256"), "enc"), "use": "enc"},
            {**public_jwk(key_for("RS256"), "ops"), "key_ops": ["encrypt"]},
            {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA", "kid": "k1"},
            {"kty": "OKP", "crv": "X25519", "x": "AA", "kid": "x"},
            usable,
        )
    )
    assert [key.kid for key in keys] == ["sig"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JWKS"),
        (b'{"keys": {}}', "not a JWKS"),
        (b'{"keys": [1]}', r"keys\[0\] is not a JSON object"),
        (document({"kty": "oct", "k": "AA"}), "no RSA, EC or OKP"),
        (document(), "no RSA, EC or OKP"),
    ],
)
def test_malformed_documents_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(JwksError, match=reason):
        parse_jwks(data)


def test_too_many_keys_are_refused() -> None:
    entry = public_jwk(key_for("ES256"), "k")
    with pytest.raises(JwksError, match=f"at most {MAX_KEYS}"):
        parse_jwks(document(*[entry] * (MAX_KEYS + 1)))
    assert len(parse_jwks(document(*[entry] * MAX_KEYS))) == MAX_KEYS


def test_an_rsa_key_under_2048_bits_is_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(JwksError, match=r"keys\[0\]: RSA key of 1024 bits"):
        parse_jwks(document(public_jwk(small, "small")))


def test_an_ec_point_off_the_curve_is_refused() -> None:
    jwk = public_jwk(key_for("ES256"), "k")
    jwk["y"] = jwk["x"]  # (x, x) is almost surely not on P-256
    with pytest.raises(JwksError, match="not on curve P-256"):
        jwk_to_key(jwk)
    short = public_jwk(key_for("ES256"), "k")
    short["x"] = b64url(b"\x01" * 31)
    with pytest.raises(JwksError, match="32 bytes"):
        jwk_to_key(short)


@pytest.mark.parametrize(
    ("jwk", "reason"),
    [
        ({"kty": "RSA", "e": "AQAB"}, "'n' is missing"),
        ({"kty": "RSA", "n": 5, "e": "AQAB"}, "'n' is missing or not a string"),
        ({"kty": "RSA", "n": "a+b/", "e": "AQAB"}, "base64url"),
        ({"kty": "EC", "crv": "P-256", "x": "AA"}, "'y' is missing"),
        ({"kty": "RSA", "kid": 7}, "'kid' must be a string"),
        ({"kty": "RSA", "alg": ["RS256"]}, "'alg' must be a string"),
    ],
)
def test_malformed_keys_are_refused(jwk: dict[str, Any], reason: str) -> None:
    with pytest.raises(JwksError, match=reason):
        jwk_to_key(jwk)


@pytest.mark.parametrize("text", ["YQ==", "a+b", "a/b", "a b", "abcde", "é"])
def test_b64url_decode_is_strict(text: str) -> None:
    with pytest.raises(JwksError):
        b64url_decode(text)


def test_b64url_decode_unpadded() -> None:
    assert b64url_decode("YQ") == b"a"
    assert b64url_decode("_-8") == b"\xff\xef"
    assert b64url_decode("") == b""


def test_the_cache_holds_keys_until_usable_until() -> None:
    cache = JwksCache()
    url = "https://idp.example/jwks"
    assert cache.keys(url, now=100.0) is None
    keys = parse_jwks(document(public_jwk(key_for("ES256"), "k")))
    cache.failed(url, "timed out")
    assert cache.error(url) == "timed out"
    cache.put(url, keys, now=100.0, usable_until=200.0)
    assert cache.error(url) is None  # a success clears the last failure
    assert cache.keys(url, now=199.9) == keys
    cache.failed(url, "answered 500")
    assert cache.keys(url, now=150.0) == keys  # a failed refresh keeps the keys held
    assert cache.keys(url, now=200.0) is None  # ... until they are too old
    assert cache.keys("https://other.example/jwks", now=150.0) is None
