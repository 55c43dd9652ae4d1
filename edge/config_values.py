"""The edge config's value parsers: the text a person writes for one value, parsed.

Each takes a string (or number) from the file or a command line and returns the value, or raises
`ValueError` with a message fit to show (`TypeError` for a bool where a number is expected).
Durations and sizes are `protocol.formats.units`' grammar, shared with the agent's file; here a bare
number of seconds is a duration. Host names follow `protocol.formats.hostnames`.
"""

from __future__ import annotations

import ipaddress

from protocol.formats import hostnames, units
from protocol.formats.units import parse_size

__all__ = [
    "parse_duration",
    "parse_host",
    "parse_hostname",
    "parse_hostport",
    "parse_port_range",
    "parse_size",
]

_PORT_MAX = 65535


def parse_duration(value: str | float) -> float:
    """Seconds from `250ms`, `10s`, `1m30s`, `2h`, `1.5s`, or a bare number of seconds.

    Raises `ValueError` for anything else, including negative and non-finite numbers, and
    `TypeError` for a bool.
    """
    return units.parse_duration(value, syntax=units.DurationSyntax.SECONDS)


def parse_hostport(value: str) -> tuple[str, int]:
    """`(host, port)` from `127.0.0.1:8443`, `localhost:80` or `[::1]:8443` (port 0..65535).

    The host comes back without brackets. Raises `ValueError` for a missing host or port, an
    IPv6 address without brackets, or a host that is neither an IP address nor a hostname.
    """
    expected = "expected host:port like 127.0.0.1:8443 or [::1]:8443"
    if value.startswith("["):
        end = value.find("]")
        if end == -1 or value[end + 1 : end + 2] != ":":
            raise ValueError(f"{expected}, got {value!r}")
        host, port_text = value[1:end], value[end + 2 :]
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError(f"{host!r} in {value!r} is not an IPv6 address") from None
    else:
        host, separator, port_text = value.rpartition(":")
        if not separator:
            raise ValueError(f"{expected}, got {value!r} (no port)")
        if ":" in host:
            raise ValueError(f"write an IPv6 address in brackets, like [::1]:8443, not {value!r}")
        if not host:
            raise ValueError(
                f"{expected}, got {value!r} (no host; use 0.0.0.0 or [::] for all interfaces)"
            )
        host = parse_host(host)
    return host, _parse_port(port_text, value, minimum=0)


def parse_port_range(value: str | int) -> range:
    """The ports from `20000-20999` (both ends included), or one port; all within 1..65535.

    Raises `ValueError` for anything else or for a range whose low end is above its high end,
    and `TypeError` for a bool.
    """
    expected = "expected a port range like 20000-20999"
    if isinstance(value, bool):
        raise TypeError(f"{expected}, got {value!r}")
    low_text, dash, high_text = str(value).partition("-")
    if not dash:
        high_text = low_text
    low = _parse_port(low_text.strip(), str(value), minimum=1)
    high = _parse_port(high_text.strip(), str(value), minimum=1)
    if low > high:
        raise ValueError(f"port range {value!r} runs backwards; write the low port first")
    return range(low, high + 1)


def parse_host(value: str) -> str:
    """An IP address (normalised) or a DNS hostname (lower-cased); `ValueError` otherwise."""
    return _hostname(value, ip=True)


def parse_hostname(value: str) -> str:
    """A DNS hostname, lower-cased, without a trailing dot; `ValueError` otherwise."""
    return _hostname(value, ip=False)


def _hostname(value: str, *, ip: bool) -> str:
    """The one host-name rule (protocol/formats/hostnames.py), in this file's words."""
    try:
        return hostnames.parse_hostname(value, ip=ip)
    except hostnames.HostnameError as exc:
        raise ValueError(f"{value!r} is not a hostname: {exc.problem}") from None


def _parse_port(text: str, whole: str, *, minimum: int) -> int:
    if not text.isascii() or not text.isdigit() or not minimum <= int(text) <= _PORT_MAX:
        raise ValueError(f"port {text!r} in {whole!r} must be a number from {minimum} to 65535")
    return int(text)
