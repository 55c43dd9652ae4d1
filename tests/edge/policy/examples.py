"""Policy documents from ngrok's docs, shared by the policy and CLI tests."""

# ngrok's docs, snippets/traffic-policy/actions/basic-auth/examples/basic-example.mdx
BASIC_AUTH_YAML = """\
on_http_request:
  - actions:
      - type: basic-auth
        config:
          realm: sample-realm
          credentials:
            - user:password1
            - admin:password2
          enforce: true
      - type: custom-response
        config:
          status_code: 200
          headers:
            content-type: text/plain
          body: Successfully Authenticated!
"""

# ngrok's docs, url-rewrite/examples/1-basic-example.mdx (JSON tab)
URL_REWRITE_JSON = """\
{
  "on_http_request": [
    {
      "expressions": ["req.url.path == '/products'"],
      "actions": [
        {"type": "url-rewrite", "config": {"from": "/products", "to": "/products.php"}}
      ]
    }
  ]
}
"""
