"""Endpoints online: the registry maps a URL and binding to its members, each of which can open a
proxy stream to its agent; tcp port allocation."""
