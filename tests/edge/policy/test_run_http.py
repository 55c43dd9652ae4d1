"""edge/policy/run_http.py: `to` templates expand capture groups as Go's regexp.Expand does."""

from __future__ import annotations

import pytest
import re2  # type: ignore[import-untyped]

from edge.policy.run_http import expand

PATTERN = re2.compile(r"/([0-9]+)/(?P<kind>[a-z]+)")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("/v2/$1/", "/v2/42/"),
        ("/v2/${1}x", "/v2/42x"),
        ("/v2/$1x", "/v2/"),  # Go reads `$1x` as the group named `1x`: empty
        ("${kind}-$2", "users-users"),
        ("$$1", "$1"),
        ("cost $", "cost $"),  # a malformed reference is literal
        ("${kind", "${kind"),
        ("$9", ""),  # no such group
        ("$0", "/42/users"),
    ],
)
def test_expand_like_go(template: str, expected: str) -> None:
    match = next(PATTERN.finditer("https://h/42/users"))
    assert expand(template, match, dict(PATTERN.groupindex)) == expected


def test_replace_every_replaces_each_match_and_expands_groups() -> None:
    import re2  # type: ignore[import-untyped]

    from edge.policy.run_http import replace_every

    pattern = re2.compile(r"(?P<word>ca\w)")
    assert (
        replace_every("a cat and a cab", pattern, "<$1|${word}>") == "a <cat|cat> and a <cab|cab>"
    )
    assert replace_every("no match here", pattern, "x") == "no match here"
