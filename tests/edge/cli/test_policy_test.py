"""`edge.cli.policy_test`: `burrow-edge policy test FILE ...`, run in-process through the CLI's
`main` on real policy files in tmp_path, with the edge's own engine."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from edge.cli.main import main
from tests.edge.policy.tls_helpers import make_ca, make_leaf, terminate_tls_policy

RESTRICT_IPS = """\
on_tcp_connect:
  - actions:
      - type: restrict-ips
        config: {allow: [203.0.113.0/24]}
"""

# ngrok's docs, basic-auth/examples/basic-example.mdx
BASIC_AUTH = """\
on_http_request:
  - actions:
      - type: basic-auth
        config:
          realm: sample-realm
          credentials: [user:password1]
          enforce: true
      - type: custom-response
        config:
          status_code: 200
          headers: {content-type: text/plain}
          body: Successfully Authenticated!
"""

ADD_HEADERS_AND_REWRITE = """\
on_http_request:
  - name: products
    expressions: ["req.url.path == '/products'"]
    actions:
      - type: url-rewrite
        config: {from: /products, to: /products.php}
      - type: add-headers
        config: {headers: {x-client-ip: "${conn.client_ip}"}}
      - type: log
        config: {metadata: {method: "${req.method}"}}
  - expressions: ["req.method == 'DELETE'"]
    actions:
      - type: remove-headers
        config: {headers: [cookie]}
on_http_response:
  - expressions: ["res.status_code == 200"]
    actions:
      - type: add-headers
        config: {headers: {x-served-by: burrow}}
      - type: remove-headers
        config: {headers: [server]}
"""

CLOSE_TCP = """\
on_tcp_connect:
  - expressions: ["conn.server_port == 10000"]
    actions:
      - type: close-connection
"""


def write(tmp_path: Path, text: str, name: str = "policy.yml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def run(*args: str) -> int:
    return main(["policy", "test", *args])


def test_restrict_ips_lets_an_allowed_client_through(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, RESTRICT_IPS)
    assert run(file, "--client", "203.0.113.7:50000", "--url", "https://app.example.com/") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [
        "on_tcp_connect:",
        "  rule 0: matched",
        "    action 0 restrict-ips: continued",
    ]
    assert "on_http_request: no rules" in out
    assert "outcome: forward GET /" in out


def test_restrict_ips_closes_a_denied_client(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, RESTRICT_IPS)
    assert run(file, "--client", "198.51.100.9:40000") == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "on_tcp_connect:",
        "  rule 0: matched",
        "    action 0 restrict-ips: closed the connection",
        "outcome: close (restrict-ips)",
    ]


def test_basic_auth_without_credentials_answers_401(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, BASIC_AUTH)
    assert run(file) == 0
    out = capsys.readouterr().out.splitlines()
    assert "    action 0 basic-auth: responded 401" in out
    assert not any("custom-response" in line for line in out)  # the phase ended at basic-auth
    assert "outcome: respond 401" in out
    assert any(
        line.startswith("  header www-authenticate: ") and "sample-realm" in line for line in out
    )


def test_basic_auth_with_the_right_credentials_reaches_the_custom_response(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, BASIC_AUTH)
    token = base64.b64encode(b"user:password1").decode()
    assert run(file, "--header", f"Authorization: Basic {token}") == 0
    out = capsys.readouterr().out.splitlines()
    assert "    action 0 basic-auth: continued" in out
    assert "    action 1 custom-response: responded 200" in out
    assert out[-3:] == [
        "outcome: respond 200",
        "  header content-type: text/plain",
        '  body: "Successfully Authenticated!"',
    ]


def test_forward_shows_added_headers_the_rewritten_target_and_the_response_phase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, ADD_HEADERS_AND_REWRITE)
    args = ["--url", "https://app.example.com/products?q=1", "--client", "198.51.100.4:1234"]
    assert run(file, *args, "--response-header", "Server: nginx") == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "on_tcp_connect: no rules",
        "on_http_request:",
        '  rule 0 ("products"): matched',
        "    req.url.path == '/products' => true",
        "    action 0 url-rewrite: continued",
        "    action 1 add-headers: continued",
        "    action 2 log: continued",
        "  rule 1: not matched",
        "    req.method == 'DELETE' => false",
        "on_http_response:",
        "  rule 0: matched",
        "    res.status_code == 200 => true",
        "    action 0 add-headers: continued",
        "    action 1 remove-headers: continued",
        "outcome: forward GET /products.php?q=1 (rewritten from /products?q=1)",
        "  add header x-client-ip: 198.51.100.4",
        "response: 200 from the upstream",
        "  remove header server",
        "  add header x-served-by: burrow",
        'log on_http_request rule 0 ("products") action 2 (log): {"method": "GET"}',
    ]


def test_the_response_phase_sees_the_given_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, ADD_HEADERS_AND_REWRITE)
    assert run(file, "--status", "503", "--method", "delete") == 0
    out = capsys.readouterr().out.splitlines()
    assert "    res.status_code == 200 => false" in out
    assert "outcome: forward DELETE /" in out
    assert "  remove header cookie" in out
    assert out[-1] == "response: 503 from the upstream"  # no changes, no log (rule 0 missed)


def test_on_tcp_connect_close_for_a_tcp_endpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, CLOSE_TCP)
    assert run(file, "--protocol", "tcp") == 0
    assert capsys.readouterr().out.splitlines() == [
        "on_tcp_connect:",
        "  rule 0: matched",
        "    conn.server_port == 10000 => true",
        "    action 0 close-connection: closed the connection",
        "outcome: close (close-connection)",
    ]
    assert run(file, "--protocol", "tcp", "--url", "tcp://tcp.example.com:20000") == 0
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "    conn.server_port == 10000 => false",
        "outcome: continue (the connection is let through)",
    ]


def test_an_expression_that_fails_shows_its_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = """\
on_http_request:
  - expressions: ["req.headers['x-missing'][0] == 'a'"]
    actions: [{type: deny}]
