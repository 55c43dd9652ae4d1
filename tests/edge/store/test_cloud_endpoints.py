"""`edge.store.cloud_endpoints`: cloud endpoints in a real SQLite store (create, get, list,
update, delete), what the store refuses, and that they survive reopening the file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.store import (
    DEFAULT_ACCOUNT_ID,
    DESCRIPTION_MAX_BYTES,
    ENDPOINT_URL_MAX_BYTES,
    METADATA_MAX_BYTES,
    TRAFFIC_POLICY_MAX_BYTES,
    CloudEndpoint,
    SQLiteStore,
    StoreError,
)
from edge.store.cloud_endpoints import check_fields
from tests.edge.store.sources import NOW, counting_bytes

POLICY = "on_http_request:\n  - actions:\n      - type: custom-response\n"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def test_create_get_list_update_delete(tmp_path: Path) -> None:
    clock = Clock()
    with SQLiteStore.open(tmp_path / "b.db", random_bytes=counting_bytes(), clock=clock) as store:
        first = store.create_cloud_endpoint(
            url="https://api.acme.example",
            traffic_policy=POLICY,
            description="Acme's API",
            metadata='{"team": "platform"}',
        )
        assert first.id.startswith("ep_") and len(first.id) == 3 + 26
        assert first.account_id == DEFAULT_ACCOUNT_ID
        assert first.created_at == first.updated_at == NOW.replace(microsecond=0)
        assert (first.binding, first.pooling_enabled) == ("public", False)
        second = store.create_cloud_endpoint(
            url="tls://db.clinic-a.internal",
            traffic_policy="on_tcp_connect: []",
            binding="internal",
            pooling_enabled=True,
        )
        assert store.get_cloud_endpoint(first.id) == first
        assert store.get_cloud_endpoint("ep_NONE") is None
        assert store.list_cloud_endpoints() == [second, first]  # newest first
        assert store.list_cloud_endpoints(account_id="acct_other") == []

        clock.now = NOW + timedelta(seconds=5)
        changed = store.update_cloud_endpoint(first.id, traffic_policy="x", description="")
        assert changed is not None
        assert (changed.traffic_policy, changed.description) == ("x", "")
        assert changed.metadata == first.metadata and changed.url == first.url
        assert changed.created_at == first.created_at
        assert changed.updated_at == (NOW + timedelta(seconds=5)).replace(microsecond=0)
        assert store.get_cloud_endpoint(first.id) == changed
        assert store.update_cloud_endpoint("ep_NONE", description="x") is None

        assert store.delete_cloud_endpoint(second.id) == second
        assert store.delete_cloud_endpoint(second.id) is None
        assert store.list_cloud_endpoints() == [changed]


def test_cloud_endpoints_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    with SQLiteStore.open(path) as store:
        created = store.create_cloud_endpoint(url="https://a.example", traffic_policy=POLICY)
    with SQLiteStore.open(path) as store:
        assert store.list_cloud_endpoints() == [created]
        assert store.get_cloud_endpoint(created.id) == created


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": "x" * (ENDPOINT_URL_MAX_BYTES + 1)}, "cloud endpoint url is"),
        ({"url": "api.example.com"}, "must be scheme://host"),
        ({"binding": "kubernetes"}, "binding must be one of public, internal"),
        ({"pooling_enabled": 1}, "pooling_enabled must be a bool"),
        ({"traffic_policy": "x" * (TRAFFIC_POLICY_MAX_BYTES + 1)}, "traffic_policy is"),
        ({"description": "d" * (DESCRIPTION_MAX_BYTES + 1)}, "description is"),
        ({"metadata": "m" * (METADATA_MAX_BYTES + 1)}, "metadata is"),
    ],
)
def test_what_the_store_cannot_keep_is_refused_and_nothing_is_written(
    store: SQLiteStore, fields: dict[str, object], message: str
) -> None:
    with pytest.raises(StoreError, match=message):
        check_fields(**fields)  # type: ignore[arg-type]
    values: dict[str, object] = {"url": "https://a.example", "traffic_policy": POLICY}
    with pytest.raises(StoreError, match=message):
        store.create_cloud_endpoint(**{**values, **fields})  # type: ignore[arg-type]
    assert store.list_cloud_endpoints() == []
    kept = store.create_cloud_endpoint(url="https://a.example", traffic_policy=POLICY)
    with pytest.raises(StoreError, match=message):
        store.update_cloud_endpoint(kept.id, **fields)  # type: ignore[arg-type]
    assert store.list_cloud_endpoints() == [kept]


def test_an_unknown_account_is_refused(store: SQLiteStore) -> None:
    with pytest.raises(StoreError, match="acct_nobody"):
        store.create_cloud_endpoint(
            url="https://a.example", traffic_policy=POLICY, account_id="acct_nobody"
        )
    assert store.list_cloud_endpoints() == []


def test_records_are_frozen_values(store: SQLiteStore) -> None:
    created = store.create_cloud_endpoint(url="https://a.example", traffic_policy=POLICY)
    assert isinstance(created, CloudEndpoint)
    assert created.created_at.tzinfo == UTC
    with pytest.raises(AttributeError):
        created.url = "https://b.example"  # type: ignore[misc]
