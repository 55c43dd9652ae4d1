"""Policy documents from ngrok's docs, shared by the policy and CLI tests.

Each is copied verbatim from the docs page named above it (the YAML tab unless the name ends in
`_JSON`), from github.com/ngrok/ngrok-docs at 56a5f99: the example snippets (`snippets/...` is
`snippets/traffic-policy/actions/...` there) and, at the end, the blocks of the published
action pages (`traffic-policy/actions/<action>.mdx`) that differ from them. Documents holding
a backslash are raw strings that open with a newline, which neither YAML nor JSON minds.
tests/edge/policy/test_ngrok_examples.py checks that each one runs unchanged (or is refused by
name, where Burrow refuses by design).
"""

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


# https://ngrok.com/docs/traffic-policy/actions/close-connection/
#   Basic Example (the page's code fence lacks its language; this is its whole content)
#   snippets/.../close-connection/examples/basic-example.mdx
CLOSE_CONNECTION_YAML = """\
on_http_request:
- name: DC
  expressions:
  - req.url.path.startsWith("/dc")
  actions:
  - type: close-connection
"""


# https://ngrok.com/docs/traffic-policy/actions/restrict-ips/
#   Examples on_http_request: Restricting Access with Allow and Deny Lists
#   snippets/.../restrict-ips/http/examples/1-basic-example.mdx
RESTRICT_IPS_HTTP_YAML = """\
on_http_request:
  - actions:
      - type: restrict-ips
        config:
          enforce: true
          allow:
            - 1.1.1.1/32
          deny:
            - e680:5791:be4c:5739:d959:7b94:6d54:d4b4/128
"""


# https://ngrok.com/docs/traffic-policy/actions/restrict-ips/
#   Examples on_tcp_connect: Restricting Access with Allow and Deny Lists (tcp and tls tabs)
#   snippets/.../restrict-ips/tcp/examples/1-basic-example.mdx
RESTRICT_IPS_TCP_YAML = """\
on_tcp_connect:
  - actions:
      - type: restrict-ips
        config:
          enforce: true
          allow:
            - 1.1.1.1/32
          deny:
            - e680:5791:be4c:5739:d959:7b94:6d54:d4b4/128
"""


# https://ngrok.com/docs/traffic-policy/actions/restrict-ips/
#   Restricting Access with IP Policies (on_http_request)
#   snippets/.../restrict-ips/http/examples/2-using-ip-policies.mdx
RESTRICT_IPS_IP_POLICIES_YAML = """\
on_http_request:
  - actions:
      - type: restrict-ips
        config:
          enforce: true
          ip_policies:
            - ipp_1yjqdrIBwgciY2I9zH2EelgBbJF
"""


# https://ngrok.com/docs/traffic-policy/actions/restrict-ips/
#   Test Restricting IPs (on_tcp_connect)
#   snippets/.../restrict-ips/tcp/examples/3-testing-traffic.mdx
RESTRICT_IPS_TESTING_YAML = """\
on_tcp_connect:
  - actions:
      - type: restrict-ips
        config:
          enforce: false
          ip_policies:
            - ipp_1yjqdrIBwgciY2I9zH2EelgBbJF
      - type: log
        config:
          metadata:
            message: Restrict IPs action would be ${actions.ngrok.restrict_ips.action} for ${conn.client_ip}.
            matched_cidr: ${actions.ngrok.restrict_ips.matched_cidr}
            error_code: ${actions.ngrok.restrict_ips.error.code}
            error_message: ${actions.ngrok.restrict_ips.error.message}
"""  # noqa: E501


# https://ngrok.com/docs/traffic-policy/actions/deny/
#   Deny traffic with a 404 status code
#   snippets/.../deny/http/examples/http-basic-example.mdx
DENY_HTTP_YAML = """\
on_http_request:
  - actions:
      - type: deny
        config:
          status_code: 404
"""


