"""The two proxy handshakes, sans-IO: HTTP CONNECT (through h11) and SOCKS5 (RFC 1928/1929).

Theory of operation
-------------------
Each handshake opens a byte tunnel to `host:port` through a proxy. It queues what to send
(`data_to_send()`), takes what the proxy sent (`receive_data(data)`, `b""` for EOF) and answers

* `None`: it needs more bytes (and may have queued more to send: SOCKS5 does after each reply);
* `bytes`: the tunnel is open; these are bytes the proxy sent past the handshake (normally
  none: the agent speaks first in the TLS that follows);
* or it raises `ProxyError`, whose message is one line a person can act on.

Nothing here knows sockets, clocks or logging; `agent.proxy_dial` drives a handshake over a
trio stream within a timeout. The host name is sent to the proxy as written (CONNECT's target,
SOCKS5's DOMAINNAME address type), so the proxy resolves it: the agent needs no DNS for it.

HTTP CONNECT: the request carries `Host` and, when the URL has credentials, `Proxy-
Authorization: Basic` (RFC 7617). A 2xx answer opens the tunnel (h11 then reports the switched
protocol and hands back any bytes past the head); 407 (or 401, tinyproxy's answer to a wrong
password) means the credentials were missing or refused; anything else is the proxy's refusal,
reported with its status line. The response head is capped at `MAX_RESPONSE_HEAD_SIZE` (h11's
incomplete-event limit); its body is never read.

SOCKS5: the state machine is the `_SOCKS_TRANSITIONS` table: greeting -> method chosen ->
(username/password sub-negotiation, RFC 1929) -> CONNECT reply. Each reply is parsed only once
it is whole; a partial reply consumes nothing.
"""

from __future__ import annotations

import base64
import enum
import ipaddress
import struct
from typing import Protocol

import h11

from agent.proxy_url import ProxyURL

__all__ = [
    "MAX_RESPONSE_HEAD_SIZE",
    "ConnectHandshake",
    "ProxyError",
    "ProxyHandshake",
    "Socks5Handshake",
    "handshake_for",
]

#: A proxy's answer to CONNECT is a status line and a few headers; 16 KiB is generous (squid's
#: error pages go in the body, which is never read) and bounds what a broken proxy can make us
#: buffer.
MAX_RESPONSE_HEAD_SIZE = 16 * 1024
#: RFC 1928: DOMAINNAME is sent behind a one-byte length.
MAX_SOCKS5_HOST_BYTES = 255
#: Sent on CONNECT so proxy logs say who asked.
USER_AGENT = "burrow-agent"

_SOCKS_VERSION = 0x05
_AUTH_VERSION = 0x01  # RFC 1929's sub-negotiation version
_METHOD_NONE = 0x00
_METHOD_USERPASS = 0x02
_METHOD_REFUSED = 0xFF
_CMD_CONNECT = 0x01
_ATYP_IPV4, _ATYP_DOMAIN, _ATYP_IPV6 = 0x01, 0x03, 0x04
# RFC 1928 §6 reply field meanings.
_SOCKS_REPLIES = {
    0x01: "general SOCKS server failure",
    0x02: "connection not allowed by the proxy's rules",
    0x03: "network unreachable",
    0x04: "host unreachable",
    0x05: "connection refused",
    0x06: "TTL expired",
    0x07: "command not supported",
    0x08: "address type not supported",
}


class ProxyError(Exception):
    """The proxy refused, or broke the handshake; `str()` is the one-line message."""


class ProxyHandshake(Protocol):
    def data_to_send(self) -> bytes: ...

    def receive_data(self, data: bytes) -> bytes | None: ...


def handshake_for(proxy: ProxyURL, host: str, port: int) -> ProxyHandshake:
    """The handshake that opens a tunnel to `host:port` through `proxy` (its first bytes are
    already queued)."""
    if proxy.scheme == "socks5":
        return Socks5Handshake(proxy, host, port)
    return ConnectHandshake(proxy, host, port)


def _target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _closed(proxy: ProxyURL, kind: str) -> ProxyError:
    return ProxyError(
        f"{kind} {proxy.address} closed the connection during the handshake (is it a "
        f"{proxy.scheme}:// proxy? check {proxy.source})"
    )


