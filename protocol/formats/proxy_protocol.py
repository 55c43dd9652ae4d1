"""The PROXY protocol (HAProxy, versions 1 and 2): encoding and parsing the header, sans-IO.

Theory of operation
-------------------
A proxy that relays a TCP connection can tell the server behind it who the real client is by
writing one header before any payload (haproxy `doc/proxy-protocol.txt`):

* **v1**, text: `PROXY TCP4 203.0.113.5 10.0.0.6 51234 5432\\r\\n`. `TCP6` for IPv6;
  `PROXY UNKNOWN ...\\r\\n` when the sender does not know the addresses. A receiver never reads
  more than 107 bytes looking for the CRLF.
* **v2**, binary: the 12-byte signature `\\r\\n\\r\\n\\x00\\r\\nQUIT\\n`, a version/command byte
  (`0x21`: version 2, PROXY; `0x20`: LOCAL, a health check that carries no addresses), a
  family/transport byte (`0x11` TCP over IPv4, `0x21` TCP over IPv6, ...), a 2-byte big-endian
  length, then the address block (4+4+2+2 or 16+16+2+2 bytes) and optional TLVs.

The agent writes one to an endpoint's upstream when `upstream.proxy_protocol` asks for it, with
the public client as the source and the upstream as the destination. The two addresses of one
header share one family, so when one side is IPv4 and the other IPv6 the IPv4 address is written
as IPv4-mapped IPv6 (`::ffff:a.b.c.d`) and the header is TCP6; an IPv4-mapped input on both sides
is written as plain TCP4.

`parse` is the receiving side (tests' upstreams use it; so would an edge behind a load balancer):
it returns the header and how many bytes it took, `None` when more bytes are needed (a partial
header consumes nothing), or raises `ProxyProtocolError` as soon as the bytes cannot be a header.
Nothing here does I/O.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import struct
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "V1_MAX_LENGTH",
    "V2_HEADER_MAX_LENGTH",
    "V2_SIGNATURE",
    "Command",
    "Family",
    "ProxyProtocolError",
    "ProxyProtocolHeader",
    "SocketAddress",
    "encode_v1",
    "encode_v2",
    "parse",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The longest v1 line a receiver must accept, CRLF included ("PROXY UNKNOWN" with the longest
#: TCP6 text after it); the spec forbids reading further when no CRLF has been seen.
V1_MAX_LENGTH = 107
#: The 12 bytes that open every v2 header; chosen by HAProxy never to start valid HTTP, TLS or
#: SSH traffic, and to stop a v1 parser early.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: Signature, version/command, family and the 2-byte length.
_V2_FIXED = struct.Struct("!12sBBH")
#: The whole v2 header, fixed part plus the largest length its 2-byte field can state: the most
#: a receiver ever buffers before `parse` decides.
V2_HEADER_MAX_LENGTH = _V2_FIXED.size + 0xFFFF

_V1_PREFIX = b"PROXY "
_V2_VERSION = 0x2
_MAX_PORT = 65535
_IPV4_BLOCK = struct.Struct("!4s4sHH")
_IPV6_BLOCK = struct.Struct("!16s16sHH")
_UNIX_BLOCK_SIZE = 216  # two 108-byte socket paths
# A decimal port without leading zeros (the spec forbids them, to avoid octal confusion).
_V1_PORT = re.compile(rb"0|[1-9][0-9]{0,4}")


class ProxyProtocolError(ValueError):
    """Bytes that are not a valid PROXY protocol header; the connection should be dropped."""


class Command(enum.Enum):
    """v2's command; every v1 header is PROXY."""

    LOCAL = 0x0  # sent by the proxy itself (a health check): use the real connection addresses
    PROXY = 0x1  # relayed on behalf of the source address


class Family(enum.Enum):
    """The address family and transport, as v2's family byte names them (v1: TCP4, TCP6, or
    UNSPEC for `UNKNOWN`)."""

    UNSPEC = 0x00
    TCP4 = 0x11
    UDP4 = 0x12
    TCP6 = 0x21
    UDP6 = 0x22
    UNIX_STREAM = 0x31
    UNIX_DGRAM = 0x32


_INET_BLOCKS = {
    Family.TCP4: _IPV4_BLOCK,
    Family.UDP4: _IPV4_BLOCK,
    Family.TCP6: _IPV6_BLOCK,
    Family.UDP6: _IPV6_BLOCK,
}


