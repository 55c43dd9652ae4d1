"""`GET /metrics`, `/healthz` and `/readyz` on the admin listener: what a scraper and a
container's probes ask, answered before the admin API's own routes.

* `/healthz`: 200 `ok` while the process serves requests at all (liveness).
* `/readyz`: 200 `ready` when the store answers and every listener is up; otherwise 503 with
  the reason on one line (readiness: a load balancer stops sending traffic).
* `/metrics`: Prometheus text (`edge.admin.metrics`). Without `admin.metrics_require_api_key`
  it needs no key, as scrapers expect; with it, the same `Authorization: Bearer` API key as the
  rest of the API (a wrong one is refused exactly as the API refuses it).

Other methods than GET on these paths are 405; any other path is not answered here.
Pure: takes a request and `now`, returns a response; no I/O beyond what `ready` does.
"""

from __future__ import annotations

from collections.abc import Callable

from edge.admin.auth import authenticate_within_budget
from edge.admin.errors import ApiError, status_code
from edge.admin.metrics import CONTENT_TYPE, EdgeMetrics
from edge.admin.routes import AdminApi, Request, Response

__all__ = ["PROBE_PATHS", "Probes"]

PROBE_PATHS = ("/metrics", "/healthz", "/readyz")
_TEXT = ("content-type", "text/plain; charset=utf-8")


class Probes:
    """`ready` returns None when the edge is ready, else the reason it is not."""

    def __init__(
        self,
        api: AdminApi,
        metrics: EdgeMetrics,
        ready: Callable[[], str | None],
        *,
        metrics_require_api_key: bool = False,
    ) -> None:
        self.api = api
        self.metrics = metrics
        self.ready = ready
        self.metrics_require_api_key = metrics_require_api_key

    def handle(self, request: Request, *, now: float) -> Response | None:
        """The answer for a probe path, or None for every other request (the API's)."""
        path = request.target.partition("?")[0]
        if path not in PROBE_PATHS:
            return None
        if request.method != "GET":
            return self.api.error_response(
                ApiError(
                    405,
                    status_code(405),
                    f"{request.method} is not supported on {path}; allowed: GET",
                )
            )
        if path == "/healthz":
            return Response(status=200, headers=(_TEXT,), body=b"ok\n")
        if path == "/readyz":
            reason = self.ready()
            if reason is None:
                return Response(status=200, headers=(_TEXT,), body=b"ready\n")
            return Response(status=503, headers=(_TEXT,), body=f"not ready: {reason}\n".encode())
        if self.metrics_require_api_key:
            authorization = next(
                (value for name, value in request.headers if name == "authorization"), None
            )
            try:
                authenticate_within_budget(
                    self.api.store,
                    authorization,
                    limiter=self.api.limiter,
                    address=request.remote,
                    now=now,
                )
            except ApiError as exc:
                return self.api.error_response(exc)
        return Response(
            status=200, headers=(("content-type", CONTENT_TYPE),), body=self.metrics.exposition()
        )
