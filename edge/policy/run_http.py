"""The HTTP message actions: add-headers, remove-headers, custom-response, deny, redirect,
url-rewrite (DOCS `traffic-policy/actions/*`, reference/ngrok.md §4.3).

Each `run_*` takes the running phase and the action's config and returns `None` (go on) or
the `Answer`/`Hangup` that ends the phase.

Header values from `${...}` are rendered with CR, LF and NUL refused (ERR_NGROK_2238), so a
value a client sent can never start a header of its own. `redirect` and `url-rewrite` match
their RE2 `from` against the whole request URL (`scheme://host/path?query`, as ngrok does),
replace every match with `to`, where `$1`, `${1}` and `${name}` are capture groups exactly as
Go's `regexp.Expand` reads them (`$$` is a dollar; `$1x` names the group `1x`), and percent-
encode whatever a URL may not hold (spaces, controls, non-ASCII) so the result cannot break the
Location header or the request line.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any, Final

import re2  # type: ignore[import-untyped]  # google-re2 ships no type hints

from edge.policy.actions import (
    AddHeadersConfig,
    CustomResponseConfig,
    DenyConfig,
    RedirectConfig,
    RemoveHeadersConfig,
    UrlRewriteConfig,
)
from edge.policy.activation import full_url
from edge.policy.errors import ERR_NGROK_2253, Place, PolicyRuntimeError
from edge.policy.interpolation import Template
from edge.policy.phase import Answer, Hangup, PhaseRun

__all__ = [
    "expand",
    "pattern_for",
    "replace_every",
    "run_add_headers",
    "run_custom_response",
    "run_deny",
    "run_redirect",
    "run_remove_headers",
    "run_url_rewrite",
]

# RFC 3986 reserved and unreachable-to-harm characters kept as they are; `%` too, so an
# already-escaped URL is not escaped twice.
_URL_SAFE: Final = ":/?#[]@!$&'()*+,;=%-._~"
_TARGET_SAFE: Final = _URL_SAFE.replace("#", "")  # a request target has no fragment
_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def run_add_headers(run: PhaseRun, config: AddHeadersConfig, place: Place) -> None:
    added: dict[str, str] = {}
    for name, template in config.headers:
        value = run.render(template, place, field=f"config.headers.{name}", header_value=True)
        run.add_header(name, value)
        added[name] = value
    run.set_result("add_headers", {"headers_added": added})


def run_remove_headers(run: PhaseRun, config: RemoveHeadersConfig, place: Place) -> None:
    removed = [name for name in config.headers if run.remove_header(name)]
    run.set_result("remove_headers", {"headers_removed": removed})


def run_deny(run: PhaseRun, config: DenyConfig, place: Place) -> Answer | Hangup:
    if config.status_code is None:
        return Hangup("deny")
    return Answer(config.status_code)


def _infer_content_type(body: str) -> str:
    stripped = body.lstrip()
    if stripped[:1] in {"{", "["}:
        try:
            json.loads(stripped)
        except ValueError:
            pass
        else:
            return "application/json"
    if stripped[:1] == "<":
        return "text/html; charset=utf-8"
    return "text/plain; charset=utf-8"


def run_custom_response(run: PhaseRun, config: CustomResponseConfig, place: Place) -> Answer:
    headers = [
        (name, run.render(template, place, field=f"config.headers.{name}", header_value=True))
        for name, template in config.headers
    ]
    body = "" if config.body is None else run.render(config.body, place.at_field("config.body"))
    if body and not any(name == "content-type" for name, _ in headers):
        headers.append(("content-type", _infer_content_type(body)))
    return Answer(config.status_code, tuple(headers), body.encode("utf-8"))


def replace_every(text: str, pattern: Any, to: str) -> str:
    """`text` with every match of the compiled RE2 `pattern` replaced by `to`, its groups
    expanded as Go's `regexp.Expand` does (the body find-replace actions)."""
    names = dict(pattern.groupindex)
    pieces: list[str] = []
    position = 0
    for match in pattern.finditer(text):
        pieces.append(text[position : match.start()])
        pieces.append(expand(to, match, names))
        position = match.end()
    if not pieces:
        return text
    pieces.append(text[position:])
    return "".join(pieces)


