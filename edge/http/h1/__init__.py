"""HTTP/1.1 clients: the connection, its codec (no h11), and one exchange's relay."""