# https://ngrok.com/docs/traffic-policy/actions/deny/
#   Deny traffic with a 404 status code (JSON tab)
#   snippets/.../deny/http/examples/http-basic-example.mdx
DENY_HTTP_JSON = """\
{
  "on_http_request": [
    {
      "actions": [
        {
          "type": "deny",
          "config": {
            "status_code": 404
          }
        }
      ]
    }
  ]
}
"""


# https://ngrok.com/docs/traffic-policy/actions/deny/
#   Deny all traffic (on_tcp_connect)
#   snippets/.../deny/tcp/examples/tcp-basic-example.mdx
DENY_TCP_YAML = """\
on_tcp_connect:
  - actions:
      - type: deny
"""


# https://ngrok.com/docs/traffic-policy/actions/custom-response/
#   Custom HTML Maintenance Page
#   snippets/.../custom-response/examples/http-html-maintenance-page.mdx
CUSTOM_RESPONSE_HTML_YAML = """\
on_http_request:
  - actions:
      - type: custom-response
        config:
          status_code: 503
          body: <html><body><h1>Service Unavailable</h1><p>Our servers are currently down for maintenance. Please check back later.</p></body></html>
          headers:
            content-type: text/html
"""  # noqa: E501


# https://ngrok.com/docs/traffic-policy/actions/custom-response/
#   Custom JSON API Response with CEL Interpolation
#   snippets/.../custom-response/examples/http-json-single-interpolation.mdx
CUSTOM_RESPONSE_JSON_BODY_YAML = """\
on_http_request:
  - expressions:
      - req.url.path == '/api/example'
    actions:
      - type: custom-response
        config:
          body: '{"connection-start":"${conn.ts.start}"}'
          headers:
            content-type: application/json
"""


# https://ngrok.com/docs/traffic-policy/actions/custom-response/
#   Custom JSON API Response with CEL Interpolation (JSON tab)
#   snippets/.../custom-response/examples/http-json-single-interpolation.mdx
CUSTOM_RESPONSE_JSON_BODY_JSON = r"""
{
  "on_http_request": [
    {
      "expressions": [
        "req.url.path == '/api/example'"
      ],
      "actions": [
        {
          "type": "custom-response",
          "config": {
            "body": "{\"connection-start\":\"${conn.ts.start}\"}",
            "headers": {
              "content-type": "application/json"
            }
          }
        }
      ]
    }
  ]
}
"""


# https://ngrok.com/docs/traffic-policy/actions/custom-response/
#   Custom Plaintext Response with Multiple CEL Interpolations
#   snippets/.../custom-response/examples/http-plain-text-multiple-interpolation.mdx
CUSTOM_RESPONSE_TEXT_YAML = """\
on_http_request:
  - expressions:
      - req.url.path == '/api/example'
    actions:
      - type: custom-response
        config:
          status_code: 418
          body: connection began at ${conn.ts.start}, now ${timestamp(time.now)}
          headers:
            content-type: text/plain
"""


# https://ngrok.com/docs/traffic-policy/actions/custom-response/
#   Custom Response for Internal Endpoint Downtime
#   snippets/.../custom-response/examples/http-upstream-maintenance-page.mdx
CUSTOM_RESPONSE_FALLBACK_YAML = """\
on_http_request:
  - actions:
      - type: forward-internal
        config:
          url: https://endpoint-1.internal
          on_error: continue
      - type: custom-response
        config:
          status_code: 302
          headers:
            location: https://www.example.com
"""


# https://ngrok.com/docs/traffic-policy/actions/add-headers/
#   Adding Client IP Headers to all HTTP requests
#   snippets/.../add-headers/examples/http-add-client-ip-headers-to-all-requests.mdx
ADD_HEADERS_REQUEST_YAML = """\
on_http_request:
  - actions:
      - type: add-headers
        config:
          headers:
            x-client-ip: ${conn.client_ip}
"""