def expand(template: str, match: Any, names: dict[str, int]) -> str:
    """`template` with `$n`/`${n}`/`${name}` replaced by `match`'s groups (Go's Expand)."""
    out: list[str] = []
    rest = template
    while True:
        before, dollar, rest = rest.partition("$")
        out.append(before)
        if not dollar:
            return "".join(out)
        if rest.startswith("$"):
            out.append("$")
            rest = rest[1:]
            continue
        braced = rest.startswith("{")
        body = rest[1:] if braced else rest
        length = 0
        while length < len(body) and body[length] in _NAME_CHARS:
            length += 1
        name = body[:length]
        if not name or (braced and body[length : length + 1] != "}"):
            out.append("$")  # malformed: the dollar is literal text
            continue
        rest = body[length + 1 :] if braced else body[length:]
        group = int(name) if name.isdigit() else names.get(name)
        if group is not None and group <= match.re.groups:
            out.append(match.group(group) or "")


def pattern_for(run: PhaseRun, template: Template, place: Place) -> Any:
    """`template` rendered for this request and compiled as RE2 (ERR_NGROK_2253 if the
    rendered text is not a regular expression)."""
    text = run.render(template, place)
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(text, options)
    except re2.error as exc:
        raise PolicyRuntimeError(
            ERR_NGROK_2253,
            f"Failed to evaluate CEL expression on from for {place.action_type} at runtime: "
            f"{text!r} is not a valid regular expression ({exc})",
            place,
        ) from None


def _replace(
    run: PhaseRun, source: Template | None, target: Template, url: str, place: Place
) -> tuple[str, list[str]] | None:
    """The URL with every match of `source` replaced by `target`, and the first match's
    groups; None if `source` does not match."""
    to = run.render(target, place.at_field("config.to"))
    if source is None:
        return to, [url]
    pattern = pattern_for(run, source, place.at_field("config.from"))
    pieces: list[str] = []
    matches: list[str] = []
    position = 0
    for match in pattern.finditer(url):
        if not matches:
            matches = [match.group(i) or "" for i in range(match.re.groups + 1)]
        pieces.append(url[position : match.start()])
        pieces.append(expand(to, match, dict(pattern.groupindex)))
        position = match.end()
    if not matches:
        return None
    pieces.append(url[position:])
    return "".join(pieces), matches


def run_redirect(run: PhaseRun, config: RedirectConfig, place: Place) -> Answer | None:
    assert run.request is not None
    url = full_url(run.request)
    replaced = _replace(run, config.from_, config.to, url, place)
    if replaced is None:
        return None
    location = urllib.parse.quote(replaced[0], safe=_URL_SAFE)
    run.set_result("redirect", {"matches": replaced[1], "url": location})
    if location == url:
        return None  # ngrok: a redirect to the same URL does nothing
    headers = [
        (name, run.render(template, place, field=f"config.headers.{name}", header_value=True))
        for name, template in config.headers
    ]
    return Answer(config.status_code, (("location", location), *headers))


def run_url_rewrite(run: PhaseRun, config: UrlRewriteConfig, place: Place) -> None:
    assert run.request is not None
    url = full_url(run.request)
    replaced = _replace(run, config.from_, config.to, url, place)
    if replaced is None:
        return
    new = replaced[0]
    if new.startswith("/"):
        target = new
    elif "://" in new:
        parts = urllib.parse.urlsplit(new)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    else:
        target = "/" + new
    target = urllib.parse.quote(target, safe=_TARGET_SAFE)
    path, _, query = target.partition("?")
    run.set_result("url_rewrite", {"matches": replaced[1], "url": new})
    if target != run.request.target:
        run.rewrite_target(path, query)
