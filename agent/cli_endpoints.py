"""What `burrow http|tls|tcp UPSTREAM [flags]` asks for, as EndpointSettings.

Pure functions of the flags' values (they read only the certificate, key and CA files they are
given): the same rules as the config file (`agent.config`) for URLs, bindings and upstreams
(`protocol.formats.urls`), plus the command-line ones. Each command serves only its own schemes
(`burrow http`: https:// and http://, a random https name by default; `burrow tls`: tls://;
`burrow tcp`: tcp://). Flags that only make sense together or for one kind of upstream are
refused with a UsageError that names the flag, so a mistake is one line at startup rather than a
failure at the first connection; TLS material is loaded here for the same reason.
"""

from __future__ import annotations

from pathlib import Path

from agent.config import (
    MAX_METADATA_LENGTH,
    AgentTLSTermination,
    EndpointSettings,
    UpstreamSettings,
)
from agent.config_endpoints import read_policy_file
from agent.errors import UsageError
from agent.tls_contexts import TLSMaterialError, termination_context, upstream_context
from protocol.formats.urls import (
    EndpointURL,
    UpstreamURL,
    URLError,
    infer_binding,
    parse_endpoint_url,
    parse_upstream_url,
    validate_endpoint_url,
)

__all__ = ["CLI_ENDPOINT_NAME", "http_endpoint", "tcp_endpoint", "tls_endpoint"]

#: The name of the endpoint `burrow http|tls|tcp` creates, as ngrok names its command-line
#: tunnels.
CLI_ENDPOINT_NAME = "command_line"
#: Which flag of `burrow tls` gave each input of agent_tls_termination (for error messages).
_TLS_FLAGS = {
    "server_certificate": "--crt",
    "server_private_key": "--key",
    "mutual_tls_certificate_authorities": "--mutual-tls-cas",
}


def tcp_endpoint(
    addr: str,
    *,
    url: str | None = None,
    name: str = CLI_ENDPOINT_NAME,
    binding: str | None = None,
    pooling: bool = False,
    description: str = "",
    metadata: str = "",
    proxy_protocol: int | None = None,
    traffic_policy_file: str | None = None,
) -> EndpointSettings:
    """The endpoint `burrow tcp ADDR --url URL ...` asks for; raises UsageError if invalid."""
    endpoint_url, chosen = _endpoint_url("tcp", url, binding)
    target = _upstream_target(addr, endpoint_url)
    return _endpoint(
        name,
        endpoint_url,
        chosen,
        UpstreamSettings(
            url=str(target), protocol=None, proxy_protocol=proxy_protocol, target=target
        ),
        pooling=pooling,
        description=description,
        metadata=metadata,
        traffic_policy_file=traffic_policy_file,
    )


def http_endpoint(
    addr: str,
    *,
    url: str | None = None,
    name: str = CLI_ENDPOINT_NAME,
    binding: str | None = None,
    pooling: bool = False,
    description: str = "",
    metadata: str = "",
    proxy_protocol: int | None = None,
    upstream_protocol: str | None = None,
    tls_verify: bool | None = None,
    tls_verify_cas: str | None = None,
    traffic_policy_file: str | None = None,
    inspect: bool = True,
) -> EndpointSettings:
    """The endpoint `burrow http ADDR ...` asks for: an https:// URL (random unless `url`
    names one; http:// if it says so). `tls_verify` None means not given (verify); `inspect`
    (ngrok's `--inspect`, on by default) captures its requests for the inspector.
    Raises UsageError if invalid, including an unusable CA file."""
    endpoint_url, chosen = _endpoint_url("http", url, binding)
    target = _upstream_target(addr, endpoint_url)
    if upstream_protocol == "http2":
        raise UsageError(
            "--upstream-protocol http2: HTTP/2 to the upstream is not supported yet by the "
            "Burrow agent; use http1 (the default)"
        )
    if upstream_protocol not in (None, "http1"):
        raise UsageError(f"--upstream-protocol {upstream_protocol!r}: use http1")
    for flag, value in (
        ("--upstream-tls-verify", tls_verify),
        ("--upstream-tls-verify-cas", tls_verify_cas),
    ):
        if value is not None and target.scheme != "https":
            raise UsageError(
                f"{flag} applies to an https:// upstream, and the upstream is {target}; "
                "write it as https://HOST[:PORT] or drop the flag"
            )
    cas = None
    if tls_verify_cas is not None:
        if tls_verify is False:
            raise UsageError(
                "--upstream-tls-verify-cas has no effect with --upstream-tls-verify=false; "
                "drop one of them"
            )
        cas = _existing_file("--upstream-tls-verify-cas", tls_verify_cas)
        try:
            upstream_context(cas=cas)
        except TLSMaterialError as exc:
            raise UsageError(f"--upstream-tls-verify-cas {cas}: {exc}") from None
    upstream = UpstreamSettings(
        url=str(target),
        protocol=upstream_protocol,
        proxy_protocol=proxy_protocol,
        target=target,
        tls_verify=tls_verify is not False,
        tls_verify_cas=cas,
    )
    return _endpoint(
        name,
        endpoint_url,
        chosen,
        upstream,
        pooling=pooling,
        description=description,
        metadata=metadata,
        traffic_policy_file=traffic_policy_file,
        inspect=inspect,
    )


