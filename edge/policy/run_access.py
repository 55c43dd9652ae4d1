"""The access actions: restrict-ips, basic-auth, rate-limit (DOCS `traffic-policy/actions/*`).

Each records its result variables (`actions.ngrok.restrict_ips.*`, `.basic_auth.*`,
`.rate_limit.*`) and, when it refuses and `enforce` is true (the default), ends the phase: 403
or a closed connection for restrict-ips, 401 with `WWW-Authenticate` for basic-auth, 429 with
`Retry-After` for rate-limit. With `enforce: false` it only records, and the traffic goes on.

restrict-ips matches the layer-4 client address (`conn.client_ip`, never X-Forwarded-For):
allowed when it is in some `allow` CIDR (or `allow` is empty) and in no `deny` CIDR.

basic-auth reads `Authorization: Basic <base64(user:password)>` (RFC 7617: the scheme in any
case, UTF-8 credentials, the first colon splits), and compares the SHA-256 of the presented
password with every stored digest and the username with every stored name, each with
`hmac.compare_digest` and without stopping at the first hit, so the time taken does not say
which part was wrong or which user exists.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
from typing import Final

from edge.policy.actions import BasicAuthConfig, RateLimitConfig, RestrictIpsConfig
from edge.policy.errors import ERR_NGROK_2253, Place, PolicyRuntimeError
from edge.policy.interpolation import Template
from edge.policy.phase import Answer, Hangup, PhaseRun, text_of

__all__ = ["parse_basic_credentials", "run_basic_auth", "run_rate_limit", "run_restrict_ips"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_NO_ERROR: Final = {"code": "", "message": ""}


def _networks(
    run: PhaseRun, entries: tuple[Network | Template, ...], field: str, place: Place
) -> list[Network]:
    networks: list[Network] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Template):
            networks.append(entry)
            continue
        where = place.at_field(f"config.{field}[{index}]")
        text = run.render(entry, where)
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise PolicyRuntimeError(
                ERR_NGROK_2253,
                f"Failed to evaluate CEL expression on {field} for restrict-ips at runtime: "
                f"{text!r} is not a CIDR",
                where,
            ) from None
    return networks


def _first_match(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: list[Network]
) -> Network | None:
    for network in networks:
        if network.version == address.version and address in network:
            return network
    return None


def run_restrict_ips(
    run: PhaseRun, config: RestrictIpsConfig, place: Place
) -> Answer | Hangup | None:
    allow = _networks(run, config.allow, "allow", place)
    deny = _networks(run, config.deny, "deny", place)
    try:
        address = ipaddress.ip_address(run.conn.client_ip)
    except ValueError:
        address = None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    denied_by = _first_match(address, deny) if address is not None else None
    allowed_by = _first_match(address, allow) if address is not None else None
    allowed = address is not None and denied_by is None and (not allow or allowed_by is not None)
    matched = denied_by or allowed_by
    run.set_result(
        "restrict_ips",
        {
            "action": "allow" if allowed else "deny",
            "matched_cidr": str(matched) if matched is not None else "",
            "error": dict(_NO_ERROR),
        },
    )
    if allowed or not config.enforce:
        return None
    if run.phase == "on_tcp_connect":
        return Hangup("restrict-ips")
    return Answer(403)


def parse_basic_credentials(headers: tuple[tuple[str, str], ...]) -> tuple[str, str] | None:
    """`(username, password)` from the one `Authorization: Basic` header; None if there is
    none, more than one, or it is malformed (not base64, not UTF-8, no colon)."""
    values = [value for name, value in headers if name.lower() == "authorization"]
    if len(values) != 1:
        return None
    scheme, _, token = values[0].strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    username, colon, password = decoded.partition(":")
    if not colon:
        return None
    return username, password


def run_basic_auth(run: PhaseRun, config: BasicAuthConfig, place: Place) -> Answer | None:
    presented = parse_basic_credentials(run.headers())
    authorized = False
    if presented is not None:
        name = presented[0].encode("utf-8")
        digest = hashlib.sha256(presented[1].encode("utf-8")).digest()
        for credential in config.credentials:  # no early exit: constant work per credential
            same_name = hmac.compare_digest(name, credential.username.encode("utf-8"))
            same_password = hmac.compare_digest(digest, credential.password_sha256)
            authorized |= same_name & same_password
    run.set_result(
        "basic_auth",
        {
            "credentials": {
                "presented": presented is not None,
                "username": presented[0] if presented is not None else "",
                "authorized": authorized,
            }
        },
    )
    if authorized or not config.enforce:
        return None
    challenge = f'Basic realm="{config.realm}", charset="UTF-8"'
    return Answer(401, (("www-authenticate", challenge),))


def run_rate_limit(run: PhaseRun, config: RateLimitConfig, place: Place) -> Answer | None:
    keys = tuple(
        text_of(
            key.value(
                run.activation, code=ERR_NGROK_2253, place=place.at_field(f"config.bucket_key[{i}]")
            )
        )
        for i, key in enumerate(config.bucket_key)
    )
    bucket = (place.phase, place.rule_index, place.action_index, config.name, keys)
    decision = run.state.hit(
        bucket, capacity=config.capacity, rate=config.rate_seconds, now=run.now
    )
    limited = not decision.allowed
    run.set_result(
        "rate_limit",
        {
            "bucket_key": ",".join(keys),  # the bucket itself is the tuple of keys
            "limited": limited,
            "error": dict(_NO_ERROR),
        },
    )
    if not limited or not config.enforce:
        return None
    return Answer(429, (("retry-after", str(decision.retry_after)),))
