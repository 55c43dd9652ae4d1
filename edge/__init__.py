"""`burrow-edge`: the edge that authenticates agents and serves their public endpoints."""
