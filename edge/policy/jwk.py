"""JSON Web Keys (RFC 7517) as public keys, and the per-policy cache of key sets fetched by URL.

`parse_jwks(data)` turns a JWKS document (`{"keys": [...]}`) into `Jwk` values holding
`cryptography` public keys: RSA (`n`, `e`; at least 2048 bits, RFC 7518 §3.3), EC (`crv` P-256,
P-384, P-521 with `x`, `y`; the point is checked to be on the curve by `cryptography`) and OKP
(`crv` Ed25519 or Ed448, `x`). Keys a verifier cannot use are skipped, not fatal: symmetric
(`oct`) keys, private members are never read, keys marked `"use": "enc"` or whose `key_ops`
lack `verify`, and kinds or curves this module does not know. A document with no usable key,
more than `MAX_KEYS` entries, or that is not JSON of that shape raises `JwksError`.

`JwksCache` is what the engine reads: the last good key set of each URL and until when it may
be used (`edge.policy.jwks_fetch` fills it; the engine never fetches). It lives in the policy's
`PolicyState`, so it belongs to one attached policy and goes away with it.

Pure: no I/O, no clock (`now` is passed in, Unix seconds).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

__all__ = [
    "MAX_KEYS",
    "MIN_RSA_BITS",
    "Jwk",
    "JwksCache",
    "JwksError",
    "KeySet",
    "PublicKey",
    "b64url_decode",
    "jwk_to_key",
    "parse_jwks",
]

#: Keys read from one JWKS document. Identity providers publish two to a handful (the current
#: key and the next or previous during a rotation); 100 leaves room for any of them while
#: bounding the parse work and memory a hostile or broken JWKS URL can cost.
MAX_KEYS: Final = 100
#: RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used" with RS*/PS*.
MIN_RSA_BITS: Final = 2048
#: Beyond 16384 bits an RSA verification costs tens of milliseconds of the edge's one thread;
#: no identity provider uses keys that large.
MAX_RSA_BITS: Final = 16384

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)

_CURVES: Final[Mapping[str, ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
_CURVE_BYTES: Final = {"P-256": 32, "P-384": 48, "P-521": 66}
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")


class JwksError(ValueError):
    """A JWKS document or one JWK that cannot be used; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Jwk:
    """One verification key: its `kid` (None if it has none), kind, curve and `alg` (if the
    JWK names one, the only algorithm it may verify), and the public key itself."""

    kid: str | None
    kty: str  # "RSA", "EC" or "OKP"
    crv: str | None  # EC and OKP only
    alg: str | None
    key: PublicKey