"""
    file = write(tmp_path, policy)
    assert run(file) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("    req.headers['x-missing'][0] == 'a' => error: ") for line in out)
    assert "outcome: respond 500 (ERR_NGROK_2254)" in out
    assert any(line.startswith("log ") and "ERR_NGROK_2254" in line for line in out)


def test_an_invalid_policy_prints_the_check_errors_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, BASIC_AUTH)
    assert run(file, "--protocol", "tcp", "--url", "tcp://tcp.example.com:10000") == 1
    tested = capsys.readouterr()
    assert main(["policy", "check", file, "--protocol", "tcp"]) == 1
    checked = capsys.readouterr()
    assert tested.out == checked.out
    assert "ERR_NGROK_2230" in tested.out
    assert tested.err == ""


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["--client", "nowhere"], "--client 'nowhere' is not IP:PORT"),
        (["--client", "10.0.0.1:0"], "--client '10.0.0.1:0' has no port from 1 to 65535"),
        (["--header", "no colon"], "--header 'no colon' is not 'Name: value'"),
        (["--response-header", ": v"], "--response-header ': v' is not 'Name: value'"),
        (["--status", "2000"], "--status '2000' is not an HTTP status from 100 to 599"),
        (["--url", "http://app.example.com/"], "is not a https:// URL with a host"),
        (["--protocol", "udp"], "unknown protocol 'udp' for --protocol"),
        (["--format", "xml"], "unknown format 'xml' for --format"),
    ],
)
def test_a_bad_flag_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], problem: str
) -> None:
    file = write(tmp_path, RESTRICT_IPS)
    assert run(file, *flags) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith("burrow-edge: policy test: ")
    assert problem in out.err
    assert out.err.count("\n") == 1


def test_an_unreadable_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(str(tmp_path / "missing.yml")) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith("burrow-edge: policy test: cannot read ")


def test_json_format_is_one_object_with_phases_outcome_and_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, ADD_HEADERS_AND_REWRITE)
    args = ["--url", "https://app.example.com/products", "--response-header", "Server: x"]
    assert run(file, *args, "--format", "json") == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    report = json.loads(out)
    assert [phase["phase"] for phase in report["phases"]] == [
        "on_tcp_connect",
        "on_http_request",
        "on_http_response",
    ]
    first = report["phases"][1]["rules"][0]
    assert first["name"] == "products"
    assert first["matched"] is True
    assert first["expressions"] == [
        {"text": "req.url.path == '/products'", "value": True, "error": None}
    ]
    assert [a["type"] for a in first["actions"]] == ["url-rewrite", "add-headers", "log"]
    assert report["outcome"] == {
        "type": "forward",
        "method": "GET",
        "target": "/products.php",
        "rewritten": True,
        "headers": {"removed": [], "added": [["x-client-ip", "203.0.113.7"]]},
        "response": {
            "type": "upstream",
            "status": 200,
            "headers": {"removed": ["server"], "added": [["x-served-by", "burrow"]]},
        },
    }
    assert report["logs"] == [
        {
            "phase": "on_http_request",
            "place": 'on_http_request rule 0 ("products") action 2 (log)',
            "metadata": {"method": "GET"},
            "error_code": None,
        }
    ]


def test_json_format_of_a_respond_and_of_an_invalid_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, BASIC_AUTH)
    assert run(file, "--format", "json") == 0
    outcome = json.loads(capsys.readouterr().out)["outcome"]
    assert outcome["type"] == "respond"
    assert outcome["status"] == 401
    invalid = write(tmp_path, "on_http_request: [{actions: [{type: dney}]}]\n", "bad.yml")
    assert run(invalid, "--format", "json") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    assert report["errors"][0]["code"] == "ERR_NGROK_2201"


BODY_ACTIONS = """\
on_http_request:
  - expressions: ["req.url.path == '/hook'"]
    actions:
      - type: verify-webhook
        config: {provider: shopify, secret: s3cret}
  - actions:
      - type: request-body-find-replace
        config: {replacements: [{from: "card=[0-9]+", to: "card=XXXX"}]}
