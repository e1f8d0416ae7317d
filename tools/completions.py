"""The completion scripts in ``completions/``, generated from the command tree.

    python -m tools.completions --write   # regenerate completions/
    python -m tools.completions --check   # exit 1 when a committed script drifted

The tree (commands, subcommands, options, which options take a value, choices,
files, SERVICE arguments) is read from the Click command that Typer builds, so
a new command or option changes the scripts and the check fails until they
are regenerated. Each script carries the tree as small lookup functions and
one walker that finds the command path under the cursor. Words that depend on
the gateway or the config file come from hidden helpers, run with the global
options typed so far: a SERVICE argument from ``tether completion services``,
an ``--instance`` value from ``tether completion instances SERVICE`` (the
first argument typed after the command), a context (``--context``, ``auth
switch``) from ``tether completion contexts``. Global options (those
``tether`` accepts anywhere) are offered at every level. The wheel ships the
scripts as ``tether/completions/``; ``tether completion SHELL`` prints one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.cli.commands.completion import SCRIPTS
from tether.cli.options import is_global

__all__ = ["SCRIPTS", "Tree", "drifted", "read_tree", "render_all"]
GENERATED = ("Generated from the command tree by `python -m tools.completions --write`; "
             "do not edit.")
_HELP_LIMIT = 70
_FILE_METAVARS = frozenset({"FILE", "PATH"})
_DIR_METAVARS = frozenset({"DIR", "DIRECTORY"})
#: Parameters whose values a hidden helper lists: what the scripts ask it for.
_NAMED_KINDS = {"service": "service", "instance": "instance", "context": "context"}


@dataclass(frozen=True)
class Option:
    """One option: its spellings, first line of help, and what value it takes."""

    names: tuple[str, ...]
    help: str
    value: str  # "flag", "any", "file", "dir", "choice a b c", "instance" or "context"


@dataclass(frozen=True)
class Command:
    """One command or group, by its path of names from the root."""

    path: tuple[str, ...]
    help: str
    commands: tuple[tuple[str, str], ...]  # (name, help) of visible subcommands
    options: tuple[Option, ...]  # its own, not the global ones
    arguments: tuple[str, ...]  # what each positional takes, as Option.value, or "service"
    variadic: bool  # the last argument repeats

    @property
    def key(self) -> str:
        """The path as the scripts spell it: names joined by spaces."""
        return " ".join(self.path)


@dataclass(frozen=True)
class Tree:
    """Every visible command, root first, and the options accepted anywhere."""

    commands: tuple[Command, ...]
    globals: tuple[Option, ...]


# --- reading the tree ---------------------------------------------------------------


def _first_line(text: str | None) -> str:
    line = (text or "").strip().split("\n\n")[0].replace("\n", " ")
    line = " ".join(line.split()).split(". ")[0].rstrip(".")
    return line if len(line) <= _HELP_LIMIT else line[: _HELP_LIMIT - 1].rstrip() + "…"


def _value_kind(param: Any) -> str:
    if getattr(param, "is_flag", False):
        return "flag"
    if param.name in ("instance", "context"):
        return _NAMED_KINDS[param.name]
    desc = getattr(param, "type_descriptor", None)
    choices = getattr(desc, "choices", None) if desc is not None else None
    if choices:
        return "choice " + " ".join(str(getattr(c, "value", c)) for c in choices)
    metavar = (getattr(param, "metavar", None) or "").strip("[]").upper()
    if metavar in _DIR_METAVARS:
        return "dir"
    if metavar in _FILE_METAVARS or (desc is not None and getattr(desc, "is_path", False)):
        return "file"
    return "any"


def _argument_kind(param: Any) -> str:
    metavar = (getattr(param, "metavar", None) or "").strip("[]").upper()
    if param.name == "service" or metavar == "SERVICE":
        return "service"
    if param.name in _NAMED_KINDS:
        return _NAMED_KINDS[param.name]
    return _value_kind(param)


def _option(param: Any) -> Option:
    names = tuple(sorted([*param.opts, *param.secondary_opts],
                         key=lambda n: (not n.startswith("--"), n)))
    return Option(names, _first_line(getattr(param, "help", None)), _value_kind(param))


def _walk(command: Any, path: tuple[str, ...], out: list[Command]) -> None:
    options: list[Option] = []
    arguments: list[str] = []
    variadic = False
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        if param.param_type_name == "argument":
            arguments.append(_argument_kind(param))
            variadic = param.nargs == -1
        elif is_global(param.opts[0]):
            continue  # offered everywhere already; the root's copy is the one read
        else:
            options.append(_option(param))
    options.append(Option(("--help", "-h"), "Show the help and exit", "flag"))
    subcommands = getattr(command, "commands", {})
    visible = [(name, sub) for name, sub in subcommands.items() if not sub.hidden]
    out.append(Command(path, _first_line(command.help),
                       tuple((name, _first_line(sub.help)) for name, sub in visible),
                       tuple(options), tuple(arguments), variadic))
    for name, sub in visible:
        _walk(sub, (*path, name), out)


def read_tree(typer_app: Any = None) -> Tree:
    """The tree of ``typer_app`` (default: ``tether``) as the CLI defines it now."""
    import typer.main

    if typer_app is None:
        from tether.cli.app import app as typer_app

    root = typer.main.get_command(typer_app)
    commands: list[Command] = []
    _walk(root, (), commands)
    globals_ = tuple(_option(p) for p in root.params
                     if p.param_type_name == "option" and not getattr(p, "hidden", False)
                     and is_global(p.opts[0]))
    return Tree(tuple(commands), globals_)


# --- shared pieces ----------------------------------------------------------------------


def _q(text: str) -> str:
    """``text`` in single quotes for sh, bash and zsh."""
    return "'" + text.replace("'", "'\\''") + "'"


def _fq(text: str) -> str:
    """``text`` in single quotes for fish."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _value_cases(tree: Tree) -> list[tuple[list[str], str]]:
    """(case patterns, kind) for every option that takes a value: own ones first, then globals."""
    cases: list[tuple[list[str], str]] = []
    for command in tree.commands:
        for option in command.options:
            if option.value != "flag":
                cases.append(([f"{command.key}|{n}" for n in option.names], option.value))
    for option in tree.globals:
        if option.value != "flag":
            cases.append(([f"*|{n}" for n in option.names], option.value))
    return cases


