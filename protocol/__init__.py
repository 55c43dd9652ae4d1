"""The wire: muxado framing, the sans-IO session, typed-stream RPC and the trio adapter."""
