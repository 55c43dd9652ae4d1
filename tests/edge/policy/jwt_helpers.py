"""Real keys, JWKs and signed tokens for the jwt-validation tests (made with `cryptography`).

Not a test module (no `test_` prefix): pytest collects nothing here. Keys are generated once
per process (`functools.cache`): RSA generation takes a noticeable fraction of a second.
"""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

__all__ = [
    "AUDIENCE",
    "ISSUER",
    "PrivateKey",
    "b64url",
    "claims",
    "key_for",
    "public_jwk",
    "sign",
]

ISSUER = "https://issuer.example.com/"
AUDIENCE = "urn:burrow:api"

PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
_CURVE_NAMES = {"secp256r1": ("P-256", 32), "secp384r1": ("P-384", 48), "secp521r1": ("P-521", 66)}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def key_for(alg: str, variant: int = 0) -> PrivateKey:
    """A private key that can sign with `alg` (`variant` gives another, different key); the
    same arguments give the same key."""
    return _key(alg, variant)


@functools.cache
def _key(alg: str, variant: int) -> PrivateKey:
    if alg.startswith(("RS", "PS")):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg in _CURVES:
        return ec.generate_private_key(_CURVES[alg]())
    if alg == "Ed448":
        return ed448.Ed448PrivateKey.generate()
    return ed25519.Ed25519PrivateKey.generate()


def public_jwk(private: PrivateKey, kid: str | None, alg: str | None = None) -> dict[str, Any]:
    """The public JWK of `private` (with `kid` and `alg` members when given)."""
    jwk: dict[str, Any]
    if isinstance(private, rsa.RSAPrivateKey):
        numbers = private.public_key().public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        jwk = {"kty": "RSA", "n": b64url(n), "e": b64url(e)}
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        crv, size = _CURVE_NAMES[private.curve.name]
        point = private.public_key().public_numbers()
        jwk = {
            "kty": "EC",
            "crv": crv,
            "x": b64url(point.x.to_bytes(size, "big")),
            "y": b64url(point.y.to_bytes(size, "big")),
        }
    else:
        raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        crv = "Ed448" if isinstance(private, ed448.Ed448PrivateKey) else "Ed25519"
        jwk = {"kty": "OKP", "crv": crv, "x": b64url(raw)}
    if kid is not None:
        jwk["kid"] = kid
    if alg is not None:
        jwk["alg"] = alg
    return jwk


def _signature(private: PrivateKey, alg: str, data: bytes) -> bytes:
    if isinstance(private, rsa.RSAPrivateKey):
        digest = _HASHES[alg[2:]]
        pad: padding.AsymmetricPadding = (
            padding.PSS(padding.MGF1(digest()), padding.PSS.DIGEST_LENGTH)
            if alg.startswith("PS")
            else padding.PKCS1v15()
        )
        return private.sign(data, pad, digest())
    if isinstance(private, ec.EllipticCurvePrivateKey):
        size = _CURVE_NAMES[private.curve.name][1]
        der = private.sign(data, ec.ECDSA(_HASHES[alg[2:]]()))
        r, s = decode_dss_signature(der)
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return private.sign(data)


def sign(
    private: PrivateKey,
    alg: str,
    payload: dict[str, Any],
    *,
    kid: str | None = "k1",
    header: dict[str, Any] | None = None,
) -> str:
    """A compact JWS of `payload` signed by `private` with `alg` (header `alg`, `kid`, extra)."""
    head: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        head["kid"] = kid
    head.update(header or {})
    signing_input = b64url(json.dumps(head).encode()) + "." + b64url(json.dumps(payload).encode())
    signature = _signature(private, alg, signing_input.encode("ascii"))
    return signing_input + "." + b64url(signature)


def claims(now: float, **extra: Any) -> dict[str, Any]:
    """A payload valid at `now`: this issuer and audience, issued a minute ago, 1 h to live."""
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "iat": int(now) - 60,
        "exp": int(now) + 3600,
    }
    payload.update(extra)
    return {key: value for key, value in payload.items() if value is not None}
