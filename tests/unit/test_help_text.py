"""Help reads like a person wrote it, on every command: -h, defaults as written, no Python types."""

from __future__ import annotations

import re

import pytest
import typer

from tether.cli.app import app
from tether.cli.boundary import run_app
from tether.cli.help import help_record, usage_name


def _paths() -> list[tuple[str, ...]]:
    """The path of every command and group, hidden ones included."""
    out: list[tuple[str, ...]] = []

    def walk(command: typer.core.TyperGroup, path: tuple[str, ...]) -> None:
        out.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return out


PATHS = _paths()


def help_of(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert run_app(app, list(args)) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


def test_every_command_is_covered() -> None:
    assert {("logs",), ("exec",), ("version",), ("auth", "switch"), ("completion", "bash"),
            ("completion", "instances"), ("gateway", "token", "create")} <= set(PATHS)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "tether")
def test_h_and_help_give_the_same_humane_help(path: tuple[str, ...],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(capsys, *path, "-h")
    assert text == help_of(capsys, *path, "--help")
    assert text.startswith(f"Usage: {' '.join(('tether', *path))} ")
    for python in ("<str>", "<int>", "<float>", "<bool>", "<path>", "<list[", "range>",
                   "<text|json>", "x>=", "<="):
        assert python not in text, f"{python!r} in the help of {path}"
    usage = text.splitlines()[0]
    assert "{" not in usage and "}" not in usage, usage
    assert re.search(r"default: [\d.]+\.0\b", text) is None, "a default written as a float"
    assert "-h, --help" in text


def test_defaults_are_written_as_people_write_them(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(help_of(capsys, "--help").split())
    for default in ("default: 5m]", "default: 15s]", "default: 30s]", "default: 75s]",
                    "default: text]"):
        assert default in text
    assert "300" not in text and "15.0" not in text
    assert "-o, --output text|json" in text
    assert "--context NAME" in text and "TETHER_CONTEXT" in text


def test_usage_lines_name_arguments_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    assert help_of(capsys, "logs", "-h").splitlines()[0] == "Usage: tether logs [OPTIONS] SERVICE"
    assert help_of(capsys, "shell", "-h").splitlines()[0] == (
        "Usage: tether shell [OPTIONS] SERVICE [-- COMMAND ARGS]...")
    assert help_of(capsys, "port-forward", "-h").splitlines()[0] == (
        "Usage: tether port-forward [OPTIONS] SERVICE [LOCAL:]REMOTE...")
    assert help_of(capsys, "errors", "-h").splitlines()[0] == (
        "Usage: tether errors [OPTIONS] [CODE]")
    assert help_of(capsys, "auth", "-h").splitlines()[0] == (
        "Usage: tether auth [OPTIONS] COMMAND [ARGS]...")


def test_exec_is_listed_as_an_alias_of_shell(capsys: pytest.CaptureFixture[str]) -> None:
    listing = help_of(capsys, "--help").partition("Commands:")[2]
    row = next(line for line in listing.splitlines() if line.split()[:1] == ["exec"])
    assert "Alias of shell" in row
    assert "Alias of shell" in help_of(capsys, "exec", "-h")


def test_logs_has_kubectls_prefix_flag(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(help_of(capsys, "logs", "-h").split())
    assert "--prefix / --no-prefix" in text and "[default: --prefix]" in text


def test_port_forward_says_what_it_listens_on_by_default(
        capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(help_of(capsys, "port-forward", "-h").split())
    assert "[default: localhost: 127.0.0.1, and ::1 when this machine has IPv6]" in text


def test_h_after_a_bare_double_dash_belongs_to_the_remote_command() -> None:
    shell = typer.main.get_command(app).commands["shell"]  # type: ignore[attr-defined]
    ctx = shell.make_context("shell", ["api", "--", "ls", "-h"])
    assert list(ctx.params["command"]) == ["ls", "-h"]


def test_records_of_one_command() -> None:
    app_ = typer.Typer()

    @app_.command()
    def frob(name: str, count: int = typer.Option(3, "--count", "-c", min=1, help="How many."),
             mode: bool = typer.Option(True, "--loud/--quiet")) -> None:
        """Frobnicate."""

    command = typer.main.get_command(app_)
    ctx = command.make_context("frob", ["x"])
    records = {p.name: help_record(p, ctx) for p in command.params}
    assert records["name"] == ("NAME", "")
    assert records["count"] == ("-c, --count COUNT", "How many.  [default: 3]")
    assert records["mode"] == ("--loud / --quiet", "[default: --loud]")
    arg = next(p for p in command.params if p.name == "name")
    assert usage_name(arg) == "NAME"
