"""What one Traffic Policy expression costs: cel-python's compiled runner vs its interpreter.

Run on demand (not part of `./dev bench` yet, not a test):

    .venv/bin/python -m benchmarks.policy_cel [--seconds 1.0]

For each typical expression it prints the microseconds per evaluation with the runner Burrow uses
(`celpy.CompiledRunner`, through `edge.policy.cel.compile_expression`) and with
`celpy.InterpretedRunner` over the same checked syntax tree, plus the one-off compile cost (the
first compile also builds cel-python's parser). The interpreter is only comparable for expressions
without Burrow's macros: their calls are rewritten for the compiled runner (see edge/policy/cel.py),
so those rows print n/a.
The activation holds CEL values, as a request's `LazyMap`s do once computed; these machines
are noisy, so read the ratio rather than the absolute numbers.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import celpy

from edge.policy.cel import FUNCTIONS, compile_expression, to_cel

EXPRESSIONS = (
    "conn.client_ip in ['10.0.0.1', '10.0.0.2', '192.168.1.7', '203.0.113.9']",
    "req.method == 'GET' && req.url.path.startsWith('/api')",
    "inCidrRange(conn.client_ip, '203.0.113.0/24')",
    "hasReqHeader('x-api-key') && getReqHeader('x-api-key')[0] == 'secret'",
)

ACTIVATION: dict[str, object] = {
    "conn": {"client_ip": "203.0.113.9", "client_port": 51234},
    "req": {
        "method": "GET",
        "url": {"path": "/api/users", "query_params": {}},
        "headers": {"x-api-key": ["secret"], "user-agent": ["curl/8"]},
    },
}


def per_call_us(call: Callable[[], object], seconds: float) -> float:
    """Median-free simple rate: calls in `seconds` (after a short warm-up), in µs per call."""
    for _ in range(50):
        call()
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            call()
        count += 100
        now = time.perf_counter()
        if now >= deadline:
            return (now - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measure")
    args = parser.parse_args()
    print(f"{'expression':<72} {'compile':>9} {'compiled':>9} {'interp.':>9} {'ratio':>6}")
    for text in EXPRESSIONS:
        start = time.perf_counter()
        compiled = compile_expression(text)
        compile_us = (time.perf_counter() - start) * 1e6
        # Values already converted to CEL types, as a LazyMap holds them after first access.
        activation = {name: to_cel(value) for name, value in ACTIVATION.items()}
        assert compiled.evaluate(activation) is True
        fast = per_call_us(lambda: compiled.evaluate(activation), args.seconds)  # noqa: B023
        slow: float | None = None
        if not any(name in text for name in FUNCTIONS):
            # The same checked syntax tree, run by the interpreter instead.
            context = {name: activation[name] for name in compiled.variables}
            runner = celpy.InterpretedRunner(celpy.Environment(), compiled._runner.ast)
            assert bool(runner.evaluate(context)) is True  # type: ignore[arg-type]
            slow = per_call_us(lambda: runner.evaluate(context), args.seconds)  # type: ignore[arg-type]  # noqa: B023
        label = text if len(text) <= 70 else text[:67] + "..."
        interp = "n/a" if slow is None else f"{slow:.1f}us"
        ratio = "" if slow is None else f"{slow / fast:.1f}x"
        print(f"{label:<72} {compile_us:>7.0f}us {fast:>7.1f}us {interp:>9} {ratio:>6}")


if __name__ == "__main__":
    main()
