"""A clinic's small HTTP API, the upstream of its agent's https://api.<clinic>.internal.

usage: clinic_api.py NAME

Listens on a free port of 127.0.0.1 and prints `clinic-api listening on 127.0.0.1:PORT` on
standard output once it does. `GET /patients` answers a JSON list, `GET /` a greeting, anything
else 404. Every request it answers is logged on standard error, one line each, with the address
in X-Forwarded-For (the client the edge saw), so that the example's tests can count what
reached the clinic. Runs until killed (SIGTERM, SIGINT).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import sys
from typing import Any

PATIENTS = [
    {"id": 1, "name": "Ada Lovelace", "ward": "cardiology"},
    {"id": 2, "name": "Alan Turing", "ward": "oncology"},
    {"id": 3, "name": "Grace Hopper", "ward": "neurology"},
]


def handler(clinic: str) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per answered request instead, in do_GET

        def do_GET(self) -> None:
            client = self.headers.get("X-Forwarded-For", self.client_address[0])
            print(f"{clinic} API: GET {self.path} from {client}", file=sys.stderr, flush=True)
            if self.path == "/patients":
                status, body = 200, {"clinic": clinic, "patients": PATIENTS}
            elif self.path == "/":
                status, body = 200, {"clinic": clinic, "hello": "from inside the clinic"}
            else:
                status, body = 404, {"error": f"no {self.path} here"}
            data = (json.dumps(body) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler(argv[0]))
    server.daemon_threads = True
    print(f"clinic-api listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