"""


def test_body_flag_feeds_the_body_actions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, BODY_ACTIONS)
    url = ["--url", "https://app.example.com/pay", "--method", "POST"]
    assert run(file, *url, "--body", "name=ann&card=4111") == 0
    out = capsys.readouterr().out.splitlines()
    assert "outcome: forward POST /pay" in out
    assert '  body rewritten: "name=ann&card=XXXX"' in out
    assert run(file, *url, "--body", "name=ann&card=4111", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["outcome"]["body"] == "name=ann&card=XXXX"
    hook = ["--url", "https://app.example.com/hook", "--method", "POST", "--body", "{}"]
    assert run(file, *hook, "--header", "X-Shopify-Hmac-Sha256: AAAA") == 0
    assert "outcome: respond 403" in capsys.readouterr().out


def test_forward_internal_names_its_target_in_text_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    http = write(
        tmp_path,
        "on_http_request:\n  - actions:\n"
        "      - {type: forward-internal, config: {url: 'https://api.clinic-a.internal:443'}}\n",
    )
    assert run(http, "--url", "https://api.acme.example/records") == 0
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "    action 0 forward-internal: forwarded to https://api.clinic-a.internal",
        "outcome: forward-internal to https://api.clinic-a.internal (its own policy runs next)",
    ]
    tls = write(
        tmp_path,
        "on_tcp_connect:\n  - actions:\n"
        "      - {type: forward-internal, config: {url: 'tls://db.clinic-a.internal:5432'}}\n",
        "tls.yml",
    )
    assert run(tls, "--protocol", "tls", "--format", "json") == 0
    outcome = json.loads(capsys.readouterr().out)["outcome"]
    assert outcome == {
        "type": "forward-internal",
        "url": "tls://db.clinic-a.internal:5432",
        "error": None,
    }


# --- what terminate-tls, the response body actions and jwt-validation do ---------------------
def test_terminate_tls_names_the_certificate_the_edge_terminates_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = make_leaf("db.example.com")
    plain = write(tmp_path, terminate_tls_policy(server), "tls.json")
    assert run(plain, "--protocol", "tls", "--url", "tls://db.example.com:443") == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "outcome: continue; terminate-tls: the edge terminates TLS with certificate "
        "CN=db.example.com (TLS 1.2 to 1.3; no client certificate asked for) and forwards "
        "plaintext"
    )
    mutual = write(tmp_path, terminate_tls_policy(server, client_ca=make_ca()), "mtls.json")
    assert run(mutual, "--protocol", "tls", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["outcome"] == {
        "type": "continue",
        "terminate_tls": {
            "certificate_subject": "CN=db.example.com",
            "min_version": "1.2",
            "max_version": "1.3",
            "client_certificates": "require-and-verify",
            "client_cas": 1,
        },
    }


COMPRESS_AND_REPLACE = """\
on_http_response:
  - actions:
      - type: response-body-find-replace
        config:
          replacements:
            - {from: "secret-[0-9]+", to: "[redacted]"}
      - type: compress-response
        config: {algorithms: [gzip, br]}
