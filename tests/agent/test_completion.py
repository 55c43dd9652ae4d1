"""`burrow completion bash|zsh|fish` (agent/completion.py): each script is loaded into the real
shell (bash, zsh, fish from Debian; `./dev test` installs them) and asked for completions."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

from agent.cli import _parser, run
from agent.completion import command_tree

#: One shell run: loading a script and completing a few words takes well under a second.
SHELL_TIMEOUT = 30.0


def _script(shell: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    assert run(["completion", shell], {}, out, err) == 0, err.getvalue()
    return out.getvalue()


def _shell(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed; `./dev test` installs it (apt {name})"
    return path


def _bash_complete(tmp_path: Path, *words: str) -> list[str]:
    """What bash's `_burrow` offers for the command line `words` (the last one being typed)."""
    script = tmp_path / "burrow.bash"
    script.write_text(_script("bash"))
    quoted = " ".join(f"'{word}'" for word in words)
    program = (
        f"source {script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _burrow; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        [_shell("bash"), "--norc", "-c", program],
        capture_output=True,
        text=True,
        timeout=SHELL_TIMEOUT,
        check=True,
    )
    assert done.stderr == ""
    return [line for line in done.stdout.splitlines() if line]


def test_bash_completes_top_level_commands(tmp_path: Path) -> None:
    assert _bash_complete(tmp_path, "burrow", "con") == ["config"]
    top = _bash_complete(tmp_path, "burrow", "")
    for command in ("http", "tls", "tcp", "start", "config", "service", "diagnose", "version"):
        assert command in top
    assert "completion" in top


def test_bash_completes_subcommands_after_global_options(tmp_path: Path) -> None:
    words = ("burrow", "--config", "a.yml", "config", "add-")
    assert _bash_complete(tmp_path, *words) == [
        "add-authtoken",
        "add-connect-url",
        "add-server-addr",
    ]


def test_bash_completes_choices_after_an_option(tmp_path: Path) -> None:
    assert _bash_complete(tmp_path, "burrow", "http", "--log-format", "") == [
        "term",
        "logfmt",
        "json",
    ]
    assert _bash_complete(tmp_path, "burrow", "http", "--binding", "in") == ["internal"]


def test_bash_completes_positional_choices(tmp_path: Path) -> None:
    assert _bash_complete(tmp_path, "burrow", "service", "st") == ["start", "stop", "status"]
    assert _bash_complete(tmp_path, "burrow", "completion", "") == ["bash", "zsh", "fish", "--help"]


def test_bash_offers_no_hidden_flags(tmp_path: Path) -> None:
    offered = _bash_complete(tmp_path, "burrow", "http", "--")
    assert "--url" in offered and "--pooling-enabled" in offered
    for hidden in ("--no-pooling-enabled", "--domain", "--subdomain", "--basic-auth"):
        assert hidden not in offered


def test_fish_completes_subcommands_and_choices(tmp_path: Path) -> None:
    script = tmp_path / "burrow.fish"
    script.write_text(_script("fish"))

    def complete(line: str) -> list[str]:
        done = subprocess.run(
            [_shell("fish"), "--no-config", "-c", f"source {script}; complete -C '{line}'"],
            capture_output=True,
            text=True,
            timeout=SHELL_TIMEOUT,
            check=True,
        )
        assert done.stderr == ""
        return [line.split("\t")[0] for line in done.stdout.splitlines()]

    assert complete("burrow con") == ["config"]
    assert complete("burrow --config a.yml config add-") == [
        "add-authtoken",
        "add-connect-url",
        "add-server-addr",
    ]
    assert sorted(complete("burrow http --log-format ")) == ["json", "logfmt", "term"]
    assert complete("burrow service i") == ["install"]
    assert "--url" in complete("burrow tcp --")
    assert "--domain" not in complete("burrow http --")


def test_zsh_loads_the_script_through_bashcompinit(tmp_path: Path) -> None:
    script = tmp_path / "_burrow"
    script.write_text(_script("zsh"))
    # zsh's own completion system filters by the typed prefix, so its `compgen` does not:
    # what matters is that the script loads, registers, and gives the right candidates.
    program = (
        f"source {script}; print -r -- $_comps[burrow]; "
        "emulate sh -c 'COMP_WORDS=(burrow service s); COMP_CWORD=2; _burrow; "
        'printf "%s\\n" "${COMPREPLY[@]}"\''
    )
    done = subprocess.run(
        [_shell("zsh"), "-f", "-c", program],
        capture_output=True,
        text=True,
        timeout=SHELL_TIMEOUT,
        check=True,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    lines = done.stdout.splitlines()
    assert lines[0] == "_bash_complete -o default -F _burrow"
    assert {"start", "stop", "status", "install"} <= set(lines[1:])
    assert "http" not in lines[1:]


def test_the_tree_follows_the_parser() -> None:
    tree = {node.path: node for node in command_tree(_parser())}
    assert ("config", "add-authtoken") in tree
    assert tree[("config",)].subcommands == (
        "check",
        "add-authtoken",
        "add-connect-url",
        "add-server-addr",
    )
    flags = {flag for option in tree[("tcp",)].options for flag in option.flags}
    assert {"--url", "--binding", "--config", "--authtoken"} <= flags
    assert "--remote-addr" not in flags  # deprecated: hidden, as ngrok hides them


def test_unknown_shell_is_refused() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run(["completion", "powershell"], {}, out, err) == 1
    assert "invalid choice: 'powershell'" in err.getvalue()
