"""The trio adapters: MuxSession/MuxStream over the sans-IO session, the TLS stream, splice,
heartbeats and RPC calls over typed streams. The only part of `protocol/` that imports trio."""
