"""HTTP/2 clients (h2, ALPN): the connection, which owns every frame written, and one stream."""