# https://ngrok.com/docs/traffic-policy/actions/add-headers/
#   Adding headers to an HTTP response
#   snippets/.../add-headers/examples/http-add-headers-to-response.mdx
ADD_HEADERS_RESPONSE_YAML = """\
on_http_response:
  - expressions:
      - req.method == "GET" && req.url.path.startsWith("/status/200")
    actions:
      - type: add-headers
        config:
          headers:
            x-custom-header: my-custom-value
            x-string-interpolation-example: started at ${conn.ts.start}
"""


# https://ngrok.com/docs/traffic-policy/actions/add-headers/
#   Adding headers to an HTTP response (JSON tab)
#   snippets/.../add-headers/examples/http-add-headers-to-response.mdx
ADD_HEADERS_RESPONSE_JSON = r"""
{
  "on_http_response": [
    {
      "expressions": [
        "req.method == \"GET\" && req.url.path.startsWith(\"/status/200\")"
      ],
      "actions": [
        {
          "type": "add-headers",
          "config": {
            "headers": {
              "x-custom-header": "my-custom-value",
              "x-string-interpolation-example": "started at ${conn.ts.start}"
            }
          }
        }
      ]
    }
  ]
}
"""


# https://ngrok.com/docs/traffic-policy/actions/remove-headers/
#   Removing headers from all requests
#   snippets/.../remove-headers/examples/http-removing-headers-from-all-requests.mdx
REMOVE_HEADERS_YAML = """\
on_http_request:
  - actions:
      - type: remove-headers
        config:
          headers:
            - x-client-version
            - x-trace-id
"""


# https://ngrok.com/docs/traffic-policy/actions/redirect/
#   Redirect using Paths
#   snippets/.../redirect/examples/1-basic-example.mdx
REDIRECT_PATHS_YAML = """\
on_http_request:
  - actions:
      - type: redirect
        config:
          from: /products
          to: /store/products
"""


# https://ngrok.com/docs/traffic-policy/actions/redirect/
#   Redirect using Regular Expressions
#   snippets/.../redirect/examples/2-with-regex.mdx
REDIRECT_REGEX_YAML = """\
on_http_request:
  - expressions:
      - req.url.path.startsWith('/api/')
    actions:
      - type: redirect
        config:
          from: /api/v1/users?id=([0-9]+)
          to: /api/v2/users/$1/
          status_code: 301
          headers:
            x-redirected: 'true'
"""


# https://ngrok.com/docs/traffic-policy/actions/redirect/
#   Redirect using Regular Expressions (JSON tab)
#   snippets/.../redirect/examples/2-with-regex.mdx
REDIRECT_REGEX_JSON = """\
{
  "on_http_request": [
    {
      "expressions": [
        "req.url.path.startsWith('/api/')"
      ],
      "actions": [
        {
          "type": "redirect",
          "config": {
            "from": "/api/v1/users?id=([0-9]+)",
            "to": "/api/v2/users/$1/",
            "status_code": 301,
            "headers": {
              "x-redirected": "true"
            }
          }
        }
      ]
    }
  ]
}
"""


# https://ngrok.com/docs/traffic-policy/actions/redirect/
#   Redirect with CEL Interpolation
#   snippets/.../redirect/examples/3-with-string-interpolation.mdx
REDIRECT_INTERPOLATION_YAML = """\
on_http_request:
  - expressions:
      - req.url.path in ['/api/v2/geo', '/api/v2/geo/']
    actions:
      - type: redirect
        config:
          to: /api/v2/geo?city=${conn.geo.city}
"""


# https://ngrok.com/docs/traffic-policy/actions/url-rewrite/
#   Rewrite using Paths
#   snippets/.../url-rewrite/examples/1-basic-example.mdx
URL_REWRITE_YAML = """\
on_http_request:
  - expressions:
      - req.url.path == '/products'
    actions:
      - type: url-rewrite
        config:
          from: /products
          to: /products.php
"""


