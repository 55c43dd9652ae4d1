"""`burrow`: the agent that dials out to an edge and forwards proxied streams upstream."""
