"""tests/ mirrors the packages (STYLE.md 21): `protocol/wire/frames.py` is tested by
`tests/protocol/wire/test_frames.py`, and so on for every product module.

Three checks, all on file names only (no imports, so they take milliseconds):

1. every product module has its own test file, unless `EXEMPT` says why it has nothing to test
   on its own and where it is exercised instead;
2. `EXEMPT` names only modules that exist and still lack a test file, so it cannot rot;
3. every `tests/**/test_*.py` tests a product module that exists, except the cross-cutting
   suites: `tests/e2e/`, this file, and the files `CROSS_CUTTING` lists with their reason.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
PACKAGES = ("protocol", "agent", "edge")

#: Product modules without a test file of their own, each with where it is exercised. Only for
#: pure declarations (exception classes, frozen event records) with no behaviour to test alone.
EXEMPT: dict[str, str] = {
    "protocol/wire/events.py": (
        "frozen keyword-only event records with no behaviour; every event is produced and "
        "asserted on by tests/protocol/wire/test_session.py and test_session_properties.py"
    ),
}

#: Test files that test something other than one product module, with what they test.
CROSS_CUTTING: dict[str, str] = {
    "tests/test_layout.py": "this file: the layout of tests/ itself",
    "tests/test_errors_doc.py": (
        "docs/errors.md against every error code in protocol/, agent/ and edge/"
    ),
    "tests/test_packaging.py": (
        "the wheel (pyproject.toml's name, scripts and package data) built and installed into a "
        "clean virtual environment, running both commands"
    ),
    "tests/test_containerfiles.py": (
        "deploy/Containerfile.edge and deploy/Containerfile.agent linted, and built and run "
        "where a container tool works"
    ),
    "tests/edge/admin/test_bootstrap.py": (
        "edge/cli/api_keys.py's offline bootstrap of the admin API (init, the first API key) "
        "against a real store and admin listener"
    ),
    "tests/edge/admin/test_cli_credentials.py": (
        "edge/cli/credentials.py's and service_users.py's commands through the real admin API"
    ),
    "tests/protocol/wire/test_session_properties.py": (
        "Hypothesis properties of protocol/wire/session.py (STYLE.md 23), apart from the "
        "example-based tests in test_session.py"
    ),
    "tests/edge/policy/test_ngrok_examples.py": (
        "ngrok's documented example policies (tests/edge/policy/examples.py) loaded and run "
        "unchanged through edge/policy's validator and engine, per issue 10's Done when"
    ),
    "tests/agent/test_proxy_protocol.py": (
        "upstream.proxy_protocol end to end through agent/forward.py, agent/upstream.py and "
        "protocol/formats/proxy_protocol.py: the PROXY header a real upstream sees"
    ),
}
#: Folders of suites that cut across modules (whole edge and agent on loopback).
CROSS_CUTTING_DIRS = ("tests/e2e",)


def product_modules() -> list[str]:
    """Every product module, as a path relative to the checkout (`agent/cli.py`)."""
    found = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if path.name != "__init__.py":
                found.append(path.relative_to(ROOT).as_posix())
    return sorted(found)


def expected_test_path(module: str) -> str:
    """`tests/<same folders>/test_<module>.py` for a module path such as `edge/http/h1/proxy.py`."""
    path = Path(module)
    return (Path("tests") / path.parent / f"test_{path.name}").as_posix()


def mirrored_module(test_file: str) -> str:
    """The product module a `tests/.../test_x.py` path mirrors (whether it exists or not)."""
    path = Path(test_file).relative_to("tests")
    return (path.parent / path.name.removeprefix("test_")).as_posix()


def test_the_walk_finds_the_packages() -> None:
    """Guards the other checks against passing vacuously (e.g. after a move of ROOT)."""
    modules = product_modules()
    for package in PACKAGES:
        assert any(m.startswith(f"{package}/") for m in modules), package
    assert "protocol/wire/frames.py" in modules
    assert expected_test_path("edge/http/h1/proxy.py") == "tests/edge/http/h1/test_proxy.py"
    assert mirrored_module("tests/edge/http/h1/test_proxy.py") == "edge/http/h1/proxy.py"


def test_every_module_has_its_own_test_file() -> None:
    missing = [
        f"{module} -> {expected_test_path(module)}"
        for module in product_modules()
        if module not in EXEMPT and not (ROOT / expected_test_path(module)).is_file()
    ]
    assert not missing, (
        f"{len(missing)} product module(s) have no test file of their own; write one (or, for a "
        "module of pure declarations, add it to EXEMPT saying where it is exercised):\n  "
        + "\n  ".join(missing)
    )


def test_exemptions_name_existing_modules_without_tests() -> None:
    modules = set(product_modules())
    stale = [module for module in EXEMPT if module not in modules]
    assert not stale, f"EXEMPT names modules that do not exist; remove them: {stale}"
    tested = [module for module in EXEMPT if (ROOT / expected_test_path(module)).is_file()]
    assert not tested, f"EXEMPT names modules that now have a test file; remove them: {tested}"
    vague = [module for module, reason in EXEMPT.items() if "tests/" not in reason]
    assert not vague, f"each EXEMPT reason must name the tests that exercise it: {vague}"


def test_every_test_file_mirrors_an_existing_module() -> None:
    modules = set(product_modules())
    orphans = []
    for path in sorted(TESTS.rglob("test_*.py")):
        test_file = path.relative_to(ROOT).as_posix()
        if test_file in CROSS_CUTTING or test_file.startswith(
            tuple(f"{d}/" for d in CROSS_CUTTING_DIRS)
        ):
            continue
        if mirrored_module(test_file) not in modules:
            orphans.append(f"{test_file} (no {mirrored_module(test_file)})")
    assert not orphans, (
        "test files whose product module does not exist; rename or move them to mirror the "
        "module they test (or list a cross-cutting suite in CROSS_CUTTING):\n  "
        + "\n  ".join(orphans)
    )


def test_cross_cutting_entries_exist() -> None:
    gone = [name for name in (*CROSS_CUTTING, *CROSS_CUTTING_DIRS) if not (ROOT / name).exists()]
    assert not gone, f"CROSS_CUTTING names files that no longer exist; remove them: {gone}"
