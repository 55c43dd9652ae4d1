"""`burrow-edge`: the command line and its client for the admin API."""
