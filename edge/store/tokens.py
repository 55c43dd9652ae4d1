"""Ids and tokens: their prefixes, their random halves, the token pattern and the secret's hash.

Why a fast hash and a constant-time comparison: see the package docstring (`edge.store`).
"""

from __future__ import annotations

import hashlib
import re

CREDENTIAL_ID_PREFIX = "cr_"
API_KEY_ID_PREFIX = "ak_"
EVENT_ID_PREFIX = "ev_"
# Cloud endpoints share ngrok's `ep_` with agent endpoints (edge.admin.live.endpoint_id).
ENDPOINT_ID_PREFIX = "ep_"
# ngrok's REST API answers `service_...` ids for service users (ngrok.md §6.2; the legacy
# `bot_...` ids belong to the old /bot_users path).
SERVICE_USER_ID_PREFIX = "service_"


# 16 random bytes in base32 without padding: 26 characters of [A-Z2-7], 128 bits. The alphabet has
# no "_", so the first "_" in a token always ends the id half.
_ID_RANDOM_BYTES = 16
_ID_LENGTH = 26
# 32 random bytes in url-safe base64 without padding: 43 characters, 256 bits of secret.
_SECRET_RANDOM_BYTES = 32
# The shortest secret `authenticate` will hash (ours are 43); shorter ones are malformed.
_SECRET_MIN_LENGTH = 32
# The longest token `authenticate` will look at: ours are 70 characters, and a bound keeps a
# hostile multi-megabyte "token" from costing a regex scan and a hash.
_TOKEN_MAX_LENGTH = 512
_TOKEN_RE = re.compile(
    rf"(?P<id>[A-Z2-7]{{{_ID_LENGTH}}})_(?P<secret>[A-Za-z0-9_-]{{{_SECRET_MIN_LENGTH},}})"
)


# The SHA-256 that `authenticate` compares against when the credential id is unknown, so that
# unknown ids and wrong secrets cost the same work.
_DUMMY_HASH = bytes(hashlib.sha256().digest_size)


def _hash_secret(secret: str) -> bytes:
    # A fast hash is right here: the secret is 256 random bits (see the package docstring).
    return hashlib.sha256(secret.encode("ascii")).digest()