def _argument_cases(tree: Tree) -> list[tuple[str, str]]:
    cases: list[tuple[str, str]] = []
    for command in tree.commands:
        for index, kind in enumerate(command.arguments):
            cases.append((f"{command.key}|{index}", kind))
        if command.variadic and command.arguments:
            cases.append((f"{command.key}|*", command.arguments[-1]))
    return cases


def _pattern(text: str) -> str:
    """A case pattern: quoted text, a bare ``*`` where it stands for anything."""
    if text.startswith("*|"):
        return "*" + _q(text[1:])
    if text.endswith("|*"):
        return _q(text[:-1]) + "*"
    return _q(text)


def _global_names(tree: Tree) -> list[str]:
    return [n for option in tree.globals for n in option.names]


# --- bash ---------------------------------------------------------------------------------


_BASH_MAIN = r"""
__tether_names() {  # what a hidden helper lists: services, instances SERVICE, contexts
    command tether completion "$@" 2>/dev/null
}

_tether() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local path='' pending='' option='' prefix='' kind='' first='' word commands i n=0
    local -a globals=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        [[ $word == '=' ]] && continue
        if [[ -n $pending ]]; then
            __tether_is_global "$pending" && globals+=("$pending" "$word")
            pending=''
            continue
        fi
        case $word in
            -*=*) __tether_is_global "${word%%=*}" && globals+=("$word"); continue ;;
            -*)
                if [[ $(__tether_value "$path" "$word") == flag ]]; then
                    __tether_is_global "$word" && globals+=("$word")
                else
                    pending=$word
                fi
                continue ;;
        esac
        if [[ " $(__tether_commands "$path") " == *" $word "* ]]; then
            path=${path:+$path }$word
            n=0
            first=''
        else
            ((n == 0)) && first=$word
            n=$((n + 1))
        fi
    done
    if [[ $cur == '=' ]]; then
        option=$prev
        cur=''
    elif [[ $prev == '=' && $COMP_CWORD -ge 2 ]]; then
        option=${COMP_WORDS[COMP_CWORD-2]}
    elif [[ $cur == -*=* ]]; then
        option=${cur%%=*}
        prefix=$option=
        cur=${cur#*=}
    elif [[ -n $pending ]]; then
        option=$pending
    fi
    if [[ -n $option ]]; then
        kind=$(__tether_value "$path" "$option")
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(__tether_options "$path")" -- "$cur"))
        return 0
    else
        commands=$(__tether_commands "$path")
        if [[ -n $commands ]]; then
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
            return 0
        fi
        kind=$(__tether_argument "$path" "$n")
    fi
    case $kind in
        service|context)
            commands=$(__tether_names "${kind}s" "${globals[@]}")
            COMPREPLY=($(compgen -P "$prefix" -W "$commands" -- "$cur")) ;;
        instance)
            commands=$(__tether_names instances "$first" "${globals[@]}")
            COMPREPLY=($(compgen -P "$prefix" -W "$commands" -- "$cur")) ;;
        choice\ *) COMPREPLY=($(compgen -P "$prefix" -W "${kind#choice }" -- "$cur")) ;;
        file) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -P "$prefix" -f -- "$cur")) ;;
        dir) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -P "$prefix" -d -- "$cur")) ;;
    esac
    return 0
}

complete -F _tether tether
"""


