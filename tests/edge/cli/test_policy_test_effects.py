"""`edge.cli.policy_test_effects`: what `policy test` reports beyond the phase run, from pure
values (the command's own output is tested in test_policy_test.py)."""

from __future__ import annotations

from edge.cli.policy_test_effects import body_effect, body_effect_json, jwks_note
from edge.policy.engine import HeaderChanges, Respond, Trace
from edge.policy.run_jwt import ERR_NGROK_7186
from edge.policy.run_response_body import CompressStep

GZIP = (CompressStep(("gzip", "deflate")),)
ASKS_GZIP = (("Accept-Encoding", "gzip"),)
UNCHANGED = HeaderChanges()


def effect_of(
    response_headers: tuple[tuple[str, str], ...], changes: HeaderChanges = UNCHANGED
) -> dict[str, object]:
    effect = body_effect(
        GZIP,
        method="GET",
        status=200,
        request_headers=ASKS_GZIP,
        response_headers=response_headers,
        changes=changes,
        body=None,
    )
    assert effect is not None
    return body_effect_json(effect)


def test_no_body_steps_no_effect() -> None:
    effect = body_effect(
        (),
        method="GET",
        status=200,
        request_headers=ASKS_GZIP,
        response_headers=(),
        changes=HeaderChanges(),
        body="x",
    )
    assert effect is None


def test_the_response_phases_header_changes_are_applied_before_deciding() -> None:
    """As on the edge, the decision is made on the final head: a content type the phase sets
    counts, as does a Content-Encoding it removes."""
    typed = (("Content-Type", "text/plain"),)
    assert effect_of(typed)["compression"] == {
        "offered": ["gzip", "deflate"],
        "coding": "gzip",
        "why_not": None,
    }
    to_image = HeaderChanges(removed=("content-type",), added=(("content-type", "image/png"),))
    compression = effect_of(typed, to_image)["compression"]
    assert isinstance(compression, dict) and compression["coding"] is None
    assert "compressed media type" in compression["why_not"]
    encoded = (("Content-Type", "text/plain"), ("Content-Encoding", "br"))
    assert effect_of(encoded)["compression"]["coding"] is None  # type: ignore[index]
    decoded = HeaderChanges(removed=("content-encoding",))
    assert effect_of(encoded, decoded)["compression"]["coding"] == "gzip"  # type: ignore[index]


def answer(status: int, body: bytes) -> Respond:
    return Respond(
        status=status, headers=(), body=body, logs=(), trace=Trace("on_http_request", ())
    )


def test_the_jwks_note_is_only_for_jwt_validations_503() -> None:
    urls = ("https://idp.example.com/jwks",)
    keys_missing = answer(503, f"{ERR_NGROK_7186}: not yet\n".encode())
    note = jwks_note(keys_missing, urls)
    assert note is not None and "https://idp.example.com/jwks" in note
    assert jwks_note(keys_missing, ()) is None  # no JWKS URL: not jwt-validation's answer
    assert jwks_note(answer(503, b"ERR_NGROK_3202: breaker open\n"), urls) is None
    assert jwks_note(answer(401, f"{ERR_NGROK_7186}\n".encode()), urls) is None
