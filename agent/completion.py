"""`burrow completion bash|zsh|fish`: a shell completion script, generated from the parser.

Theory of operation: `command_tree` walks the argparse parser once and returns, for every
command path (`()`, `("config",)`, `("service", "install")`, ...), its subcommands, its
options and the choices of each option that has them; each `render_*` turns that tree into one
shell's script. Generating from the parser keeps completion in step with the command line by
construction, and costs no dependency: `shtab` does the same for argparse but would be one more
package to install and audit for about 150 lines of code here.

bash: `_burrow` finds the command path among the words typed so far and offers that path's
subcommands and options (or an option's choices after it; files otherwise). zsh: the same
function through zsh's `bashcompinit`, the documented way to reuse a bash completion. fish:
one `complete` line per subcommand and option, conditioned on the path typed so far.

Install: `burrow completion bash > ~/.local/share/bash-completion/completions/burrow`;
`burrow completion zsh > "${fpath[1]}/_burrow"` (or `source <(burrow completion zsh)` in
.zshrc); `burrow completion fish > ~/.config/fish/completions/burrow.fish`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO, TypeVar

_ParserT = TypeVar("_ParserT", bound=argparse.ArgumentParser)

__all__ = [
    "SHELLS",
    "CommandNode",
    "add_completion_parser",
    "command_tree",
    "completion_command",
    "render",
]

SHELLS = ("bash", "zsh", "fish")


@dataclass(frozen=True, slots=True)
class Option:
    flags: tuple[str, ...]  # e.g. ("--log-format",)
    help: str
    choices: tuple[str, ...]  # empty: any value, or none
    takes_value: bool


@dataclass(frozen=True, slots=True)
class CommandNode:
    path: tuple[str, ...]
    help: str
    subcommands: tuple[str, ...]
    options: tuple[Option, ...]
    arguments: tuple[str, ...] = ()  # the choices of its positional arguments (`service start`)


def add_completion_parser(commands: argparse._SubParsersAction[_ParserT]) -> None:
    parser = commands.add_parser(
        "completion", help="print a shell completion script (bash, zsh or fish)"
    )
    parser.add_argument("shell", choices=SHELLS)


def completion_command(
    args: argparse.Namespace, parser: argparse.ArgumentParser, out: TextIO
) -> int:
    """Print the script for `args.shell`, generated from `parser` (the `burrow` parser)."""
    out.write(render(args.shell, parser.prog, command_tree(parser)))
    out.flush()
    return 0


def command_tree(parser: argparse.ArgumentParser) -> tuple[CommandNode, ...]:
    """Every command path of `parser`, parents first; hidden options (help=SUPPRESS) left out."""
    nodes: list[CommandNode] = []

    def walk(current: argparse.ArgumentParser, path: tuple[str, ...], help_text: str) -> None:
        options: list[Option] = []
        arguments: list[str] = []
        children: dict[str, tuple[argparse.ArgumentParser, str]] = {}
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
                for name, child in action.choices.items():
                    children[name] = (child, helps.get(name, ""))
            elif not action.option_strings and action.choices:
                arguments.extend(str(choice) for choice in action.choices)
            elif action.option_strings and action.help != argparse.SUPPRESS:
                options.append(
                    Option(
                        flags=tuple(f for f in action.option_strings if f.startswith("--")),
                        help=action.help or "",
                        choices=tuple(str(c) for c in action.choices or ()),
                        takes_value=action.nargs != 0,
                    )
                )
        node = CommandNode(path, help_text, tuple(children), tuple(options), tuple(arguments))
        nodes.append(node)
        for name, (child, child_help) in children.items():
            walk(child, (*path, name), child_help)

    walk(parser, (), parser.description or "")
    return tuple(nodes)


def render(shell: str, prog: str, tree: Sequence[CommandNode]) -> str:
    if shell == "fish":
        return _fish(prog, tree)
    script = _bash(prog, tree)
    if shell == "zsh":
        return (
            f"#compdef {prog}\n# zsh completion for {prog}, through bashcompinit\n"
            "(( $+functions[compdef] )) || { autoload -U +X compinit && compinit; }\n"
            "autoload -U +X bashcompinit && bashcompinit\n" + script
        )
    return script


def _words(node: CommandNode) -> list[str]:
    flags = (flag for option in node.options for flag in option.flags)
    return [*node.subcommands, *node.arguments, *flags]


def _bash(prog: str, tree: Sequence[CommandNode]) -> str:
    name = "_" + prog.replace("-", "_")
    subcommands = "\n".join(
        f'        "{_key(node.path)}") echo "{" ".join(node.subcommands)}" ;;'
        for node in tree
        if node.subcommands
    )
    words = "\n".join(
        f'        "{_key(node.path)}") echo "{" ".join(_words(node))}" ;;' for node in tree
    )
    choices = "\n".join(
        f'        "{_key(node.path)}|{flag}") echo "{" ".join(option.choices)}" ;;'
        for node in tree
        for option in node.options
        if option.choices
        for flag in option.flags
    )
    values = " ".join(
        sorted({flag for node in tree for o in node.options if o.takes_value for flag in o.flags})
    )
    return f"""# bash completion for {prog}, generated by `{prog} completion bash`
{name}_subcommands() {{
    case "$1" in
{subcommands}
    esac
}}
{name}_words() {{
    case "$1" in
{words}
    esac
}}
{name}_choices() {{
    case "$1" in
{choices}
        *) return 1 ;;
    esac
}}
{name}() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="" path="" word i skip=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        if [[ -n "$skip" ]]; then skip=""; continue; fi
        case " {values} " in *" $word "*) skip=1; continue ;; esac
        case " $({name}_subcommands "$path") " in *" $word "*) path="$path $word" ;; esac
    done
    (( COMP_CWORD > 1 )) && prev="${{COMP_WORDS[COMP_CWORD - 1]}}"
    local options
    if options="$({name}_choices "$path|$prev")"; then
        COMPREPLY=($(compgen -W "$options" -- "$cur"))
        return 0
    fi
    case " {values} " in *" $prev "*) COMPREPLY=(); return 0 ;; esac
    COMPREPLY=($(compgen -W "$({name}_words "$path")" -- "$cur"))
}}
complete -o default -F {name} {prog}
"""


def _key(path: tuple[str, ...]) -> str:
    return "".join(f" {part}" for part in path)


def _fish(prog: str, tree: Sequence[CommandNode]) -> str:
    fn = f"__{prog.replace('-', '_')}_path"
    values = " ".join(
        sorted({flag for node in tree for o in node.options if o.takes_value for flag in o.flags})
    )
    cases = "".join(
        f"            case {_fish_quote(' '.join(node.path))}\n"
        f"                contains -- $word {' '.join(node.subcommands)}; and set -a path $word\n"
        for node in tree
        if node.subcommands
    )
    lines = [
        f"# fish completion for {prog}, generated by `{prog} completion fish`",
        f"function {fn} --description 'the {prog} subcommands typed so far, or -'",
        "    set -l path",
        "    set -l skip 0",
        "    for word in (commandline -opc)[2..-1]",
        "        if test $skip = 1",
        "            set skip 0",
        "            continue",
        "        end",
        f"        if contains -- $word {values}",
        "            set skip 1",
        "            continue",
        "        end",
        '        switch "$path"',
        cases.rstrip("\n"),
        "        end",
        "    end",
        "    if set -q path[1]",
        "        string join ' ' $path",
        "    else",
        "        echo -",
        "    end",
        "end",
        f"complete -c {prog} -f",
    ]
    helps = {node.path: node.help for node in tree}
    for node in tree:
        condition = _fish_quote(f"test ({fn}) = {_fish_quote(' '.join(node.path) or '-')}")
        for sub in node.subcommands:
            help_text = _fish_quote(helps.get((*node.path, sub), ""))
            lines.append(f"complete -c {prog} -n {condition} -a {sub} -d {help_text}")
        if node.arguments:
            lines.append(
                f"complete -c {prog} -n {condition} -a {_fish_quote(' '.join(node.arguments))}"
            )
        for option in node.options:
            for flag in option.flags:
                extra = ""
                if option.choices:
                    extra = f" -x -a {_fish_quote(' '.join(option.choices))}"
                elif option.takes_value:
                    extra = " -r -F"
                lines.append(
                    f"complete -c {prog} -n {condition} -l {flag.removeprefix('--')}{extra} "
                    f"-d {_fish_quote(option.help)}"
                )
    return "\n".join(lines) + "\n"


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
