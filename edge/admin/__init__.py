"""The edge's admin REST API, in ngrok's resource shapes (reference/ngrok.md §6).

`routes` answers requests without I/O (`AdminApi.handle`; the handlers are in `account_routes`
and `live_routes`, the audit records in `audit`), `resources` renders ngrok's JSON
shapes, `auth` checks API keys and rate-limits failures per address, `live` is the view of the
running edge (sessions, endpoints), `errors` holds the refusals and their codes, `metrics` the
edge's Prometheus counters and `probes` the /metrics, /healthz and /readyz answers, and `http`
is the thin h11-over-trio server around it all.
"""