class SocketAddress(NamedTuple):
    """An IP address and a port; a pair, like the addresses of Python's socket module."""

    ip: IPAddress
    port: int

    @classmethod
    def parse(cls, text: str) -> SocketAddress:
        """`203.0.113.5:51234` or `[2001:db8::1]:443` (as ProxyHeader.ClientAddr writes them);
        raises ValueError for anything else, host names and ports over 65535 included."""
        host, sep, port_text = text.rpartition(":")
        if not sep or not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
            raise ValueError(f"{text!r} is not ip:port")
        if host.startswith("[") and host.endswith("]"):
            ip: IPAddress = ipaddress.IPv6Address(host[1:-1])
        else:
            ip = ipaddress.IPv4Address(host)
        return cls(ip, _checked_port(int(port_text)))

    def __str__(self) -> str:
        if isinstance(self.ip, ipaddress.IPv6Address):
            return f"[{self.ip}]:{self.port}"
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyProtocolHeader:
    """A parsed header. `source` and `destination` are None for LOCAL, v1 UNKNOWN, UNSPEC and
    UNIX families (the receiver then uses the connection's own addresses). `tlvs` holds v2's
    bytes after the address block, undecoded."""

    version: int
    command: Command
    family: Family
    source: SocketAddress | None
    destination: SocketAddress | None
    tlvs: bytes = b""


def encode_v1(source: SocketAddress, destination: SocketAddress) -> bytes:
    """The v1 line for a TCP connection from `source` to `destination`; ValueError for a port
    outside 0-65535."""
    _checked_port(source.port)
    _checked_port(destination.port)
    family, src, dst = _same_family(source.ip, destination.ip)
    if family is Family.TCP4:
        src_text, dst_text = str(src), str(dst)
    else:
        src_text, dst_text = _v6_text(src), _v6_text(dst)
    name = "TCP4" if family is Family.TCP4 else "TCP6"
    line = f"PROXY {name} {src_text} {dst_text} {source.port} {destination.port}\r\n"
    return line.encode("ascii")


def encode_v2(source: SocketAddress, destination: SocketAddress) -> bytes:
    """The v2 header (PROXY command, no TLVs) for a TCP connection from `source` to
    `destination`; ValueError for a port outside 0-65535."""
    _checked_port(source.port)
    _checked_port(destination.port)
    family, src, dst = _same_family(source.ip, destination.ip)
    block = _INET_BLOCKS[family].pack(src.packed, dst.packed, source.port, destination.port)
    command = (_V2_VERSION << 4) | Command.PROXY.value
    return _V2_FIXED.pack(V2_SIGNATURE, command, family.value, len(block)) + block


def parse(data: bytes | bytearray | memoryview) -> tuple[ProxyProtocolHeader, int] | None:
    """The header at the start of `data` and its length in bytes; None if `data` is a valid
    beginning of a header but not all of it yet. Raises ProxyProtocolError as soon as `data`
    cannot begin a v1 or v2 header (payload bytes after the header are never looked at)."""
    data = bytes(data[:V2_HEADER_MAX_LENGTH])
    if not data:
        return None
    if data[0] == V2_SIGNATURE[0]:
        return _parse_v2(data)
    if data[0] == _V1_PREFIX[0]:
        return _parse_v1(data)
    raise ProxyProtocolError(f"not a PROXY protocol header: starts with {data[:8]!r}")


# --- encoding helpers ----------------------------------------------------------------------


def _checked_port(port: int) -> int:
    if not 0 <= port <= _MAX_PORT:
        raise ValueError(f"port {port} is outside 0-65535")
    return port


def _same_family(src: IPAddress, dst: IPAddress) -> tuple[Family, IPAddress, IPAddress]:
    """Both addresses in one family: TCP4 if both are IPv4 (IPv4-mapped counts as IPv4), else
    TCP6 with any IPv4 address mapped into IPv6."""
    src, dst = _unmapped(src), _unmapped(dst)
    if isinstance(src, ipaddress.IPv4Address) and isinstance(dst, ipaddress.IPv4Address):
        return Family.TCP4, src, dst
    return Family.TCP6, _as_v6(src), _as_v6(dst)


