"""edge/policy/cel_macros.py: ngrok's cookie, JSON, query-string, URL, hash, base64 and IP
macros, through compiled expressions as policies use them (values from ngrok's docs)."""

from __future__ import annotations

import pytest

from edge.policy.activation import RequestFacts, ResponseFacts, request_view, response_view
from edge.policy.cel import compile_expression
from edge.policy.cel_macros import MAX_JSON_DEPTH, json_decode
from edge.policy.errors import PolicyError, PolicyRuntimeError

REQUEST = request_view(
    RequestFacts(
        method="GET",
        scheme="https",
        host="api.example.com",
        path="/x",
        query="q=hello&n=1&n=2",
        headers=(
            ("Cookie", "session=abc; theme=dark"),
            ("Cookie", "session=second"),
            ("X-Json", '{"user":{"id":7},"tags":["a","b"]}'),
        ),
    )
)
RESPONSE = response_view(
    ResponseFacts(
        status=200,
        headers=(
            ("Set-Cookie", "_device_id=tablet; Path=/"),
            ("Set-Cookie", "_device_id=mobile-phone-14; Path=/app; Secure; HttpOnly"),
            ("Set-Cookie", "lang=en; Max-Age=60; SameSite=Lax"),
        ),
    )
)
ACTIVATION = {"req": REQUEST, "res": RESPONSE}


def value(text: str) -> object:
    return compile_expression(text).value(ACTIVATION)