def _sh_case(name: str, doc: str, arms: Iterable[tuple[str, str]], tail: str = "", *,
             subject: str = "$1", zsh: bool = False) -> str:
    lines = [f"{name}() {{  # {doc}", f"    case {subject} in"]
    for pattern, body in arms:
        lines.append(f"        {'(' if zsh else ''}{pattern}) {body} ;;")
    lines.append("    esac")
    if tail:
        lines.append(f"    {tail}")
    lines.append("}")
    return "\n".join(lines)


def _sh_lookups(tree: Tree, *, zsh: bool) -> list[str]:
    """The lookup functions shared in shape by bash and zsh."""
    values = [("|".join(_pattern(p) for p in patterns), f"echo {_q(kind)}")
              for patterns, kind in _value_cases(tree)]
    values.append(("*", "echo flag"))
    arguments = [(_pattern(key), f"echo {_q(kind)}") for key, kind in _argument_cases(tree)]
    arguments.append(("*", "echo none"))
    globals_ = _global_names(tree)
    return [
        _sh_case("__tether_value", "what option $2 of command $1 takes", values,
                 subject="$1\\|$2", zsh=zsh),
        _sh_case("__tether_argument", "what positional $2 of command $1 takes", arguments,
                 subject="$1\\|$2", zsh=zsh),
        _sh_case("__tether_is_global", "whether $1 is accepted anywhere",
                 [("|".join(_q(n) for n in globals_), "return 0")], "return 1", zsh=zsh),
    ]


def bash_script(tree: Tree) -> str:
    """completions/tether.bash."""
    commands = [(_q(c.key), f"echo {_q(' '.join(n for n, _ in c.commands))}")
                for c in tree.commands if c.commands]
    options = [(_q(c.key), f"echo {_q(' '.join(n for o in c.options for n in o.names))}")
               for c in tree.commands]
    parts = [
        "# bash completion for tether",
        f"# {GENERATED}",
        "",
        _sh_case("__tether_commands", "subcommands of command $1", commands),
        "",
        _sh_case("__tether_options", "options of command $1, global ones included", options,
                 f"echo {_q(' '.join(_global_names(tree)))}"),
        "",
        "\n\n".join(_sh_lookups(tree, zsh=False)),
        _BASH_MAIN,
    ]
    return "\n".join(parts).rstrip() + "\n"


# --- zsh ------------------------------------------------------------------------------------


_ZSH_MAIN = r"""
__tether_names() {  # what a hidden helper lists: services, instances SERVICE, contexts
    command tether completion "$@" 2>/dev/null
}

_tether() {
    local path_='' pending='' option='' kind='' first='' word i n=0
    local -a globals candidates
    for ((i = 2; i < CURRENT; i++)); do
        word=${words[i]}
        if [[ -n $pending ]]; then
            __tether_is_global "$pending" && globals+=("$pending" "$word")
            pending=''
            continue
        fi
        case $word in
            (-*=*) __tether_is_global "${word%%=*}" && globals+=("$word"); continue ;;
            (-*)
                if [[ $(__tether_value "$path_" "$word") == flag ]]; then
                    __tether_is_global "$word" && globals+=("$word")
                else
                    pending=$word
                fi
                continue ;;
        esac
        candidates=(${(f)"$(__tether_commands "$path_")"})
        if (( ${candidates[(I)${(b)word}:*]} )); then
            path_=${path_:+$path_ }$word
            n=0
            first=''
        else
            (( n == 0 )) && first=$word
            n=$((n + 1))
        fi
    done
    if [[ $PREFIX == -*=* ]]; then
        option=${PREFIX%%=*}
        compset -P '*='
    elif [[ -n $pending ]]; then
        option=$pending
    fi
    if [[ -n $option ]]; then
        kind=$(__tether_value "$path_" "$option")
    elif [[ $PREFIX == -* ]]; then
        candidates=(${(f)"$(__tether_options "$path_")"})
        _describe -t options option candidates
        return
    else
        candidates=(${(f)"$(__tether_commands "$path_")"})
        if (( ${#candidates} )); then
            _describe -t commands command candidates
            return
        fi
        kind=$(__tether_argument "$path_" "$n")
    fi
    case $kind in
        (service|context)
            candidates=(${(f)"$(__tether_names ${kind}s "${globals[@]}")"})
            compadd -a candidates ;;
        (instance)
            candidates=(${(f)"$(__tether_names instances "$first" "${globals[@]}")"})
            compadd -a candidates ;;
        ('choice '*)
            candidates=(${=kind#choice })
            compadd -a candidates ;;
        (file) _files ;;
        (dir) _files -/ ;;
        (*) return 1 ;;
    esac
}

if [[ ${zsh_eval_context[-1]} == loadautofunc ]]; then
    _tether "$@"
else
    compdef _tether tether
fi
"""


