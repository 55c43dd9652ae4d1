"""Fetching jwt-validation's JSON Web Key Sets over HTTPS, and keeping them fresh: the I/O shell
around `edge.policy.jwk`.

Theory of operation. When an endpoint binds with a policy whose `jwt-validation` actions name
JWKS URLs (`jwks_urls`), the session starts `keep_jwks_fresh` for it in its own nursery and
cancels it when the endpoint goes away. One task per URL loops: fetch, put the keys in the
policy's `PolicyState.jwks` (`JwksCache`) usable until their refresh time plus
`jwks.max_stale`, sleep until the refresh time (the server's `Cache-Control: max-age`, bounded
by `jwks.min_refresh`..`jwks.max_refresh`, else `jwks.refresh_interval`), fetch again. A failed
fetch is logged at WARNING, recorded in the cache, and tried again after
`jwks.retry_interval`; the keys already held stay usable until their `usable_until`. The engine
only reads the cache: until a URL has keys, its requests get 503 (`edge.policy.run_jwt`).

Why trio + h11 and not urllib in a thread: the whole fetch (DNS, connect, TLS handshake,
request, every byte of the body) runs under one `trio.fail_after(jwks.fetch_timeout)`, and
cancelling it closes the socket at once. urllib's timeout applies to each socket operation
separately, so a server trickling a byte at a time could hold a worker thread far past any
bound, and an abandoned thread cannot be stopped. h11 is already the edge's HTTP/1.1 codec.

What a fetch accepts: an `https://` URL (validation refuses others), certificate and host
name checked against the system's trust store plus `jwks.ca_file`; a 200 answer (redirects
are not followed: a JWKS URL is configured exactly); at most `jwks.max_bytes` of body, which
must parse as a JWKS with at least one usable key. No proxy is used. Anything else raises
`JwksFetchError` with a message naming the URL.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import h11
import trio

from edge.config import JwksConfig
from edge.policy.actions_jwt import JwtValidationConfig
from edge.policy.jwk import Jwk, JwksCache, JwksError, parse_jwks
from edge.policy.validate import CompiledPolicy

__all__ = [
    "FetchedKeys",
    "JwksFetchError",
    "fetch_jwks",
    "jwks_ssl_context",
    "jwks_urls",
    "keep_jwks_fresh",
    "refresh_after",
]

log = logging.getLogger(__name__)

#: The response head of a JWKS server: 16 KiB is far above what any sends, and bounds h11's
#: buffer for a server that sends an endless head.
MAX_HEAD_BYTES: Final = 16 * 1024
_RECEIVE: Final = 16 * 1024
_MAX_AGE: Final = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.I)
_NO_CACHE: Final = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\s*(?:,|$)", re.I)


class JwksFetchError(Exception):
    """A JWKS could not be fetched or used; the message names the URL and the reason."""


@dataclass(frozen=True, slots=True)
class FetchedKeys:
    keys: tuple[Jwk, ...]
    cache_control: str | None  # the response's Cache-Control, for `refresh_after`


def jwks_urls(policy: CompiledPolicy) -> tuple[str, ...]:
    """Every JWKS URL the policy's jwt-validation actions name, once each, in document order."""
    seen: dict[str, None] = {}
    for rule in (*policy.on_tcp_connect, *policy.on_http_request, *policy.on_http_response):
        for action in rule.actions:
            if isinstance(action.config, JwtValidationConfig):
                seen.update(dict.fromkeys(action.config.jkus))
    return tuple(seen)


def refresh_after(cache_control: str | None, config: JwksConfig) -> float:
    """Seconds until keys fetched now are fetched again: `max-age` within the configured
    bounds; `no-cache`/`no-store` the lower bound; otherwise `refresh_interval`. Pure."""
    if cache_control:
        if _NO_CACHE.search(cache_control):
            return config.min_refresh
        match = _MAX_AGE.search(cache_control)
        if match is not None:
            return min(max(float(match.group(1)), config.min_refresh), config.max_refresh)
    return config.refresh_interval


