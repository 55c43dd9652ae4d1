"""HTTP/1.1 clients (h11): the connection and one exchange's relay."""
