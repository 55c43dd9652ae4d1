"""`edge.server`: the whole edge in-process on 127.0.0.1 port 0 (`serve_edge` under
`nursery.start`), and its two pure helpers, `agent_tls_context` and `mux_config`."""

from __future__ import annotations

import contextlib
import errno
import ssl
from pathlib import Path

import pytest
import trio
import trio.testing
import trustme

from edge.certs.ca import DevCA, client_context
from edge.cli.api_client import AdminClient
from edge.config import AdminConfig, EdgeConfig, LimitsConfig, ListenConfig, TlsConfig
from edge.server import (
    EdgeAddresses,
    ListenError,
    agent_tls_context,
    mux_config,
    prepare_data_dir,
    serve_edge,
)
from edge.store import SQLiteStore

LOOPBACK_ANY_PORT = ("127.0.0.1", 0)


def loopback_config(*, http: bool = True, admin: bool = True) -> EdgeConfig:
    return EdgeConfig(
        listen=ListenConfig(tls=LOOPBACK_ANY_PORT, http=LOOPBACK_ANY_PORT if http else None),
        admin=AdminConfig(enabled=admin, listen=LOOPBACK_ANY_PORT),
    )


async def refuses_connections(address: tuple[str, int]) -> bool:
    try:
        stream = await trio.open_tcp_stream(*address)
    except OSError:
        return True
    await stream.aclose()
    return False


async def test_serve_edge_reports_its_addresses_answers_and_stops_when_cancelled(
    tmp_path: Path,
) -> None:
    ca, store = prepare_data_dir(tmp_path / "data")
    config = loopback_config()
    _, api_key = store.create_api_key(description="test")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            addresses: EdgeAddresses = await nursery.start(serve_edge, config, ca, store)
            assert addresses.http is not None and addresses.admin is not None
            for host, port in (addresses.agents, addresses.http, addresses.admin):
                assert host == "127.0.0.1" and port != 0
            assert len({addresses.agents[1], addresses.http[1], addresses.admin[1]}) == 3

            # The admin API answers with the store's contents, to a real HTTP client.
            made, _ = store.create_credential(description="box")
            client = AdminClient(f"http://127.0.0.1:{addresses.admin[1]}", api_key, timeout=10)
            listed = await trio.to_thread.run_sync(client.list_credentials)
            assert [c["id"] for c in listed] == [made.id]

            # The public TLS port hands agents the certificate the development CA issued for
            # the connect host.
            tcp = await trio.open_tcp_stream(*addresses.agents)
            tls = trio.SSLStream(
                tcp, client_context(ca.ca_path), server_hostname=config.connect_host
            )
            await tls.do_handshake()
            await trio.aclose_forcefully(tls)

            nursery.cancel_scope.cancel()
    # serve_edge returned (the nursery exited): its listeners are closed.
    for address in (addresses.agents, addresses.http, addresses.admin):
        assert await refuses_connections(address), address
    store.close()


async def test_without_http_and_admin_only_the_tls_port_listens(tmp_path: Path) -> None:
    ca, store = prepare_data_dir(tmp_path / "data")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            addresses = await nursery.start(
                serve_edge, loopback_config(http=False, admin=False), ca, store
            )
            assert addresses.http is None and addresses.admin is None
            assert not await refuses_connections(addresses.agents)
            nursery.cancel_scope.cancel()
    store.close()


async def test_a_taken_port_is_an_os_error_before_starting(tmp_path: Path) -> None:
    ca, store = prepare_data_dir(tmp_path / "data")
    with trio.fail_after(30):
        [holder] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        taken = holder.socket.getsockname()[1]
        config = EdgeConfig(listen=ListenConfig(tls=("127.0.0.1", taken), http=None))
        try:
            async with trio.open_nursery() as nursery:
                with pytest.raises(OSError):
                    await nursery.start(serve_edge, config, ca, store)
        finally:
            await holder.aclose()
    store.close()


