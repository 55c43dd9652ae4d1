"""`edge.store.errors`: one exception tree, with an ngrok code where one applies."""

from __future__ import annotations

import pytest

from edge.store import ConflictError, NotFoundError, SQLiteStore, StoreError


def test_store_error_carries_its_message_and_an_optional_code() -> None:
    plain = StoreError("the store at x is closed")
    assert str(plain) == "the store at x is closed"
    assert plain.code is None
    coded = StoreError("credential acl: bad rule", code="ERR_NGROK_10007")
    assert coded.code == "ERR_NGROK_10007"


def test_refusals_are_store_errors() -> None:
    assert issubclass(NotFoundError, StoreError)
    assert issubclass(ConflictError, StoreError)
    assert not issubclass(NotFoundError, ConflictError)
    assert NotFoundError("no owner").code is None


def test_the_store_raises_each_refusal_by_its_class(store: SQLiteStore) -> None:
    store.create_service_user("clinic-a")
    with pytest.raises(ConflictError):
        store.create_service_user("clinic-a")
    with pytest.raises(NotFoundError):
        store.create_credential(owner_id="service_nope")
    with pytest.raises(NotFoundError):
        store.list_events(before_id="ev_nope")
