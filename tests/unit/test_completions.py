"""Completion: the committed scripts match the command tree, and service names come fast and quiet.

The scripts are run by real bash, zsh and fish (those installed); service
names come from a real gateway on loopback through the hidden
``tether completion services``.
"""

from __future__ import annotations

import enum
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import pytest
import typer

from tests.cli import assert_no_secrets, run_tether, tether_env
from tests.hostile import HostileServer, mute
from tether.cli.app import app
from tools import completions as scripts

ROOT = Path(__file__).resolve().parents[2]
COMPLETIONS = ROOT / "completions"
BIN = str(Path(sys.executable).parent)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _visible_tree() -> list[tuple[tuple[str, ...], list[str]]]:
    """(command path, option names) of every visible command, read from Typer directly."""
    root = typer.main.get_command(app)
    out: list[tuple[tuple[str, ...], list[str]]] = []

    def walk(command: typer.core.TyperGroup, path: tuple[str, ...]) -> None:
        names = [n for p in command.params if p.param_type_name == "option" and not p.hidden
                 for n in (*p.opts, *p.secondary_opts)]
        out.append((path, names))
        for name, sub in getattr(command, "commands", {}).items():
            if not sub.hidden:
                walk(sub, (*path, name))

    walk(root, ())
    return out


# --- the committed scripts ---------------------------------------------------------------


