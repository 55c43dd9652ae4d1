"""Drive a Burrow edge's admin API with ngrok's official API client (PyPI: ngrok-api).

usage: api_client.py BASE_URL API_KEY ACTION [ARG]

Runs under .venv-api/bin/python (ngrok-api and the agent SDK both install a package named
`ngrok`, so they cannot share an environment); the tests run it as a subprocess and read the one
JSON object it prints. Each ACTION is one step of the scenario in test_admin_api.py:

  setup              two service users, a credential (with an ACL) for each, and the listings
  sessions           list tunnel sessions (and get each one), list endpoints
  stop SESSION_ID    stop one tunnel session
  restart SESSION_ID / update SESSION_ID / try-stop SESSION_ID
                     ask the session's agent to restart / update / stop: {"done": true}, or
                     {"error": ...} for an ngrok.Error, {"runtime_error": ...} for a RuntimeError
  delete CRED_ID     delete a credential, then get it (expecting 404)
  events             list events (no typed method in the client: its HTTP layer, same headers)
  errors             what the client raises for a wrong key, an unknown id and a bad ACL
"""

from __future__ import annotations

import json
import sys
from typing import Any


def props(obj: Any) -> dict[str, Any]:
    """A client object's JSON, with nested client objects turned back into JSON."""
    out: dict[str, Any] = {}
    for key, value in obj._props.items():
        if hasattr(value, "_props"):
            out[key] = props(value)
        elif isinstance(value, list):
            out[key] = [props(v) if hasattr(v, "_props") else v for v in value]
        else:
            out[key] = value
    return out


def error_json(exc: Any) -> dict[str, Any]:
    return {
        "class": type(exc).__name__,
        "error_code": exc.error_code,
        "status": exc.http_status_code,
        "message": str(exc.args[-1]),
        "operation_id": exc.operation_id,
    }


def main(base_url: str, api_key: str, action: str, arg: str) -> dict[str, Any]:
    import ngrok  # PyPI ngrok-api: the REST client, not the agent SDK

    client = ngrok.Client(api_key, base_url=base_url)
    if action == "setup":
        users = [client.service_users.create(name=name) for name in ("clinic-a", "clinic-b")]
        credentials = [
            client.credentials.create(
                description=f"agent box of {user.name}",
                metadata=json.dumps({"customer": user.name}),
                acl=acl,
                owner_id=user.id,
            )
            for user, acl in zip(
                users, (["bind:127.0.0.1"], ["bind:*.clinic-b.internal"]), strict=True
            )
        ]
        key = client.api_keys.create(description="made through the API")
        got_user = client.service_users.get(users[0].id)
        renamed = client.service_users.update(users[1].id, name="clinic-b-renamed")
        # Iterating a list follows next_page_uri: page by 1 to make the client do it.
        paged = [u.id for u in client.service_users.list(limit="1")]
        return {
            "service_users": [props(u) for u in users],
            "got_user": props(got_user),
            "renamed": props(renamed),
            "credentials": [props(c) for c in credentials],
            "api_key": props(key),
            "listed_users": props(client.service_users.list()),
            "paged_user_ids": paged,
            "listed_credentials": props(client.credentials.list()),
            "listed_keys": [k.id for k in client.api_keys.list()],
            "got_credential": props(client.credentials.get(credentials[0].id)),
        }
    if action == "sessions":
        sessions = client.tunnel_sessions.list()
        return {
            "tunnel_sessions": props(sessions),
            "got": [props(client.tunnel_sessions.get(s.id)) for s in sessions],
            "endpoints": props(client.endpoints.list()),
        }
    if action == "stop":
        try:
            client.tunnel_sessions.stop(arg)
        except RuntimeError as exc:
            # ngrok's API answers 204 here, and this generated method goes through the client's
            # JSON path, which refuses any 204: the stop has happened; only the client objects.
            if "unexpected 204" not in str(exc):
                raise
            return {"stopped": True, "client_quirk": str(exc)}
        return {"stopped": True}
    if action in ("restart", "update", "try-stop"):
        method = getattr(client.tunnel_sessions, action.removeprefix("try-"))
        try:
            method(arg)
        except ngrok.Error as exc:
            return {"error": error_json(exc)}
        except RuntimeError as exc:
            # As for stop: the generated method refuses ngrok's 204 (the call succeeded).
            if "unexpected 204" in str(exc):
                return {"done": True}
            return {"runtime_error": str(exc)}
        return {"done": True}
    if action == "delete":
        client.credentials.delete(arg)
        try:
            client.credentials.get(arg)
        except ngrok.NotFoundError as exc:
            return {"deleted": True, "get_after": error_json(exc)}
        return {"deleted": False}
    if action == "events":
        return client.http_client.get("/events", {"limit": "100"})
    if action == "errors":
        out: dict[str, Any] = {}
        try:
            ngrok.Client("AAAA_BBBB", base_url=base_url).service_users.list()
        except ngrok.Error as exc:
            out["wrong_key"] = error_json(exc)
        try:
            client.credentials.get("cr_NOSUCHTHING")
        except ngrok.Error as exc:
            out["unknown_id"] = error_json(exc)
        try:
            client.credentials.create(acl=["connect:nope"])
        except ngrok.Error as exc:
            out["bad_acl"] = error_json(exc)
        return out
    raise SystemExit(f"unknown action {action!r}")


if __name__ == "__main__":
    base, key, act = sys.argv[1:4]
    print(json.dumps(main(base, key, act, sys.argv[4] if len(sys.argv) > 4 else "")))
