"""The SSL contexts built from endpoint settings, and errors that name the input at fault."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from agent.tls_contexts import (
    MIN_TLS_VERSION,
    TLSMaterialError,
    alpn_problem,
    read_pem,
    termination_context,
    upstream_context,
)

PEM = Path(__file__).parent / "configs" / "pem"  # made by pem/make_pem.py
CERT, KEY, CA = str(PEM / "server.pem"), str(PEM / "server.key"), str(PEM / "ca.pem")


def subjects(context: ssl.SSLContext) -> list[str]:
    return [dict(item[0] for item in ca["subject"])["commonName"] for ca in context.get_ca_certs()]


def test_termination_without_client_cas_asks_no_client_certificate() -> None:
    context = termination_context(CERT, KEY)
    assert context.verify_mode is ssl.CERT_NONE
    assert context.minimum_version is MIN_TLS_VERSION is ssl.TLSVersion.TLSv1_2
    assert subjects(context) == []


def test_termination_with_client_cas_requires_one_signed_by_them() -> None:
    context = termination_context(CERT, KEY, [CA])
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert subjects(context) == ["Burrow test CA"]


def test_inline_pem_is_the_same_as_a_path() -> None:
    inline = [Path(path).read_text() for path in (CERT, KEY, CA)]
    context = termination_context(inline[0], inline[1], [inline[2]])
    assert subjects(context) == ["Burrow test CA"]
    assert read_pem(inline[2], field="x") == Path(CA).read_bytes()


def test_a_chain_file_with_intermediates_loads(tmp_path: Path) -> None:
    root = trustme.CA()
    intermediate = root.create_child_ca()
    leaf = intermediate.issue_cert("secure.example.com")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key = tmp_path / "key.pem"
    leaf.private_key_pem.write_to_path(str(key))
    termination_context(str(chain), str(key))


@pytest.mark.parametrize(
    ("args", "field", "index", "message"),
    [
        ((str(PEM / "nope.pem"), KEY), "server_certificate", None, "cannot read .*nope.pem"),
        ((KEY, KEY), "server_certificate", None, "holds no PEM certificate"),
        ((CERT, CERT), "server_private_key", None, "holds no PEM private key"),
        ((CERT, str(PEM / "other.key")), "server_private_key", None, "does not match"),
        ((CERT, str(PEM / "encrypted.key")), "server_private_key", None, "is encrypted"),
        ((CERT, KEY, [CA, KEY]), "mutual_tls_certificate_authorities", 1, "no PEM certificate"),
    ],
)
def test_termination_errors_name_the_input(
    args: tuple[object, ...], field: str, index: int | None, message: str
) -> None:
    with pytest.raises(TLSMaterialError, match=message) as caught:
        termination_context(*args)  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.index) == (field, index)


def _handshake(server: ssl.SSLContext, client_alpn: list[str]) -> tuple[str | None, str | None]:
    """A real TLS handshake between `server` and a client offering `client_alpn` (nothing
    when empty), over memory BIOs; the protocol each side says was selected."""
    client_context = ssl.create_default_context(cafile=CA)
    if client_alpn:
        client_context.set_alpn_protocols(client_alpn)
    pipes = [ssl.MemoryBIO() for _ in range(4)]  # client in/out, server in/out
    client = client_context.wrap_bio(pipes[0], pipes[1], server_hostname="secure.example.com")
    served = server.wrap_bio(pipes[2], pipes[3], server_side=True)
    done = [False, False]
    for _ in range(10):
        for index, (end, outgoing) in enumerate(((client, pipes[1]), (served, pipes[3]))):
            if not done[index]:
                try:
                    end.do_handshake()
                    done[index] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in = pipes[2] if index == 0 else pipes[0]
            peer_in.write(outgoing.read())
        if all(done):
            break
    assert all(done), "the handshake did not complete"
    return client.selected_alpn_protocol(), served.selected_alpn_protocol()


def test_termination_selects_a_listed_alpn_protocol() -> None:
    context = termination_context(CERT, KEY, alpn=["postgresql"])
    assert _handshake(context, ["postgresql"]) == ("postgresql", "postgresql")
    # Of the protocols the client offers, the first one the list names is selected.
    both = termination_context(CERT, KEY, alpn=["h2", "postgresql"])
    assert _handshake(both, ["postgresql"]) == ("postgresql", "postgresql")


def test_termination_without_a_match_completes_with_no_protocol() -> None:
    """Documented behaviour: a client offering only unlisted protocols (or none) still
    connects, with no protocol selected; Python's ssl cannot send no_application_protocol."""
    context = termination_context(CERT, KEY, alpn=["postgresql"])
    assert _handshake(context, ["h2"]) == (None, None)
    assert _handshake(context, []) == (None, None)


def test_termination_without_alpn_ignores_the_offer() -> None:
    assert _handshake(termination_context(CERT, KEY), ["postgresql"]) == (None, None)


@pytest.mark.parametrize(
    ("alpn", "index", "message"),
    [
        (["postgresql", ""], 1, "is empty"),
        (["a b"], 0, "not printable ASCII"),
        (["é"], 0, "not printable ASCII"),
        (["x" * 256], 0, "at most 255"),
        (["h2", "postgresql", "h2"], 2, "'h2' is listed twice"),
    ],
)
def test_termination_refuses_bad_alpn_names(alpn: list[str], index: int, message: str) -> None:
    with pytest.raises(TLSMaterialError, match=message) as caught:
        termination_context(CERT, KEY, alpn=alpn)
    assert (caught.value.field, caught.value.index) == ("alpn_protocols", index)


def test_alpn_names_up_to_255_bytes_are_accepted() -> None:
    assert alpn_problem("x" * 255) is None
    assert alpn_problem("postgresql") is None
    assert alpn_problem(5) is not None
    with pytest.raises(TypeError, match="not the string"):
        termination_context(CERT, KEY, alpn="postgresql")


def test_a_truncated_certificate_is_reported(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pem"
    lines = Path(CERT).read_text().splitlines()
    truncated.write_text("\n".join(lines[:3] + lines[-1:]) + "\n")
    with pytest.raises(TLSMaterialError, match=r"cannot be parsed.*check that the file"):
        termination_context(str(truncated), KEY)


def test_upstream_context_verifies_against_the_system_store_by_default() -> None:
    context = upstream_context()
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert context.minimum_version is MIN_TLS_VERSION


def test_upstream_context_with_cas_trusts_only_them() -> None:
    context = upstream_context(cas=CA)
    assert subjects(context) == ["Burrow test CA"]
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)


def test_upstream_context_without_verification() -> None:
    context = upstream_context(verify=False)
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_NONE, False)


def test_upstream_context_with_a_bad_ca_file() -> None:
    with pytest.raises(TLSMaterialError, match="holds no PEM certificate") as caught:
        upstream_context(cas=KEY)
    assert caught.value.field == "tls_verify_cas"
