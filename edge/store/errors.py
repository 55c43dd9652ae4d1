"""The store's exception tree: `StoreError` and the refusals callers tell apart."""

from __future__ import annotations


class StoreError(Exception):
    """The store cannot be opened or used, or a value cannot be stored; the message says why.

    `code` is an ngrok error code when one applies (an ACL that does not parse), else None.
    """

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class NotFoundError(StoreError):
    """An id given as a reference (an owner, a paging cursor) names nothing."""


class ConflictError(StoreError):
    """A value that must be unique is taken (a service user's name within its account)."""


class EmptyStoreError(StoreError):
    """The store's file is there but empty (0 bytes): a truncated store, whose authtokens are
    gone. Opening it with `new_store=True` starts a new empty store in its place."""
