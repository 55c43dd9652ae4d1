"""Agent sessions: the I/O shell, the Auth and Bind decisions, binding URLs, bind options, ACLs,
and the hub of live sessions (resumption, revocation)."""