# https://ngrok.com/docs/traffic-policy/actions/url-rewrite/
#   Rewrite using Regular Expressions
#   snippets/.../url-rewrite/examples/2-with-regex.mdx
URL_REWRITE_REGEX_YAML = """\
on_http_request:
  - expressions:
      - req.url.path.startsWith('/products')
    actions:
      - type: url-rewrite
        config:
          from: /products/?([.*]+)?
          to: /products.php?query=$1
"""


# https://ngrok.com/docs/traffic-policy/actions/url-rewrite/
#   Rewrite using CEL Interpolation
#   snippets/.../url-rewrite/examples/3-with-string-interpolation.mdx
URL_REWRITE_INTERPOLATION_YAML = """\
on_http_request:
  - actions:
      - type: url-rewrite
        config:
          from: ${req.url.authority}/products/?([.*]+)?
          to: /products.php?query=$1
"""


# https://ngrok.com/docs/traffic-policy/actions/set-vars/
#   Basic Example
#   snippets/.../set-vars/examples/basic-example.mdx
SET_VARS_YAML = """\
on_http_request:
  - actions:
      - type: set-vars
        config:
          vars:
            - sample_string: bar
            - sample_double: 1.5
            - sample_bool: true
            - sample_null: null
            - sample_list:
                - 1
                - 2
                - 3
            - sample_map:
                key: value
            - sample_nested_map:
                key:
                  - value1
                  - value2
  - expressions:
      - vars.sample_bool == true
    actions:
      - type: custom-response
        config:
          status_code: 200
          headers:
            content-type: text/plain
          body: ${vars.sample_string} ${vars.sample_double} ${vars.sample_list[0]} ${vars.sample_map.key} ${vars.sample_nested_map.key[1]}
"""  # noqa: E501


# https://ngrok.com/docs/traffic-policy/actions/set-vars/
#   Basic Example (JSON tab)
#   snippets/.../set-vars/examples/basic-example.mdx
SET_VARS_JSON = """\
{
  "on_http_request": [
    {
      "actions": [
        {
          "type": "set-vars",
          "config": {
            "vars": [
              {
                "sample_string": "bar"
              },
              {
                "sample_double": 1.5
              },
              {
                "sample_bool": true
              },
              {
                "sample_null": null
              },
              {
                "sample_list": [
                  1,
                  2,
                  3
                ]
              },
              {
                "sample_map": {
                  "key": "value"
                }
              },
              {
                "sample_nested_map": {
                  "key": [
                    "value1",
                    "value2"
                  ]
                }
              }
            ]
          }
        }
      ]
    },
    {
      "expressions": [
        "vars.sample_bool == true"
      ],
      "actions": [
        {
          "type": "custom-response",
          "config": {
            "status_code": 200,
            "headers": {
              "content-type": "text/plain"
            },
            "body": "${vars.sample_string} ${vars.sample_double} ${vars.sample_list[0]} ${vars.sample_map.key} ${vars.sample_nested_map.key[1]}"
          }
        }
      ]
    }
  ]
}
"""  # noqa: E501


# https://ngrok.com/docs/traffic-policy/actions/set-vars/
#   CEL Interpolation Example
#   snippets/.../set-vars/examples/cel-interpolated-example.mdx
SET_VARS_INTERPOLATION_YAML = """\
on_http_request:
  - actions:
      - type: set-vars
        config:
          vars:
            - sample_string: 'x-foo header: ${request.headers[''x-foo'']}'
            - sample_uint: ${uint(1.5) + 10u}
            - sample_int: ${int(50.5)}
            - sample_map:
                pem: ${conn.tls.client.pem}
"""


# https://ngrok.com/docs/traffic-policy/actions/set-vars/
#   Setting Vars based on Previous Vars Example
#   snippets/.../set-vars/examples/vars-based-on-previous-vars-example.mdx
SET_VARS_PREVIOUS_YAML = """\
on_http_request:
  - actions:
      - type: set-vars
        config:
          vars:
            - accepted_models:
                - openai/o1
                - openai/4o
                - openai/4o-mini
            - models: ${actions.ngrok.http_request.res.body}
            - models: ${vars.models.filter(model, model.id in vars.accepted_models)}
            - models: ${vars.models.filter(model, model.latency < 100)}
            - models: ${vars.models.sort(x, y, x.latency < y.latency)}
"""


