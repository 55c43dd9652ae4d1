"""A credential's bind ACL: which endpoint hosts its agents may bind (ngrok.md §6.1).

Theory of operation. An ACL is the credential's list of rule strings, parsed once by `parse_acl`
into an `Acl` whose `allows(host)` the edge asks on every bind. ngrok's rule forms:

    bind:api.acme.com     exactly that host
    bind:*.acme.com       any host ending in ".acme.com", and "acme.com" itself
    bind:*   or   *       every host
    bind:region=eu        a label rule (also `bind:*=eu`, `bind:region=*`)

An empty ACL means no restriction. Any other rule must start with `bind:` (ngrok's
ERR_NGROK_10007). Label rules select ngrok's labeled tunnels; Burrow has no labels, so they parse
(an ngrok credential's ACL can be copied over unchanged) but never match a host. A non-empty
ACL of label rules only therefore allows no host at all, as it does on ngrok for URL binds.

Hosts in rules follow the one host-name rule (`protocol/formats/hostnames.py`): a rule can name
the hosts an endpoint can be bound on and nothing else (no '_', punycode for international
names, IP literals allowed). Matching is on the host alone and case-insensitive: a port
(`db.acme.com:5432`) and one trailing dot are dropped from the host asked about, so a TCP or TLS
endpoint is checked like an HTTP one.
A suffix matches at a label boundary only: `*.acme.com` does not allow `badacme.com`.

Pure: no I/O, no clock; values in, values out.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from protocol.formats.hostnames import HostnameError, parse_hostname

__all__ = [
    "ERR_NGROK_10007",
    "Acl",
    "AclError",
    "AclRule",
    "RuleKind",
    "parse_acl",
]

#: An ACL rule does not parse. ngrok documents the code for a rule without the `bind:` prefix;
#: Burrow uses it for every rule it cannot read, so a client sees one code for "fix your ACL".
ERR_NGROK_10007: Final = "ERR_NGROK_10007"

_PREFIX = "bind:"
# A label rule's key and value: anything but "=", whitespace and control characters, or "*".
_LABEL_PART_RE = re.compile(r"[^=\s\x00-\x1f\x7f]+")


class AclError(ValueError):
    """An ACL rule does not parse. `code` is ngrok's error code; the message names the rule."""

    def __init__(self, message: str, *, rule: str, code: str = ERR_NGROK_10007) -> None:
        super().__init__(message)
        self.message = message
        self.rule = rule
        self.code = code

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"


class RuleKind(enum.Enum):
    ANY = "any"  # bind:* or *
    EXACT = "exact"  # bind:host
    SUFFIX = "suffix"  # bind:*.suffix
    LABEL = "label"  # bind:key=value; never matches a host (Burrow has no labels)


@dataclass(frozen=True, kw_only=True, slots=True)
class AclRule:
    """One parsed rule. `value` is the host (EXACT), the suffix without "*." (SUFFIX),
    `key=value` (LABEL) or "" (ANY); `source` is the rule as written."""

    kind: RuleKind
    value: str
    source: str

    def allows(self, host: str) -> bool:
        """Whether this rule lets `host` (already normalized by `Acl.allows`) be bound."""
        if self.kind is RuleKind.ANY:
            return True
        if self.kind is RuleKind.EXACT:
            return host == self.value
        if self.kind is RuleKind.SUFFIX:
            return host == self.value or host.endswith("." + self.value)
        return False


@dataclass(frozen=True, kw_only=True, slots=True)
class Acl:
    """A parsed ACL. Build it with `parse_acl`; an empty one allows everything."""

    rules: tuple[AclRule, ...] = ()

    @property
    def unrestricted(self) -> bool:
        """True when every host is allowed: no rules, or a `bind:*` among them."""
        return not self.rules or any(rule.kind is RuleKind.ANY for rule in self.rules)

    def allows(self, host: str) -> bool:
        """Whether an agent holding this ACL may bind an endpoint on `host`.

        `host` may carry a port (`db.acme.com:5432`, `[::1]:80`); it is ignored, as are case
        and one trailing dot. Never raises.
        """
        if not self.rules:
            return True
        normalized = _normalize_host(host)
        return any(rule.allows(normalized) for rule in self.rules)


def parse_acl(rules: Sequence[str]) -> Acl:
    """Parse a credential's ACL rule strings.

    Raises `AclError` (code ERR_NGROK_10007, the message naming the rule and its position) for
    the first rule that does not parse; a bare string instead of a list is refused too, since
    iterating it would read each character as a rule.
    """
    if isinstance(rules, str):
        raise AclError(f"an ACL is a list of rules, not one string: write [{rules!r}]", rule=rules)
    return Acl(rules=tuple(_parse_rule(rule, index) for index, rule in enumerate(rules)))


def _parse_rule(rule: str, index: int) -> AclRule:
    where = f"ACL rule {index + 1} ({rule!r})"
    if not isinstance(rule, str):
        raise AclError(f"ACL rule {index + 1} must be a string, not {type(rule).__name__}", rule="")
    if rule == "*":
        return AclRule(kind=RuleKind.ANY, value="", source=rule)
    if not rule.startswith(_PREFIX):
        raise AclError(
            f"{where} does not start with 'bind:'; write e.g. 'bind:{rule}' or 'bind:*.{rule}'",
            rule=rule,
        )
    body = rule[len(_PREFIX) :]
    if body == "*":
        return AclRule(kind=RuleKind.ANY, value="", source=rule)
    if "=" in body:
        key, _, value = body.partition("=")
        if not (_LABEL_PART_RE.fullmatch(key) and _LABEL_PART_RE.fullmatch(value)):
            raise AclError(f"{where} is not a label rule of the form 'bind:key=value'", rule=rule)
        return AclRule(kind=RuleKind.LABEL, value=body, source=rule)
    if "://" in body:
        raise AclError(
            f"{where} is a URL; ACL rules name hosts, so write 'bind:' and the host alone",
            rule=rule,
        )
    try:
        # The one host-name rule, so a rule can name exactly the hosts an endpoint can have.
        host = parse_hostname(body, wildcard=True, ip=True)
    except HostnameError as exc:
        if body.rpartition(":")[2].isdigit():  # `host:443`; an IPv6 literal parsed above
            raise AclError(
                f"{where} names a port; ACL rules match hosts only, so drop the ':port'", rule=rule
            ) from None
        raise AclError(
            f"{where} is not a host name, '*.suffix', '*' or 'key=value' after 'bind:': "
            f"{exc.problem}",
            rule=rule,
        ) from None
    if host.startswith("*."):
        return AclRule(kind=RuleKind.SUFFIX, value=host[2:], source=rule)
    return AclRule(kind=RuleKind.EXACT, value=host, source=rule)


def _normalize_host(host: str) -> str:
    """`host` lower-cased, without a port or one trailing dot; "" if it is not a string."""
    if not isinstance(host, str):
        return ""
    host = host.lower()
    if host.startswith("["):  # [v6]:port or [v6]
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host[:-1] if host.endswith(".") else host
