"""ngrok's deprecated endpoint flags on `burrow http|tls|tcp`: mapped to today's flags, or refused.

ngrok 3.36 and later still accept the flags it deprecated in favour of `--url` and Traffic
Policy, hide them from `--help` and print a warning (reference §2.1). Burrow does the same for
the ones that say where the endpoint is or how to reach the upstream:

    --domain HOST, --hostname HOST   -> --url HOST (https://HOST), tls://HOST for `burrow tls`
    --scheme http|https              -> the --url scheme (`burrow http` only)
    --remote-addr HOST:PORT          -> --url tcp://HOST:PORT (`burrow tcp`)
    --proxy-proto 1|2                -> --upstream-proxy-protocol
    --policy-file PATH               -> --traffic-policy-file

and refuses, by name and with what to do instead, the ones it cannot honour: `--subdomain` (the
agent does not know the edge's domain: give the whole name with --url), `--scheme http,https`
(two endpoints), and the module flags that became Traffic Policy actions (`--basic-auth`,
`--oauth`, `--compression`, ...). A deprecated flag given together with the flag that replaces
it is an error, not a silent choice.

Pure: `apply_deprecated_flags` rewrites the parsed arguments and returns the warning lines; the
command line logs them.
"""

from __future__ import annotations

import argparse

from agent.errors import UsageError

__all__ = ["REFUSED_FLAGS", "add_deprecated_flags", "apply_deprecated_flags"]

#: Deprecated ngrok flags Burrow cannot honour, and what to do instead.
REFUSED_FLAGS = {
    "--subdomain": "give the whole name with --url, e.g. --url https://NAME.<the edge's domain>",
    "--basic-auth": "use a Traffic Policy basic-auth action (--traffic-policy-file)",
    "--oauth": "use a Traffic Policy oauth action (--traffic-policy-file)",
    "--oidc": "use a Traffic Policy openid-connect action (--traffic-policy-file)",
    "--compression": "use a Traffic Policy compress-response action (--traffic-policy-file)",
    "--circuit-breaker": "not supported by Burrow",
    "--request-header-add": "use a Traffic Policy add-headers action (--traffic-policy-file)",
    "--request-header-remove": "use a Traffic Policy remove-headers action (--traffic-policy-file)",
    "--response-header-add": "use a Traffic Policy add-headers action (--traffic-policy-file)",
    "--response-header-remove": "use a Traffic Policy remove-headers action "
    "(--traffic-policy-file)",
    "--verify-webhook": "use a Traffic Policy verify-webhook action (--traffic-policy-file)",
    "--verify-webhook-secret": "use a Traffic Policy verify-webhook action (--traffic-policy-file)",
    "--host-header": "not supported by Burrow; the upstream sees the public Host",
    "--region": "Burrow has no regions: set agent.connect_url to the edge to use",
}
_DEST = "deprecated_"


def add_deprecated_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the deprecated flags of `burrow <command>` to `parser`, hidden from --help."""
    hidden = argparse.SUPPRESS
    flags = ["--proxy-proto", "--policy-file", *REFUSED_FLAGS]
    if command in ("http", "tls"):
        flags += ["--domain", "--hostname"]
    if command == "http":
        flags.append("--scheme")
    if command == "tcp":
        flags.append("--remote-addr")
    for flag in flags:
        dest = _DEST + flag.removeprefix("--").replace("-", "_")
        parser.add_argument(flag, dest=dest, default=None, help=hidden)


def _given(args: argparse.Namespace, flag: str) -> str | None:
    value = getattr(args, _DEST + flag.removeprefix("--").replace("-", "_"), None)
    return value if isinstance(value, str) else None


def apply_deprecated_flags(args: argparse.Namespace, command: str) -> list[str]:
    """Rewrite the deprecated flags in `args` into their replacements (in place); return one
    warning line per flag used. Raises UsageError for a refused flag or a conflict."""
    for flag, instead in REFUSED_FLAGS.items():
        if _given(args, flag) is not None:
            raise UsageError(
                f"{flag} is a deprecated ngrok flag Burrow does not support; {instead}"
            )
    warnings: list[str] = []
    url = _url(args, command, warnings)
    if url is not None:
        if args.url is not None:
            used = " and ".join(line.split()[0] for line in warnings)
            raise UsageError(f"--url and the deprecated {used} both give the URL; keep --url")
        args.url = url
    for old, new, dest in (
        ("--proxy-proto", "--upstream-proxy-protocol", "upstream_proxy_protocol"),
        ("--policy-file", "--traffic-policy-file", "traffic_policy_file"),
    ):
        value = _given(args, old)
        if value is None:
            continue
        if getattr(args, dest) is not None:
            raise UsageError(f"{new} and the deprecated {old} are both given; keep {new}")
        if dest == "upstream_proxy_protocol":
            if value not in ("1", "2"):
                raise UsageError(f"{old} {value}: expected 1 or 2")
            setattr(args, dest, int(value))
        else:
            setattr(args, dest, value)
        warnings.append(f"{old} is deprecated; use {new} {value}")
    return warnings


def _url(args: argparse.Namespace, command: str, warnings: list[str]) -> str | None:
    """The URL the deprecated host flags ask for, or None; appends their warnings."""
    if command == "tcp":
        address = _given(args, "--remote-addr")
        if address is None:
            return None
        url = f"tcp://{address}"
        warnings.append(f"--remote-addr is deprecated; use --url {url}")
        return url
    domain, flag = _given(args, "--domain"), "--domain"
    hostname = _given(args, "--hostname")
    if domain is not None and hostname is not None:
        raise UsageError("--domain and --hostname both give the host; use --url")
    if domain is None:
        domain, flag = hostname, "--hostname"
    scheme = _given(args, "--scheme") if command == "http" else None
    if scheme is not None and scheme not in ("http", "https"):
        raise UsageError(
            f"--scheme {scheme}: Burrow opens one endpoint per command; pass --url http://HOST "
            "or https://HOST, and run a second `burrow http` for the other scheme"
        )
    if domain is None and scheme is None:
        return None
    scheme = "tls" if command == "tls" else scheme or "https"
    url = f"{scheme}://{domain or ''}"
    if domain is not None:
        warnings.append(f"{flag} is deprecated; use --url {url}")
    if _given(args, "--scheme") is not None:
        warnings.append(f"--scheme is deprecated; use --url {url}")
    return url
