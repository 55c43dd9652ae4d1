"""The public ports: listeners, the ClientHello read without answering, the SNI decision (agent,
passthrough, terminate or refuse), and the per-endpoint tcp ports."""