def _zsh_described(pairs: Iterable[tuple[str, str]]) -> str:
    items = []
    for name, text in pairs:
        escaped = name.replace(":", "\\:")
        items.append(_q(f"{escaped}:{text}" if text else escaped))
    return "print -rl -- " + " ".join(items) if items else ":"


def zsh_script(tree: Tree) -> str:
    """completions/_tether."""
    commands = [(_q(c.key), _zsh_described(c.commands)) for c in tree.commands if c.commands]
    options = [(_q(c.key), _zsh_described((n, o.help) for o in c.options for n in o.names))
               for c in tree.commands]
    parts = [
        "#compdef tether",
        "# zsh completion for tether",
        f"# {GENERATED}",
        "",
        _sh_case("__tether_commands", "subcommands of command $1, with help", commands,
                 zsh=True),
        "",
        _sh_case("__tether_options", "options of command $1, global ones included", options,
                 _zsh_described((n, o.help) for o in tree.globals for n in o.names), zsh=True),
        "",
        "\n\n".join(_sh_lookups(tree, zsh=True)),
        _ZSH_MAIN,
    ]
    return "\n".join(parts).rstrip() + "\n"


# --- fish -------------------------------------------------------------------------------------


_FISH_MAIN = r"""
function __tether_complete --description 'Completions for the tether command line'
    set -l tokens (commandline -opc)
    set -l cur (commandline -ct)
    set -l path ''
    set -l pending ''
    set -l globals
    set -l first ''
    set -l n 0
    for word in $tokens[2..-1]
        if test -n "$pending"
            __tether_is_global $pending; and set -a globals $pending $word
            set pending ''
            continue
        end
        switch $word
            case '-*=*'
                __tether_is_global (string replace -r '=.*' '' -- $word); and set -a globals $word
                continue
            case '-*'
                if test (__tether_value "$path" $word) = flag
                    __tether_is_global $word; and set -a globals $word
                else
                    set pending $word
                end
                continue
        end
        if contains -- $word (__tether_commands "$path" | string replace -r '\t.*' '')
            set path (string trim -- "$path $word")
            set n 0
            set first ''
        else
            test $n -eq 0; and set first $word
            set n (math $n + 1)
        end
    end
    set -l option ''
    set -l prefix ''
    if string match -qr -- '^-[^=]*=' $cur
        set option (string replace -r '=.*' '' -- $cur)
        set prefix "$option="
        set cur (string replace -- $prefix '' $cur)
    else if test -n "$pending"
        set option $pending
    end
    set -l kind
    if test -n "$option"
        set kind (__tether_value "$path" $option)
    else if string match -q -- '-*' $cur
        __tether_options "$path"
        return
    else
        set -l commands (__tether_commands "$path")
        if test (count $commands) -gt 0
            printf '%s\n' $commands
            return
        end
        set kind (__tether_argument "$path" $n)
    end
    switch "$kind"
        case service context
            for name in (command tether completion {$kind}s $globals 2>/dev/null)
                printf '%s%s\n' $prefix $name
            end
        case instance
            for name in (command tether completion instances "$first" $globals 2>/dev/null)
                printf '%s%s\n' $prefix $name
            end
        case 'choice *'
            for choice in (string split ' ' -- (string replace 'choice ' '' -- $kind))
                printf '%s%s\n' $prefix $choice
            end
        case file
            for item in (__fish_complete_path $cur)
                printf '%s%s\n' $prefix $item
            end
        case dir
            for item in (__fish_complete_directories $cur)
                printf '%s%s\n' $prefix $item
            end
    end
end

complete -c tether -f -a '(__tether_complete)'
"""