def tls_endpoint(
    addr: str,
    *,
    url: str | None = None,
    name: str = CLI_ENDPOINT_NAME,
    binding: str | None = None,
    pooling: bool = False,
    description: str = "",
    metadata: str = "",
    proxy_protocol: int | None = None,
    crt: str | None = None,
    key: str | None = None,
    mutual_tls_cas: str | None = None,
    traffic_policy_file: str | None = None,
) -> EndpointSettings:
    """The endpoint `burrow tls ADDR ...` asks for. With `crt` and `key` the agent terminates
    TLS (and with `mutual_tls_cas` checks client certificates); they are loaded here, so a bad
    file is a UsageError now rather than a failure at the first connection."""
    endpoint_url, chosen = _endpoint_url("tls", url, binding)
    target = _upstream_target(addr, endpoint_url)
    termination = None
    if (crt is None) != (key is None):
        raise UsageError(
            "--crt and --key go together: give both (the agent then terminates TLS) or neither"
        )
    if mutual_tls_cas is not None and crt is None:
        raise UsageError(
            "--mutual-tls-cas needs --crt and --key: the agent checks client certificates "
            "only on TLS it terminates itself"
        )
    if crt is not None and key is not None:
        if target.scheme == "tls":
            raise UsageError(
                f"upstream {addr!r} asks for TLS to the upstream, but with --crt/--key the "
                "agent sends it the decrypted bytes; write the upstream as HOST:PORT"
            )
        termination = AgentTLSTermination(
            server_certificate=_existing_file("--crt", crt),
            server_private_key=_existing_file("--key", key),
            mutual_tls_certificate_authorities=(
                (_existing_file("--mutual-tls-cas", mutual_tls_cas),) if mutual_tls_cas else ()
            ),
        )
        try:
            termination_context(
                termination.server_certificate,
                termination.server_private_key,
                termination.mutual_tls_certificate_authorities,
            )
        except TLSMaterialError as exc:
            flag = _TLS_FLAGS.get(exc.field, exc.field)
            raise UsageError(f"{flag}: {exc}") from None
    return _endpoint(
        name,
        endpoint_url,
        chosen,
        UpstreamSettings(
            url=str(target), protocol=None, proxy_protocol=proxy_protocol, target=target
        ),
        pooling=pooling,
        description=description,
        metadata=metadata,
        termination=termination,
        traffic_policy_file=traffic_policy_file,
    )


#: What each endpoint command serves: (endpoint schemes allowed, the default --url, the form to
#: suggest in errors).
_COMMAND_URLS = {
    "http": (("https", "http"), "", "https://HOST or http://HOST"),
    "tls": (("tls",), "tls://", "tls://HOST"),
    "tcp": (("tcp",), "tcp://", "tcp://HOST:PORT"),
}


def _endpoint_url(command: str, url: str | None, binding: str | None) -> tuple[EndpointURL, str]:
    """The endpoint URL for `burrow COMMAND --url URL --binding B`, and its binding."""
    schemes, default, form = _COMMAND_URLS[command]
    try:
        endpoint_url = parse_endpoint_url(url or default, default_scheme=schemes[0])
    except URLError as exc:
        raise UsageError(f"--url: {exc}") from None
    if endpoint_url.scheme not in schemes:
        others = [
            name
            for name, (allowed, _, _) in _COMMAND_URLS.items()
            if endpoint_url.scheme in allowed
        ]
        hint = f" (or use `burrow {others[0]}`)" if others else ""
        raise UsageError(
            f"--url {url!r}: `burrow {command}` serves "
            f"{' and '.join(s + '://' for s in schemes)} addresses; write {form}{hint}"
        )
    chosen = binding or infer_binding(endpoint_url)
    try:
        validate_endpoint_url(endpoint_url, binding=chosen)
    except URLError as exc:
        raise UsageError(f"--url: {exc}") from None
    return endpoint_url, chosen


def _upstream_target(addr: str, endpoint_url: EndpointURL) -> UpstreamURL:
    try:
        return parse_upstream_url(addr, endpoint_scheme=endpoint_url.scheme)
    except URLError as exc:
        raise UsageError(f"upstream {addr!r}: {exc}") from None


def _existing_file(flag: str, path: str) -> str:
    """`path` made absolute (relative to the working directory); it must be a file."""
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise UsageError(f"{flag} {path}: no such file")
    return str(resolved)


def _endpoint(
    name: str,
    endpoint_url: EndpointURL,
    binding: str,
    upstream: UpstreamSettings,
    *,
    pooling: bool,
    description: str,
    metadata: str,
    termination: AgentTLSTermination | None = None,
    traffic_policy_file: str | None = None,
    inspect: bool = False,
) -> EndpointSettings:
    if not name.strip():
        raise UsageError("--name must not be empty")
    policy_file = None
    if traffic_policy_file is not None:
        policy_file = _existing_file("--traffic-policy-file", traffic_policy_file)
        problem = read_policy_file(policy_file)
        if problem is not None:
            raise UsageError(f"--traffic-policy-file {traffic_policy_file}: {problem}")
    for flag, text in (("--description", description), ("--metadata", metadata)):
        if len(text) > MAX_METADATA_LENGTH:
            raise UsageError(
                f"{flag} is {len(text)} characters long; the limit is {MAX_METADATA_LENGTH}"
            )
    return EndpointSettings(
        name=name,
        url=str(endpoint_url),
        upstream=upstream,
        pooling_enabled=pooling,
        description=description,
        metadata=metadata,
        bindings=(binding,),
        traffic_policy=None,
        traffic_policy_file=policy_file,
        agent_tls_termination=termination,
        inspect=inspect,
        endpoint_url=endpoint_url,
    )
