"""The sans-IO muxado wire: frames, stream states, windows, events, errors, the session state
machine. Bytes in, events out; no module here imports trio (a lint rule, TID251, enforces it)."""
