"""`edge.store.base`: `Store` is the interface, and `SQLiteStore` implements it whole."""

from __future__ import annotations

import inspect

import pytest

from edge.store import SQLiteStore, Store


def test_sqlite_store_is_a_store(store: SQLiteStore) -> None:
    assert isinstance(store, Store)


def test_store_is_only_an_interface() -> None:
    with pytest.raises(TypeError, match="abstract"):
        Store()  # type: ignore[abstract]
    assert "authenticate" in Store.__abstractmethods__
    assert "close" in Store.__abstractmethods__


def test_sqlite_store_accepts_every_call_the_interface_allows() -> None:
    # A backend may add parameters (SQLiteStore's `list_credentials(owner_id=...)`), but every
    # parameter of the interface is there, of the same kind, with the same default.
    assert SQLiteStore.__abstractmethods__ == frozenset()
    for name in sorted(Store.__abstractmethods__):
        interface = inspect.signature(getattr(Store, name))
        backend = inspect.signature(getattr(SQLiteStore, name))
        for parameter in interface.parameters.values():
            assert parameter.name in backend.parameters, (name, parameter)
            assert backend.parameters[parameter.name].kind == parameter.kind, (name, parameter)
            assert backend.parameters[parameter.name].default == parameter.default, (
                name,
                parameter,
            )
