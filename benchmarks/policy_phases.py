"""What a Traffic Policy's phases cost the edge per request, warm and with the caches cold.

Run on demand (not part of `./dev bench`, not a test):

    .venv/bin/python -m benchmarks.policy_phases [POLICY.yml ...] [--requests 2000]

For each policy (by default the http_policy measure's, `benchmarks/policies`) it runs what the
edge runs for one GET /small with the benchmark's headers and a 200 from nginx: the request
phase (`edge.http.policy.request_phase`) and, when the policy has one, the response phase
(`response_phase`), and prints the median microseconds per request two ways:

* warm: request after request, as a loop keeps the phases' code and data in the CPU's caches;
* cold: with a cache-evicting workload (Python code and a few MB of data, as the rest of a
  request's path is) run between requests. This is the edge's case: between two requests on
  the live edge, TLS, parsing and the mux run; stop 20 found the cold figure is what the live
  edge pays (about 3x the warm one), and that what a phase costs there follows the Python
  calls and the objects it makes more than its bytecode count (benchmarks/README.md).

Read the difference between policies or trees in the same sitting, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from edge.endpoints.registry import AttachedPolicy
from edge.http.policy import ClientConn, Policed, request_phase, response_phase
from edge.http.seam import HttpRequest
from edge.policy.activation import EndpointFacts
from edge.policy.document import load_policy
from edge.policy.validate import validate

POLICIES = sorted((Path(__file__).parent / "policies").glob("*.yml"))
ENDPOINT = EndpointFacts(
    url="https://a.example.com", host="a.example.com", port=443, protocol="https"
)
# A GET as the edge forwards it (X-Forwarded-* added), and nginx's response head to it.
REQUEST_HEADERS = [
    (b"Host", b"a.example.com"),
    (b"X-Bench-Client", b"wrk"),
    (b"X-Forwarded-For", b"127.0.0.1"),
    (b"X-Forwarded-Proto", b"https"),
]
RESPONSE_HEADERS = [
    (b"Server", b"nginx/1.24.0"),
    (b"Date", b"Thu, 03 Dec 2026 14:00:00 GMT"),
    (b"Content-Type", b"text/plain"),
    (b"Content-Length", b"100"),
    (b"Connection", b"keep-alive"),
    (b"Last-Modified", b"Thu, 03 Dec 2026 13:00:00 GMT"),
    (b"ETag", b'"abc-64"'),
    (b"Accept-Ranges", b"bytes"),
]
# The evicting workload: enough distinct dicts and code to push a request's worth out.
_JUNK = [{str(i * 7 + j): j for j in range(20)} for i in range(20_000)]
_SLICE = 800


class _Route:
    """The route of the request: the endpoint and its policy, as `edge.http.routing` gives."""

    def __init__(self, policy: AttachedPolicy) -> None:
        self.policy = policy

    def endpoint_facts(self) -> EndpointFacts:
        return ENDPOINT


def one_request(text: str) -> Callable[[], object]:
    """The policy's phases on one request, as a call."""
    attached = AttachedPolicy(validate(load_policy(text), protocol="https"), text)
    route = _Route(attached)
    conn = ClientConn(None, ("127.0.0.1", 50000), "a.example.com")

    def run() -> object:
        request = HttpRequest(
            method=b"GET",
            target=b"/small",
            host="a.example.com",
            scheme="https",
            headers=list(REQUEST_HEADERS),
            accept=None,
            client_addr="127.0.0.1:50000",
            sni="a.example.com",
            conn=conn,
        )
        decided = request_phase(request, route, attached, now=time.time())
        if not isinstance(decided, Policed):
            raise SystemExit(f"the policy did not forward the request: {decided!r}")
        return response_phase(decided.response, 200, list(RESPONSE_HEADERS), now=time.time())

    return run


def _evict(turn: int) -> int:
    start = (turn % (len(_JUNK) // _SLICE)) * _SLICE
    return sum(len(json.dumps(item)) for item in _JUNK[start : start + _SLICE])


def medians(call: Callable[[], object], requests: int) -> tuple[float, float]:
    """(warm, cold) median microseconds per call."""
    clock = time.perf_counter
    for _ in range(300):
        call()
    warm, cold = [], []
    for _ in range(requests):
        start = clock()
        call()
        warm.append(clock() - start)
    for turn in range(requests):
        _evict(turn)
        start = clock()
        call()
        cold.append(clock() - start)
    warm.sort()
    cold.sort()
    return warm[len(warm) // 2] * 1e6, cold[len(cold) // 2] * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policies", nargs="*", type=Path, default=POLICIES)
    parser.add_argument("--requests", type=int, default=2000, help="timed requests each way")
    args = parser.parse_args()
    print(f"{'policy':<40} {'warm (µs)':>10} {'cold (µs)':>10}")
    for path in args.policies:
        warm, cold = medians(one_request(path.read_text()), args.requests)
        print(f"{path.name:<40} {warm:>10.1f} {cold:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
