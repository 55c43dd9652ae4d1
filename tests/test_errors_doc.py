"""docs/errors.md explains every error code Burrow emits: each `ERR_NGROK_<n>` and
`BURROW_<NAME>` code in the product code has its own `#### CODE` section there, and every
section names a code the product still uses (so the page cannot rot either way). Error pages
point to the same page (`edge.http.error_pages.ERRORS_DOC`)."""

from __future__ import annotations

import re
from pathlib import Path

from edge.http.error_pages import ERRORS_DOC

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("protocol", "agent", "edge")
DOC = ROOT / "docs" / "errors.md"
CODE = re.compile(r"\b(ERR_NGROK_\d+|BURROW_[A-Z][A-Z_]*[A-Z])\b")
#: `BURROW_...` names that are settings, not error codes: environment variables and the
#: edge-version prefix of the wire protocol.
NOT_CODES = {
    "BURROW_API_KEY",
    "BURROW_API_URL",
    "BURROW_AUTHTOKEN",
    "BURROW_CLIENT_TYPE",
    "BURROW_CONNECT_CAS",
    "BURROW_CONNECT_URL",
    "BURROW_EDGE_VERSION_PREFIX",
}


def codes_in_the_product() -> set[str]:
    found: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found.update(CODE.findall(path.read_text(encoding="utf-8")))
    return found - NOT_CODES


def documented() -> list[str]:
    return re.findall(r"^#### (\S+)$", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)


def test_every_code_the_product_emits_is_explained() -> None:
    emitted = codes_in_the_product()
    assert len(emitted) > 50  # the walk found the codes (guards against a vacuous pass)
    missing = sorted(emitted - set(documented()))
    assert missing == [], f"add a '#### CODE' section to docs/errors.md for each of {missing}"


def test_every_section_names_a_code_still_in_use_once() -> None:
    sections = documented()
    assert len(sections) == len(set(sections)), "a code has two sections"
    stale = sorted(set(sections) - codes_in_the_product())
    assert stale == [], f"docs/errors.md explains codes nothing emits: {stale}"


def test_error_pages_point_to_this_page() -> None:
    assert ERRORS_DOC == "docs/errors.md"
    assert (ROOT / ERRORS_DOC).is_file()