# https://ngrok.com/docs/traffic-policy/actions/log/
#   Logging with CEL Interpolation
#   snippets/.../log/examples/basic-example.mdx
LOG_YAML = """\
on_http_request:
  - actions:
      - type: log
        config:
          metadata:
            message: Log action executed.
            endpoint_id: ${endpoint.id}
"""


# https://ngrok.com/docs/traffic-policy/actions/rate-limit/
#   Rate Limit by Host Header
#   snippets/.../rate-limit/examples/basic-example.mdx
RATE_LIMIT_YAML = """\
on_http_request:
  - actions:
      - type: rate-limit
        config:
          name: Only allow 30 requests per minute
          algorithm: sliding_window
          capacity: 30
          rate: 60s
          bucket_key:
            - 'hasReqHeader(''host'') ? getReqHeader(''host'')[0] : ''unknown'''
"""


# https://ngrok.com/docs/traffic-policy/actions/rate-limit/
#   Rate Limit by Host Header (JSON tab)
#   snippets/.../rate-limit/examples/basic-example.mdx
RATE_LIMIT_JSON = """\
{
  "on_http_request": [
    {
      "actions": [
        {
          "type": "rate-limit",
          "config": {
            "name": "Only allow 30 requests per minute",
            "algorithm": "sliding_window",
            "capacity": 30,
            "rate": "60s",
            "bucket_key": [
              "hasReqHeader('host') ? getReqHeader('host')[0] : 'unknown'"
            ]
          }
        }
      ]
    }
  ]
}
"""


# https://ngrok.com/docs/traffic-policy/actions/jwt-validation/
#   Basic Example
#   snippets/.../jwt-validation/examples/basic-example.mdx
JWT_VALIDATION_YAML = """\
on_http_request:
  - actions:
      - type: jwt-validation
        config:
          issuer:
            allow_list:
              - value: https://example.com/issuer
          audience:
            allow_list:
              - value: urn:example:api
          http:
            tokens:
              - type: access_token
                method: header
                name: Authorization
                prefix: 'Bearer '
              - type: it+jwt
                method: body
                name: _id_token
          jws:
            allowed_algorithms:
              - RS256
              - ES256
            keys:
              sources:
                additional_jkus:
                  - https://example.com/issuer/jku
"""


# https://ngrok.com/docs/traffic-policy/actions/jwt-validation/
#   the Auth0 integration example (also at /docs/integrations/jwt-validation/auth0/)
#   snippets/.../jwt-validation/examples/integration-auth0/example.mdx
JWT_VALIDATION_AUTH0_YAML = """\
on_http_request:
  - actions:
      - type: jwt-validation
        config:
          issuer:
            allow_list:
              - value: https://<YOUR_AUTH0_TENANT_ID>.<AUTH0_REGION>.auth0.com/
          audience:
            allow_list:
              - value: https://<YOUR_NGROK_DOMAIN>
          http:
            tokens:
              - type: jwt
                method: header
                name: Authorization
                prefix: 'Bearer '
          jws:
            allowed_algorithms:
              - RS256
            keys:
              sources:
                additional_jkus:
                  - https://<YOUR_AUTH0_TENANT_ID>.<AUTH0_REGION>.auth0.com/.well-known/jwks.json
"""


# https://ngrok.com/docs/traffic-policy/actions/verify-webhook/
#   Basic Example
#   snippets/.../verify-webhook/examples/basic-example.mdx
VERIFY_WEBHOOK_YAML = """\
on_http_request:
  - actions:
      - type: verify-webhook
        config:
          provider: gitlab
          secret: secret!
      - type: custom-response
        config:
          status_code: 200
          headers:
            content-type: text/plain
          body: GitLab webhook verified
"""


