"""`edge.store.tokens`: ids and tokens in ngrok's shape, and only a SHA-256 of the secret kept."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path

from edge.store import API_KEY_ID_PREFIX, CREDENTIAL_ID_PREFIX, SQLiteStore
from edge.store.tokens import _DUMMY_HASH, _TOKEN_RE, _hash_secret
from tests.edge.store.sources import counting_bytes


def test_token_shape_follows_ngrok(store: SQLiteStore) -> None:
    credential, token = store.create_credential()
    assert re.fullmatch(r"cr_[A-Z2-7]{26}", credential.id)
    id_part, _, secret = token.partition("_")
    assert "cr_" + id_part == credential.id
    assert len(secret) >= 32
    assert re.fullmatch(r"[A-Za-z0-9_-]+", secret)


def test_only_a_sha256_of_the_secret_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "burrow.db"
    with SQLiteStore.open(path) as store:
        _, token = store.create_credential()
    secret = token.partition("_")[2]
    for file in tmp_path.glob("burrow.db*"):  # the database, and any -wal or -shm left
        assert secret.encode() not in file.read_bytes()
    with sqlite3.connect(path) as raw:
        (stored,) = raw.execute("SELECT token_hash FROM credentials").fetchone()
    assert stored == hashlib.sha256(secret.encode()).digest()


def test_injected_random_source_makes_ids_and_tokens(tmp_path: Path) -> None:
    with SQLiteStore.open(tmp_path / "burrow.db", random_bytes=counting_bytes()) as store:
        credential, token = store.create_credential()
    # 16 bytes of 0x01 in base32, then 32 bytes of 0x02 in url-safe base64.
    assert credential.id == "cr_AEAQCAIBAEAQCAIBAEAQCAIBAE"
    assert token == "AEAQCAIBAEAQCAIBAEAQCAIBAE_" + "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI"


def test_hash_secret_is_the_sha256_of_the_ascii_secret() -> None:
    secret = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI"
    assert _hash_secret(secret) == hashlib.sha256(secret.encode("ascii")).digest()
    assert _hash_secret(secret) != _hash_secret(secret[:-1] + "J")
    # The stand-in hash for unknown ids is the same size, so the comparison costs the same.
    assert len(_DUMMY_HASH) == len(_hash_secret(secret)) == 32


def test_the_token_pattern_splits_at_the_first_underscore() -> None:
    id_part = "AEAQCAIBAEAQCAIBAEAQCAIBAE"
    secret = "Ag_-" * 8  # the secret half may itself hold "_" and "-"
    match = _TOKEN_RE.fullmatch(f"{id_part}_{secret}")
    assert match is not None
    assert (match["id"], match["secret"]) == (id_part, secret)


def test_the_token_pattern_refuses_what_is_not_a_token() -> None:
    id_part = "AEAQCAIBAEAQCAIBAEAQCAIBAE"
    secret = "A" * 32
    for bad in [
        f"{id_part[:-1]}_{secret}",  # an id half one character short
        f"{id_part}A_{secret}",  # and one too long
        f"{id_part.lower()}_{secret}",  # base32 is upper case
        f"{id_part[:-1]}1_{secret}",  # and has no 0, 1, 8 or 9
        f"{id_part}_{secret[:-1]}",  # a secret below the minimum
        f"{id_part}_{secret}=",  # padding is stripped
        f"{id_part}-{secret}",
    ]:
        assert _TOKEN_RE.fullmatch(bad) is None, bad


def test_id_prefixes_tell_credentials_from_api_keys(store: SQLiteStore) -> None:
    credential, credential_token = store.create_credential()
    key, key_token = store.create_api_key()
    assert credential.id == CREDENTIAL_ID_PREFIX + credential_token.partition("_")[0]
    assert key.id == API_KEY_ID_PREFIX + key_token.partition("_")[0]
