"""edge/policy/interpolation.py: `${...}` split, compiled once, rendered safely."""

from __future__ import annotations

import pytest

from edge.policy.errors import ERR_NGROK_2224, ERR_NGROK_2238, PolicyError, PolicyRuntimeError
from edge.policy.interpolation import Expression, Literal, compile_template, split_template

ACTIVATION = {
    "req": {"method": "GET", "headers": {"x-evil": ["a\r\nset-cookie: x=1"], "x-n": ["7"]}},
    "conn": {"client_ip": "203.0.113.9", "client_port": 4242},
}


def test_split_into_literals_and_expressions() -> None:
    assert split_template("ip=${conn.client_ip} port=${conn.client_port}!") == (
        Literal("ip="),
        Expression("conn.client_ip"),
        Literal(" port="),
        Expression("conn.client_port"),
        Literal("!"),
    )


def test_braces_and_quotes_inside_an_expression() -> None:
    assert split_template("${ {'a': '}'}['a'] }") == (Expression(" {'a': '}'}['a'] "),)


def test_plain_text_and_lone_dollars_are_literal() -> None:
    assert split_template("costs $5") == (Literal("costs $5"),)
    assert split_template("") == (Literal(""),)


@pytest.mark.parametrize("text", ["${req.method", "a ${ }", "${'}"])
def test_unterminated_or_empty_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"unterminated|empty"):
        split_template(text)
    with pytest.raises(PolicyError) as caught:
        compile_template(text)
    assert caught.value.code == ERR_NGROK_2224


def test_a_bad_expression_inside_is_2224_naming_the_template() -> None:
    with pytest.raises(PolicyError) as caught:
        compile_template("x-${nope.var}")
    assert caught.value.code == ERR_NGROK_2224
    assert "'x-${nope.var}'" in caught.value.message
    assert "undeclared reference to 'nope'" in caught.value.message


def test_render_values_as_text() -> None:
    template = compile_template("${conn.client_ip}:${conn.client_port} ${1 == 1} ${1.5}")
    assert not template.is_static
    assert template.render(ACTIVATION) == "203.0.113.9:4242 true 1.5"


def test_static_template_renders_its_text() -> None:
    template = compile_template("plain")
    assert template.is_static
    assert template.render({}) == "plain"


def test_rendered_values_are_never_expanded_again() -> None:
    activation = {"req": {"headers": {"x-in": ["${conn.client_ip}"]}}}
    template = compile_template("${req.headers['x-in'][0]}")
    assert template.render(activation) == "${conn.client_ip}"


def test_header_values_refuse_cr_lf_nul() -> None:
    template = compile_template("v=${req.headers['x-evil'][0]}")
    assert template.render(ACTIVATION) == "v=a\r\nset-cookie: x=1"  # fine for a body
    with pytest.raises(PolicyRuntimeError) as caught:
        template.render(ACTIVATION, header_value=True)
    assert caught.value.code == ERR_NGROK_2238
    assert "CR, LF or NUL" in caught.value.message


def test_runtime_failure_is_2238() -> None:
    with pytest.raises(PolicyRuntimeError) as caught:
        compile_template("${req.nothing}").render(ACTIVATION)
    assert caught.value.code == ERR_NGROK_2238
