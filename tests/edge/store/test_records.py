"""`edge.store.records`: the frozen records the store returns and the `UNSET` sentinel."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from edge.store import UNSET, ApiKey, Credential, Event, ServiceUser, Unset

WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_unset_is_one_named_value() -> None:
    assert repr(UNSET) == "UNSET"
    assert UNSET is not None and bool(UNSET)


def test_unset_is_the_only_member_of_its_type() -> None:
    assert list(Unset) == [UNSET]
    assert Unset("UNSET") is UNSET


def test_a_credential_has_no_owner_and_no_limits_unless_given() -> None:
    credential = Credential(
        id="cr_A",
        account_id="acct_default",
        created_at=WHEN,
        description="",
        metadata="",
        acl=(),
        active=True,
    )
    assert (credential.owner_id, credential.max_sessions, credential.max_endpoints) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    "record",
    [
        Credential(
            id="cr_A",
            account_id="acct_default",
            created_at=WHEN,
            description="d",
            metadata="m",
            acl=("bind:*",),
            active=True,
        ),
        ServiceUser(
            id="service_A", account_id="acct_default", name="a", active=True, created_at=WHEN
        ),
        ApiKey(
            id="ak_A",
            account_id="acct_default",
            created_at=WHEN,
            description="",
            metadata="",
            owner_id=None,
        ),
        Event(
            id="ev_A",
            account_id="acct_default",
            event_type="a.v0",
            timestamp=WHEN,
            principal=None,
            object={},
        ),
    ],
)
def test_records_are_frozen(record: object) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.id = "changed"  # type: ignore[attr-defined]


def test_records_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        ServiceUser("service_A", "acct_default", "a", True, WHEN)  # type: ignore[call-arg]
