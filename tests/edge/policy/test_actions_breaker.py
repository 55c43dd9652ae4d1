"""edge/policy/actions_breaker.py: the circuit-breaker config, ngrok's fields and ranges."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from edge.policy.actions import CATALOGUE
from edge.policy.actions_breaker import CircuitBreakerConfig
from edge.policy.document import freeze
from edge.policy.errors import ERR_NGROK_2203, ERR_NGROK_2204, ERR_NGROK_2215, Place, PolicyError
from edge.policy.fields import ConfigReader


def parse(config: Mapping[str, object]) -> object:
    place = Place(
        phase="on_http_request", rule_index=0, action_index=0, action_type="circuit-breaker"
    )
    frozen = freeze(config)
    assert isinstance(frozen, Mapping)
    reader = ConfigReader(frozen, place)
    spec = CATALOGUE["circuit-breaker"]
    assert spec.parse is not None
    result = spec.parse(reader)
    reader.finish()
    return result


def test_defaults_are_ngroks() -> None:
    assert parse({}) == CircuitBreakerConfig(0.5, 10, 10.0, 10.0, 10, True)


def test_ngroks_example_parses() -> None:
    config = parse(
        {
            "error_threshold": 0.0,
            "volume_threshold": 1,
            "window_duration": "60s",
            "tripped_duration": "2m",
            "enforce": True,
        }
    )
    assert config == CircuitBreakerConfig(0.0, 1, 60.0, 120.0, 10, True)
    assert parse({"error_threshold": 1, "num_buckets": 10, "enforce": False}) == (
        CircuitBreakerConfig(1.0, 10, 10.0, 10.0, 10, False)
    )


@pytest.mark.parametrize(
    ("config", "code", "field"),
    [
        ({"error_threshold": 1.5}, ERR_NGROK_2215, "error_threshold"),
        ({"error_threshold": -0.1}, ERR_NGROK_2215, "error_threshold"),
        ({"error_threshold": "half"}, ERR_NGROK_2204, "error_threshold"),
        ({"error_threshold": True}, ERR_NGROK_2204, "error_threshold"),
        ({"volume_threshold": 0}, ERR_NGROK_2215, "volume_threshold"),
        ({"volume_threshold": 2_000_000_001}, ERR_NGROK_2215, "volume_threshold"),
        ({"window_duration": "500ms"}, ERR_NGROK_2215, "window_duration"),
        ({"window_duration": "3m"}, ERR_NGROK_2215, "window_duration"),
        ({"tripped_duration": "ten"}, ERR_NGROK_2204, "tripped_duration"),
        ({"tripped_duration": 10}, ERR_NGROK_2204, "tripped_duration"),
        ({"num_buckets": 20}, ERR_NGROK_2215, "num_buckets"),  # fixed at 10: never ignored
        ({"enforce": "yes"}, ERR_NGROK_2204, "enforce"),
        ({"half_open_requests": 3}, ERR_NGROK_2203, "half_open_requests"),
    ],
)
def test_bad_values_are_refused_naming_the_field(
    config: Mapping[str, object], code: str, field: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        parse(config)
    assert caught.value.code == code
    assert f"config.{field}" in caught.value.message


def test_only_on_http_request() -> None:
    assert CATALOGUE["circuit-breaker"].phases == {"on_http_request"}
    assert not CATALOGUE["circuit-breaker"].terminating
