"""Typed-stream RPC: the message bodies with ngrok's field names, their JSON/msgpack codecs, and
ngrok's error codes. Pure values; no I/O."""
