"""`edge.admin.errors`: a refusal is a status, an `ERR_NGROK_*` code and a message, rendered as
ngrok's error body."""

from __future__ import annotations

import json

from edge.admin.errors import (
    ERR_BAD_ACL,
    ERR_BAD_QUERY,
    ERR_MISSING_AUTH,
    ApiError,
    error_body,
    status_code,
)


def test_an_api_error_keeps_status_code_and_message() -> None:
    error = ApiError(400, ERR_BAD_QUERY, "limit must be from 1 to 100")
    assert (error.status, error.code, error.msg) == (400, "ERR_NGROK_230", error.message)
    assert error.message == "limit must be from 1 to 100"
    assert str(error) == "limit must be from 1 to 100"  # the code travels in the body


def test_not_found_is_404_with_burrows_status_code() -> None:
    error = ApiError.not_found("No credential with ID 'cr_X'.")
    assert (error.status, error.code, error.msg) == (
        404,
        "ERR_NGROK_404",
        "No credential with ID 'cr_X'.",
    )


def test_status_code_names_undocumented_conditions_by_status() -> None:
    assert status_code(409) == "ERR_NGROK_409"
    assert status_code(501) == "ERR_NGROK_501"


def test_documented_codes_keep_ngroks_numbers() -> None:
    assert ERR_MISSING_AUTH == "ERR_NGROK_200"
    assert ERR_BAD_ACL == "ERR_NGROK_10007"


def test_error_body_is_ngroks_compact_json() -> None:
    body = error_body(ApiError(401, ERR_MISSING_AUTH, "no Authorization header"), "op_7")
    assert json.loads(body) == {
        "error_code": "ERR_NGROK_200",
        "status_code": 401,
        "msg": "no Authorization header",
        "details": {"operation_id": "op_7"},
    }
    assert b" " not in body.replace(b"no Authorization header", b"")  # no padding
