"""Reading systemd units in tests, and checking them with systemd's own `systemd-analyze`.

`./dev test` installs systemd's tools (Debian's `systemd` package) when they are missing; a
test that needs them fails with that advice rather than skipping.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

#: `systemd-analyze verify` loads one unit and its dependencies: seconds, not minutes.
VERIFY_TIMEOUT = 60.0


def unit_settings(text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> every value given for it, in order (systemd allows repeats)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"setting outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    assert found, "systemd-analyze is missing: `./dev test` installs it (apt-get install systemd)"
    return found


def verify_unit(root: Path, name: str, text: str) -> str:
    """Write `text` as `root`/etc/systemd/system/`name`, run `systemd-analyze verify` on it
    and return what it printed (empty when systemd has nothing to say). Fails the test if
    verify exits non-zero."""
    path = root / "etc" / "systemd" / "system" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    done = subprocess.run(
        [systemd_analyze(), "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=VERIFY_TIMEOUT,
        check=False,
    )
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 0, f"systemd-analyze verify {path} exited {done.returncode}: {output}"
    return output