def test_prepare_data_dir_makes_a_private_directory_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "data"
    ca, store = prepare_data_dir(data_dir)
    store.create_credential(description="kept")
    store.close()
    assert data_dir.stat().st_mode & 0o777 == 0o700
    again_ca, again = prepare_data_dir(data_dir)
    with again:
        assert [c.description for c in again.list_credentials()] == ["kept"]
    assert again_ca.ca_pem == ca.ca_pem
    assert isinstance(again, SQLiteStore)


async def handshake(server: ssl.SSLContext, client: ssl.SSLContext, name: str) -> bytes | None:
    """A real TLS handshake over an in-memory stream pair: the server's leaf (DER), or None if
    the client refused the server's certificate."""
    client_raw, server_raw = trio.testing.memory_stream_pair()
    client_tls = trio.SSLStream(client_raw, client, server_hostname=name)
    server_tls = trio.SSLStream(server_raw, server, server_side=True)
    leaf: bytes | None = None

    async def server_side() -> None:
        # The client's verdict is what is checked; the server only sees the alert.
        with contextlib.suppress(trio.BrokenResourceError):
            await server_tls.do_handshake()

    async def client_side() -> None:
        nonlocal leaf
        try:
            await client_tls.do_handshake()
        except trio.BrokenResourceError as exc:
            assert isinstance(exc.__cause__, ssl.SSLCertVerificationError), exc.__cause__
            await trio.aclose_forcefully(client_raw)  # so the server side sees the end
            return
        leaf = client_tls.getpeercert(binary_form=True)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server_side)
            nursery.start_soon(client_side)
    return leaf


async def test_agent_tls_context_defaults_to_the_development_ca(tmp_path: Path) -> None:
    ca = DevCA.load_or_create(tmp_path)
    config = EdgeConfig(domain="edge.example.test")
    server = agent_tls_context(config, ca)
    trusting = client_context(ca.ca_path)
    # The connect host, and the names ngrok's SDKs may resolve to reach it.
    for name in ("connect.edge.example.test", "localhost"):
        assert await handshake(server, trusting, name) is not None, name
    assert await handshake(server, trusting, "other.example.test") is None


async def test_agent_tls_context_serves_the_configured_files(tmp_path: Path) -> None:
    authority = trustme.CA()
    leaf = authority.issue_cert("connect.edge.example.test")
    cert, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    config = EdgeConfig(domain="edge.example.test", tls=TlsConfig(cert=cert, key=key))
    server = agent_tls_context(config, DevCA.load_or_create(tmp_path / "ca"))
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    served = await handshake(server, trusting, "connect.edge.example.test")
    assert served == ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())


def test_mux_config_takes_the_configured_limits() -> None:
    limits = LimitsConfig(
        max_streams_per_session=7,
        stream_window_max=512 * 1024,
        session_buffer_bytes=8 * 1024 * 1024,
        accept_backlog=3,
    )
    made = mux_config(EdgeConfig(limits=limits))
    assert made.session.max_streams == 7
    assert made.session.max_stream_window == 512 * 1024
    assert made.session.session_window_budget == 8 * 1024 * 1024
    assert made.accept_backlog == 3


@pytest.mark.parametrize("key", ["listen.tls", "listen.http", "admin.listen"])
async def test_a_taken_port_names_its_config_key(tmp_path: Path, key: str) -> None:
    ca, store = prepare_data_dir(tmp_path / "data")
    with trio.fail_after(30):
        [holder] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        taken = ("127.0.0.1", holder.socket.getsockname()[1])
        free = ("127.0.0.1", 0)
        config = EdgeConfig(
            listen=ListenConfig(
                tls=taken if key == "listen.tls" else free,
                http=taken if key == "listen.http" else free,
            ),
            admin=AdminConfig(listen=taken if key == "admin.listen" else free),
        )
        caught: list[BaseException] = []
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(serve_edge, config, ca, store)
        except* ListenError as group:
            caught.extend(_leaves(group))
        finally:
            await holder.aclose()
    store.close()
    [error] = caught
    assert isinstance(error, ListenError) and error.key == key and error.errno == errno.EADDRINUSE
    assert str(error).startswith(f"cannot listen on 127.0.0.1:{taken[1]} ({key}): ")


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found
