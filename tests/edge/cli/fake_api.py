"""A tiny stdlib HTTP server on 127.0.0.1 standing in for the edge's admin API: it answers canned
ngrok-shaped JSON and records every request (method, path, query, headers, JSON body). Shared
by the tests of edge/cli/api_client.py and of the commands (edge/cli/main.py and the modules it
dispatches to)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

KEY = "2abcDEF_0123456789abcdefghij"


TS = "2024-05-01T12:00:00Z"


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


Answer = tuple[int, Any]


Route = Answer | Callable[[Seen], Answer]


class FakeApi:
    """Routes (method, path) to a canned answer or a function of the request."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.seen: list[Seen] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                request = Seen(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=json.loads(raw) if raw else None,
                )
                api.seen.append(request)
                route = api.routes.get((request.method, request.path))
                if route is None:
                    status, body = 404, error(404, "ERR_NGROK_404", f"No {request.path}.")
                elif callable(route):
                    status, body = route(request)
                else:
                    status, body = route
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                if status != 204:
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if status != 204:
                    self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _any  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def on(self, method: str, path: str, route: Route) -> None:
        self.routes[(method, path)] = route

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def error(status: int, code: str, msg: str) -> dict[str, Any]:
    return {
        "error_code": code,
        "status_code": status,
        "msg": msg,
        "details": {"operation_id": "op_1"},
    }


def credential(id_: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "uri": f"http://x/credentials/{id_}",
        "created_at": TS,
        "description": "",
        "metadata": "",
        "token": None,
        "acl": [],
        "owner_id": None,
        "active": True,
        "max_sessions": None,
        "max_endpoints": None,
        **fields,
    }


def user(id_: str, name: str, active: bool = True) -> dict[str, Any]:
    uri = f"http://x/service_users/{id_}"
    return {"id": id_, "uri": uri, "name": name, "active": active, "created_at": TS}


def event(id_: str, event_type: str = "agent_session_stop.v0") -> dict[str, Any]:
    return {
        "event_id": id_,
        "event_type": event_type,
        "event_timestamp": "2024-05-01T12:00:00.000001Z",
        "account_id": "acct_1",
        "principal": None,
        "object": {},
    }


def listing(prop: str, items: list[Any], more: bool = False) -> Answer:
    return 200, {"uri": "x", prop: items, "next_page_uri": "http://x/next" if more else None}


def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