def b64url_decode(text: str) -> bytes:
    """Unpadded base64url (RFC 7515 §2) to bytes; `JwksError` if it is not that."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise JwksError("not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):  # pragma: no cover - the pattern admits only valid text
        raise JwksError("not unpadded base64url") from None


def _member(jwk: Mapping[str, object], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise JwksError(f"member {name!r} is missing or not a string")
    return b64url_decode(value)


def _rsa(jwk: Mapping[str, object]) -> PublicKey:
    n = int.from_bytes(_member(jwk, "n"), "big")
    e = int.from_bytes(_member(jwk, "e"), "big")
    if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS:
        raise JwksError(
            f"RSA key of {n.bit_length()} bits; {MIN_RSA_BITS} to {MAX_RSA_BITS} are accepted"
        )
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise JwksError(f"not a valid RSA public key: {exc}") from None


def _ec(jwk: Mapping[str, object], crv: str) -> PublicKey:
    curve = _CURVES[crv]
    x, y = _member(jwk, "x"), _member(jwk, "y")
    size = _CURVE_BYTES[crv]
    if len(x) != size or len(y) != size:  # RFC 7518 §6.2.1.2: the full coordinate length
        raise JwksError(f"{crv} coordinates must be {size} bytes each")
    point = b"\x04" + x + y
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    except ValueError:
        raise JwksError(f"the point is not on curve {crv}") from None


def _okp(jwk: Mapping[str, object], crv: str) -> PublicKey:
    x = _member(jwk, "x")
    try:
        if crv == "Ed25519":
            return ed25519.Ed25519PublicKey.from_public_bytes(x)
        return ed448.Ed448PublicKey.from_public_bytes(x)
    except ValueError as exc:
        raise JwksError(f"not a valid {crv} public key: {exc}") from None


def jwk_to_key(jwk: Mapping[str, object]) -> Jwk | None:
    """One JWK as a verification key; None for a key a verifier has no use for (symmetric,
    encryption-only, an unknown kind or curve); `JwksError` for a malformed usable one."""
    kty = jwk.get("kty")
    kid = jwk.get("kid")
    alg = jwk.get("alg")
    crv = jwk.get("crv")
    if kid is not None and not isinstance(kid, str):
        raise JwksError("member 'kid' must be a string")
    if alg is not None and not isinstance(alg, str):
        raise JwksError("member 'alg' must be a string")
    if jwk.get("use") not in (None, "sig"):
        return None
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    key: PublicKey
    if kty == "RSA":
        key, crv = _rsa(jwk), None
    elif kty == "EC" and isinstance(crv, str) and crv in _CURVES:
        key = _ec(jwk, crv)
    elif kty == "OKP" and crv in ("Ed25519", "Ed448"):
        assert isinstance(crv, str)
        key = _okp(jwk, crv)
    else:
        return None  # oct (symmetric), unknown kty, or a curve we do not verify with
    return Jwk(kid, kty, crv if isinstance(crv, str) else None, alg, key)


def parse_jwks(data: bytes) -> tuple[Jwk, ...]:
    """The usable keys of a JWKS document; `JwksError` if it is malformed, holds more than
    `MAX_KEYS` keys, or none of them is usable for verifying signatures."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise JwksError("the document is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError('the document is not a JWKS (expected {"keys": [...]})')
    entries = document["keys"]
    if len(entries) > MAX_KEYS:
        raise JwksError(f"the JWKS holds {len(entries)} keys; at most {MAX_KEYS} are read")
    keys: list[Jwk] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise JwksError(f"keys[{index}] is not a JSON object")
        try:
            key = jwk_to_key(entry)
        except JwksError as exc:
            raise JwksError(f"keys[{index}]: {exc}") from None
        if key is not None:
            keys.append(key)
    if not keys:
        raise JwksError("the JWKS holds no RSA, EC or OKP signature verification key")
    return tuple(keys)


@dataclass(frozen=True, slots=True)
class KeySet:
    """The keys last fetched from one URL, usable until `usable_until` (Unix seconds)."""

    keys: tuple[Jwk, ...]
    fetched_at: float
    usable_until: float


class JwksCache:
    """The key sets of one policy, by JWKS URL. Written by the fetcher, read by the engine."""

    def __init__(self) -> None:
        self._sets: dict[str, KeySet] = {}
        self._errors: dict[str, str] = {}

    def put(self, url: str, keys: tuple[Jwk, ...], *, now: float, usable_until: float) -> None:
        """Replace `url`'s keys (a successful fetch); clears its last error."""
        self._sets[url] = KeySet(keys, now, usable_until)
        self._errors.pop(url, None)

    def failed(self, url: str, message: str) -> None:
        """Record why the last fetch of `url` failed; the keys already held stay as they are."""
        self._errors[url] = message

    def keys(self, url: str, *, now: float) -> tuple[Jwk, ...] | None:
        """`url`'s keys if some were fetched and are still usable at `now`; otherwise None."""
        held = self._sets.get(url)
        if held is None or now >= held.usable_until:
            return None
        return held.keys

    def error(self, url: str) -> str | None:
        """Why the last fetch of `url` failed, if it did."""
        return self._errors.get(url)
