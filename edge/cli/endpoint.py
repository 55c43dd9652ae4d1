"""`burrow-edge endpoint create|list|get|update|delete`: cloud endpoints, through the running
edge's admin API (ngrok's `/endpoints` shapes; `edge.admin.cloud_endpoints`).

Every command needs an API key: a cloud endpoint goes online (or changes, or goes offline) on
the running edge the moment the API answers, which an offline write to the store could not do.
The policy comes from a file (`--traffic-policy-file`, YAML or JSON, `-` for standard input)
and is sent as written; the edge validates it as it validates an agent's, and refuses one that
is not guaranteed to answer every request (ERR_NGROK_2235). A refusal prints the edge's message
and code and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.cli.api_client import AdminClient, ApiClientError
from edge.store import TRAFFIC_POLICY_MAX_BYTES

__all__ = ["add_endpoint_parser", "run_endpoint"]

#: Adds `--api-key` and `--api-url` to a subcommand (built by `edge.cli.main`).
ApiOptions = Callable[[argparse.ArgumentParser], None]


def add_endpoint_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], api_options: ApiOptions
) -> None:
    """Add `endpoint` and its actions to `burrow-edge`'s subcommands."""
    endpoint = commands.add_parser(
        "endpoint", help="manage cloud endpoints (needs the running edge and an API key)"
    )
    actions = endpoint.add_subparsers(dest="action", required=True, metavar="ACTION")

    def fields(p: argparse.ArgumentParser, *, create: bool) -> None:
        p.add_argument(
            "--url",
            required=create,
            help="the endpoint's URL, e.g. https://api.example.com or tls://db.example.com",
        )
        p.add_argument(
            "--traffic-policy-file",
            type=Path,
            required=create,
            metavar="FILE",
            help="the Traffic Policy (YAML or JSON; - reads standard input); its last "
            "on_http_request (on_tcp_connect for tls) rule must always answer",
        )
        p.add_argument("--description", help="free text, at most 255 bytes")
        p.add_argument("--metadata", help="free text for programs, at most 4096 bytes")
        p.add_argument(
            "--binding",
            choices=("public", "internal"),
            help="public, or internal (reached only through forward-internal); default: "
            "inferred from the host (.internal is internal)",
        )
        p.add_argument(
            "--pooling-enabled",
            choices=("true", "false"),
            help="whether the endpoint may share its URL with others (default false)",
        )

    def output(p: argparse.ArgumentParser) -> None:
        api_options(p)
        p.add_argument(
            "--json", action="store_true", help="print ngrok-shaped JSON, one object a line"
        )

    create = actions.add_parser("create", help="create a cloud endpoint: it serves at once")
    fields(create, create=True)
    output(create)
    listing = actions.add_parser("list", help="list endpoints, cloud and agent, newest first")
    listing.add_argument("--id", action="append", default=[], help="only this id (repeatable)")
    listing.add_argument("--url", action="append", default=[], help="only this URL (repeatable)")
    output(listing)
    get = actions.add_parser("get", help="show one endpoint")
    get.add_argument("id")
    output(get)
    update = actions.add_parser(
        "update", help="change a cloud endpoint: the change is live at once"
    )
    update.add_argument("id")
    fields(update, create=False)
    output(update)
    delete = actions.add_parser("delete", help="delete a cloud endpoint: it goes offline at once")
    delete.add_argument("id")
    api_options(delete)


def run_endpoint(args: argparse.Namespace, client: AdminClient) -> int:
    """Run one `endpoint` action against the admin API; `ApiClientError` for a refusal or an
    unreadable policy file (the caller prints it and exits 1)."""
    if args.action == "create":
        body: dict[str, Any] = {"type": "cloud", **_body(args)}
        _show(args, client.create_endpoint(body), "created")
    elif args.action == "list":
        for endpoint in client.list_endpoints(ids=args.id, urls=args.url):
            print(json.dumps(endpoint, separators=(",", ":")) if args.json else _line(endpoint))
    elif args.action == "get":
        _show(args, client.get_endpoint(args.id), None)
    elif args.action == "update":
        body = _body(args)
        if not body:
            raise ApiClientError(
                "nothing to update: give --url, --traffic-policy-file, --description, "
                "--metadata, --binding or --pooling-enabled"
            )
        _show(args, client.update_endpoint(args.id, body), "updated")
    else:
        client.delete_endpoint(args.id)
        print(f"endpoint {args.id} deleted")
    return 0


def _body(args: argparse.Namespace) -> dict[str, Any]:
    """The ngrok request fields the options give (those not given are left out)."""
    body: dict[str, Any] = {}
    if args.url is not None:
        body["url"] = args.url
    if args.traffic_policy_file is not None:
        body["traffic_policy"] = _read_policy(args.traffic_policy_file)
    if args.description is not None:
        body["description"] = args.description
    if args.metadata is not None:
        body["metadata"] = args.metadata
    if args.binding is not None:
        body["bindings"] = [args.binding]
    if args.pooling_enabled is not None:
        body["pooling_enabled"] = args.pooling_enabled == "true"
    return body


def _read_policy(path: Path) -> str:
    """The policy file's text; `ApiClientError` naming the file if it cannot be read, is not
    UTF-8, or is larger than the edge accepts."""
    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        raise ApiClientError(f"cannot read the traffic policy file {path}: {exc.strerror}") from exc
    if len(raw) > TRAFFIC_POLICY_MAX_BYTES:
        raise ApiClientError(
            f"the traffic policy file {path} is {len(raw)} bytes; the edge accepts at most "
            f"{TRAFFIC_POLICY_MAX_BYTES}"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiClientError(f"the traffic policy file {path} is not UTF-8 text: {exc}") from exc


def _show(args: argparse.Namespace, endpoint: dict[str, Any], verb: str | None) -> None:
    if args.json:
        print(json.dumps(endpoint, separators=(",", ":")))
        return
    if verb is not None:
        print(f"endpoint {endpoint.get('id')} {verb}")
    print(_line(endpoint))
    policy = endpoint.get("traffic_policy") or ""
    if policy:
        print("traffic_policy:")
        for text in str(policy).splitlines():
            print(f"  {text}")


def _line(endpoint: dict[str, Any]) -> str:
    """One endpoint as one line: id, type, URL clients dial, binding, pooling, description,
    and for an agent endpoint its agent's address and health; a pool's members follow, one
    indented line each (endpoint, session, agent address, health, open streams)."""
    bindings = ",".join(str(b) for b in endpoint.get("bindings") or ()) or "-"
    pooled = "pooled" if endpoint.get("pooling_enabled") else "-"
    line = (
        f"{endpoint.get('id')}  {endpoint.get('type')}  "
        f"{endpoint.get('public_url') or endpoint.get('url')}  {bindings}  {pooled}  "
        f"{endpoint.get('description') or ''}"
    ).rstrip()
    if endpoint.get("agent_addr"):
        line += f"  agent={endpoint.get('agent_addr')}  health={endpoint.get('health')}"
    for member in endpoint.get("pools") or ():  # a pool: one indented line per member
        session = (member.get("tunnel_session") or {}).get("id") or "-"
        line += (
            f"\n    member {member.get('id')}  {member.get('type')}  session={session}  "
            f"agent={member.get('agent_addr') or '-'}  health={member.get('health')}  "
            f"streams={member.get('outstanding_streams')}"
        )
    return line
