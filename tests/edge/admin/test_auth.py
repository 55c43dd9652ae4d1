"""API key authentication and the failed-authentication budget (pure: time is a parameter)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.admin.auth import (
    FailedAuthLimiter,
    authenticate,
    authenticate_within_budget,
    bearer_token,
)
from edge.admin.errors import ApiError
from edge.store import SQLiteStore


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore.open(tmp_path / "burrow.db")


def code_of(store: SQLiteStore, header: str | None) -> str:
    with pytest.raises(ApiError) as caught:
        authenticate(store, header)
    assert caught.value.status == 401
    return caught.value.code


def test_a_valid_key_authenticates(store: SQLiteStore) -> None:
    key, token = store.create_api_key(description="ops")
    assert authenticate(store, f"Bearer {token}") == key
    assert authenticate(store, f"bearer   {token}  ") == key


def test_each_refusal_has_its_code(store: SQLiteStore) -> None:
    _, token = store.create_api_key()
    _, authtoken = store.create_credential()
    assert code_of(store, None) == "ERR_NGROK_200"
    assert code_of(store, f"Basic {token}") == "ERR_NGROK_201"
    assert code_of(store, "Bearer") == "ERR_NGROK_201"
    assert code_of(store, "Bearer a b") == "ERR_NGROK_201"
    assert code_of(store, "Bearer " + "x" * 5000) == "ERR_NGROK_201"
    assert code_of(store, "Bearer nounderscore") == "ERR_NGROK_202"
    wrong_last = "B" if token.endswith("A") else "A"  # a different secret, always
    assert code_of(store, f"Bearer {token[:-1]}{wrong_last}") == "ERR_NGROK_203"
    assert code_of(store, f"Bearer {authtoken}") == "ERR_NGROK_207"


def test_refusals_never_echo_the_key(store: SQLiteStore) -> None:
    _, token = store.create_api_key()
    wrong = token[:-4] + ("BBBB" if token.endswith("AAAA") else "AAAA")
    with pytest.raises(ApiError) as caught:
        authenticate(store, f"Bearer {wrong}")
    assert wrong not in caught.value.msg and wrong.partition("_")[2] not in caught.value.msg


def test_a_deleted_key_or_inactive_owner_stops_working(store: SQLiteStore) -> None:
    user = store.create_service_user("ops")
    key, token = store.create_api_key(owner_id=user.id)
    assert authenticate(store, f"Bearer {token}") == key
    store.update_service_user(user.id, active=False)
    assert code_of(store, f"Bearer {token}") == "ERR_NGROK_203"
    other, other_token = store.create_api_key()
    store.delete_api_key(other.id)
    assert code_of(store, f"Bearer {other_token}") == "ERR_NGROK_203"


def test_bearer_token_parses_only_bearer() -> None:
    assert bearer_token("Bearer abc_def") == "abc_def"
    with pytest.raises(ApiError):
        bearer_token("Token abc_def")


def test_limiter_allows_a_burst_then_refills() -> None:
    limiter = FailedAuthLimiter(burst=3, refill_seconds=10)
    for _ in range(3):
        assert limiter.allowed("203.0.113.1", 0.0)
        limiter.record_failure("203.0.113.1", 0.0)
    assert not limiter.allowed("203.0.113.1", 0.0)
    assert limiter.retry_after("203.0.113.1", 0.0) == pytest.approx(10.0)
    assert limiter.allowed("198.51.100.2", 0.0), "other addresses are not affected"
    assert not limiter.allowed("203.0.113.1", 9.9)
    assert limiter.allowed("203.0.113.1", 10.0)
    limiter.record_failure("203.0.113.1", 10.0)
    assert not limiter.allowed("203.0.113.1", 10.0)
    assert limiter.allowed("203.0.113.1", 1000.0)
    assert limiter.retry_after("203.0.113.1", 1000.0) == 0.0


def test_limiter_table_is_bounded() -> None:
    limiter = FailedAuthLimiter(burst=1, refill_seconds=60, max_addresses=100)
    for n in range(1000):
        limiter.record_failure(f"10.0.{n // 256}.{n % 256}", 0.0)
    assert len(limiter) == 100
    assert not limiter.allowed("10.0.3.231", 0.0), "the most recent failures are remembered"


def test_limiter_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        FailedAuthLimiter(burst=0)


# --------------------------------------------- lock out the failures, not the right key (9.6)

GUESSER = "203.0.113.1"


def _within_budget(
    store: SQLiteStore, limiter: FailedAuthLimiter, header: str | None, now: float = 0.0
) -> str:
    """The error code for `header` from GUESSER ("" when it authenticated)."""
    try:
        authenticate_within_budget(store, header, limiter=limiter, address=GUESSER, now=now)
    except ApiError as exc:
        return str(exc.code)
    return ""


def test_a_locked_out_address_still_gets_in_with_the_right_key(store: SQLiteStore) -> None:
    key, token = store.create_api_key()
    limiter = FailedAuthLimiter(burst=3, refill_seconds=10)
    assert [_within_budget(store, limiter, "Bearer AAAA_BBBB") for _ in range(3)] == [
        "ERR_NGROK_203"
    ] * 3
    assert not limiter.allowed(GUESSER, 0.0), "the budget is spent"
    # Wrong keys, malformed headers and no header are all refused fast with 429 now ...
    for header in ("Bearer AAAA_BBBB", "Bearer nounderscore", "Basic x", None):
        assert _within_budget(store, limiter, header) == "ERR_NGROK_226"
    # ... while the right key is accepted, again and again, at once.
    for _ in range(5):
        assert (
            authenticate_within_budget(
                store, f"Bearer {token}", limiter=limiter, address=GUESSER, now=0.0
            )
            == key
        )


def test_refusals_while_locked_do_not_extend_the_lockout(store: SQLiteStore) -> None:
    limiter = FailedAuthLimiter(burst=1, refill_seconds=10)
    assert _within_budget(store, limiter, "Bearer AAAA_BBBB", now=0.0) == "ERR_NGROK_203"
    for t in range(1, 10):
        assert _within_budget(store, limiter, "Bearer AAAA_BBBB", now=float(t)) == "ERR_NGROK_226"
    # One refill later the address may fail once more, with the real reason.
    assert _within_budget(store, limiter, "Bearer AAAA_BBBB", now=10.0) == "ERR_NGROK_203"
    assert _within_budget(store, limiter, "Bearer AAAA_BBBB", now=10.0) == "ERR_NGROK_226"


def test_a_valid_key_spends_no_budget(store: SQLiteStore) -> None:
    _, token = store.create_api_key()
    limiter = FailedAuthLimiter(burst=2, refill_seconds=60)
    for _ in range(50):
        assert _within_budget(store, limiter, f"Bearer {token}") == ""
    assert len(limiter) == 0
    assert _within_budget(store, limiter, "Bearer AAAA_BBBB") == "ERR_NGROK_203"
    assert _within_budget(store, limiter, "Bearer AAAA_BBBB") == "ERR_NGROK_203"
    assert _within_budget(store, limiter, "Bearer AAAA_BBBB") == "ERR_NGROK_226"