def test_committed_scripts_equal_what_the_generator_makes_now() -> None:
    assert scripts.default_directory() == COMPLETIONS
    assert scripts.drifted(COMPLETIONS) == [], (
        "completions/ is out of date: run python -m tools.completions --write")
    proc = subprocess.run([sys.executable, "-m", "tools.completions", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


def test_check_fails_when_a_script_drifts(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "tools.completions"]
    run = subprocess.run([*base, "--write", "--dir", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_tether", "tether.bash",
                                                          "tether.fish"]
    bash = tmp_path / "tether.bash"
    bash.write_text(bash.read_text().replace("'status'", "'statu'"))
    check = subprocess.run([*base, "--check", "--dir", str(tmp_path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 1
    assert "tether.bash is out of date" in check.stderr
    assert "_tether" not in check.stderr


@pytest.mark.parametrize("name", ["tether.bash", "_tether", "tether.fish"])
def test_every_command_and_option_is_in_every_script(name: str) -> None:
    text = (COMPLETIONS / name).read_text()
    for path, options in _visible_tree():
        if path:
            assert f"'{' '.join(path)}'" in text, f"{path} missing from {name}"
        for option in options:
            assert f"{option}" in text, f"{option} of {path} missing from {name}"
    # the hidden helpers are called for SERVICE, --instance and contexts ...
    assert "tether completion" in text and "instances" in text and "contexts" in text
    assert "'completion services'" not in text  # ... but never offered as commands


class Mode(enum.StrEnum):
    FAST = "fast"
    SLOW = "slow"


def test_the_generator_follows_a_change_of_the_tree() -> None:
    extra = typer.Typer()

    @extra.command("frob")
    def frob(service: Annotated[str, typer.Argument(metavar="SERVICE")],
             level: Annotated[str, typer.Option("--level", "-l")] = "x",
             mode: Annotated[Mode, typer.Option("--mode")] = Mode.FAST,
             config: Annotated[Path | None, typer.Option("--config", metavar="FILE")] = None,
             quiet: Annotated[bool, typer.Option("--quiet")] = False) -> None:
        """Frobnicate a service."""

    @extra.command("other")
    def other() -> None:
        """Another."""

    tree = scripts.read_tree(extra)
    frob_cmd = next(c for c in tree.commands if c.path == ("frob",))
    kinds = {o.names[0]: o.value for o in frob_cmd.options}
    assert kinds["--level"] == "any"
    assert kinds["--mode"] == "choice fast slow"
    assert kinds["--config"] == "file"
    assert kinds["--quiet"] == "flag"
    assert frob_cmd.arguments == ("service",)
    bash = scripts.bash_script(tree)
    assert "'frob|--level'|'frob|-l') echo 'any'" in bash
    assert "'frob|0') echo 'service'" in bash
    assert "echo 'frob other'" in bash
    assert "'frob|--mode') echo 'choice fast slow'" in scripts.zsh_script(tree)
    assert "case 'frob|--mode'" in scripts.fish_script(tree)


# --- service names ---------------------------------------------------------------------------


def test_completion_services_lists_the_gateways_services(gateway, deployer_token: str,
                                                         tmp_path: Path) -> None:
    env = tether_env(gateway.url, deployer_token, tmp_path)
    proc = run_tether("completion", "services", env=env, timeout=10)
    assert proc.returncode == 0
    assert proc.stdout.decode().split() == ["api"]
    assert proc.stderr == b""
    assert_no_secrets([deployer_token], proc.stdout, proc.stderr)
    cached = list((tmp_path / "state" / "completion").glob("services-*.json"))
    assert len(cached) == 1
    assert json.loads(cached[0].read_text())["services"] == ["api"]
    gateway.stop()  # within 30 s the cache answers alone
    again = run_tether("completion", "services", env=env, timeout=10)
    assert again.stdout.decode().split() == ["api"]


def test_completion_helpers_are_hidden_from_help(tmp_path: Path) -> None:
    proc = run_tether("completion", "--help", env=tether_env(None, None, tmp_path), timeout=10)
    assert proc.returncode == 0
    commands = proc.stdout.decode().partition("Commands:")[2]
    listed = re.findall(r"^\s+([a-z][\w-]*)\s", commands, re.MULTILINE)
    assert listed == ["bash", "zsh", "fish"]


@pytest.mark.parametrize("server", ["nothing listening", "silent"])
def test_completion_services_with_no_gateway_prints_nothing_within_a_second(
        server: str, tmp_path: Path) -> None:
    with HostileServer(mute(), lifetime=10) as silent:
        port = silent.port if server == "silent" else _free_port()
        env = tether_env(f"http://127.0.0.1:{port}", None, tmp_path)
        # A first run may compile bytecode (a fresh checkout); an installed tether has it.
        run_tether("completion", "services", env=tether_env(None, None, tmp_path), timeout=30)
        started = time.monotonic()
        proc = run_tether("completion", "services", env=env, timeout=10)
        took = time.monotonic() - started
    assert proc.returncode == 0
    assert proc.stdout == b""
    assert proc.stderr == b""
    assert took < 1.0, f"completion took {took:.2f} s"


def test_completion_services_without_any_gateway_is_silent(tmp_path: Path) -> None:
    proc = run_tether("completion", "services", "--bogus", "-o", "json",
                      env=tether_env(None, None, tmp_path), timeout=10)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")


# --- the scripts in real shells ---------------------------------------------------------------

_BASH = r"""
source "$1"
line=$2
read -ra COMP_WORDS <<< "$line"
[[ $line == *' ' ]] && COMP_WORDS+=('')
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_tether
printf '%s\n' "${COMPREPLY[@]}"
"""

_ZSH = r"""
compdef() { : }
_describe() { local name=${@[-1]}; local -a items; items=("${(@P)name}");
               print -rl -- "${items[@]%%:*}" }
compadd() { local name=${@[-1]}; print -rl -- "${(@P)name}" }
_files() { print -r -- "FILES $*" }
compset() { PREFIX=${PREFIX#*=} }
source "$1"
words=(${(z)2})
[[ $2 == *' ' ]] && words+=('')
CURRENT=${#words}
PREFIX=${words[CURRENT]}
_tether
"""


def _complete(shell: str, line: str, env: dict[str, str]) -> list[str]:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    env = {**env, "PATH": BIN + os.pathsep + env.get("PATH", "")}
    if shell == "bash":
        argv = ["bash", "--norc", "-c", _BASH, "bash", str(COMPLETIONS / "tether.bash"), line]
    elif shell == "zsh":
        argv = ["zsh", "-f", "-c", _ZSH, "zsh", str(COMPLETIONS / "_tether"), line]
    else:
        script = f"source {COMPLETIONS / 'tether.fish'}; complete -C {_fish_quote(line)}"
        argv = ["fish", "--no-config", "-c", script]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, env=env,
                          check=False)
    assert proc.stderr == "", proc.stderr
    return [w.split("\t")[0] for w in proc.stdout.splitlines() if w]


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_scripts_complete_commands_options_choices_and_services(shell: str, gateway,
                                                                tmp_path: Path) -> None:
    env = tether_env(None, None, tmp_path)
    commands = _complete(shell, "tether ", env)
    assert {"status", "doctor", "auth", "gateway", "exec", "version", "completion"} <= set(
        commands)
    assert set(_complete(shell, "tether completion ", env)) == {"bash", "zsh", "fish"}
    assert set(_complete(shell, "tether gateway token ", env)) == {"create", "list", "revoke"}
    assert set(_complete(shell, "tether -o ", env)) == {"text", "json"}
    assert "--output" in _complete(shell, "tether status --", env)
    assert _complete(shell, f"tether --gateway {gateway.url} status ", env) == ["api"]
    assert _complete(shell, f"tether status --gateway {gateway.url} ", env) == ["api"]
    assert _complete(shell, f"tether status --gateway http://127.0.0.1:{_free_port()} ",
                     env) == []


def test_bash_completes_after_option_equals(gateway, tmp_path: Path) -> None:
    env = tether_env(gateway.url, None, tmp_path)
    assert set(_complete("bash", "tether --output = ", env)) == {"text", "json"}
    assert _complete("bash", "tether st", env) == ["status"]


# --- Typer's own completion ------------------------------------------------------------------


def test_typer_completion_offers_commands_and_services(gateway, tmp_path: Path) -> None:
    env = tether_env(gateway.url, None, tmp_path)
    source = run_tether(env={**env, "_TETHER_COMPLETE": "source_bash"}, timeout=10)
    assert source.returncode == 0 and b"complete" in source.stdout
    words = run_tether(env={**env, "_TETHER_COMPLETE": "complete_bash",
                            "COMP_WORDS": "tether stat", "COMP_CWORD": "1"}, timeout=10)
    assert words.stdout.decode().split() == ["status"]
    services = run_tether(env={**env, "_TETHER_COMPLETE": "complete_bash",
                               "COMP_WORDS": "tether status ", "COMP_CWORD": "2"}, timeout=10)
    assert services.stdout.decode().split() == ["api"]
    assert services.stderr == b""


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_scripts_complete_instances_and_contexts(shell: str, gateway, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.toml").write_text(
        f'current-context = "local"\n\n[contexts.local]\ngateway = "{gateway.url}"\n\n'
        '[contexts.lab]\ngateway = "https://lab.example"\n')
    env = tether_env(None, None, tmp_path)
    assert _complete(shell, "tether logs api --instance ", env) == ["api-1", "api-2"]
    assert _complete(shell, "tether --context local shell api --instance ", env) == [
        "api-1", "api-2"]
    assert _complete(shell, "tether logs nope --instance ", env) == []
    assert sorted(_complete(shell, "tether --context ", env)) == ["lab", "local"]  # fish sorts
    assert sorted(_complete(shell, "tether auth switch ", env)) == ["lab", "local"]