"""


def test_compress_response_shows_the_coding_chosen_for_the_accept_encoding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, COMPRESS_AND_REPLACE)
    typed = ("--response-header", "Content-Type: text/html")
    assert run(file, *typed, "--header", "Accept-Encoding: gzip;q=0.5, br") == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        "  compress-response: br (of gzip, br, for the request's Accept-Encoding); "
        "Content-Encoding added, Content-Length dropped"
    ) in out
    assert run(file, *typed, "--header", "Accept-Encoding: gzip") == 0
    assert "  compress-response: gzip (of gzip, br" in capsys.readouterr().out
    assert run(file, *typed, "--header", "Accept-Encoding: deflate") == 0
    assert (
        "  compress-response: none (the request's Accept-Encoding (deflate) allows none of "
        "gzip, br)"
    ) in capsys.readouterr().out.splitlines()
    assert run(file, *typed) == 0
    assert "the request has no Accept-Encoding" in capsys.readouterr().out
    image = ("--response-header", "Content-Type: image/png", "--header", "Accept-Encoding: gzip")
    assert run(file, *image) == 0
    not_eligible = capsys.readouterr().out
    assert "compress-response: none (the response is not compressed: " in not_eligible
    assert run(file, *typed, "--header", "Accept-Encoding: gzip", "--format", "json") == 0
    body = json.loads(capsys.readouterr().out)["outcome"]["response"]["body"]
    assert body["compression"] == {"offered": ["gzip", "br"], "coding": "gzip", "why_not": None}


def test_response_body_flag_shows_the_find_replace_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, COMPRESS_AND_REPLACE)
    given = "token secret-123 and secret-45 end"
    assert run(file, "--response-body", given) == 0
    out = capsys.readouterr().out.splitlines()
    assert '  response body after find-replace: "token [redacted] and [redacted] end"' in out
    # Without the flag, the replacements are announced, not invented.
    assert run(file) == 0
    assert (
        "  response-body-find-replace: 1 replacement(s) ready; give --response-body to see "
        "the result"
    ) in capsys.readouterr().out.splitlines()
    # A body the upstream already encoded is not rewritten (the edge logs why).
    encoded = ("--response-header", "Content-Encoding: gzip", "--response-body", given)
    assert run(file, *encoded, "--format", "json") == 0
    body = json.loads(capsys.readouterr().out)["outcome"]["response"]["body"]
    assert body["body"] == given and body["replacements"] == 0
    assert body["notes"] == [
        "response-body-find-replace skipped: the body is gzip-encoded by the upstream"
    ]


JWT = """\
on_http_request:
  - actions:
      - type: jwt-validation
        config:
          issuer: {allow_list: [{value: "https://idp.example.com"}]}
          audience: {allow_list: [{value: "api"}]}
          http: {tokens: [{type: jwt, method: header, name: Authorization, prefix: "Bearer "}]}
          jws:
            allowed_algorithms: [RS256]
            keys: {sources: {additional_jkus: ["https://idp.example.com/jwks.json"]}}
"""


def test_jwt_validation_offline_explains_its_503(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, JWT)
    assert run(file, "--header", "Authorization: Bearer a.b.c") == 0
    out = capsys.readouterr().out.splitlines()
    assert "outcome: respond 503" in out
    (note,) = [line for line in out if line.startswith("  note: ")]
    assert "runs offline and fetches no keys from its JWKS URLs" in note
    assert "https://idp.example.com/jwks.json" in note
    assert run(file, "--header", "Authorization: Bearer a.b.c", "--format", "json") == 0
    outcome = json.loads(capsys.readouterr().out)["outcome"]
    assert outcome["status"] == 503 and "fetches no keys" in outcome["note"]
    # Without a token the answer is the 401, and no note is made up for it.
    assert run(file) == 0
    out = capsys.readouterr().out.splitlines()
    assert "outcome: respond 401" in out and not any("note:" in line for line in out)
