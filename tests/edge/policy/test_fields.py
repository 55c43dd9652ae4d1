"""edge/policy/fields.py: strict, typed reading of one action's config."""

from __future__ import annotations

import pytest

from edge.policy.errors import (
    ERR_NGROK_2203,
    ERR_NGROK_2204,
    ERR_NGROK_2215,
    ERR_NGROK_2218,
    ERR_NGROK_2221,
    ERR_NGROK_2223,
    Place,
    PolicyError,
)
from edge.policy.fields import ConfigReader

PLACE = Place(phase="on_http_request", rule_index=2, rule_name="r", action_index=1, action_type="x")


def reader(**config: object) -> ConfigReader:
    return ConfigReader(config, PLACE)


def test_typed_fields_and_defaults() -> None:
    fields = reader(s="a", n=5, b=False, l=["x"], m={"k": "v"})
    assert fields.string("s") == "a"
    assert fields.string("absent") is None
    assert fields.integer("n", default=1, minimum=0, maximum=9) == 5
    assert fields.integer("gone", default=1, minimum=0, maximum=9) == 1
    assert fields.boolean("b", default=True) is False
    assert fields.strings("l") == ("x",)
    assert fields.mapping("m") == {"k": "v"}
    fields.finish()  # every field was read


def test_unknown_field_is_2203_with_a_suggestion() -> None:
    fields = reader(status_cod=1)
    fields.integer("status_code", default=200, minimum=100, maximum=599)
    with pytest.raises(PolicyError) as caught:
        fields.finish()
    assert caught.value.code == ERR_NGROK_2203
    assert caught.value.message.startswith(
        'on_http_request rule 2 ("r") action 1 (x) config.status_cod: '
    )
    assert "did you mean 'status_code'?" in caught.value.message


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda r: r.string("v"), ERR_NGROK_2204),
        (lambda r: r.string("missing", required=True), ERR_NGROK_2204),
        (lambda r: r.integer("v", default=0, minimum=0, maximum=1), ERR_NGROK_2204),
        (lambda r: r.boolean("v", default=True), ERR_NGROK_2204),
        (lambda r: r.strings("v"), ERR_NGROK_2204),
        (lambda r: r.mapping("v"), ERR_NGROK_2204),
    ],
)
def test_wrong_types_are_2204(call: object, code: str) -> None:
    with pytest.raises(PolicyError) as caught:
        call(reader(v=[1]))  # type: ignore[operator]  # a list of a number: wrong for each
    assert caught.value.code == code


def test_ranges_lengths_counts_and_emptiness() -> None:
    with pytest.raises(PolicyError) as caught:
        reader(n=10).integer("n", default=0, minimum=0, maximum=9)
    assert caught.value.code == ERR_NGROK_2215
    with pytest.raises(PolicyError) as caught:
        reader(s="abcd").string("s", max_length=3)
    assert caught.value.code == ERR_NGROK_2221
    with pytest.raises(PolicyError) as caught:
        reader(l=["a", "b"]).strings("l", max_entries=1)
    assert caught.value.code == ERR_NGROK_2218
    with pytest.raises(PolicyError) as caught:
        reader(l=[]).strings("l", required=True)
    assert caught.value.code == ERR_NGROK_2223
    with pytest.raises(PolicyError) as caught:
        reader().mapping("m", required=True)
    assert caught.value.code == ERR_NGROK_2223