# https://ngrok.com/docs/traffic-policy/actions/compress-response/
#   Compressing API Responses Based on URL Path
#   snippets/.../compress-response/examples/compressing-api-responses-based-on-url-path.mdx
COMPRESS_RESPONSE_YAML = """\
on_http_response:
  - expressions:
      - req.url.path.startsWith('/api/')
    actions:
      - type: compress-response
        config:
          algorithms:
            - gzip
            - br
            - deflate
            - compress
"""


# https://ngrok.com/docs/traffic-policy/actions/circuit-breaker/
#   Basic Example
#   snippets/.../circuit-breaker/examples/basic-example.mdx
CIRCUIT_BREAKER_YAML = """\
on_http_request:
  - actions:
      - type: circuit-breaker
        config:
          error_threshold: 0
          volume_threshold: 1
          window_duration: 60s
          tripped_duration: 2m
          enforce: true
"""


# https://ngrok.com/docs/traffic-policy/actions/terminate-tls/
#   Minimum and Maximum TLS Versions
#   snippets/.../terminate-tls/examples/1-min-max-version.mdx
TERMINATE_TLS_VERSIONS_YAML = """\
on_tcp_connect:
  - actions:
      - type: terminate-tls
        config:
          min_version: '1.3'
          max_version: '1.3'
"""


# https://ngrok.com/docs/traffic-policy/actions/terminate-tls/
#   Using a Custom Certificate
#   snippets/.../terminate-tls/examples/2-custom-certificate.mdx
TERMINATE_TLS_CERTIFICATE_YAML = """\
on_tcp_connect:
  - actions:
      - type: terminate-tls
        config:
          server_private_key: |-
            -----BEGIN PRIVATE KEY-----
            ... private key ...
            -----END PRIVATE KEY-----
          server_certificate: |-
            -----BEGIN CERTIFICATE-----
            ... certificate ...
            -----END CERTIFICATE-----
"""


# https://ngrok.com/docs/traffic-policy/actions/terminate-tls/
#   Enabling Mutual TLS
#   snippets/.../terminate-tls/examples/3-mutual-tls.mdx
TERMINATE_TLS_MUTUAL_YAML = """\
on_tcp_connect:
  - actions:
      - type: terminate-tls
        config:
          mutual_tls_certificate_authorities:
            - |-
              -----BEGIN CERTIFICATE-----
              ... certificate ...
              -----END CERTIFICATE-----
"""


# https://ngrok.com/docs/traffic-policy/actions/request-body-find-replace/
#   Redacting sensitive data from requests
#   traffic-policy/actions/request-body-find-replace.mdx
REQUEST_BODY_REDACT_YAML = r"""
on_http_request:
  - actions:
      - type: request-body-find-replace
        config:
          replacements:
            - from: '"api_key":\s*"[^"]*"'
              to: '"api_key": "[REDACTED]"'
            - from: "[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{2,}"
              to: "[EMAIL REDACTED]"
"""


# https://ngrok.com/docs/traffic-policy/actions/request-body-find-replace/
#   Redacting sensitive data from requests (JSON tab)
#   traffic-policy/actions/request-body-find-replace.mdx
REQUEST_BODY_REDACT_JSON = r"""
{
  "on_http_request": [
    {
      "actions": [
        {
          "type": "request-body-find-replace",
          "config": {
            "replacements": [
              {
                "from": "\"api_key\":\\s*\"[^\"]*\"",
                "to": "\"api_key\": \"[REDACTED]\""
              },
              {
                "from": "[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{2,}",
                "to": "[EMAIL REDACTED]"
              }
            ]
          }
        }
      ]
    }
  ]
}
"""


