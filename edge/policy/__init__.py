"""Traffic Policy: ngrok's policy documents, loaded, validated and compiled (pure, no I/O).

`document` reads YAML/JSON into a `Policy`; `validate` checks it for an endpoint's protocol and
compiles it once (`cel` for expressions, `interpolation` for `${...}` strings, `actions` for the
catalogue and each action's config schema, `fields` for strict config reading); `errors` holds
ngrok's ERR_NGROK_22xx codes. `engine` runs a compiled policy on one connection, request or
response (`activation` turns the facts into CEL variables, `phase` is a running phase,
`run_http`/`run_access` the actions, `ratelimit` the state kept between requests).
"""