def jwks_ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """A client context trusting the system store plus `ca_file` (PEM), checking host names.
    Loading a trust store reads files: call it in a worker thread from trio code.
    `ssl.SSLError`/`OSError` if `ca_file` cannot be read."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def _target(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise JwksFetchError(f"JWKS {url}: not an https:// URL")
    path = parts.path or "/"
    return parts.hostname, parts.port or 443, f"{path}?{parts.query}" if parts.query else path


def _events(connection: h11.Connection) -> Iterator[object]:
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            return
        yield event
        if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            return


async def _exchange(url: str, config: JwksConfig, context: ssl.SSLContext) -> FetchedKeys:
    host, port, target = _target(url)
    stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=context)
    async with stream:
        connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        authority = host if port == 443 else f"{host}:{port}"
        if ":" in host:
            authority = f"[{host}]" if port == 443 else f"[{host}]:{port}"
        request = h11.Request(
            method="GET",
            target=target,
            headers=[
                ("host", authority),
                ("accept", "application/jwk-set+json, application/json"),
                ("user-agent", "burrow-edge"),
                ("connection", "close"),
            ],
        )
        await stream.send_all(connection.send(request) + (connection.send(h11.EndOfMessage())))
        body = bytearray()
        cache_control: str | None = None
        while True:
            for event in _events(connection):
                if isinstance(event, h11.Response):
                    if event.status_code != 200:
                        raise JwksFetchError(f"JWKS {url}: answered {event.status_code}")
                    for name, value in event.headers:
                        if name == b"cache-control":
                            cache_control = value.decode("latin-1")
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > config.max_bytes:
                        raise JwksFetchError(
                            f"JWKS {url}: the document is larger than jwks.max_bytes "
                            f"({config.max_bytes} bytes)"
                        )
                elif isinstance(event, h11.EndOfMessage):
                    try:
                        return FetchedKeys(parse_jwks(bytes(body)), cache_control)
                    except JwksError as exc:
                        raise JwksFetchError(f"JWKS {url}: did not serve a JWKS: {exc}") from None
                elif isinstance(event, h11.ConnectionClosed):
                    raise JwksFetchError(f"JWKS {url}: the server closed before answering")
            data = await stream.receive_some(_RECEIVE)
            connection.receive_data(bytes(data))  # b"" is EOF: h11 then reports the end or an error


async def fetch_jwks(url: str, *, config: JwksConfig, context: ssl.SSLContext) -> FetchedKeys:
    """GET one JWKS and parse it, all within `config.fetch_timeout` seconds.

    Raises `JwksFetchError` naming the URL for every failure: timeout, DNS, refused
    connection, TLS (untrusted certificate, wrong host), a non-200 answer, a body over
    `config.max_bytes`, early EOF, malformed HTTP, or a document that is not a usable JWKS.
    Cancellation from outside propagates (the socket is closed first)."""
    try:
        with trio.fail_after(config.fetch_timeout):
            return await _exchange(url, config, context)
    except trio.TooSlowError:
        raise JwksFetchError(
            f"JWKS {url}: no complete answer within jwks.fetch_timeout ({config.fetch_timeout}s)"
        ) from None
    except (OSError, trio.BrokenResourceError, h11.ProtocolError, ValueError) as exc:
        # ValueError: UnicodeError from IDNA-encoding a host name that cannot be one.
        raise JwksFetchError(f"JWKS {url}: {type(exc).__name__}: {exc}") from None


async def _keep_one(
    url: str,
    cache: JwksCache,
    config: JwksConfig,
    context: ssl.SSLContext,
    clock: Callable[[], float],
) -> None:
    while True:
        try:
            fetched = await fetch_jwks(url, config=config, context=context)
        except JwksFetchError as exc:
            cache.failed(url, str(exc))
            log.warning("%s; trying again in %ss", exc, config.retry_interval)
            await trio.sleep(config.retry_interval)
            continue
        except Exception as exc:  # a bug here must not end the agent's session that runs us
            cache.failed(url, f"JWKS {url}: internal error: {exc!r}")
            log.exception(
                "JWKS %s: unexpected failure; trying again in %ss", url, config.retry_interval
            )
            await trio.sleep(config.retry_interval)
            continue
        wait = refresh_after(fetched.cache_control, config)
        now = clock()
        cache.put(url, fetched.keys, now=now, usable_until=now + wait + config.max_stale)
        log.info("JWKS %s: %d keys, next refresh in %ss", url, len(fetched.keys), wait)
        await trio.sleep(wait)


async def keep_jwks_fresh(
    urls: tuple[str, ...],
    cache: JwksCache,
    *,
    config: JwksConfig,
    clock: Callable[[], float] = time.time,
) -> None:
    """Fetch every URL now and keep refreshing it into `cache` until cancelled (see the module
    doc). Runs forever; never raises for a fetch that fails (it logs and retries). If
    `config.ca_file` cannot be loaded, logs an error and returns (nothing is ever fetched, so
    the endpoint's requests keep getting 503: fail closed). `clock` gives Unix seconds, the
    time base of the engine's `now`."""
    try:
        context = await trio.to_thread.run_sync(jwks_ssl_context, config.ca_file)
    except (OSError, ssl.SSLError) as exc:
        log.warning(
            "JWKS: cannot load jwks.ca_file %s: %s; no keys will be fetched", config.ca_file, exc
        )
        for url in urls:
            cache.failed(url, f"jwks.ca_file cannot be loaded: {exc}")
        return
    async with trio.open_nursery() as nursery:
        for url in urls:
            nursery.start_soon(_keep_one, url, cache, config, context, clock)