class ConnectHandshake:
    """`CONNECT host:port` to an HTTP proxy."""

    def __init__(self, proxy: ProxyURL, host: str, port: int) -> None:
        self._proxy = proxy
        self._target = _target(host, port)
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD_SIZE)
        headers = [("Host", self._target), ("User-Agent", USER_AGENT)]
        if proxy.has_credentials:
            pair = f"{proxy.username}:{proxy.password or ''}".encode()
            headers.append(("Proxy-Authorization", "Basic " + base64.b64encode(pair).decode()))
        request = h11.Request(method="CONNECT", target=self._target, headers=headers)
        self._outgoing = self._conn.send(request) + (self._conn.send(h11.EndOfMessage()) or b"")

    def data_to_send(self) -> bytes:
        out, self._outgoing = self._outgoing, b""
        return out

    def receive_data(self, data: bytes) -> bytes | None:
        self._conn.receive_data(data)
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                if not data:
                    raise _closed(self._proxy, "proxy") from None
                raise ProxyError(
                    f"proxy {self._proxy.address} sent a malformed answer to CONNECT ({exc})"
                ) from None
            if event is h11.NEED_DATA:
                if not data:
                    raise _closed(self._proxy, "proxy")
                return None
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                return self._answered(event)
            raise ProxyError(  # h11 yields a Response (or an error) first; this is a bug guard
                f"proxy {self._proxy.address}: unexpected {type(event).__name__} to CONNECT"
            )

    def _answered(self, response: h11.Response) -> bytes:
        status = response.status_code
        reason = response.reason.decode("latin-1", errors="replace").strip()
        where = f"proxy {self._proxy.address}"
        if 200 <= status < 300:
            leftover, _closed_after = self._conn.trailing_data
            return bytes(leftover)
        # 407 is the standard answer; tinyproxy answers wrong credentials with 401.
        if status in (401, 407):
            if self._proxy.has_credentials:
                raise ProxyError(
                    f"{where} refused the credentials ({status}); check the user name and password "
                    f"in {self._proxy.source}"
                )
            raise ProxyError(
                f"{where} requires credentials ({status} {reason}); put them in "
                f"{self._proxy.source} as http://user:password@host:port"
            )
        raise ProxyError(f"{where} refused CONNECT {self._target}: {status} {reason}".rstrip())


class _SocksState(enum.Enum):
    AWAIT_METHOD = "await method"
    AWAIT_AUTH = "await auth"
    AWAIT_REPLY = "await reply"
    OPEN = "open"


class _SocksInput(enum.Enum):
    NO_AUTH_CHOSEN = "no auth chosen"
    USERPASS_CHOSEN = "userpass chosen"
    AUTH_OK = "auth ok"
    CONNECTED = "connected"


# (state, input) -> next state; an input with no entry is a protocol error.
_SOCKS_TRANSITIONS = {
    (_SocksState.AWAIT_METHOD, _SocksInput.NO_AUTH_CHOSEN): _SocksState.AWAIT_REPLY,
    (_SocksState.AWAIT_METHOD, _SocksInput.USERPASS_CHOSEN): _SocksState.AWAIT_AUTH,
    (_SocksState.AWAIT_AUTH, _SocksInput.AUTH_OK): _SocksState.AWAIT_REPLY,
    (_SocksState.AWAIT_REPLY, _SocksInput.CONNECTED): _SocksState.OPEN,
}


