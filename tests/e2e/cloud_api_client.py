"""Manage a Burrow edge's cloud endpoints with ngrok's official API client (PyPI: ngrok-api).

usage: cloud_api_client.py BASE_URL API_KEY ACTION [ARG...]

Runs under .venv-api/bin/python (see tests/e2e/api_client.py for why) and prints one JSON
object: the endpoint(s) as the client parsed them, or the error it raised. ACTIONs:

  create URL POLICY_FILE DESCRIPTION   client.endpoints.create(type="cloud", ...)
  update ID POLICY_FILE                client.endpoints.update(id, traffic_policy=...)
  get ID                               client.endpoints.get(id)
  list [URL]                           client.endpoints.list(url=[URL]), iterated (pages followed)
  delete ID                            client.endpoints.delete(id), then get (expecting 404)
  refused URL POLICY_FILE              create, expecting the client to raise
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from api_client import error_json, props  # the sibling driver (the script's directory)


def main(base_url: str, api_key: str, action: str, args: list[str]) -> dict[str, Any]:
    import ngrok  # PyPI ngrok-api: the REST client, not the agent SDK

    client = ngrok.Client(api_key, base_url=base_url)
    endpoints = client.endpoints
    if action == "create":
        url, policy, description = args
        created = endpoints.create(
            url=url,
            type="cloud",
            traffic_policy=Path(policy).read_text(),
            description=description,
            metadata='{"owner": "acme"}',
            bindings=["public"],
            pooling_enabled=False,
        )
        return props(created)
    if action == "update":
        endpoint_id, policy = args
        return props(endpoints.update(endpoint_id, traffic_policy=Path(policy).read_text()))
    if action == "get":
        return props(endpoints.get(args[0]))
    if action == "list":
        listing = endpoints.list(url=args[:1], limit="1")
        # Iterating follows next_page_uri (one endpoint a page here).
        return {"first_page": props(listing), "all": [props(e) for e in listing]}
    if action == "delete":
        endpoints.delete(args[0])
        try:
            endpoints.get(args[0])
        except ngrok.Error as exc:
            return {"deleted": True, "get_after": error_json(exc)}
        return {"deleted": True, "get_after": None}
    if action == "refused":
        url, policy = args
        try:
            endpoints.create(url=url, type="cloud", traffic_policy=Path(policy).read_text())
        except ngrok.Error as exc:
            return {"error": error_json(exc)}
        return {"error": None}
    raise SystemExit(f"unknown action {action!r}")


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])))
