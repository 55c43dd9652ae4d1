"""`burrow-edge sessions list|stop`: live agent sessions, through the running edge's admin API
(ngrok's `/tunnel_sessions` shapes); there is nothing to see offline.
"""

from __future__ import annotations

import argparse

from edge.cli.api_client import AdminClient, ApiClientError
from edge.cli.options import api_options, dump, needs_api_key

__all__ = ["add_sessions_parser", "run_sessions"]


def add_sessions_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `sessions` and its actions to `burrow-edge`'s subcommands."""
    sessions = commands.add_parser(
        "sessions", help="live agent sessions (needs the running edge and an API key)"
    )
    session_commands = sessions.add_subparsers(dest="action", required=True, metavar="ACTION")
    session_list = session_commands.add_parser("list", help="list live agent sessions")
    api_options(session_list, offline=False)
    session_list.add_argument(
        "--json", action="store_true", help="print ngrok-shaped JSON, one object a line"
    )
    session_stop = session_commands.add_parser(
        "stop", help="tell a session's agent to stop (burrow exits and does not reconnect)"
    )
    api_options(session_stop, offline=False)
    session_stop.add_argument("id")


def run_sessions(args: argparse.Namespace, client: AdminClient | None) -> int:
    """List or stop sessions through `client`; `ApiClientError` if there is none."""
    if client is None:
        raise ApiClientError(needs_api_key("`burrow-edge sessions`"))
    if args.action == "stop":
        client.stop_tunnel_session(args.id)
        print(f"session {args.id} stopped")
        return 0
    sessions = client.list_tunnel_sessions()
    if args.json:
        for session in sessions:
            print(dump(session))
        return 0
    urls: dict[str, list[str]] = {}
    if sessions:
        for endpoint in client.list_endpoints():
            session_id = (endpoint.get("tunnel_session") or {}).get("id")
            urls.setdefault(str(session_id), []).append(str(endpoint.get("url")))
    for session in sessions:
        credential = (session.get("credential") or {}).get("id") or "-"
        endpoints = ",".join(urls.get(session["id"], ())) or "-"
        print(
            f"{session['id']}  {session.get('started_at') or '-'}  credential={credential}  "
            f"ip={session.get('ip') or '-'}  agent={session.get('agent_version') or '-'}/"
            f"{session.get('os') or '-'}  endpoints={endpoints}  {session.get('metadata') or ''}"
        )
    return 0
