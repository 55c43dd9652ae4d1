"""Who is calling the admin API: `Authorization: Bearer <API key>`, checked against the store,
and a per-address budget of failed attempts so that guessing keys costs the guesser, not the edge.

Theory of operation. Every source address has a token bucket of failures: `burst` failures at
once, then one more every `refill_seconds`. A failed authentication takes a token. An address
with no token left is locked out of failing, not out of the API: its key is still looked up (one
indexed query and a SHA-256), a valid key is accepted as always, and anything else is answered
429 (ERR_NGROK_226) at once, without saying which mistake it was and without charging more, so a
guessing loop costs one lookup per request and learns nothing. Successful requests take nothing,
so a working client never notices, even behind the same address as a guesser. The table of
addresses is bounded (`max_addresses`): when it is full the address that failed least recently
is forgotten, which can only ever help an attacker who controls more than `max_addresses`
addresses, and each of those still gets only `burst` guesses at a time. Time comes in as `now`
(seconds on any monotonic clock); nothing here reads a clock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from edge.admin.errors import (
    ERR_BAD_AUTH_HEADER,
    ERR_INVALID_KEY,
    ERR_MALFORMED_KEY,
    ERR_MISSING_AUTH,
    ERR_RATE_LIMITED,
    ERR_TUNNEL_CREDENTIAL_AS_KEY,
    ApiError,
)
from edge.store import API_KEY_ID_PREFIX, ApiKey, Store

__all__ = ["FailedAuthLimiter", "authenticate", "authenticate_within_budget"]

#: Failed authentications an address may make at once: enough for a person fixing a typo or a
#: script retrying with a stale key, far too few to guess a 256-bit secret.
DEFAULT_FAILURE_BURST = 10
#: Then one more failure every this many seconds (10 a minute, sustained).
DEFAULT_REFILL_SECONDS = 6.0
#: Addresses remembered at once: about 100 bytes each, so 10,000 is about a megabyte.
DEFAULT_MAX_ADDRESSES = 10_000
#: The longest `Authorization` value looked at; ours are `Bearer ` and 70 characters.
MAX_AUTHORIZATION_LENGTH = 1024


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class FailedAuthLimiter:
    """A token bucket of failed authentications per source address (see the module docstring)."""

    def __init__(
        self,
        *,
        burst: int = DEFAULT_FAILURE_BURST,
        refill_seconds: float = DEFAULT_REFILL_SECONDS,
        max_addresses: int = DEFAULT_MAX_ADDRESSES,
    ) -> None:
        if burst < 1 or refill_seconds <= 0 or max_addresses < 1:
            raise ValueError("burst, refill_seconds and max_addresses must be positive")
        self.burst = burst
        self.refill_seconds = refill_seconds
        self.max_addresses = max_addresses
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allowed(self, address: str, now: float) -> bool:
        """Whether `address` may try to authenticate now."""
        bucket = self._buckets.get(address)
        return bucket is None or self._refilled(bucket, now) >= 1

    def retry_after(self, address: str, now: float) -> float:
        """Seconds until `address` may try again (0 if it may now)."""
        bucket = self._buckets.get(address)
        if bucket is None:
            return 0.0
        return max(0.0, (1 - self._refilled(bucket, now)) * self.refill_seconds)

    def record_failure(self, address: str, now: float) -> None:
        """Take one token from `address`'s bucket."""
        bucket = self._buckets.pop(address, None)
        tokens = self.burst if bucket is None else self._refilled(bucket, now)
        self._buckets[address] = _Bucket(tokens=max(0.0, tokens - 1), updated=now)
        while len(self._buckets) > self.max_addresses:
            self._buckets.popitem(last=False)

    def _refilled(self, bucket: _Bucket, now: float) -> float:
        gained = max(0.0, now - bucket.updated) / self.refill_seconds
        return min(float(self.burst), bucket.tokens + gained)


def bearer_token(authorization: str | None) -> str:
    """The key in an `Authorization: Bearer <key>` value; `ApiError` (401) otherwise."""
    if authorization is None:
        raise ApiError(
            401,
            ERR_MISSING_AUTH,
            "The API requires an Authorization header: 'Authorization: Bearer <API key>'. "
            "Create a key with `burrow-edge api-key create --data-dir DIR`.",
        )
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if (
        scheme.lower() != "bearer"
        or not token
        or " " in token
        or len(authorization) > MAX_AUTHORIZATION_LENGTH
    ):
        raise ApiError(
            401,
            ERR_BAD_AUTH_HEADER,
            "The Authorization header could not be parsed; send 'Authorization: Bearer <API key>'.",
        )
    return token


def authenticate(
    store: Store,
    authorization: str | None,
    *,
    is_tunnel_credential: Callable[[str], bool] | None = None,
) -> ApiKey:
    """The API key an `Authorization` value carries; `ApiError` (401) naming what is wrong.

    `is_tunnel_credential` (default: `store.authenticate`) tells an authtoken sent by mistake
    apart from a wrong key, so the message can say which. Never echoes the key back.
    """
    token = bearer_token(authorization)
    api_key = store.authenticate_api_key(token)
    if api_key is not None:
        return api_key
    check = is_tunnel_credential or (lambda t: store.authenticate(t) is not None)
    if check(token):
        raise ApiError(
            401,
            ERR_TUNNEL_CREDENTIAL_AS_KEY,
            "That is an agent authtoken, not an API key. Create an API key with "
            "`burrow-edge api-key create` (or POST /api_keys).",
        )
    id_part, underscore, secret = token.partition("_")
    if not underscore or not id_part or not secret:
        raise ApiError(
            401,
            ERR_MALFORMED_KEY,
            "The API key does not look like one: keys have the form IDPART_SECRET.",
        )
    raise ApiError(
        401,
        ERR_INVALID_KEY,
        f"The API key is well-formed but invalid: no active API key ({API_KEY_ID_PREFIX}...) has "
        "that secret. Was it deleted, or its service user deactivated?",
    )


def authenticate_within_budget(
    store: Store,
    authorization: str | None,
    *,
    limiter: FailedAuthLimiter,
    address: str,
    now: float,
    is_tunnel_credential: Callable[[str], bool] | None = None,
) -> ApiKey:
    """`authenticate`, with `address`'s budget of failures: a failure is charged and refused
    with its 401; once the budget is spent, a valid key is still accepted and anything else is
    refused with 429 (see the module docstring). Never echoes the key back."""
    if not limiter.allowed(address, now):
        try:
            token = bearer_token(authorization)
        except ApiError:
            raise rate_limited(limiter, address, now) from None
        api_key = store.authenticate_api_key(token)
        if api_key is None:
            raise rate_limited(limiter, address, now)
        return api_key
    try:
        return authenticate(store, authorization, is_tunnel_credential=is_tunnel_credential)
    except ApiError:
        limiter.record_failure(address, now)
        raise


def rate_limited(limiter: FailedAuthLimiter, address: str, now: float) -> ApiError:
    wait = limiter.retry_after(address, now)
    return ApiError(
        429,
        ERR_RATE_LIMITED,
        f"Too many failed authentications from {address}; try again in {wait:.0f}s with a "
        "valid API key.",
    )
