"""Formats both programs share: endpoint and upstream URLs, host names, PROXY protocol headers,
units, and the line-tracking YAML reader. Pure values; no I/O."""
