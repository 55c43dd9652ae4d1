"""edge/policy/cookies.py: Set-Cookie headers as ngrok's `res.cookies` structs."""

from __future__ import annotations

from edge.policy.cookies import response_cookies


def test_each_set_cookie_header_is_one_cookie_with_its_attributes() -> None:
    cookies = response_cookies(
        [
            ("Set-Cookie", 'sid="abc"; Path=/app; Domain=example.com; Secure; HttpOnly'),
            ("content-type", "text/html"),
            ("set-cookie", "sid=two; Max-Age=60; SameSite=Strict; Expires=Wed, 21 Oct 2026"),
            ("Set-Cookie", "lang=en; Partitioned; Priority=High"),
        ]
    )
    assert list(cookies) == ["sid", "lang"]
    first, second = cookies["sid"]
    assert first["value"] == "abc"  # quotes around the value are not part of it
    assert first["path"] == "/app" and first["domain"] == "example.com"
    assert first["secure"] is not False and bool(first["secure"]) is True
    assert bool(first["http_only"]) is True
    assert first["max_age"] == 0 and first["same_site"] == ""
    assert second["value"] == "two" and second["max_age"] == 60
    assert second["same_site"] == "Strict" and second["expires"] == "Wed, 21 Oct 2026"
    assert bool(second["secure"]) is False
    assert cookies["lang"][0]["unparsed_attributes"] == ["Partitioned", "Priority=High"]


def test_headers_without_a_name_value_pair_are_skipped() -> None:
    cookies = response_cookies([("Set-Cookie", "novalue"), ("Set-Cookie", "=x"), ("X", "a=b")])
    assert dict(cookies) == {}
