"""What a DNS host name is, for every part of Burrow that names, routes by or certifies a host.

Theory of operation. Endpoint URLs, the development CA, the front door's SNI check, bind ACL
rules and the edge config all take host names; they must agree, or a host one of them accepts
fails in another (a bound `https://my_app.example.com` that no certificate can name).
`parse_hostname` is that one rule; callers wrap its `HostnameError` in their own error type
(an alert, an ACL error, a URL error) but never decide validity themselves.

The rule, RFC 1123 §2.1 host names in the preferred name syntax of RFC 5890 §2.3.1 (LDH):

- dot-separated labels of ASCII letters, digits and '-', not starting or ending with '-';
- a label is 1 to 63 characters, the name at most 253 (without a trailing dot; RFC 1035);
- the last label is not all digits: no top-level domain is (RFC 3696 §2), and `127.1` or `8080`
  is a mistaken address, not a name;
- case-insensitive: the result is lower case;
- one trailing dot (a fully qualified name) is accepted and dropped, unless `trailing_dot` is
  False (SNI carries names without it, RFC 6066 §3);
- no underscores: certificate authorities may not name them (CA/Browser Forum ballot SC12,
  2019), so neither public CAs nor Burrow's development CA can issue for such a host. Only a name
  handed to a resolver and never served or certified (an upstream address) may allow them;
- international names as A-labels (`xn--...`); Unicode is refused with the A-label to write
  instead, unless `idna` asks for the conversion (names a person types, as in endpoint URLs);
- `*` only as the whole first label, over at least one more, and only with `wildcard`;
- IP literals (IPv4, IPv6 without brackets or zone id) only with `ip`; returned canonical.

Pure: no DNS, no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

__all__ = [
    "MAX_LABEL_LENGTH",
    "MAX_NAME_LENGTH",
    "HostnameError",
    "parse_hostname",
]

#: RFC 1035 §2.3.4: a label is at most 63 octets.
MAX_LABEL_LENGTH: Final = 63
#: RFC 1035 §3.1: 255 octets on the wire is 253 characters written without the trailing dot.
MAX_NAME_LENGTH: Final = 253
# How much of a bad name an error message repeats: any name of a legal length and then some, so
# a too-long name still shows whole, but not the whole of a megabyte of junk.
_SHOWN_MAX = 300

_LDH: Final = re.compile(r"[a-z0-9-]+", re.ASCII)
_LDH_UNDERSCORE: Final = re.compile(r"[a-z0-9_-]+", re.ASCII)
_NOT_LDH_UNDERSCORE: Final = re.compile(r"[^a-z0-9_-]", re.ASCII)
_PART_HINT = "use letters, digits and '-' (not at either end), at most 63 characters"


class HostnameError(ValueError):
    """A name that is not a host name where it was given.

    `name` is the text as given; `problem` says what is wrong with it, without repeating it;
    `str()` says both.
    """

    def __init__(self, name: str, problem: str) -> None:
        shown = name if len(name) <= _SHOWN_MAX else name[: _SHOWN_MAX - 3] + "..."
        super().__init__(f"{shown!r} is not a valid host name: {problem}")
        self.name = name
        self.problem = problem


def parse_hostname(
    text: str,
    *,
    wildcard: bool = False,
    ip: bool = False,
    trailing_dot: bool = True,
    idna: bool = False,
    underscore: bool = False,
) -> str:
    """`text` as a canonical host name (see the module docstring); raise `HostnameError` if not.

    The result is lower-case ASCII without a trailing dot; `*.` kept for a wildcard; an IP
    literal in its canonical form (`::1`, `10.0.0.1`). Flags widen the rule where a caller's
    context allows more: `wildcard` a leading `*.`, `ip` IP literals, `idna` Unicode names
    (converted to A-labels), `underscore` '_' in labels (resolver names only: never a name the
    edge serves, routes by or certifies). `trailing_dot=False` refuses a trailing dot.

    Raises only `HostnameError`, whose message names `text` and the first thing wrong with it.
    """
    # Only text that could be an address pays for the parse (the SNI check is on a hot path).
    if ":" in text or text[-1:].isdigit():
        address = _ip_literal(text)
        if address is not None:
            if not ip:
                raise HostnameError(text, "it is an IP address, and a host name is needed here")
            return address
    name = text
    if not name.isascii():
        name = _a_labels(text, convert=idna)
    name = name.lower()
    if name.endswith("."):
        if not trailing_dot:
            raise HostnameError(text, "it ends in a dot; write it without the trailing dot")
        name = name[:-1]
    if not name:
        raise HostnameError(text, "it is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise HostnameError(text, f"it is longer than {MAX_NAME_LENGTH} characters ({len(name)})")
    labels = name.split(".")
    if labels[0] == "*" and wildcard:
        if len(labels) == 1:
            raise HostnameError(
                text, "'*' may only be the first part of a host, as in *.example.com, not all of it"
            )
        labels = labels[1:]
    if any("*" in label for label in labels):
        where = "" if wildcard else ", and wildcards are not allowed here"
        raise HostnameError(
            text, f"'*' may only be the first part of a host, as in *.example.com{where}"
        )
    pattern = _LDH_UNDERSCORE if underscore else _LDH
    for label in labels:
        if not (pattern.fullmatch(label) and len(label) <= MAX_LABEL_LENGTH) or (
            label[0] == "-" or label[-1] == "-"
        ):
            raise HostnameError(
                text,
                f"{label!r} is not a valid host name part: {_label_problem(label, underscore)}",
            )
    if labels[-1].isdigit():
        raise HostnameError(
            text,
            "it is neither a host name nor an IPv4 address (its last part is all digits, "
            "which no top-level domain is)",
        )
    return name


def _ip_literal(text: str) -> str | None:
    """The canonical form of `text` if it is an IP address, else None; zone ids are refused."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        raise HostnameError(text, "IPv6 zone ids ('%...') cannot be used in a host")
    return str(address)


def _a_labels(text: str, *, convert: bool) -> str:
    """`text`'s A-label (punycode) form if `convert`; otherwise refuse it, naming that form."""
    try:
        ascii_name = text.encode("idna").decode("ascii")
    except UnicodeError:
        raise HostnameError(text, "it is not a valid international name") from None
    if not convert:
        raise HostnameError(
            text,
            "it is not ASCII; write an international name in its punycode (A-label) form, "
            f"{ascii_name!r}",
        )
    return ascii_name


def _label_problem(label: str, underscore: bool) -> str:
    """Why `label`, which failed the rule, fails it: the first problem in reading order."""
    if label == "":
        return "it is empty: two dots in a row, or a dot at the start"
    if len(label) > MAX_LABEL_LENGTH:
        return f"it is {len(label)} characters long; {_PART_HINT}"
    bad = _NOT_LDH_UNDERSCORE.search(label)
    if bad is not None:
        return f"it contains {bad.group()!r}; {_PART_HINT}"
    if "_" in label and not underscore:
        return (
            "it contains '_', which no certificate may name (public CAs refuse it since "
            "CA/Browser Forum ballot SC12, and so does Burrow's development CA); use '-' instead"
        )
    end = "starts" if label[0] == "-" else "ends"
    return f"it {end} with '-'; {_PART_HINT}"