@pytest.mark.parametrize(
    "text",
    [
        # cookies: the first request cookie of a name; the response one with the longest path
        "getReqCookie('session').value == 'abc'",
        "getReqCookie('session').name == 'session'",
        "hasReqCookie('theme') && !hasReqCookie('missing')",
        "getResCookie('_device_id').value == 'mobile-phone-14'",  # ngrok's doc example
        "getResCookie('_device_id').secure && getResCookie('_device_id').http_only",
        "hasResCookie('lang') && !hasResCookie('session')",
        "res.cookies.lang[0].max_age == 60 && res.cookies.lang[0].same_site == 'Lax'",
        # JSON
        "json.decode(getReqHeader('x-json')[0]).user.id == 7",
        "getReqHeader('x-json')[0].decodeJson().tags == ['a', 'b']",
        'json.decode(\'["a","b","c"]\')[2] == \'c\'',
        "json.encode({'b': 1, 'a': [true, 'x']}) == '{\"a\":[true,\"x\"],\"b\":1}'",
        "[1, 'a'].encodeJson() == '[1,\"a\"]'",
        "'{\"a\":\"b\"}'.isJson() && !'not json'.isJson()",
        # query strings
        "queryString.decode(req.url.query)['q'] == 'hello'",  # ngrok's doc example
        "queryString.decode('n=1&n=2')['n'] == '1'",  # the first value of a repeated name
        "'a=b&c=d'.decodeQueryString() == {'a': 'b', 'c': 'd'}",
        "queryString.encode({'q': 'policy'}) == 'q=policy'",
        "queryString.encode({'b': ['1', '2'], 'a': 'x y'}) == 'a=x+y&b=1&b=2'",  # names sorted
        "{'a': 'b', 'c': 'd'}.encodeQueryString() == 'a=b&c=d'",
        "'a=b&c=d'.isQueryString() && !'not a query string'.isQueryString()",
        # URLs
        "url.parse('https://ngrok.com').host == 'ngrok.com'",
        "url.parse(req.url).host == 'api.example.com'",
        "'https://u:p@h.example:8443/a%20b?x=1#f'.parseUrl().path == '/a b'",
        "'https://u:p@h.example:8443/a%20b?x=1#f'.parseUrl().raw_query == 'x=1'",
        "'https://u:p@h.example:8443/a%20b?x=1#f'.parseUrl().user == 'u:p'",
        "'https://ngrok.com'.isURL() && !'not a url'.isURL()",
        "'i;md/r/$y'.escapeUrl() == 'i%3Bmd%2Fr%2F%24y'",
        "'i%3Bmd%2Fr%2F%24y'.unescapeUrl() == 'i;md/r/$y'",
        # base64 and basic auth
        "'some:thing'.encodeBase64() == 'c29tZTp0aGluZw=='",
        "'c29tZTp0aGluZw=='.decodeBase64() == 'some:thing'",
        "basic_auth.encode('username', 'password1') == 'Basic dXNlcm5hbWU6cGFzc3dvcmQx'",
        # IPs
        "'192.168.1.1'.isPrivateIp() && '10.2.3.4'.isPrivateIp() && '172.31.0.1'.isPrivateIp()",
        "!'8.8.8.8'.isPrivateIp() && !'172.32.0.1'.isPrivateIp() && !'nope'.isPrivateIp()",
        "'fd00::1'.isPrivateIp()",
    ],
)
def test_macros_give_ngroks_documented_values(text: str) -> None:
    assert value(text) is not None
    assert compile_expression(text).evaluate(ACTIVATION) is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hash.crc32('hello')", "3610a686"),
        ("hash.crc32('hello', 'base64')", "NhCmhg=="),
        ("hash.crc64('hello')", "3c3eeee2d8100000"),
        ("hash.crc64('hello', 'base64')", "PD7u4tgQAAA="),
        ("hash.md5('hello')", "5d41402abc4b2a76b9719d911017c592"),
        ("'hello'.md5('base64')", "XUFAKrxLKna5cZ2REBfFkg=="),
        ("hash.sha1('hello')", "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"),
        ("'hello'.sha1('base64')", "qvTGHdzF6KLavt4PO0gs2a6pQ00="),
        (
            "hash.sha256('hello', 'hex')",
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        ),
        ("'hello'.sha256('base64')", "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="),
        ("hash.sha512('hello').substring(0, 16)", "9b71d224bd62f378"),
        ("hash.xxhash64('hello')", "26c7827d889f6da3"),
        ("'hello'.xxhash64('base64')", "JseCfYifbaM="),
    ],
)
def test_hashes_match_ngroks_examples(text: str, expected: str) -> None:
    assert value(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "getReqCookie('missing').value == ''",  # a missing cookie is an error, not ''
        "json.decode('{bad') == {}",
        "hash.sha256('x', 'binary') == ''",  # only hex and base64
        "'%%%'.decodeBase64() == ''",
        "queryString.decode('a=%zz') == {}",
        "url.parse('http://h:99999') == {}",  # a bad port
        "queryString.encode({'a': {'b': 'c'}}) == ''",
    ],
)
def test_unusable_input_is_a_runtime_error(text: str) -> None:
    with pytest.raises(PolicyRuntimeError):
        compile_expression(text).evaluate(ACTIVATION)


def test_json_nesting_is_bounded() -> None:
    assert json_decode("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    with pytest.raises(ValueError, match="nested deeper"):
        json_decode("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    # brackets inside strings are text, not nesting
    assert json_decode('"' + "[" * (MAX_JSON_DEPTH + 5) + '"') == "[" * (MAX_JSON_DEPTH + 5)


def test_cookie_getters_read_the_cookie_maps_they_name() -> None:
    assert compile_expression("hasReqCookie('a')").variables == frozenset({"req"})
    assert compile_expression("getResCookie('a').value == ''").variables == frozenset({"res"})


def test_unknown_namespaced_and_method_macros_fail_compile() -> None:
    with pytest.raises(PolicyError, match=r"undeclared reference to function 'hash\.sha3'"):
        compile_expression("hash.sha3('x') == ''")
    with pytest.raises(PolicyError, match="undeclared reference to method 'sha3'"):
        compile_expression("'x'.sha3() == ''")


def test_a_comprehension_variable_may_shadow_a_namespace() -> None:
    # `hash` bound by exists() is the element, so `hash.sha256()` is the method form on it
    assert compile_expression("['a'].exists(hash, hash.sha256() == hash.sha256())").evaluate({})