# https://ngrok.com/docs/traffic-policy/actions/request-body-find-replace/
#   Modifying AI prompts
#   traffic-policy/actions/request-body-find-replace.mdx
REQUEST_BODY_PROMPT_YAML = r"""
on_http_request:
  - actions:
      - type: request-body-find-replace
        config:
          replacements:
            - from: '"role":\s*"system",\s*"content":\s*"([^"]*)"'
              to: '"role": "system", "content": "$1 Always respond in a professional tone."'
"""


# https://ngrok.com/docs/traffic-policy/actions/request-body-find-replace/
#   Removing unwanted content
#   traffic-policy/actions/request-body-find-replace.mdx
REQUEST_BODY_REMOVE_YAML = """\
on_http_request:
  - actions:
      - type: request-body-find-replace
        config:
          replacements:
            - from: "<!--.*?-->"
              to: ""
"""


# https://ngrok.com/docs/traffic-policy/actions/response-body-find-replace/
#   Redacting sensitive data from AI responses
#   traffic-policy/actions/response-body-find-replace.mdx
RESPONSE_BODY_REDACT_YAML = r"""
on_http_response:
  - actions:
      - type: response-body-find-replace
        config:
          replacements:
            # Redact SSN patterns
            - from: "\\b\\d{3}-\\d{2}-\\d{4}\\b"
              to: "[SSN REDACTED]"
            # Redact credit card numbers
            - from: "\\b\\d{4}[- ]?\\d{4}[- ]?\\d{4}[- ]?\\d{4}\\b"
              to: "[CARD REDACTED]"
            # Redact phone numbers
            - from: "\\b\\d{3}[-.\\s]?\\d{3}[-.\\s]?\\d{4}\\b"
              to: "[PHONE REDACTED]"
"""


# https://ngrok.com/docs/traffic-policy/actions/response-body-find-replace/
#   Redacting sensitive data from AI responses (JSON tab)
#   traffic-policy/actions/response-body-find-replace.mdx
RESPONSE_BODY_REDACT_JSON = r"""
{
  "on_http_response": [
    {
      "actions": [
        {
          "type": "response-body-find-replace",
          "config": {
            "replacements": [
              {
                "from": "\\b\\d{3}-\\d{2}-\\d{4}\\b",
                "to": "[SSN REDACTED]"
              },
              {
                "from": "\\b\\d{4}[- ]?\\d{4}[- ]?\\d{4}[- ]?\\d{4}\\b",
                "to": "[CARD REDACTED]"
              },
              {
                "from": "\\b\\d{3}[-.\\s]?\\d{3}[-.\\s]?\\d{4}\\b",
                "to": "[PHONE REDACTED]"
              }
            ]
          }
        }
      ]
    }
  ]
}
"""


# https://ngrok.com/docs/traffic-policy/actions/response-body-find-replace/
#   Adding disclaimers to AI responses
#   traffic-policy/actions/response-body-find-replace.mdx
RESPONSE_BODY_DISCLAIMER_YAML = r"""
on_http_response:
  - expressions:
      - "res.headers['content-type'].contains('application/json')"
    actions:
      - type: response-body-find-replace
        config:
          replacements:
            - from: '"content":\s*"([^"]*)"(\s*})'
              to: '"content": "$1\n\n---\nDisclaimer: This response was generated by AI and may contain errors."$2'
"""  # noqa: E501


# https://ngrok.com/docs/traffic-policy/actions/response-body-find-replace/
#   Sanitizing error messages
#   traffic-policy/actions/response-body-find-replace.mdx
RESPONSE_BODY_ERRORS_YAML = r"""
on_http_response:
  - expressions:
      - "res.status_code >= 500"
    actions:
      - type: response-body-find-replace
        config:
          replacements:
            - from: '"stack_trace":\s*"[^"]*"'
              to: '"stack_trace": "[HIDDEN]"'
            - from: '"internal_error":\s*"[^"]*"'
              to: '"internal_error": "[HIDDEN]"'
"""


