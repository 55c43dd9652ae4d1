"""`edge.cli.policy`: `burrow-edge policy check FILE`, run in-process through the CLI's `main`,
on real files in tmp_path and on stdin; and once through the installed console script."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.cli.main import main
from tests.edge.policy.examples import BASIC_AUTH_YAML, URL_REWRITE_JSON

# Valid for https (an HTTP phase) but not for tcp or tls, which have only on_tcp_connect.
HTTPS_ONLY = """\
on_tcp_connect:
  - actions:
      - type: restrict-ips
        config: {allow: [10.0.0.0/8]}
on_http_request:
  - expressions: ["req.url.path.startsWith('/admin')"]
    actions:
      - type: deny
        config: {status_code: 404}
"""


def write(tmp_path: Path, text: str, name: str = "policy.yml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def check(*args: str) -> int:
    return main(["policy", "check", *args])


def with_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


# ------------------------------------------------------------------------------- valid files


def test_a_valid_yaml_policy_from_ngrok_docs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, BASIC_AUTH_YAML)
    assert check(file) == 0
    out = capsys.readouterr()
    assert (
        out.out == f"{file}: valid Traffic Policy for https endpoints: 1 rule in on_http_request\n"
    )
    assert out.err == ""


def test_a_valid_json_policy_from_ngrok_docs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, URL_REWRITE_JSON, "policy.json")
    assert check(file, "--protocol", "http") == 0
    assert capsys.readouterr().out == (
        f"{file}: valid Traffic Policy for http endpoints: 1 rule in on_http_request\n"
    )


def test_the_summary_counts_the_rules_of_every_phase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    response = """\
on_http_response:
  - actions: [{type: remove-headers, config: {headers: [server]}}]
  - actions: [{type: add-headers, config: {headers: {x-served-by: burrow}}}]
