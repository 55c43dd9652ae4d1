"""`Store`: the operations the edge needs from its durable state, one implementation per backend."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence

from edge.store.records import (
    DEFAULT_ACCOUNT_ID,
    UNSET,
    ApiKey,
    CloudEndpoint,
    Credential,
    DeletedServiceUser,
    Event,
    JsonObject,
    ServiceUser,
    Unset,
)


class Store(ABC):
    """The operations the edge needs from its durable state.

    Implementations are synchronous and safe to call from several threads at once.
    """

    @abstractmethod
    def create_credential(
        self,
        *,
        description: str = "",
        metadata: str = "",
        acl: Sequence[str] = (),
        account_id: str = DEFAULT_ACCOUNT_ID,
        owner_id: str | None = None,
        max_sessions: int | None = None,
        max_endpoints: int | None = None,
    ) -> tuple[Credential, str]:
        """Create an active credential and return it with its token.

        The token is returned only here; the store keeps just a hash of its secret. Raises
        `StoreError` for an over-long field, an ACL that does not parse (with `code`
        ERR_NGROK_10007), a limit that is not None or a whole number from 1 to
        `CREDENTIAL_LIMIT_MAX`, or an unknown account, and `NotFoundError` for an owner that is
        not a service user of that account.
        """

    @abstractmethod
    def authenticate(self, token: str) -> Credential | None:
        """Return the active credential that `token` belongs to, or None.

        None covers every refusal: a malformed token, an unknown id, a wrong secret, an inactive
        credential, an inactive owning service user. Never raises for any string.
        """

    @abstractmethod
    def set_credential_active(self, credential_id: str, active: bool) -> Credential | None:
        """Activate or deactivate a credential; return it as now stored, or None if unknown."""

    @abstractmethod
    def update_credential(
        self,
        credential_id: str,
        *,
        description: str | None = None,
        metadata: str | None = None,
        acl: Sequence[str] | None = None,
        active: bool | None = None,
        max_sessions: int | Unset | None = UNSET,
        max_endpoints: int | Unset | None = UNSET,
    ) -> Credential | None:
        """Change some of a credential's fields in one transaction; return it as now stored, or
        None if unknown.

        `description`, `metadata`, `acl` and `active`: None leaves the field as it is (an empty
        `acl` makes the credential unrestricted). `max_sessions` and `max_endpoints`: `UNSET`
        (the default) leaves the limit as it is, None removes it, a number sets it. Refuses what
        `create_credential` refuses, with the same `StoreError`s, and writes nothing then.
        """

    @abstractmethod
    def get_credential(self, credential_id: str) -> Credential | None:
        """Return the credential with this id, or None if there is none."""

    @abstractmethod
    def list_credentials(self, *, account_id: str | None = None) -> list[Credential]:
        """Return the credentials (of one account, or of all), newest first."""

    @abstractmethod
    def delete_credential(self, credential_id: str) -> bool:
        """Delete a credential; its token stops authenticating. False if it did not exist."""

    @abstractmethod
    def revoked_credential_id(self, token: str) -> str | None:
        """The id of the credential `token` belonged to, if that credential was deleted or
        deactivated (or its owner deactivated); None otherwise. Never raises for any string."""

    @abstractmethod
    def usable_credentials(self, credential_ids: Collection[str]) -> set[str]:
        """Of `credential_ids`, those that can still authenticate (exist, active, and owned by
        an active service user or by none). One query: the edge polls it for live sessions."""

    @abstractmethod
    def create_service_user(
        self, name: str, *, active: bool = True, account_id: str = DEFAULT_ACCOUNT_ID
    ) -> ServiceUser:
        """Create a service user. `ConflictError` if the account already has one by that name;
        `StoreError` for an empty or over-long name or an unknown account."""

    @abstractmethod
    def get_service_user(self, service_user_id: str) -> ServiceUser | None:
        """Return the service user with this id, or None."""

    @abstractmethod
    def list_service_users(self, *, account_id: str | None = None) -> list[ServiceUser]:
        """Return the service users (of one account, or of all), newest first."""

    @abstractmethod
    def update_service_user(
        self, service_user_id: str, *, name: str | None = None, active: bool | None = None
    ) -> ServiceUser | None:
        """Rename and/or (de)activate a service user; None if unknown. Deactivating it stops
        every token it owns from authenticating. `ConflictError` for a name already taken."""

    @abstractmethod
    def delete_service_user(self, service_user_id: str) -> DeletedServiceUser | None:
        """Delete a service user and every credential and API key it owns; None if unknown."""

    @abstractmethod
    def create_api_key(
        self,
        *,
        description: str = "",
        metadata: str = "",
        owner_id: str | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> tuple[ApiKey, str]:
        """Create an API key and return it with its token (shown only here, stored as a hash).
        Errors as for `create_credential`."""

    @abstractmethod
    def authenticate_api_key(self, token: str) -> ApiKey | None:
        """Return the API key that `token` belongs to, or None (as `authenticate` does, and
        None too when its owning service user is inactive). Never raises for any string."""

    @abstractmethod
    def update_api_key(
        self,
        api_key_id: str,
        *,
        description: str | None = None,
        metadata: str | None = None,
    ) -> ApiKey | None:
        """Change an API key's description and/or metadata (None: leave it); return it as now
        stored, or None if unknown. `StoreError` for an over-long field."""

    @abstractmethod
    def get_api_key(self, api_key_id: str) -> ApiKey | None:
        """Return the API key with this id, or None."""

    @abstractmethod
    def list_api_keys(
        self, *, account_id: str | None = None, owner_id: str | None = None
    ) -> list[ApiKey]:
        """Return the API keys (filtered by account and/or owner), newest first."""

    @abstractmethod
    def delete_api_key(self, api_key_id: str) -> bool:
        """Delete an API key; its token stops authenticating. False if it did not exist."""

    @abstractmethod
    def create_cloud_endpoint(
        self,
        *,
        url: str,
        traffic_policy: str,
        binding: str = "public",
        pooling_enabled: bool = False,
        description: str = "",
        metadata: str = "",
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> CloudEndpoint:
        """Store a new cloud endpoint (`ep_...` id, created and updated now) and return it.

        The caller has checked the URL and the policy; the store refuses only what it cannot
        keep, with `StoreError`: an over-long field, a binding other than public or internal,
        a URL without a scheme, an unknown account."""

    @abstractmethod
    def get_cloud_endpoint(self, endpoint_id: str) -> CloudEndpoint | None:
        """Return the cloud endpoint with this id, or None."""

    @abstractmethod
    def list_cloud_endpoints(self, *, account_id: str | None = None) -> list[CloudEndpoint]:
        """Return the cloud endpoints (of one account, or of all), newest first."""

    @abstractmethod
    def update_cloud_endpoint(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        traffic_policy: str | None = None,
        binding: str | None = None,
        pooling_enabled: bool | None = None,
        description: str | None = None,
        metadata: str | None = None,
    ) -> CloudEndpoint | None:
        """Change some fields (None: leave it) in one transaction and stamp `updated_at`;
        return the endpoint as now stored, or None if unknown. `StoreError` as for create,
        and nothing is written then."""

    @abstractmethod
    def delete_cloud_endpoint(self, endpoint_id: str) -> CloudEndpoint | None:
        """Delete a cloud endpoint; return it as it was, or None if it did not exist."""

    @abstractmethod
    def append_event(
        self,
        event_type: str,
        object: JsonObject,
        *,
        principal: JsonObject | None,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> Event:
        """Record an event, stamped now, and return it as stored (JSON round-tripped).

        `principal` is ngrok's `{id, subject, source, credential}` or None; its `id` feeds
        `list_events(principal_id=...)`. `StoreError` for a malformed type, a value that is not
        JSON, or more than `EVENT_MAX_BYTES`.
        """

    @abstractmethod
    def list_events(
        self,
        *,
        limit: int = 100,
        before_id: str | None = None,
        event_type: str | None = None,
        principal_id: str | None = None,
        account_id: str | None = None,
    ) -> list[Event]:
        """Return up to `limit` events, newest first, optionally only those older than
        `before_id` (a stable cursor: pass the last id of one page to get the next) and of one
        type, principal or account. `NotFoundError` for an unknown `before_id`; `StoreError`
        for a limit outside 1..EVENT_LIST_MAX."""

    @abstractmethod
    def close(self) -> None:
        """Release the store. Idempotent; any later call raises `StoreError`."""