# https://ngrok.com/docs/traffic-policy/actions/forward-internal/
#   Basic Example
#   snippets/.../forward-internal/examples/1-basic-example.mdx
FORWARD_INTERNAL_YAML = """\
on_http_request:
  - actions:
      - type: forward-internal
        config:
          url: https://example.internal
"""


# --- The published pages' own blocks (traffic-policy/actions/<action>.mdx), where they differ
# from the snippets above (the pages inline their examples rather than import those snippets).


# https://ngrok.com/docs/traffic-policy/actions/redirect/
#   Examples: Redirect using paths
#   traffic-policy/actions/redirect.mdx
REDIRECT_PATHS_PAGE_YAML = """\
on_http_request:
  - actions:
      - type: redirect
        config:
          from: ^(https?://[^/]+)/products(.*)$
          to: $1/store/products$2
"""


# https://ngrok.com/docs/traffic-policy/actions/redirect/
#   Examples: Redirect using paths (JSON tab)
#   traffic-policy/actions/redirect.mdx
REDIRECT_PATHS_PAGE_JSON = """\
{
  "on_http_request": [
    {
      "actions": [
        {
          "type": "redirect",
          "config": {
            "from": "^(https?://[^/]+)/products(.*)$",
            "to": "$1/store/products$2"
          }
        }
      ]
    }
  ]
}
"""


# https://ngrok.com/docs/traffic-policy/actions/close-connection/
#   Examples: Basic example (indented inside a <Step> on the page; dedented here)
#   traffic-policy/actions/close-connection.mdx
CLOSE_CONNECTION_PAGE_YAML = """\
on_http_request:
- name: "Immediately close connection"
  expressions:
    - req.url.path.startsWith("/dc")
  actions:
    - type: close-connection
"""


# https://ngrok.com/docs/traffic-policy/actions/set-vars/
#   Behavior
#   traffic-policy/actions/set-vars.mdx
SET_VARS_BEHAVIOR_YAML = """\
on_http_request:
  - actions:
      - type: set-vars
        config:
          vars:
            - variable_a: Hello,
            - variable_b: World!
  - actions:
      - type: custom-response
        config:
          status_code: 200
          headers:
            content-type: text/plain
          body: ${vars.variable_a} ${vars.variable_b}
"""


# https://ngrok.com/docs/traffic-policy/actions/set-vars/
#   Behavior: CEL interpolation
#   traffic-policy/actions/set-vars.mdx
SET_VARS_CEL_INTERPOLATION_YAML = """\
on_http_request:
  - actions:
      - type: set-vars
        config:
          vars:
            - message: Your IP is ${conn.client_ip}!
"""


# https://ngrok.com/docs/traffic-policy/actions/restrict-ips/
#   Examples on_tcp_connect: Restricting access with IP Policies
#   traffic-policy/actions/restrict-ips.mdx
RESTRICT_IPS_IP_POLICIES_TCP_YAML = """\
on_tcp_connect:
  - actions:
      - type: restrict-ips
        config:
          enforce: true
          ip_policies:
            - ipp_1yjqdrIBwgciY2I9zH2EelgBbJF
"""


# https://ngrok.com/docs/traffic-policy/actions/restrict-ips/
#   Examples on_http_request: Test restricting IPs
#   traffic-policy/actions/restrict-ips.mdx
RESTRICT_IPS_TESTING_HTTP_YAML = """\
on_http_request:
  - actions:
      - type: restrict-ips
        config:
          enforce: false
          ip_policies:
            - ipp_1yjqdrIBwgciY2I9zH2EelgBbJF
      - type: log
        config:
          metadata:
            message: Restrict IPs action would be ${actions.ngrok.restrict_ips.action} for ${conn.client_ip}.
            matched_cidr: ${actions.ngrok.restrict_ips.matched_cidr}
            error_code: ${actions.ngrok.restrict_ips.error.code}
            error_message: ${actions.ngrok.restrict_ips.error.message}
"""  # noqa: E501