"""
    file = write(tmp_path, HTTPS_ONLY + response)
    assert check(file) == 0
    assert capsys.readouterr().out == (
        f"{file}: valid Traffic Policy for https endpoints: 1 rule in on_tcp_connect, "
        "1 rule in on_http_request, 2 rules in on_http_response\n"
    )
    empty = write(tmp_path, "# nothing yet\n", "empty.yml")
    assert check(empty) == 0
    assert capsys.readouterr().out == (
        f"{empty}: valid Traffic Policy for https endpoints: no rules (it changes nothing)\n"
    )


# ---------------------------------------------------------------------------- each error kind

DENY = "      - type: deny\n"
ERRORS = [
    # (document, code, the line the error points at, a piece of its message)
    ("on_http_request:\n  - actions: [\n", "ERR_NGROK_2236", 3, "was not able to be parsed"),
    (
        "on_http_request:\n  - actions:\n" + DENY + "    expresions: [true]\n",
        "ERR_NGROK_2236",
        4,
        "unknown key 'expresions' (did you mean 'expressions'?)",
    ),
    (
        'on_http_request:\n  - name: bad\n    expressions:\n      - "req.method =="\n'
        "    actions:\n" + DENY,
        "ERR_NGROK_2200",
        4,
        'rule 0 ("bad") expressions[0]: Invalid policy expression',
    ),
    (
        "on_http_request:\n  - actions:\n" + DENY.replace("deny", "dney"),
        "ERR_NGROK_2201",
        3,
        "Invalid policy action type 'dney'",
    ),
    (
        "on_http_response:\n  - actions:\n      - type: url-rewrite\n"
        "        config: {from: a, to: b}\n",
        "ERR_NGROK_2202",
        3,
        "Action type url-rewrite is not supported for on_http_response",
    ),
    (
        "on_http_request:\n  - actions:\n" + DENY + "        config:\n          status_code: x\n",
        "ERR_NGROK_2204",
        5,
        "config.status_code: Configuration for policy action type deny has invalid value",
    ),
    (
        'on_http_request:\n  - name: empty\n    expressions: ["true"]\n',
        "ERR_NGROK_2206",
        2,
        "A policy must define at least one action",
    ),
    (
        "on_http_request:\n  - actions:\n" + DENY + "      - type: remove-headers\n"
        "        config: {headers: [server]}\n",
        "ERR_NGROK_2207",
        4,
        "remove-headers is unreachable due to a prior terminating action",
    ),
    (
        "on_tcp_connect:\n  - actions:\n      - type: restrict-ips\n        config:\n"
        "          deny:\n            - 10.0.0.0/8\n            - 10.0.0.0/33\n",
        "ERR_NGROK_2217",
        7,
        "config.deny[1]: Invalid CIDR(s)",
    ),
    (
        "on_http_request:\n  - actions:\n      - type: url-rewrite\n        config:\n"
        "          from: '(unclosed'\n          to: /x\n",
        "ERR_NGROK_2261",
        5,
        "Field from is not a valid regular expression",
    ),
    (
        "on_http_request:\n  - actions:\n" + "      - type: basic-auth\n"
        "        config: {credentials: ['a:password1']}\n" * 2,
        "ERR_NGROK_2239",
        5,
        "Only one auth action allowed per endpoint",
    ),
    (
        "on_http_request:\n" + "  - actions: [{type: log, config: {metadata: {a: b}}}]\n" * 101,
        "ERR_NGROK_2264",
        1,
        "rule per policy limit of 100",
    ),
    (
        "on_http_request:\n  - actions:\n"
        + "      - {type: log, config: {metadata: {a: b}}}\n" * 21,
        "ERR_NGROK_2265",
        2,
        "actions per rule limit of 20",
    ),
]


@pytest.mark.parametrize(("document", "code", "line", "text"), ERRORS, ids=[e[1] for e in ERRORS])
def test_each_error_kind_prints_its_code_and_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    document: str,
    code: str,
    line: int,
    text: str,
) -> None:
    file = write(tmp_path, document)
    assert check(file) == 1
    out = capsys.readouterr()
    (printed,) = out.out.splitlines()
    assert printed.startswith(f"{file}:{line}: {code}: ")
    assert text in printed
    assert out.err == ""


def test_a_policy_valid_for_https_is_2230_for_tcp(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, HTTPS_ONLY)
    assert check(file, "--protocol", "https") == 0
    capsys.readouterr()
    assert check(file, "--protocol", "tcp") == 1
    assert capsys.readouterr().out == (
        f"{file}:5: ERR_NGROK_2230: on_http_request: "
        "Invalid Traffic Policy phase on_http_request for protocol tcp\n"
    )


def test_every_error_is_printed_at_once_in_document_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(
        tmp_path,
        """\
on_http_request:
  - name: block
    expressions: ["req.url.path.startsWith('/admin'"]
    actions:
      - type: deny
        config:
          status_code: 99
  - actions:
      - type: nope
on_http_response:
  - actions:
      - type: add-headers
        config: {headers: {x-a: "${req.nope"}}
