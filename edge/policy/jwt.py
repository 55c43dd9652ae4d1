"""Verifying a signed JWT (JWS compact serialization, RFC 7515/7519) against public keys.

Theory of operation. `verify_token(text, keys=..., rules=..., now=...)` does, in order:

1. `decode_token`: at most `MAX_TOKEN_BYTES`; three base64url parts; header and payload JSON
   objects; `alg` a string; a `crit` header refused (no extension is understood, RFC 7515
   §4.1.11). A token that fails here has no header or payload to show (`Decoded` is None).
2. The algorithm: `alg` must be one of the policy's `allowed_algorithms` (`none` and the HMAC
   algorithms never are: validation refuses them, and `ALGORITHMS` does not know them).
3. The key: with a `kid`, the keys with that `kid`; without one, every key, but only if there
   are at most `MAX_CANDIDATE_KEYS` that fit. A key fits the algorithm when its kind and
   curve are the ones the algorithm needs (RS*/PS* an RSA key, ES256 P-256, ES384 P-384, ES512
   P-521, EdDSA an Ed25519 or Ed448 key) and its own `alg`, if it names one, is the token's.
4. The signature, with `cryptography` (PKCS#1 v1.5, PSS with the hash's length as salt,
   ECDSA with the raw `r||s` form of RFC 7518 §3.4, EdDSA).
5. The claims, only once the signature holds: `exp` required and `now < exp + leeway`; `nbf`,
   if present, `now >= nbf - leeway`; `iat`, if present, not after `now + leeway`; `iss` one of
   the allowed issuers, exactly (ngrok: "including any trailing slashes"); `aud` (a string or
   a list) holding at least one allowed audience when the policy lists audiences; with the
   `at+jwt` token type, the header `typ` must say so (RFC 9068 §4).

The result is a `Verdict`: verified or not, the reason if not (short, fit for a log and for
`WWW-Authenticate`'s `error_description`), and the decoded parts for the result variables.

Pure: no I/O, no clock (`now` is Unix seconds), no logging.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from edge.policy.jwk import Jwk, JwksError, b64url_decode

__all__ = [
    "ALGORITHMS",
    "LEEWAY_SECONDS",
    "MAX_CANDIDATE_KEYS",
    "MAX_TOKEN_BYTES",
    "Decoded",
    "Rules",
    "TokenError",
    "Verdict",
    "decode_token",
    "key_fits",
    "verify_token",
]

#: The longest token read. Access and ID tokens are 1-4 KB; 16 KiB holds a token with large
#: group claims while bounding the base64 and JSON work a hostile header can ask for (the
#: request head itself is bounded by http.max_head_size).
MAX_TOKEN_BYTES: Final = 16 * 1024
#: Seconds of clock difference tolerated on exp, nbf and iat: clocks of an identity provider and
#: the edge drift by seconds, and ngrok's action has no leeway field; 30 s is the usual default
#: of JWT libraries' verifiers, short enough that an expired token is refused within half a
#: minute.
LEEWAY_SECONDS: Final = 30
#: Keys tried for one token: each try is a public-key verification (tens of microseconds for
#: RSA-2048, more for larger keys), so a token without a `kid` (or with one many keys share)
#: must not make the edge try every key of every JWKS. An issuer that does not use `kid`
#: publishes one key, or two during a rotation.
MAX_CANDIDATE_KEYS: Final = 8


@dataclass(frozen=True, slots=True)
class _Alg:
    kty: str
    hash: type[hashes.HashAlgorithm] | None  # None: EdDSA (the curve fixes the hash)
    pss: bool = False
    crv: frozenset[str] = frozenset()


#: The signature algorithms this verifier knows (RFC 7518 §3, RFC 8037 for EdDSA).
ALGORITHMS: Final[Mapping[str, _Alg]] = {
    "RS256": _Alg("RSA", hashes.SHA256),
    "RS384": _Alg("RSA", hashes.SHA384),
    "RS512": _Alg("RSA", hashes.SHA512),
    "PS256": _Alg("RSA", hashes.SHA256, pss=True),
    "PS384": _Alg("RSA", hashes.SHA384, pss=True),
    "PS512": _Alg("RSA", hashes.SHA512, pss=True),
    "ES256": _Alg("EC", hashes.SHA256, crv=frozenset({"P-256"})),
    "ES384": _Alg("EC", hashes.SHA384, crv=frozenset({"P-384"})),
    "ES512": _Alg("EC", hashes.SHA512, crv=frozenset({"P-521"})),
    "EdDSA": _Alg("OKP", None, crv=frozenset({"Ed25519", "Ed448"})),
}
_EC_SIZES: Final = {"P-256": 32, "P-384": 48, "P-521": 66}


class TokenError(ValueError):
    """A token that is not a well-formed JWS; the message says why."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """The parts of a well-formed token (not yet verified)."""

    header: Mapping[str, object]
    payload: Mapping[str, object]
    signing_input: bytes  # ASCII(header_b64 || '.' || payload_b64)
    signature: bytes
    signature_text: str  # the third part as sent (base64url)


@dataclass(frozen=True, slots=True)
class Rules:
    """What a token must satisfy: ngrok's `jws.allowed_algorithms`, `issuer.allow_list`,
    `audience.allow_list` (empty: not checked) and the token `type` hint."""

    algorithms: frozenset[str]
    issuers: frozenset[str]
    audiences: frozenset[str] = frozenset()
    token_type: str = "jwt"


@dataclass(frozen=True, slots=True)
class Verdict:
    verified: bool
    reason: str = ""  # why not, when not verified
    decoded: Decoded | None = field(default=None)


def _json_object(part: str, what: str) -> dict[str, object]:
    try:
        value = json.loads(b64url_decode(part))
    except JwksError:
        raise TokenError(f"the {what} is not base64url") from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise TokenError(f"the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise TokenError(f"the {what} is not a JSON object")
    return value


def decode_token(text: str) -> Decoded:
    """Split and decode a compact JWS; `TokenError` if it is not one (see the module doc)."""
    if len(text) > MAX_TOKEN_BYTES:
        raise TokenError(f"the token is longer than {MAX_TOKEN_BYTES} bytes")
    if not text.isascii():
        raise TokenError("the token is not ASCII")
    parts = text.split(".")
    if len(parts) != 3:
        raise TokenError("the token is not a signed JWT (header.payload.signature)")
    header = _json_object(parts[0], "header")
    payload = _json_object(parts[1], "payload")
    try:
        signature = b64url_decode(parts[2])
    except JwksError:
        raise TokenError("the signature is not base64url") from None
    if not isinstance(header.get("alg"), str):
        raise TokenError("the header has no alg")
    if "crit" in header:
        raise TokenError("the header names critical extensions this edge does not understand")
    if not signature:
        raise TokenError("the token has no signature")
    return Decoded(header, payload, f"{parts[0]}.{parts[1]}".encode("ascii"), signature, parts[2])


def key_fits(key: Jwk, alg: str) -> bool:
    """Whether `key` may verify a signature made with `alg` (kind, curve, the key's own alg)."""
    spec = ALGORITHMS.get(alg)
    if spec is None or key.kty != spec.kty:
        return False
    if spec.crv and key.crv not in spec.crv:
        return False
    return key.alg is None or key.alg == alg


def _signature_holds(decoded: Decoded, key: Jwk, alg: str) -> bool:
    spec = ALGORITHMS[alg]
    data, signature = decoded.signing_input, decoded.signature
    public = key.key
    try:
        if isinstance(public, rsa.RSAPublicKey):
            assert spec.hash is not None
            pad: padding.AsymmetricPadding = (
                padding.PSS(padding.MGF1(spec.hash()), padding.PSS.DIGEST_LENGTH)
                if spec.pss
                else padding.PKCS1v15()
            )
            public.verify(signature, data, pad, spec.hash())
        elif isinstance(public, ec.EllipticCurvePublicKey):
            assert spec.hash is not None and key.crv is not None
            size = _EC_SIZES[key.crv]
            if len(signature) != 2 * size:  # RFC 7518 §3.4: exactly r || s, no DER
                return False
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            public.verify(encode_dss_signature(r, s), data, ec.ECDSA(spec.hash()))
        elif isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            public.verify(signature, data)
        else:  # pragma: no cover - Jwk holds only the kinds above
            return False
    except InvalidSignature:
        return False
    return True


def _number(payload: Mapping[str, object], claim: str) -> float | None:
    value = payload.get(claim)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(f"the {claim} claim is not a number")
    return float(value)


def _claims_problem(decoded: Decoded, rules: Rules, now: float) -> str | None:
    payload = decoded.payload
    try:
        expires = _number(payload, "exp")
        not_before = _number(payload, "nbf")
        issued = _number(payload, "iat")
    except TokenError as exc:
        return str(exc)
    if expires is None:
        return "the token has no exp claim"
    if now >= expires + LEEWAY_SECONDS:
        return "the token has expired"
    if not_before is not None and now < not_before - LEEWAY_SECONDS:
        return "the token is not valid yet (nbf)"
    if issued is not None and issued > now + LEEWAY_SECONDS:
        return "the token was issued in the future (iat)"
    issuer = payload.get("iss")
    if not isinstance(issuer, str) or issuer not in rules.issuers:
        return "the token's issuer is not allowed"
    if rules.audiences:
        audience = payload.get("aud")
        named = [audience] if isinstance(audience, str) else audience
        if not isinstance(named, list) or not any(
            isinstance(item, str) and item in rules.audiences for item in named
        ):
            return "the token's audience is not allowed"
    if rules.token_type == "at+jwt":
        typ = decoded.header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ("at+jwt", "application/at+jwt"):
            return "the token is not an at+jwt access token (typ)"
    return None


def verify_token(text: str, *, keys: Sequence[Jwk], rules: Rules, now: float) -> Verdict:
    """Whether `text` is a token signed by one of `keys` whose claims meet `rules` at `now`.

    Never raises for a bad token: the reason is in the `Verdict`.
    """
    try:
        decoded = decode_token(text)
    except TokenError as exc:
        return Verdict(False, str(exc))
    alg = decoded.header["alg"]
    assert isinstance(alg, str)
    if alg not in rules.algorithms or alg not in ALGORITHMS:
        return Verdict(False, f"the token's algorithm {alg[:16]!r} is not allowed", decoded)
    kid = decoded.header.get("kid")
    if kid is not None and not isinstance(kid, str):
        return Verdict(False, "the header's kid is not a string", decoded)
    fitting = [key for key in keys if key_fits(key, alg) and (kid is None or key.kid == kid)]
    if not fitting:
        return Verdict(False, "no signing key matches the token's kid and algorithm", decoded)
    if len(fitting) > MAX_CANDIDATE_KEYS:
        return Verdict(
            False,
            f"{len(fitting)} keys could have signed the token (give it a kid; at most "
            f"{MAX_CANDIDATE_KEYS} are tried)",
            decoded,
        )
    if not any(_signature_holds(decoded, key, alg) for key in fitting):
        return Verdict(False, "the token's signature is not valid", decoded)
    problem = _claims_problem(decoded, rules, now)
    if problem is not None:
        return Verdict(False, problem, decoded)
    return Verdict(True, "", decoded)