def _unmapped(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _as_v6(ip: IPAddress) -> ipaddress.IPv6Address:
    if isinstance(ip, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(b"\x00" * 10 + b"\xff\xff" + ip.packed)
    return ip


def _v6_text(ip: IPAddress) -> str:
    """IPv6 as hex groups (the spec's form). Python 3.13 prints IPv4-mapped addresses with a
    dotted tail, so those are spelled out here for the same bytes on every version."""
    assert isinstance(ip, ipaddress.IPv6Address)
    mapped = ip.ipv4_mapped
    if mapped is None:
        return ip.compressed
    high, low = struct.unpack("!HH", mapped.packed)
    return f"::ffff:{high:x}:{low:x}"


# --- v1 ------------------------------------------------------------------------------------


def _parse_v1(data: bytes) -> tuple[ProxyProtocolHeader, int] | None:
    if not data.startswith(_V1_PREFIX[: len(data)]):
        raise ProxyProtocolError(f"not a PROXY protocol header: starts with {data[:8]!r}")
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        if len(data) >= V1_MAX_LENGTH:
            raise ProxyProtocolError(f"v1 header has no CRLF within {V1_MAX_LENGTH} bytes")
        if b"\n" in data:
            raise ProxyProtocolError("v1 header ends with a bare LF; it must end with CRLF")
        return None
    parts = data[:end].split(b" ")
    consumed = end + 2
    if len(parts) >= 2 and parts[1] == b"UNKNOWN":
        # "the receiver must ignore anything presented before the CRLF"
        header = ProxyProtocolHeader(
            version=1, command=Command.PROXY, family=Family.UNSPEC, source=None, destination=None
        )
        return header, consumed
    if len(parts) != 6:
        raise ProxyProtocolError(
            f"v1 header {data[:end]!r} does not have the form "
            "'PROXY TCP4|TCP6 SRC DST SRCPORT DSTPORT' (single spaces)"
        )
    _, proto, src, dst, sport, dport = parts
    address_type: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address]
    if proto == b"TCP4":
        family, address_type = Family.TCP4, ipaddress.IPv4Address
    elif proto == b"TCP6":
        family, address_type = Family.TCP6, ipaddress.IPv6Address
    else:
        raise ProxyProtocolError(f"v1 protocol {proto!r} is not TCP4, TCP6 or UNKNOWN")
    source = SocketAddress(_v1_ip(src, address_type), _v1_port(sport))
    destination = SocketAddress(_v1_ip(dst, address_type), _v1_port(dport))
    header = ProxyProtocolHeader(
        version=1, command=Command.PROXY, family=family, source=source, destination=destination
    )
    return header, consumed


def _v1_ip(
    text: bytes, address_type: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address]
) -> IPAddress:
    try:
        decoded = text.decode("ascii")
        if "%" in decoded:  # a zone id: valid for ipaddress, not in a PROXY header
            raise ValueError("zone id")
        return address_type(decoded)
    except (UnicodeDecodeError, ValueError):
        version = "IPv4" if address_type is ipaddress.IPv4Address else "IPv6"
        raise ProxyProtocolError(f"v1 address {text!r} is not an {version} address") from None


def _v1_port(text: bytes) -> int:
    if not _V1_PORT.fullmatch(text) or int(text) > _MAX_PORT:
        raise ProxyProtocolError(f"v1 port {text!r} is not a decimal 0-65535 without leading 0s")
    return int(text)


# --- v2 ------------------------------------------------------------------------------------


def _parse_v2(data: bytes) -> tuple[ProxyProtocolHeader, int] | None:
    signature = data[: len(V2_SIGNATURE)]
    if not V2_SIGNATURE.startswith(signature):
        raise ProxyProtocolError(f"not a PROXY protocol header: starts with {data[:12]!r}")
    if len(data) < _V2_FIXED.size:
        return None
    _, version_command, family_byte, length = _V2_FIXED.unpack_from(data)
    if version_command >> 4 != _V2_VERSION:
        raise ProxyProtocolError(f"v2 version nibble is {version_command >> 4}, not 2")
    try:
        command = Command(version_command & 0x0F)
    except ValueError:
        raise ProxyProtocolError(
            f"v2 command {version_command & 0x0F:#x} is neither LOCAL (0) nor PROXY (1)"
        ) from None
    try:
        family = Family(family_byte)
    except ValueError:
        raise ProxyProtocolError(f"v2 family byte {family_byte:#04x} is unknown") from None
    total = _V2_FIXED.size + length
    if len(data) < total:
        return None
    body = data[_V2_FIXED.size : total]
    block = _INET_BLOCKS.get(family)
    needed = block.size if block else _UNIX_BLOCK_SIZE if family.name.startswith("UNIX") else 0
    if length < needed:
        raise ProxyProtocolError(
            f"v2 length {length} is shorter than the {needed}-byte {family.name} address block"
        )
    source = destination = None
    if block is not None and command is Command.PROXY:
        src, dst, sport, dport = block.unpack_from(body)
        ip_type = ipaddress.IPv4Address if block is _IPV4_BLOCK else ipaddress.IPv6Address
        source = SocketAddress(ip_type(src), sport)
        destination = SocketAddress(ip_type(dst), dport)
    header = ProxyProtocolHeader(
        version=2,
        command=command,
        family=family,
        source=source,
        destination=destination,
        tlvs=body[needed:],
    )
    return header, total