""",
    )
    assert check(file) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[:2] for line in lines] == [
        [f"{file}:3", "ERR_NGROK_2200"],
        [f"{file}:7", "ERR_NGROK_2215"],
        [f"{file}:9", "ERR_NGROK_2201"],
        [f"{file}:13", "ERR_NGROK_2224"],
    ]
    assert lines[2] == (
        f"{file}:9: ERR_NGROK_2201: on_http_request rule 1 action 0 (nope): "
        "Invalid policy action type 'nope'."
    )


def test_json_documents_get_lines_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad_value = URL_REWRITE_JSON.replace('"to": "/products.php"', '"to": 7')
    file = write(tmp_path, bad_value, "policy.json")
    assert check(file) == 1
    (printed,) = capsys.readouterr().out.splitlines()
    assert printed.startswith(f"{file}:6: ERR_NGROK_2204: on_http_request rule 0 action 0 ")
    broken = write(tmp_path, '{"on_http_request": [\n  {"actions": [}\n]}\n', "broken.json")
    assert check(broken) == 1
    (printed,) = capsys.readouterr().out.splitlines()
    assert printed.startswith(f"{broken}:2: ERR_NGROK_2236: policy: ")
    assert "invalid JSON" in printed


# ----------------------------------------------------------------------- stdin, formats, flags


def test_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with_stdin(monkeypatch, URL_REWRITE_JSON.encode())
    assert check("-") == 0
    assert capsys.readouterr().out == (
        "<stdin>: valid Traffic Policy for https endpoints: 1 rule in on_http_request\n"
    )
    with_stdin(monkeypatch, b"on_http_request:\n  - actions: [{type: nope}]\n")
    assert check("-") == 1
    assert capsys.readouterr().out.startswith("<stdin>:2: ERR_NGROK_2201: ")
    monkeypatch.setattr(sys, "stdin", None)  # started with stdin closed
    assert check("-") == 2
    assert capsys.readouterr().err == (
        "burrow-edge: policy check: cannot read <stdin>: there is no standard input\n"
    )


def test_format_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, BASIC_AUTH_YAML)
    assert check(good, "--format", "json") == 0
    assert json.loads(capsys.readouterr().out) == {"valid": True, "errors": []}
    bad = write(tmp_path, "on_http_request:\n  - name: r\n    actions: [{type: deny, x: 1}]\n")
    assert check(bad, "--format", "json", "--protocol", "tls") == 1
    assert json.loads(capsys.readouterr().out) == {
        "valid": False,
        "errors": [
            {
                "code": "ERR_NGROK_2236",
                "message": 'on_http_request rule 0 ("r") action 0 (deny) (line 3): '
                "unknown key 'x'; expected one of type, config",
                "place": {
                    "phase": "on_http_request",
                    "rule_index": 0,
                    "rule_name": "r",
                    "action_index": 0,
                    "action_type": "deny",
                    "field": None,
                    "line": 3,
                },
            }
        ],
    }
    several = write(tmp_path, HTTPS_ONLY.replace("10.0.0.0/8", "10.0.0.0/99"))
    assert check(several, "--format", "json", "--protocol", "tcp") == 1
    errors = json.loads(capsys.readouterr().out)["errors"]
    assert [(e["code"], e["place"]["line"]) for e in errors] == [
        ("ERR_NGROK_2217", 4),
        ("ERR_NGROK_2230", 5),
    ]


def test_a_missing_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yml"
    assert check(str(missing)) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == (
        f"burrow-edge: policy check: cannot read {missing}: No such file or directory\n"
    )
    assert check(str(tmp_path)) == 2  # a directory
    assert capsys.readouterr().err.startswith(f"burrow-edge: policy check: cannot read {tmp_path}")


def test_an_unknown_protocol_or_format_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, BASIC_AUTH_YAML)
    assert check(file, "--protocol", "udp") == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == (
        "burrow-edge: policy check: unknown protocol 'udp' for --protocol: expected one of "
        "https, http, tcp, tls\n"
    )
    assert check(file, "--format", "xml") == 2
    assert capsys.readouterr().err == (
        "burrow-edge: policy check: unknown format 'xml' for --format: expected one of text, json\n"
    )


def test_an_oversized_document_is_refused_without_reading_all_of_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, "# " + "x" * (1024 * 1024) + "\n")
    assert check(file) == 1
    printed = capsys.readouterr().out
    assert printed.startswith(f"{file}: ERR_NGROK_2236: policy: ")
    # It read one byte over the limit, not the whole megabyte.
    assert f"the document is {256 * 1024 + 1} bytes, over the limit of {256 * 1024}" in printed


# ---------------------------------------------------------------------- the installed command


def test_the_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "burrow-edge"
    good = write(tmp_path, BASIC_AUTH_YAML)
    bad = write(tmp_path, HTTPS_ONLY, "tcp.yml")
    done = subprocess.run(
        [script, "policy", "check", good], check=False, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"{good}: valid Traffic Policy for https endpoints: 1 rule in on_http_request\n",
        "",
    )
    done = subprocess.run(
        [script, "policy", "check", "--protocol", "tls", bad],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout.startswith(f"{bad}:5: ERR_NGROK_2230: ")