def _fish_switch(name: str, doc: str, arms: Iterable[tuple[list[str], list[str]]],
                 subject: str = "$argv[1]", tail: str = "") -> str:
    lines = [f"function {name} --description {_fq(doc)}", f"    switch {subject}"]
    for patterns, body in arms:
        lines.append("        case " + " ".join(patterns))
        lines.extend(f"            {line}" for line in body)
    lines.append("    end")
    if tail:
        lines.append(f"    {tail}")
    lines.append("end")
    return "\n".join(lines)


def _fish_described(pairs: Iterable[tuple[str, str]]) -> list[str]:
    items = [f"{_fq(name)} {_fq(text)}" for name, text in pairs]
    return ["printf '%s\\t%s\\n' " + " ".join(items)] if items else []


def _fish_pattern(text: str) -> str:
    if text.startswith("*|"):
        return "'*'" + _fq(text[1:])
    if text.endswith("|*"):
        return _fq(text[:-1]) + "'*'"
    return _fq(text)


def fish_script(tree: Tree) -> str:
    """completions/tether.fish."""
    commands = [([_fq(c.key)], _fish_described(c.commands)) for c in tree.commands
                if c.commands]
    options = [([_fq(c.key)], _fish_described((n, o.help) for o in c.options for n in o.names))
               for c in tree.commands]
    values = [([_fish_pattern(p) for p in patterns], [f"echo {_fq(kind)}"])
              for patterns, kind in _value_cases(tree)]
    values.append((["'*'"], ["echo flag"]))
    arguments = [([_fish_pattern(key)], [f"echo {_fq(kind)}"])
                 for key, kind in _argument_cases(tree)]
    arguments.append((["'*'"], ["echo none"]))
    globals_ = " ".join(_fq(n) for n in _global_names(tree))
    parts = [
        "# fish completion for tether",
        f"# {GENERATED}",
        "",
        _fish_switch("__tether_commands", "Subcommands of a tether command", commands),
        "",
        _fish_switch("__tether_options", "Options of a tether command", options,
                     tail="\n    ".join(_fish_described(
                         (n, o.help) for o in tree.globals for n in o.names))),
        "",
        _fish_switch("__tether_value", "What an option of a tether command takes", values,
                     subject='"$argv[1]|$argv[2]"'),
        "",
        _fish_switch("__tether_argument", "What a positional of a tether command takes",
                     arguments, subject='"$argv[1]|$argv[2]"'),
        "",
        "function __tether_is_global --description 'Whether a tether option is accepted "
        "anywhere'",
        f"    contains -- $argv[1] {globals_}",
        "end",
        _FISH_MAIN,
    ]
    return "\n".join(parts).rstrip() + "\n"


# --- writing and checking -------------------------------------------------------------------


def render_all(tree: Tree | None = None) -> dict[str, str]:
    """File name -> text of every script, for the tree as it is now."""
    tree = tree or read_tree()
    return {SCRIPTS["bash"]: bash_script(tree), SCRIPTS["zsh"]: zsh_script(tree),
            SCRIPTS["fish"]: fish_script(tree)}


def default_directory() -> Path:
    """``completions/`` of the source checkout this module lives in."""
    return Path(__file__).resolve().parents[1] / "completions"


def drifted(directory: Path) -> list[str]:
    """The scripts in ``directory`` that differ from what the tree gives now."""
    out = []
    for name, text in render_all().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            out.append(name)
    return out


def main(argv: list[str] | None = None) -> int:
    """``--write`` regenerates the scripts; ``--check`` exits 1 when they drifted."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tools.completions",
                                     description="Generate or check completions/.")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write the scripts")
    mode.add_argument("--check", action="store_true", help="exit 1 when they drifted")
    parser.add_argument("--dir", type=Path, default=None, help="default: completions/")
    args = parser.parse_args(argv)
    directory = args.dir or default_directory()
    if args.write:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in render_all().items():
            (directory / name).write_text(text, encoding="utf-8")
            print(f"wrote {directory / name}")
        return 0
    stale = drifted(directory)
    for name in stale:
        print(f"{directory / name} is out of date: run python -m tools.completions --write",
              file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