class Socks5Handshake:
    """SOCKS5 CONNECT to `host:port`, with username/password auth when the URL has them."""

    def __init__(self, proxy: ProxyURL, host: str, port: int) -> None:
        self._proxy = proxy
        self._where = f"SOCKS5 proxy {proxy.address}"
        self._target = _target(host, port)
        self._request = self._connect_request(host, port)
        self._state = _SocksState.AWAIT_METHOD
        self._buffer = b""
        self._eof = False
        methods = [_METHOD_NONE, _METHOD_USERPASS] if proxy.has_credentials else [_METHOD_NONE]
        self._outgoing = bytes([_SOCKS_VERSION, len(methods), *methods])

    @property
    def state(self) -> str:
        return self._state.value

    def data_to_send(self) -> bytes:
        out, self._outgoing = self._outgoing, b""
        return out

    def receive_data(self, data: bytes) -> bytes | None:
        if self._state is _SocksState.OPEN:
            raise ProxyError(f"{self._where}: the handshake is already over")
        self._buffer += data
        self._eof = self._eof or not data
        while self._state is not _SocksState.OPEN:
            step = self._step()
            if step is None:
                if self._eof:
                    raise _closed(self._proxy, "SOCKS5 proxy")
                return None
            taken, event = step
            self._buffer = self._buffer[taken:]
            nxt = _SOCKS_TRANSITIONS.get((self._state, event))
            if nxt is None:  # unreachable through _step; guards the table
                raise ProxyError(f"{self._where}: unexpected {event.value} in {self._state.value}")
            self._state = nxt
            if nxt is _SocksState.AWAIT_AUTH:
                self._outgoing += self._auth_request()
            elif nxt is _SocksState.AWAIT_REPLY:
                self._outgoing += self._request
        leftover, self._buffer = self._buffer, b""
        return leftover

    # --- one whole reply each: (bytes taken, input) or None for "need more" ----------------

    def _step(self) -> tuple[int, _SocksInput] | None:
        if self._state is _SocksState.AWAIT_METHOD:
            return self._method_reply()
        if self._state is _SocksState.AWAIT_AUTH:
            return self._auth_reply()
        return self._connect_reply()

    def _method_reply(self) -> tuple[int, _SocksInput] | None:
        if len(self._buffer) < 2:
            return None
        version, method = self._buffer[0], self._buffer[1]
        self._check_version(version)
        if method == _METHOD_NONE:
            return 2, _SocksInput.NO_AUTH_CHOSEN
        if method == _METHOD_USERPASS and self._proxy.has_credentials:
            return 2, _SocksInput.USERPASS_CHOSEN
        if method == _METHOD_REFUSED:
            if self._proxy.has_credentials:
                raise ProxyError(
                    f"{self._where} accepts neither no authentication nor a user name and password"
                )
            raise ProxyError(
                f"{self._where} requires authentication; put a user name and password in "
                f"{self._proxy.source} as socks5://user:password@host:port"
            )
        raise ProxyError(f"{self._where} chose authentication method {method}, not offered")

    def _auth_reply(self) -> tuple[int, _SocksInput] | None:
        if len(self._buffer) < 2:
            return None
        # RFC 1929 says version 1; some servers echo 5. Only the status matters.
        if self._buffer[1] != 0x00:
            raise ProxyError(
                f"{self._where}: authentication failed; check the user name and password in "
                f"{self._proxy.source}"
            )
        return 2, _SocksInput.AUTH_OK

    def _connect_reply(self) -> tuple[int, _SocksInput] | None:
        if len(self._buffer) < 5:  # VER REP RSV ATYP and the first address byte
            return None
        version, reply, _reserved, atyp = self._buffer[:4]
        self._check_version(version)
        if reply != 0x00:
            meaning = _SOCKS_REPLIES.get(reply, "unknown error")
            raise ProxyError(
                f"{self._where} could not connect to {self._target}: {meaning} (reply {reply})"
            )
        if atyp == _ATYP_IPV4:
            size = 4 + 4 + 2
        elif atyp == _ATYP_IPV6:
            size = 4 + 16 + 2
        elif atyp == _ATYP_DOMAIN:
            size = 4 + 1 + self._buffer[4] + 2
        else:
            raise ProxyError(f"{self._where} sent an unknown address type {atyp} in its reply")
        if len(self._buffer) < size:
            return None
        return size, _SocksInput.CONNECTED

    def _check_version(self, version: int) -> None:
        if version != _SOCKS_VERSION:
            raise ProxyError(
                f"{self._where} did not answer as SOCKS5 (version byte {version}); is it a "
                f"SOCKS5 proxy? check {self._proxy.source}"
            )

    def _auth_request(self) -> bytes:
        user = (self._proxy.username or "").encode()
        password = (self._proxy.password or "").encode()
        return bytes([_AUTH_VERSION, len(user)]) + user + bytes([len(password)]) + password

    def _connect_request(self, host: str, port: int) -> bytes:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            try:
                name = host.encode("ascii")
            except UnicodeEncodeError:
                name = host.encode("idna")  # the proxy resolves the A-label form
            if not 1 <= len(name) <= MAX_SOCKS5_HOST_BYTES:
                raise ProxyError(
                    f"{self._where}: host name {host!r} is longer than SOCKS5's "
                    f"{MAX_SOCKS5_HOST_BYTES} bytes"
                ) from None
            encoded = bytes([_ATYP_DOMAIN, len(name)]) + name
        else:
            atyp = _ATYP_IPV4 if address.version == 4 else _ATYP_IPV6
            encoded = bytes([atyp]) + address.packed
        return bytes([_SOCKS_VERSION, _CMD_CONNECT, 0x00]) + encoded + struct.pack("!H", port)
