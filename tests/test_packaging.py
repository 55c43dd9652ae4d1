"""The wheel, as `pip install burrow-tunnel` would get it: built from a copy of the checkout,
installed into a clean virtual environment, and run from outside the checkout, so that a
module or data file the wheel leaves out cannot hide behind the editable install.

The clean environment has no pip of its own and takes the dependencies (trio, cryptography,
...) from the test environment's site-packages through a `.pth` line; a `.pth` line adds a
path without running that folder's own `.pth` files, so the editable install's finder is not
carried over, and `agent`, `edge` and `protocol` can only come from the wheel.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("protocol", "agent", "edge")
#: Building fetches setuptools into pip's isolated build environment (cached after the first
#: time); installing and running are seconds.
BUILD_TIMEOUT = 300


def _copy_checkout(dest: Path) -> Path:
    src = dest / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, src / package, ignore=ignore)
    return src


def _package_files() -> set[str]:
    """Every file of the three packages (Python or not), as the wheel should name it."""
    found = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                found.add(path.relative_to(ROOT).as_posix())
    return found


def test_the_distribution_name_is_not_the_unrelated_burrow_on_pypi() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "burrow-tunnel"
    assert project["scripts"] == {"burrow": "agent.cli:main", "burrow-edge": "edge.cli.main:main"}


def test_a_wheel_installed_in_a_clean_venv_runs_both_commands(tmp_path: Path) -> None:
    src = _copy_checkout(tmp_path)
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = dist.glob("burrow_tunnel-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    missing = sorted(_package_files() - names)
    assert missing == [], f"the wheel leaves out {missing} (name them in package-data)"
    assert "agent/inspector/page.html" in names

    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "--quiet",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    (Path(purelib) / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import agent, edge, protocol; print(agent.__file__, edge.__file__)"],
        cwd=outside,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert where.returncode == 0, where.stderr
    assert all(path.startswith(purelib) for path in where.stdout.split()), where.stdout

    for command, expected in (
        (["burrow", "version"], "burrow 0.1.0"),
        (["burrow", "--version"], "burrow 0.1.0"),
        (["burrow-edge", "--version"], "burrow-edge 0.1.0"),
        (["burrow-edge", "version"], "burrow-edge 0.1.0"),
    ):
        done = subprocess.run(
            [str(venv / "bin" / command[0]), *command[1:]],
            cwd=outside,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (done.returncode, done.stdout.strip()) == (0, expected), (command, done.stderr)
