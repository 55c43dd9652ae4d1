"""Tests for protocol/formats/units.py: durations in both syntaxes, sizes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.formats.units import DurationSyntax, GiB, KiB, MiB, parse_duration, parse_size

GO = DurationSyntax.GO
SECONDS = DurationSyntax.SECONDS


@pytest.mark.parametrize("syntax", list(DurationSyntax))
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("1h2m3s4ms", 3723.004),
        ("1.5s", 1.5),
        ("500us", 0.0005),
        ("500µs", 0.0005),  # U+00B5 MICRO SIGN
        ("500μs", 0.0005),  # U+03BC GREEK SMALL LETTER MU
        ("100ns", 1e-7),
        ("0", 0.0),
        (" 2m ", 120.0),
    ],
)
def test_durations_both_syntaxes_accept(text: str, seconds: float, syntax: DurationSyntax) -> None:
    assert parse_duration(text, syntax=syntax) == pytest.approx(seconds)


@pytest.mark.parametrize("syntax", list(DurationSyntax))
@pytest.mark.parametrize(
    "text", ["", "   ", "s", "ms", "10 s", "10sec", "10S", "-1s", "+1s", "1d", "1e3s", "\u0661s"]
)
def test_durations_both_syntaxes_refuse(text: str, syntax: DurationSyntax) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text, syntax=syntax)


@pytest.mark.parametrize("syntax", list(DurationSyntax))
def test_durations_refuse_booleans(syntax: DurationSyntax) -> None:
    with pytest.raises(TypeError):
        parse_duration(True, syntax=syntax)


@pytest.mark.parametrize("syntax", list(DurationSyntax))
def test_durations_refuse_what_does_not_fit_a_float(syntax: DurationSyntax) -> None:
    with pytest.raises(ValueError, match="too long a duration"):
        parse_duration("9" * 400 + "h", syntax=syntax)


# A bare number: Go reads it as nanoseconds, so the GO syntax demands a unit; SECONDS reads it
# as seconds, whether written as text or as a YAML number.


@pytest.mark.parametrize("value", ["10", "1.5", 10, 1.5, 0])
def test_go_syntax_refuses_a_bare_number(value: str | float) -> None:
    with pytest.raises(ValueError, match=r"duration|has no unit"):
        parse_duration(value, syntax=GO)


def test_go_syntax_names_the_missing_unit_of_a_number() -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(10, syntax=GO)
    assert str(caught.value) == "10 has no unit; write e.g. 10s or 10ms"


@pytest.mark.parametrize(("value", "seconds"), [("45", 45.0), ("0.5", 0.5), (7, 7.0), (0.5, 0.5)])
def test_seconds_syntax_reads_a_bare_number_as_seconds(value: str | float, seconds: float) -> None:
    assert parse_duration(value, syntax=SECONDS) == seconds


@pytest.mark.parametrize("value", [-1, -0.5, float("inf"), float("nan"), "9" * 400])
def test_seconds_syntax_refuses_negative_and_non_finite_numbers(value: str | float) -> None:
    with pytest.raises(ValueError):
        parse_duration(value, syntax=SECONDS)


# Go's decimal forms: `.5s` and `1.s` are durations to Go (and so to ngrok), not to Burrow's files.


@pytest.mark.parametrize(("text", "seconds"), [(".5s", 0.5), ("1.s", 1.0), ("1.5m.5s", 90.5)])
def test_go_syntax_accepts_gos_decimal_forms(text: str, seconds: float) -> None:
    assert parse_duration(text, syntax=GO) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [".5s", "1.s", "1.2.3s"])
def test_seconds_syntax_wants_digits_both_sides_of_the_point(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text, syntax=SECONDS)


def test_each_syntax_keeps_its_message() -> None:
    with pytest.raises(ValueError) as go:
        parse_duration("10 seconds", syntax=GO)
    assert str(go.value) == "'10 seconds' is not a duration; write e.g. 10s, 1m30s or 250ms"
    with pytest.raises(ValueError) as plain:
        parse_duration("10 seconds", syntax=SECONDS)
    assert str(plain.value) == (
        "expected a duration like 250ms, 10s, 1m30s or 2h, or a number of seconds, got '10 seconds'"
    )


@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(["h", "m", "s", "ms"])),
        min_size=1,
        max_size=4,
    )
)
def test_durations_sum_their_parts(parts: list[tuple[int, str]]) -> None:
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    text = "".join(f"{number}{unit}" for number, unit in parts)
    expected = sum(number * scale[unit] for number, unit in parts)
    for syntax in DurationSyntax:
        assert parse_duration(text, syntax=syntax) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64MiB", 64 * MiB),
        ("512 KiB", 512 * KiB),
        ("1GiB", GiB),
        ("1KB", 1000),
        ("2MB", 2_000_000),
        ("1GB", 1_000_000_000),
        ("1.5KiB", 1536),
        ("100B", 100),
        (" 4096 ", 4096),
        (4096, 4096),
        (0, 0),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected a size"),
        ("MiB", "expected a size"),
        ("-1", "expected a size"),
        ("1e3", "expected a size"),
        ("64  MiB", "expected a size"),
        ("64Mb", "unknown size unit 'Mb'"),
        ("64 mib", "unknown size unit 'mib'"),
        ("1.5", "not a whole number of bytes"),
        ("1.5B", "not a whole number of bytes"),
        (-1, "expected a size"),
    ],
)
def test_parse_size_refuses(text: str | int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_size(text)


def test_parse_size_refuses_a_boolean() -> None:
    with pytest.raises(TypeError):
        parse_size(False)
