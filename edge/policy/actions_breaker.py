"""The `circuit-breaker` action's config: ngrok's fields, read strictly, with ngrok's ranges.

DOCS `traffic-policy/actions/circuit-breaker`: `error_threshold` (0.0-1.0, default 0.5),
`volume_threshold` (1-2,000,000,000, default 10), `window_duration` and `tripped_duration`
(Go durations, 1s-2m, default 10s), `num_buckets` (fixed at 10: any other value is refused,
never ignored) and `enforce` (default true). The docs mark `error_threshold` required and give
it a default; Burrow takes the default when it is absent.

The breaker itself (state, runner, outcomes) is `edge.policy.breaker`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from edge.policy.errors import ERR_NGROK_2215
from edge.policy.fields import ConfigReader

__all__ = ["CircuitBreakerConfig", "parse_circuit_breaker"]

MAX_VOLUME: Final = 2_000_000_000
#: ngrok fixes the bucket count; the field exists only to be stated.
NUM_BUCKETS: Final = 10
MIN_DURATION, MAX_DURATION = Decimal(1), Decimal(120)
DEFAULT_DURATION: Final = Decimal(10)


@dataclass(frozen=True, slots=True)
class CircuitBreakerConfig:
    error_threshold: float  # 0.0 .. 1.0: the share of errors that trips the breaker
    volume_threshold: int  # requests in the window before the share is looked at
    window_seconds: float
    tripped_seconds: float
    num_buckets: int
    enforce: bool


def _threshold(reader: ConfigReader) -> float:
    value = reader.raw("error_threshold")
    if value is None:
        return 0.5
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise reader.invalid("error_threshold", f"must be a number, not {type(value).__name__}")
    if not 0.0 <= value <= 1.0:
        raise reader.error(
            ERR_NGROK_2215,
            "error_threshold",
            "Failed to parse configuration for circuit-breaker: error_threshold must be "
            f"between 0.0 and 1.0 inclusive, was {value}",
        )
    return float(value)


def _duration(reader: ConfigReader, field: str) -> float:
    from edge.policy.actions import parse_duration  # here: edge.policy.actions imports us

    text = reader.string(field)
    if text is None:
        return float(DEFAULT_DURATION)
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise reader.invalid(field, str(exc)) from None
    if not MIN_DURATION <= seconds <= MAX_DURATION:
        raise reader.error(
            ERR_NGROK_2215,
            field,
            f"Failed to parse configuration for circuit-breaker: {field} must be between 1s "
            f"and 2m inclusive, was {text}",
        )
    return float(seconds)


def parse_circuit_breaker(reader: ConfigReader) -> CircuitBreakerConfig:
    threshold = _threshold(reader)
    volume = reader.integer("volume_threshold", default=10, minimum=1, maximum=MAX_VOLUME)
    window = _duration(reader, "window_duration")
    tripped = _duration(reader, "tripped_duration")
    buckets = reader.integer(
        "num_buckets", default=NUM_BUCKETS, minimum=NUM_BUCKETS, maximum=NUM_BUCKETS
    )
    enforce = reader.boolean("enforce", default=True)
    return CircuitBreakerConfig(threshold, volume, window, tripped, buckets, enforce)
