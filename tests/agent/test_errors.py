"""agent/errors.py: how an agent error prints, with and without the edge's ERR_NGROK code."""

from __future__ import annotations

import pytest

from agent.errors import AgentError, UsageError
from agent.tls_contexts import TLSMaterialError
from protocol.rpc.errcodes import NgrokError


def test_an_error_with_a_code_prints_it_after_the_message() -> None:
    error = AgentError("authentication failed: the authtoken is not valid", "ERR_NGROK_105")
    assert str(error) == "authentication failed: the authtoken is not valid (ERR_NGROK_105)"
    assert error.message == "authentication failed: the authtoken is not valid"
    assert error.code == "ERR_NGROK_105"


@pytest.mark.parametrize("code", [None, ""])
def test_an_error_without_a_code_is_just_its_message(code: str | None) -> None:
    """An edge that sent an empty code sent none: no "()" after the message."""
    error = AgentError("the edge refused the endpoint", code)
    assert str(error) == "the edge refused the endpoint"
    assert error.code is None


def test_agent_error_shares_the_ngrok_error_base() -> None:
    """`message`, `code` and `wire()` mean the same on every program's errors."""
    error = AgentError("refused", "ERR_NGROK_9030")
    assert isinstance(error, NgrokError)
    assert error.wire() == NgrokError("refused", "ERR_NGROK_9030").wire()


def test_usage_error_is_an_agent_error() -> None:
    """cli.main catches AgentError for every refusal; a usage mistake must be one too."""
    error = UsageError("--name must not be empty")
    assert isinstance(error, AgentError)
    assert str(error) == "--name must not be empty"
    assert error.code is None


def test_tls_material_error_is_an_agent_error() -> None:
    """The tree in the module docstring: TLS material problems are AgentErrors as well."""
    error = TLSMaterialError("holds no PEM certificate", field="server_certificate")
    assert isinstance(error, AgentError)
    assert str(error) == "holds no PEM certificate"
    assert not isinstance(error, UsageError)
